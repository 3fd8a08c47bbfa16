"""The inbox's front door: /webhooks/stripe (and /webhooks/sandbox for the built-in sandbox provider).

400 and nothing written when the signature is bad or older than 300 s, or when a genuine body is not an
event (JSON that is not an object, or has no id, type or data.object: nothing to store it under, nothing a
retry could mend); 200 once the event is stored and applied (or was seen before, or is a type we do not act
on); 500 when applying failed, with the event kept as "failed", so the provider retries. Never 2xx-and-drop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import current_app, request

from invoicing.gateways import current_gateway
from invoicing.gateways.base import NotAnEvent, SignatureError
from invoicing.services import inbox
from invoicing.services.checkout import Site
from invoicing.webhooks import bp

log = logging.getLogger(__name__)


def _receive(provider: str) -> tuple[dict[str, str], int]:
    gateway = current_gateway()
    if gateway.name != provider:
        return {"error": f"{provider} is not the configured payment provider"}, 404
    try:
        delivery = inbox.receive(provider, request.get_data(cache=False), request.headers.get(gateway.signature_header),
                                 gateway=gateway, site=Site.from_config(current_app.config), now=datetime.now(UTC))
    except SignatureError as exc:
        log.warning("webhook refused: %s", exc, extra={"provider": provider})
        return {"error": "invalid signature"}, 400
    except NotAnEvent as exc:
        log.warning("webhook refused, not an event: %s", exc, extra={"provider": provider})
        return {"error": f"not an event: {exc}"}, 400
    return {"status": delivery.status, "event": delivery.event_id}, delivery.http_status


@bp.post("/stripe")
def stripe() -> tuple[dict[str, str], int]:
    return _receive("stripe")


@bp.post("/sandbox")
def sandbox() -> tuple[dict[str, str], int]:
    return _receive("sandbox")
