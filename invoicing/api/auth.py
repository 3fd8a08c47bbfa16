"""API keys in the Authorization header, their scopes, and the rate limit headers of every answer."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from flask import Response, request
from flask_limiter.util import get_remote_address

from invoicing.api import bp
from invoicing.api.errors import Problem
from invoicing.extensions import limiter
from invoicing.models import ApiKey
from invoicing.services.api import keys
from invoicing.services.audit import Actor

PUBLIC_ENDPOINTS = ("api.openapi",)
ENVIRON_KEY = "invoicing.api_key"
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def now() -> datetime:
    return datetime.now(UTC)


def current_key() -> ApiKey | None:
    """The key of this request, checked once (the rate limiter asks before the views do). Kept in the request's
    environ, not `g`: an app context (and so `g`) can outlive a request, as in tests."""
    if ENVIRON_KEY not in request.environ:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        found = keys.authenticate(token.strip(), now=now()) if scheme.lower() == "bearer" else None
        request.environ[ENVIRON_KEY] = found
    key: ApiKey | None = request.environ[ENVIRON_KEY]
    return key


def api_key() -> ApiKey:
    key = current_key()
    assert key is not None  # _authenticate refused the request otherwise
    return key


def actor() -> Actor:
    return Actor.api_key(api_key())


def rate_limit_key() -> str:
    key = current_key()
    return f"api-key:{key.id}" if key is not None else f"api-ip:{get_remote_address()}"


@bp.before_request
def _authenticate() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    key = current_key()
    if key is None:
        given = bool(request.headers.get("Authorization"))
        detail = ("This API key is not valid: it may be mistyped, revoked or expired." if given else
                  "Send an API key: Authorization: Bearer inv_live_... (Settings > API keys).")
        challenge = 'Bearer realm="invoicing"' + (', error="invalid_token"' if given else "")
        raise Problem(401, detail, headers={"WWW-Authenticate": challenge})
    if request.method not in READ_METHODS and "write" not in key.scopes:
        raise Problem(403, "This API key can only read: create a read-and-write key to make changes.")
    keys.touch(key, now=now())


@bp.after_request
def _headers(response: Response) -> Response:
    """IETF RateLimit headers (Flask-Limiter's own are X-RateLimit-* with an epoch reset, and app-wide)."""
    limit = limiter.current_limit
    if limit is not None:
        window = limit.limit.get_expiry()
        reset = min(window, max(0, math.ceil(limit.reset_at - time.time())))  # reset_at is whole seconds
        response.headers["RateLimit-Limit"] = str(limit.limit.amount)
        response.headers["RateLimit-Remaining"] = str(limit.remaining)
        response.headers["RateLimit-Reset"] = str(reset)
        response.headers["RateLimit-Policy"] = f"{limit.limit.amount};w={window}"
        if limit.breached:
            response.headers["Retry-After"] = str(max(reset, 1))
    response.headers["Cache-Control"] = "no-store"
    return response
