"""What the OpenAPI document says beyond the schemas: the errors each operation can answer, and request
examples (the admin's API reference builds its curl commands from them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from invoicing.api import bp
from invoicing.api.schemas import ProblemOut

F = TypeVar("F", bound=Callable[..., Any])
PROBLEM = "application/problem+json"
ERRORS = {
    400: "The body is not JSON, or a header is malformed.",
    401: "No API key, or one that is revoked, expired or mistyped.",
    403: "A read-only key tried to make a change.",
    404: "No such object in this key's organization.",
    409: "The object's state does not allow it (e.g. only drafts can be changed).",
    422: "Invalid fields (see `errors`), a rule of the domain, or an Idempotency-Key reused with another body.",
    429: "Too many requests for this key: see Retry-After.",
}
RATE_HEADERS = {
    "RateLimit-Limit": {"description": "Requests allowed in the window.", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the window.", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the window resets.", "schema": {"type": "integer"}},
}


def errors(*codes: int) -> Callable[[F], F]:
    """Document the problem answers an operation can give (every one can be rate limited)."""

    def decorator(view: F) -> F:
        for code in sorted({*codes, 429} | ({400} if 422 in codes else set()), reverse=True):
            headers = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}} \
                if code == 429 else None
            view = bp.alt_response(code, schema=ProblemOut, content_type=PROBLEM, description=ERRORS[code],
                                   headers=headers)(view)
        return view

    return decorator


EXAMPLES: dict[str, dict[str, Any]] = {
    "create_invoice": {
        "client": "cli_8f14e45fceea167a5a36dedd4bea2543",
        "due_date": "2026-04-30",
        "lines": [
            {"description": "Design sprint", "quantity": "3", "unit_price": 45000, "tax_rate": "20"},
            {"description": "Hosting (March)", "unit_price": 2500},
        ],
        "discount": {"percent": "10"},
        "project_ref": "PRJ-42",
    },
    "create_client": {"name": "Acme Ltd", "email": "ap@acme.example", "currency": "EUR",
                      "contacts": [{"name": "Ada Lovelace", "email": "ada@acme.example", "portal_access": True}]},
    "create_contact": {"client": "cli_8f14e45fceea167a5a36dedd4bea2543", "name": "Grace Hopper",
                       "email": "grace@acme.example"},
}


def example(name: str) -> dict[str, Any]:
    return EXAMPLES[name]
