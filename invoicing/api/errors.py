"""Every API error is application/problem+json (RFC 9457) with a machine-readable `code` and a field list."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from flask import Response, current_app, request
from werkzeug.exceptions import HTTPException, InternalServerError

from invoicing.api import PREFIX, bp
from invoicing.extensions import db
from invoicing.pdf import PdfUnavailable
from invoicing.services import DomainError, NotFound
from invoicing.services.api.resources import Conflict, FieldError

log = logging.getLogger(__name__)

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
         429: "rate_limited", 500: "server_error", 503: "unavailable"}
TITLES = {422: "The request cannot be processed", 429: "Too many requests"}


class Problem(Exception):
    """Raise to answer with a problem; views and hooks use it for what is not a DomainError."""

    def __init__(self, status: int, detail: str, *, code: str | None = None, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code or CODES.get(status, "error")
        self.errors, self.headers = errors or [], headers or {}


def problem(status: int, detail: str, *, code: str | None = None, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> Response:
    body = {"type": "about:blank", "title": TITLES.get(status, HTTPStatus(status).phrase), "status": status,
            "detail": detail, "code": code or CODES.get(status, "error"), "errors": errors or []}
    response = current_app.response_class(json.dumps(body), status=status, mimetype="application/problem+json")
    response.headers.update(headers or {})
    return response


def field_errors(messages: Any, path: str = "") -> Iterator[dict[str, Any]]:
    """marshmallow's nested messages as a flat list: {"field": "lines.0.quantity", "message": "..."}."""
    if isinstance(messages, dict):
        for name, inner in messages.items():
            name = "" if name == "_schema" else str(name)
            yield from field_errors(inner, f"{path}.{name}".strip(".") if name else path)
    elif isinstance(messages, list | tuple):
        for message in messages:
            yield from field_errors(message, path)
    else:
        yield {"field": path or None, "message": str(messages)}


def _validation(exc: HTTPException) -> Response | None:
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if not isinstance(messages, dict):
        return None
    errors = []
    for location, inner in messages.items():
        where = {"json": "body", "query": "query", "querystring": "query"}.get(location, location)
        errors += [{**e, "in": where} for e in field_errors(inner)]
    if any(e["message"] == "Invalid JSON body." for e in errors):
        return problem(400, "The body is not valid JSON.", errors=errors)
    return problem(422, "Some fields are missing or invalid: see `errors`.", code="validation_error", errors=errors)


def _http(exc: HTTPException) -> Response:
    db.session.rollback()
    status = exc.code or 500
    validation = _validation(exc)
    if validation is not None:
        return validation
    if status == 429:
        return problem(429, "Too many requests for this API key: wait for the time in Retry-After.")
    if status == 404:
        return problem(404, "There is nothing at this address of the API.")
    return problem(status, exc.description or "")


def handle_problem(exc: Problem) -> Response:
    db.session.rollback()
    return problem(exc.status, exc.detail, code=exc.code, errors=exc.errors, headers=exc.headers)


def _domain(exc: DomainError) -> Response:
    db.session.rollback()
    if isinstance(exc, NotFound):
        return problem(404, str(exc) or "Not found.")
    if isinstance(exc, Conflict):
        return problem(409, str(exc))
    if isinstance(exc, FieldError):
        return problem(422, str(exc), code="validation_error",
                       errors=[{"field": exc.field, "message": str(exc), "in": "body"}])
    return problem(422, str(exc), code="rejected")


def _pdf(exc: PdfUnavailable) -> Response:
    return problem(503, exc.message)


def _server_error(exc: InternalServerError) -> Response:
    db.session.rollback()
    log.error("API request failed", exc_info=getattr(exc, "original_exception", None) or exc)
    return problem(500, "Something went wrong on our side.")


def for_app(exc: HTTPException) -> Response | None:
    """The app-wide HTTP error handler asks this first: an /api/ path that matched no route (404, 405) gets a
    problem too, not an HTML page."""
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        return _http(exc)
    return None


# Handlers for every class the app handles itself: Flask picks the most specific class first, blueprint or app.
bp.register_error_handler(Problem, handle_problem)
bp.register_error_handler(NotFound, _domain)
bp.register_error_handler(DomainError, _domain)
bp.register_error_handler(PdfUnavailable, _pdf)
bp.register_error_handler(InternalServerError, _server_error)
bp.register_error_handler(HTTPException, _http)
