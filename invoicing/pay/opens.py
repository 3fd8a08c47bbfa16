"""The open-tracking image of invoice and reminder emails (services/billing/opens.py): /pay/opened/<token>."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, current_app, request

from invoicing.auth import is_staff
from invoicing.extensions import limiter
from invoicing.pay import bp
from invoicing.services.billing.opens import PIXEL, record_open

# Generous: image proxies (Gmail's) fetch for many readers from few addresses.
LIMIT = "600 per minute"


@bp.get("/opened/<token>")
@limiter.limit(LIMIT)
def email_opened(token: str) -> Response:
    """Always the same image, whatever the token (nothing to learn by guessing); only a GET from someone who is
    not staff records the open (HEAD is a link checker, staff are not the client)."""
    if request.method == "GET" and not is_staff() and len(token) <= 100:
        record_open(token, secret_key=current_app.config["SECRET_KEY"], now=datetime.now(UTC))
    return Response(PIXEL, mimetype="image/gif", headers={"Cache-Control": "no-store, private"})
