"""The JSON API: /api/v1. Bearer API keys, JSON in and out, errors as application/problem+json.

Validation and the OpenAPI 3.1 document come from flask-smorest (marshmallow schemas in schemas.py); see
docs/api.md for why. No cookies, no session, no CSRF here: an API key in the Authorization header is the only
credential (invoicing/api/auth.py), and the session interface below neither reads nor writes a session cookie
for /api/ paths.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response, current_app, jsonify, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_smorest import Api, Blueprint

from invoicing.extensions import csrf, limiter

PREFIX = "/api/v1"

bp = Blueprint("api", __name__, url_prefix=PREFIX, description="Invoices, clients, contacts and payments.")


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The views' JSON answer, sent as it is. services/api/present.py builds exactly the shapes schemas.py
    documents (every answer in the tests is validated against the document), so the views return a Response
    and flask-smorest uses the schema for the document only: its marshmallow dump of the same dicts doubled the
    time of a list page (bench/api_bench.py)."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


class _Api(Api):
    """flask-smorest without its app-wide error handler: the rest of the app answers errors with HTML pages,
    the API with problem+json (errors.py), documented per operation (docs.errors)."""

    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        pass


class SessionInterface(SecureCookieSessionInterface):
    """The staff and portal sessions, except on the API: no session is read there (a browser's admin cookie
    grants nothing) and none is written (no Set-Cookie, no Vary: Cookie)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(PREFIX + "/"):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        if request.path.startswith(PREFIX + "/"):
            return
        super().save_session(app, session, response)


def _rate_limit() -> str:
    return str(current_app.config["API_RATE_LIMIT"])


def init_app(app: Flask) -> None:
    app.config.setdefault("API_TITLE", "Invoicing API")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.1.0")
    app.session_interface = SessionInterface()
    api = _Api(app, spec_kwargs={"info": {"description": DESCRIPTION}})
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                                   "description": "An API key from Settings > API keys."})
    api.spec.options["security"] = [{"bearer": []}]
    api.register_blueprint(bp)
    csrf.exempt(bp)
    app.extensions["invoicing_api"] = api


DESCRIPTION = """\
Invoices, clients, contacts and payments of one organization, as JSON.

**Authentication.** `Authorization: Bearer inv_live_...` with a key an admin created in Settings > API keys. A
key sees only its organization: another organization's id answers 404, like an id that never existed. A read
key can only GET; writing needs a read-and-write key (else 403).

**Money** is an integer count of the currency's minor units beside its ISO code (`{"total": 12550,
"currency": "USD"}` is $125.50; JPY has no minor unit). Quantities and tax rates are decimal strings.

**Ids** are strings with a prefix saying what they name: `inv_`, `cli_`, `con_`, `pay_`.

**Errors** are `application/problem+json` (RFC 9457): `title`, `status`, `detail`, a `code`, and `errors`, a
list of `{field, message}` for the request's fields. Unknown fields are refused.

**Idempotency.** Send `Idempotency-Key: <unique string>` with any POST: the same key with the same body replays
the first response (with `Idempotent-Replayed: true`) for 24 hours, so a request that timed out can be sent
again safely; the same key with another body is a 422.

**Rate limit** per key: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds) on every answer,
and a 429 with `Retry-After` when it is used up.

**Lists** are newest first and paginated with `limit` (1 to 100) and an opaque `cursor`: pass the `next_cursor`
of one page to get the next. A cursor points between two objects, so objects created while you page through
never make you see one twice or miss one.
"""

# Views register on `bp` when imported; the limit counts every request of a key across the whole API.
limiter.shared_limit(_rate_limit, scope="api", key_func=lambda: auth.rate_limit_key())(bp)

from invoicing.api import auth, clients, errors, invoices, payments, stats, views  # noqa: E402,F401
