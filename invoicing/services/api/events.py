"""Outgoing events: what the organization's webhook endpoints hear, written in the transaction of the change.

Every state change already writes an AuditEvent in its own transaction (services/audit.record), so that is the
one hook: `on_audit` turns the audit actions below into events, with the object as it is at that moment. An
invoice that has just become paid (its `paid_at` is the change's `now`: services/payments.recompute_balance sets
it only on that move) also gets `invoice.paid`, after the payment's own event. Overdue is not a change anyone
makes: the `webhook-overdue` job notices it once per invoice.

An event is written only when an enabled endpoint of the organization listens for its type; it gets one
WebhookDelivery row per such endpoint, which services/api/webhooks.py delivers.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import String, cast, exists, literal, select
from sqlalchemy.exc import IntegrityError

from invoicing import jobs
from invoicing.extensions import db
from invoicing.models import (
    AuditEvent,
    Invoice,
    Organization,
    OutgoingEvent,
    Payment,
    WebhookDelivery,
    WebhookEndpoint,
    new_public_id,
    not_archived,
)
from invoicing.services.api.present import invoice_dict, payment_dict, public, when
from invoicing.services.db import atomic, transaction_cache
from invoicing.services.site import Site

log = logging.getLogger(__name__)

# Audit action -> the event it is, and what its `data.object` is.
FROM_AUDIT = {
    "invoice.created": ("invoice.created", "invoice"),
    "invoice.sent": ("invoice.sent", "invoice"),
    "invoice.viewed": ("invoice.viewed", "invoice"),
    "invoice.voided": ("invoice.voided", "invoice"),
    "payment.succeeded": ("payment.succeeded", "payment"),
    "payment.failed": ("payment.failed", "payment"),
    "payment.refunded": ("payment.refunded", "payment"),
}
# Audit actions after which the invoice may have just become paid (a payment, or a refund that did not happen).
MAY_PAY = ("payment.succeeded", "payment.refund_failed", "payment.refund_canceled")
RETRY_FOR = timedelta(days=3)


ENDPOINTS = "api.endpoints"  # the organization's enabled endpoints, read once per transaction


def _listeners(organization_id: int, event_type: str) -> list[WebhookEndpoint]:
    """The enabled endpoints that take this event type. Read once per transaction and organization (a payment
    emits two events, a bulk action hundreds): an endpoint changed meanwhile is another transaction's, which
    this one would not see before its commit either."""
    cache: dict[int, list[WebhookEndpoint]] = transaction_cache(ENDPOINTS)
    if organization_id not in cache:
        cache[organization_id] = list(db.session.execute(select(WebhookEndpoint).where(
            WebhookEndpoint.organization_id == organization_id, WebhookEndpoint.enabled.is_(True))).scalars())
    return [e for e in cache[organization_id] if event_type in (e.events or [])]


def emit(event_type: str, invoice: Invoice, *, now: datetime, payment: Payment | None = None,
         dedupe_key: str | None = None, site: Site | None = None) -> OutgoingEvent | None:
    """Write the event and its deliveries in the caller's transaction (no commit); None when nobody listens."""
    endpoints = _listeners(invoice.organization_id, event_type)
    if not endpoints:
        return None
    public_id = new_public_id()
    site = site or Site.from_config(current_app.config)
    obj = payment_dict(payment, invoice=invoice) if payment is not None else invoice_dict(invoice, now=now, site=site)
    body = {"id": public("event", public_id), "object": "event", "type": event_type, "created_at": when(now),
            "data": {"object": obj}}
    event = OutgoingEvent(public_id=public_id, organization_id=invoice.organization_id, type=event_type,
                          invoice_id=invoice.id, payload=json.dumps(body, separators=(",", ":")),
                          dedupe_key=dedupe_key, created_at=now)
    db.session.add(event)
    db.session.flush()
    for endpoint in endpoints:
        db.session.add(WebhookDelivery(organization_id=invoice.organization_id, endpoint_id=endpoint.id,
                                       event_id=event.id, invoice_id=invoice.id, status="pending",
                                       next_attempt_at=now, retry_until=now + RETRY_FOR, created_at=now))
    return event


def on_audit(event: AuditEvent, obj: Any) -> None:
    """services/audit.record's hook: the audit actions that are webhook events become events, same transaction."""
    mapped = FROM_AUDIT.get(event.action)
    if (mapped is None and event.action not in MAY_PAY) or not isinstance(obj, Invoice):
        return
    now = event.created_at
    if mapped is not None:
        event_type, kind = mapped
        payment = None
        if kind == "payment":
            payment = db.session.get(Payment, (event.details or {}).get("payment_id"))
            if payment is None:
                return
        emit(event_type, obj, now=now, payment=payment)
    if event.action in MAY_PAY and obj.status == "paid" and obj.paid_at == now:
        emit("invoice.paid", obj, now=now)


# --- overdue: noticed by a job ----------------------------------------------------------------------------

OVERDUE_BATCH = 500


def emit_overdue(*, now: datetime, limit: int = OVERDUE_BATCH) -> int:
    """`invoice.overdue` once per invoice that turned overdue (in its organization's time zone) since an
    endpoint started listening: older overdue invoices are history, not news."""
    listening = db.session.execute(
        select(WebhookEndpoint.organization_id, WebhookEndpoint.created_at, WebhookEndpoint.events)
        .where(WebhookEndpoint.enabled.is_(True), not_archived(WebhookEndpoint.organization_id))).all()
    since: dict[int, datetime] = {}
    for org_id, created_at, events in listening:
        if "invoice.overdue" in (events or []):
            since[org_id] = min(since.get(org_id, created_at), created_at)
    emitted = 0
    for org_id, start in since.items():
        zone = ZoneInfo(db.session.get_one(Organization, org_id).timezone)
        today = now.astimezone(zone).date()
        key = literal("invoice.overdue:") + cast(Invoice.id, String)
        ids = db.session.execute(select(Invoice.id).where(
            Invoice.organization_id == org_id, Invoice.status == "open", Invoice.due_date < today,
            Invoice.due_date >= start.astimezone(zone).date() - timedelta(days=1),
            ~exists().where(OutgoingEvent.dedupe_key == key)).order_by(Invoice.id).limit(limit - emitted)).scalars()
        for invoice_id in list(ids):
            emitted += _emit_overdue(invoice_id, now=now)
        if emitted >= limit:
            break
    db.session.rollback()
    return emitted


def _emit_overdue(invoice_id: int, *, now: datetime) -> int:
    try:
        with atomic():
            invoice = db.session.get_one(Invoice, invoice_id)
            return int(emit("invoice.overdue", invoice, now=now, dedupe_key=f"invoice.overdue:{invoice.id}")
                       is not None)
    except IntegrityError:  # another process noticed it first
        return 0


@jobs.register("webhook-overdue", 3600, tick_seconds=600)
def overdue_job(now: datetime, dry_run: bool) -> str:
    """Tell webhook endpoints about invoices that became overdue."""
    if dry_run:
        return "webhook-overdue: dry run, nothing written"
    return f"webhook-overdue: {emit_overdue(now=now)} event(s)"
