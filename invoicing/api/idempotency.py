"""The Idempotency-Key header on POSTs (services/api/idempotency.py has the rules and why they are safe)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, request

from invoicing.api.auth import api_key, now
from invoicing.api.errors import Problem
from invoicing.services.api import idempotency as svc

F = TypeVar("F", bound=Callable[..., Any])
HEADER = "Idempotency-Key"
KEPT_HEADERS = ("Location",)


def header() -> str | None:
    value = request.headers.get(HEADER)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > svc.MAX_KEY or not value.isprintable():
        raise Problem(400, f"{HEADER} must be 1 to {svc.MAX_KEY} printable characters.",
                      errors=[{"field": HEADER, "message": "Invalid value.", "in": "header"}])
    return value


def idempotent(view: F) -> F:
    """Replay the stored answer of an earlier identical request with the same key; otherwise run the view with
    the key claimed in its write transaction, and store its answer."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        key = header()
        if key is None:
            return view(*args, **kwargs)
        api = api_key()
        fingerprint = svc.request_hash(request.method, request.path, request.get_data())
        try:
            stored = svc.claim(organization_id=api.organization_id, api_key_id=api.id, key=key,
                               fingerprint=fingerprint, now=now())
        except svc.KeyReused:
            raise Problem(422, f"This {HEADER} was already used with a different request: use a new key for a new "
                          "request.", code="idempotency_key_reused") from None
        except svc.InProgress:
            raise Problem(409, f"A request with this {HEADER} is still being processed: retry in a moment.",
                          code="idempotency_key_in_use", headers={"Retry-After": "1"}) from None
        if stored is not None:
            replay = current_app.response_class(stored.body, status=stored.status, mimetype="application/json")
            replay.headers.update(stored.headers)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        response: Response = current_app.make_response(view(*args, **kwargs))
        svc.complete(api_key_id=api.id, key=key, status=response.status_code, body=response.get_data(as_text=True),
                     headers={h: response.headers[h] for h in KEPT_HEADERS if h in response.headers}, now=now())
        return response

    return wrapped  # type: ignore[return-value]
