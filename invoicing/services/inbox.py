"""The webhook inbox (DESIGN rule 5): verify, store once, apply through the money door, remember the outcome.

`receive` is what /webhooks/<provider> calls with the raw body: a bad or stale signature raises
SignatureError (the view answers 400 and nothing is written); the event is stored under UNIQUE(provider,
event_id) before anything else, so a duplicate delivery answers 200 without applying twice; then it is
applied by the handler for its type (a `{type: handler}` dict; unknown types are stored as "ignored").
A handler failure rolls back, marks the row "failed" with the error and answers 5xx, so the provider
retries; staff can re-apply it from /admin/webhooks and the reconcile job re-applies failed events too.

Handlers only call idempotent services (apply_payment, apply_refund and reverse_refund keyed on provider
references, outbox dedupe keys), and the row is marked processed only after all of them, so applying an event
twice, in any order with the others, changes nothing the second time (state only moves forward).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from invoicing.extensions import db
from invoicing.gateways.base import (
    REFUND_UPDATE_EVENTS,
    ChargeInfo,
    Checkout,
    DisputeInfo,
    Event,
    Gateway,
    GatewayError,
    MethodDetails,
    RefundInfo,
)
from invoicing.models import CheckoutGroup, Invoice, Payment, Refund, WebhookEvent
from invoicing.services import DomainError, NotFound
from invoicing.services.attention import open_case
from invoicing.services.audit import Actor, record
from invoicing.services.billing import charges
from invoicing.services.checkout import (
    COUNTED,
    WEBHOOK_ACTOR,
    Site,
    after_payment,
    apply_checkout,
    invoice_for,
    mark_session,
    notify_payment_failed,
    queue_email,
)
from invoicing.services.checkout_groups import (
    apply_group_checkout,
    apply_group_event,
    group_for,
    group_for_refs,
    is_group,
    mark_group,
    refund_target,
)
from invoicing.services.db import atomic, lock_invoice
from invoicing.services.payments import (
    admin_emails,
    apply_group_payment,
    apply_payment,
    apply_refund,
    note_method,
    reverse_refund,
)

log = logging.getLogger(__name__)

IN_FLIGHT = timedelta(seconds=60)  # a duplicate of an event another request is applying right now: leave it
MAX_ERROR = 2000


@dataclass(frozen=True)
class Context:
    gateway: Gateway
    site: Site
    now: datetime
    actor: Actor = WEBHOOK_ACTOR
    method: MethodDetails | None = None  # how the payment was made, asked before the transaction


@dataclass(frozen=True)
class Delivery:
    status: str  # processed, ignored, failed, duplicate
    http_status: int
    event_id: str
    row_id: int | None = None
    note: str = ""


# --- storing and applying ---------------------------------------------------------------------------------


def receive(provider: str, raw: bytes, signature: str | None, *, gateway: Gateway, site: Site,
            now: datetime) -> Delivery:
    """Verify, store and apply one delivery. Raises SignatureError (before any write) if it is not genuine."""
    event = gateway.parse_event(raw, signature)
    if event.type in AT_ONCE:
        return _receive_at_once(provider, raw, event, Context(gateway, site, now))
    try:
        with atomic():
            row = WebhookEvent(provider=provider, event_id=event.id, type=event.type,
                               payload=raw.decode("utf-8"), status="received", received_at=now)
            db.session.add(row)
            db.session.flush()
            row_id = row.id
    except IntegrityError:  # seen before (or a concurrent duplicate just stored it)
        known = db.session.execute(select(WebhookEvent).where(
            WebhookEvent.provider == provider, WebhookEvent.event_id == event.id)).scalar_one()
        busy = known.status == "received" and known.received_at > now - IN_FLIGHT
        if known.status in ("processed", "ignored") or busy:
            return Delivery("duplicate", 200, event.id, known.id, note=known.status)
        row_id = known.id
    return _apply(row_id, event, Context(gateway, site, now))


# --- one transaction per event ----------------------------------------------------------------------------
# For the types in AT_ONCE the row is stored, the event applied and its emails queued in ONE transaction (the
# services' own atomic blocks join it): a commit a delivery, and no half-done state for a retry to mend.
# Provider calls never wait inside it: how a payment was made is asked before, the rest (closing stale
# checkouts) runs once it has committed (db.on_commit). A failure rolls all of it back and keeps the event as
# "failed" (the provider retries; reconcile re-applies). A duplicate is answered from one read.


class _Duplicate(Exception):
    def __init__(self, row: WebhookEvent):
        super().__init__(row.event_id)
        self.row = row


def _known(provider: str, event_id: str) -> WebhookEvent | None:
    return db.session.execute(select(WebhookEvent).where(
        WebhookEvent.provider == provider, WebhookEvent.event_id == event_id)
        .execution_options(populate_existing=True)).scalar_one_or_none()


def _store(provider: str, event: Event, raw: bytes, now: datetime) -> int:
    """The event's row in the current transaction: new, or the failed one kept from an earlier delivery.
    Raises _Duplicate for one processed (or ignored) meanwhile by another request."""
    return _stored(provider, event, raw, now)[0]


def _stored(provider: str, event: Event, raw: bytes, now: datetime) -> tuple[int, bool]:
    """_store, and whether this transaction inserted the row (no other one can have touched it then)."""
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stored = db.session.execute(insert(WebhookEvent).values(
        provider=provider, event_id=event.id, type=event.type, payload=raw.decode("utf-8"), status="received",
        attempts=0, received_at=now).on_conflict_do_nothing().returning(WebhookEvent.id)).scalar()
    if stored is not None:
        return int(stored), True
    known = _known(provider, event.id)
    assert known is not None
    if known.status in ("processed", "ignored"):
        raise _Duplicate(known)
    return known.id, False


def _method(event: Event, ctx: Context) -> MethodDetails | None:
    """How a succeeded payment of one of our invoices was made, asked before the transaction (None: unknown,
    or not ours; the receipt then says "Card" and after_payment asks again once committed)."""
    if event.type != "payment_intent.succeeded":
        return None
    intent = event.payment_intent()
    if intent.method is not None or not (intent.metadata.get("invoice_id") or is_group(intent.metadata)):
        return intent.method
    try:
        return ctx.gateway.retrieve_payment_intent(intent.id).method
    except GatewayError as exc:
        log.warning("payment method of %s not retrieved: %s", intent.id, exc.message)
        return None


def _receive_at_once(provider: str, raw: bytes, event: Event, ctx: Context) -> Delivery:
    known = _known(provider, event.id)
    if known is not None and known.status in ("processed", "ignored"):
        return Delivery("duplicate", 200, event.id, known.id, note=known.status)
    ctx = replace(ctx, method=_method(event, ctx))
    handler = HANDLERS[event.type]
    try:
        with atomic():
            row_id, fresh = _stored(provider, event, raw, ctx.now)
            note = handler(event, ctx)
            status = "ignored" if note.startswith("ignored") else "processed"
            if fresh:
                _finish_fresh(row_id, raw, status, note if status == "ignored" else None, ctx.now)
            else:
                _finish(row_id, status, note if status == "ignored" else None, ctx.now)
    except _Duplicate as duplicate:
        return Delivery("duplicate", 200, event.id, duplicate.row.id, note=duplicate.row.status)
    except Exception as exc:  # noqa: BLE001 - any failure: keep the event, say why, let the provider retry
        log.exception("webhook %s (%s) failed", event.id, event.type, extra={"event_id": event.id})
        with atomic():
            row_id = _store(provider, event, raw, ctx.now)
            _finish(row_id, "failed", f"{type(exc).__name__}: {exc}", ctx.now)
        return Delivery("failed", 500, event.id, row_id, note=str(exc))
    log.info("webhook %s (%s) %s", event.id, event.type, status, extra={"event_id": event.id})
    return Delivery(status, 200, event.id, row_id, note=note)


def receive_now(provider: str, raw: bytes, signature: str) -> Delivery:
    """In-process delivery (the sandbox's webhook sender) with the app's own gateway and settings."""
    from invoicing.gateways import current_gateway

    return receive(provider, raw, signature, gateway=current_gateway(), site=Site.from_config(current_app.config),
                   now=datetime.now(UTC))


def reapply(row_id: int, *, gateway: Gateway, site: Site, now: datetime) -> Delivery:
    """Apply a stored event again (staff, or the reconcile job): for failed or stuck ones."""
    row = db.session.get(WebhookEvent, row_id)
    if row is None:
        raise NotFound("Event not found.")
    if row.status in ("processed", "ignored"):
        raise DomainError(f"This event was already {row.status}.")
    if row.provider != gateway.name:
        raise DomainError(f"This event came from {row.provider}, which is not the configured provider now.")
    event = gateway.event_from_payload(json.loads(row.payload))
    return _apply(row.id, event, Context(gateway, site, now))


def _apply(row_id: int, event: Event, ctx: Context) -> Delivery:
    handler = HANDLERS.get(event.type)
    try:
        note = handler(event, ctx) if handler else "ignored: not a type we act on"
    except Exception as exc:  # noqa: BLE001 - any failure: keep the event, say why, let the provider retry
        db.session.rollback()
        log.exception("webhook %s (%s) failed", event.id, event.type, extra={"event_id": event.id})
        _finish(row_id, "failed", f"{type(exc).__name__}: {exc}", ctx.now)
        return Delivery("failed", 500, event.id, row_id, note=str(exc))
    status = "ignored" if note.startswith("ignored") else "processed"
    _finish(row_id, status, note if status == "ignored" else None, ctx.now)
    log.info("webhook %s (%s) %s", event.id, event.type, status, extra={"event_id": event.id})
    return Delivery(status, 200, event.id, row_id, note=note)


def _finish_fresh(row_id: int, raw: bytes, status: str, error: str | None, now: datetime) -> None:
    """_finish for a row this transaction inserted: one UPDATE, nothing to read first (the invoice it names is
    the one the handler just locked, still loaded)."""
    invoice = _invoice_in(raw.decode("utf-8"))
    db.session.execute(update(WebhookEvent).where(WebhookEvent.id == row_id).values(
        status=status, attempts=1, error=error[:MAX_ERROR] if error else None,
        processed_at=now if status in ("processed", "ignored") else None,
        invoice_id=invoice.id if invoice else None, organization_id=invoice.organization_id if invoice else None,
    ).execution_options(synchronize_session=False))


def _finish(row_id: int, status: str, error: str | None, now: datetime) -> None:
    with atomic():
        row = db.session.get(WebhookEvent, row_id, populate_existing=True)
        assert row is not None
        if row.status == "processed" and status != "processed":
            return  # a concurrent re-application already finished it: never move backwards
        row.status = status
        row.attempts += 1
        row.error = error[:MAX_ERROR] if error else None
        row.processed_at = now if status in ("processed", "ignored") else row.processed_at
        if row.organization_id is None:  # after applying, the payment it names exists: file it under its invoice
            invoice = _invoice_of(row)
            row.invoice_id, row.organization_id = (invoice.id, invoice.organization_id) if invoice else (None, None)


# --- handlers: one per event type; each returns a short note ("ignored: ..." marks the event ignored) -----


def _on_checkout_paid(event: Event, ctx: Context) -> str:
    """checkout.session.completed and .async_payment_succeeded: payment_status says paid or pending."""
    checkout = event.checkout()
    if is_group(checkout.metadata):
        if group_for(checkout.metadata) is None:
            return "ignored: not one of our checkouts"
        payments = apply_group_checkout(checkout, gateway=ctx.gateway, site=ctx.site, now=ctx.now, actor=ctx.actor,
                                        observed_at=event.observed_at)
        return f"group: {_listed(payments)}" if payments else f"group session {checkout.payment_status}"
    if invoice_for(checkout.metadata) is None:
        return "ignored: not one of our invoices"
    payment = apply_checkout(checkout, gateway=ctx.gateway, site=ctx.site, now=ctx.now, actor=ctx.actor,
                             observed_at=event.observed_at)
    return f"payment {payment.id} {payment.status}" if payment else f"session {checkout.payment_status}"


def _on_checkout_async_failed(event: Event, ctx: Context) -> str:
    checkout = event.checkout()
    if is_group(checkout.metadata):
        return _on_group_async_failed(checkout, event, ctx)
    invoice = invoice_for(checkout.metadata)
    if invoice is None:
        return "ignored: not one of our invoices"
    result = apply_payment(
        invoice.id, amount=checkout.amount, currency=checkout.currency, method=ctx.gateway.method,
        status="failed", actor=ctx.actor, now=ctx.now, observed_at=event.observed_at, checkout_session_id=checkout.id,
        payment_intent_id=checkout.payment_intent_id, failure_code="async_payment_failed",
        failure_message="The payment did not go through.",
    )
    mark_session(checkout, invoice.id, ctx.gateway.name, now=ctx.now)
    notify_payment_failed(result.payment.id, site=ctx.site, now=ctx.now)
    return f"payment {result.payment.id} {result.payment.status}"


def _on_group_async_failed(checkout: Checkout, event: Event, ctx: Context) -> str:
    group = group_for(checkout.metadata)
    if group is None:
        return "ignored: not one of our checkouts"
    results = apply_group_payment(
        group.id, session_id=checkout.id, status="failed", actor=ctx.actor, now=ctx.now,
        observed_at=event.observed_at, payment_intent_id=checkout.payment_intent_id,
        failure_code="async_payment_failed", failure_message="The payment did not go through.")
    mark_group(group.id, checkout)
    for result in results:
        notify_payment_failed(result.payment.id, site=ctx.site, now=ctx.now)
    return f"group: {_listed([r.payment for r in results])}"


def _listed(payments: list[Payment]) -> str:
    return ", ".join(f"payment {p.id} {p.status}" for p in payments)


def _on_checkout_expired(event: Event, ctx: Context) -> str:
    checkout = event.checkout()
    if is_group(checkout.metadata):
        group = group_for(checkout.metadata)
        if group is None:
            return "ignored: not one of our checkouts"
        mark_group(group.id, checkout)
        return "group session expired"
    invoice = invoice_for(checkout.metadata)
    if invoice is None:
        return "ignored: not one of our invoices"
    mark_session(checkout, invoice.id, ctx.gateway.name, now=ctx.now)
    return "session expired"


INTENT_STATUS = {"payment_intent.succeeded": "succeeded", "payment_intent.processing": "processing",
                 "payment_intent.payment_failed": "failed"}


def _on_payment_intent(event: Event, ctx: Context) -> str:
    intent = event.payment_intent()
    status = INTENT_STATUS[event.type]
    if charges.is_autopay(intent.metadata):  # an off-session autopay charge: its attempt records it
        return charges.apply_intent_event(intent, status=status, now=ctx.now, gateway=ctx.gateway, site=ctx.site)
    failed = status == "failed"
    if is_group(intent.metadata):
        group = group_for(intent.metadata)
        if group is None:
            return "ignored: not one of our checkouts"
        payments = apply_group_event(
            group, status=status, actor=ctx.actor, now=ctx.now, observed_at=event.observed_at, gateway=ctx.gateway,
            site=ctx.site, payment_intent_id=intent.id, charge_id=intent.charge_id,
            failure_code=intent.failure_code if failed else None,
            failure_message=intent.failure_message if failed else None, method=ctx.method)
        return f"group: {_listed(payments)}"
    invoice = invoice_for(intent.metadata)
    if invoice is None:
        return "ignored: not one of our invoices"
    before = db.session.execute(select(Payment.status).where(Payment.payment_intent_id == intent.id)).scalar() \
        if failed else None
    result = apply_payment(
        invoice.id, amount=intent.amount, currency=intent.currency, method=ctx.gateway.method, status=status,
        actor=ctx.actor, now=ctx.now, observed_at=event.observed_at, payment_intent_id=intent.id,
        charge_id=intent.charge_id,
        contact_id=_int(intent.metadata.get("contact_id")),
        failure_code=intent.failure_code if failed else None,
        failure_message=intent.failure_message if failed else None,
    )
    if status == "succeeded":
        if ctx.method is not None:  # asked before the transaction (receive): the receipt names it
            note_method(result.payment, ctx.method)
        after_payment(result.payment.id, gateway=ctx.gateway, site=ctx.site, now=ctx.now)
    if failed and before == "processing":  # a settles-later payment that failed: tell the client
        notify_payment_failed(result.payment.id, site=ctx.site, now=ctx.now)
    return f"payment {result.payment.id} {result.payment.status}"


def _payment_for(charge_id: str | None, payment_intent_id: str | None) -> Payment | None:
    clauses = [c for c in (Payment.charge_id == charge_id if charge_id else None,
                           Payment.payment_intent_id == payment_intent_id if payment_intent_id else None)
               if c is not None]
    if not clauses:
        return None
    return db.session.execute(select(Payment).where(or_(*clauses))).scalars().first()


def _refunded_payment(charge: ChargeInfo, ctx: Context) -> Payment | None:
    """The payment of a charge that has refunds, recorded as succeeded if we had not heard it did (a charge
    is refunded only after it succeeded; events come out of order). None if it is not one of our invoices."""
    payment = _payment_for(charge.id, charge.payment_intent_id)
    if payment is None:
        invoice = invoice_for(charge.metadata)
        if invoice is None:
            return None
        payment = apply_payment(
            invoice.id, amount=charge.amount, currency=charge.currency, method=ctx.gateway.method,
            status="succeeded", actor=ctx.actor, now=ctx.now, payment_intent_id=charge.payment_intent_id,
            charge_id=charge.id, contact_id=_int(charge.metadata.get("contact_id")),
        ).payment
        after_payment(payment.id, gateway=ctx.gateway, site=ctx.site, now=ctx.now)
    elif payment.status not in COUNTED:
        apply_payment(payment.invoice_id, amount=payment.amount, currency=payment.currency, method=payment.method,
                      status="succeeded", actor=ctx.actor, now=ctx.now, charge_id=charge.id,
                      payment_intent_id=charge.payment_intent_id)
    return payment


def _refunded_group(charge: ChargeInfo, ctx: Context) -> CheckoutGroup | None:
    """The group whose shared charge this is, its payments recorded as succeeded if we had not heard it."""
    group = group_for_refs(charge.id, charge.payment_intent_id) or group_for(charge.metadata)
    if group is None:
        return None
    statuses = db.session.execute(select(Payment.status).where(Payment.group_id == group.id)
                                  .execution_options(populate_existing=True)).scalars().all()
    if not statuses or any(status not in COUNTED for status in statuses):
        apply_group_event(group, status="succeeded", actor=ctx.actor, now=ctx.now, observed_at=None,
                          gateway=ctx.gateway, site=ctx.site, payment_intent_id=charge.payment_intent_id,
                          charge_id=charge.id)
    return group


def _on_group_refunded(group: CheckoutGroup, charge: ChargeInfo, ctx: Context) -> str:
    """Each refund of a shared charge gives back one invoice's share (checkout_groups.refund_target)."""
    done = 0
    for refund in charge.refunds:
        payment = refund_target(group, provider_refund_id=refund.id, amount=refund.amount,
                                payment_ref=refund.payment_ref)
        if refund.reversed:
            _reverse(payment, refund, ctx)
        elif refund.status in ("succeeded", "pending"):
            apply_refund(payment.id, amount=refund.amount, actor=ctx.actor, now=ctx.now,
                         provider_refund_id=refund.id, reason=refund.reason)
            done += 1
    return f"group {group.id}: {done} refund(s) known"


def _on_charge_refunded(event: Event, ctx: Context) -> str:
    """Partial or full refunds, matched on the provider's refund id: a refund staff made from the admin
    (recorded with its id) or a refund event seen before changes nothing twice. A listed refund that already
    failed is reversed (or recorded as failed) through the same door as the refund events below."""
    charge = event.charge()
    if charge.amount_refunded and not charge.refunds:
        charge = ctx.gateway.retrieve_charge(charge.id)
    group = _refunded_group(charge, ctx)
    if group is not None:
        return _on_group_refunded(group, charge, ctx)
    payment = _refunded_payment(charge, ctx)
    if payment is None:
        return "ignored: not one of our invoices"
    done = 0
    for refund in charge.refunds:
        if refund.reversed:
            _reverse(payment, refund, ctx)
        elif refund.status in ("succeeded", "pending"):
            apply_refund(payment.id, amount=refund.amount, actor=ctx.actor, now=ctx.now,
                         provider_refund_id=refund.id, reason=refund.reason)
            done += 1
    return f"payment {payment.id}: {done} refund(s) known"


def _on_refund_updated(event: Event, ctx: Context) -> str:
    """charge.refund.updated, refund.updated, refund.failed: a refund the provider could not complete
    (failed, canceled) gives the money back to the invoice; other changes (pending -> succeeded) move none.

    A failure heard before the refund itself is recorded as failed from the start (payments.reverse_refund),
    so it is never dropped and the refund arriving later changes nothing."""
    refund = event.refund()
    if not refund.reversed:
        return f"ignored: the refund is {refund.status}"
    group = group_for_refs(refund.charge_id, refund.payment_intent_id)
    if group is None and refund.charge_id and _payment_for(refund.charge_id, refund.payment_intent_id) is None:
        group = _refunded_group(ctx.gateway.retrieve_charge(refund.charge_id), ctx)
    if group is not None:
        target = refund_target(group, provider_refund_id=refund.id, amount=refund.amount,
                               payment_ref=refund.payment_ref)
        return f"refund {_reverse(target, refund, ctx).id} {refund.status}"
    payment = _payment_for(refund.charge_id, refund.payment_intent_id)
    if payment is None or payment.status not in COUNTED:
        if not refund.charge_id:
            return "ignored: not a refund of a charge"
        payment = _refunded_payment(ctx.gateway.retrieve_charge(refund.charge_id), ctx)
        if payment is None:
            return "ignored: not one of our invoices"
    recorded = _reverse(payment, refund, ctx)
    return f"refund {recorded.id} {recorded.status}"


def _reverse(payment: Payment, refund: RefundInfo, ctx: Context) -> Refund:
    return reverse_refund(payment.id, provider_refund_id=refund.id, status=refund.status, amount=refund.amount,
                          failure_reason=refund.failure_reason, reason=refund.reason, actor=ctx.actor, now=ctx.now,
                          site=ctx.site)


def _on_dispute_created(event: Event, ctx: Context) -> str:
    """Flag the invoice, write the audit event and alert the organization's admins by email (once)."""
    dispute = event.dispute()
    group = group_for_refs(dispute.charge_id, dispute.payment_intent_id)
    if group is not None:
        return _on_group_disputed(group, dispute, ctx)
    payment = _payment_for(dispute.charge_id, dispute.payment_intent_id)
    if payment is None:
        if dispute.charge_id and invoice_for(ctx.gateway.retrieve_charge(dispute.charge_id).metadata) is None:
            return "ignored: not one of our invoices"
        raise DomainError("The disputed payment is not recorded yet; retry after its payment event.")
    with atomic():
        invoice = lock_invoice(payment.invoice_id)
        if invoice.disputed_at is None:
            invoice.disputed_at = ctx.now
        record("invoice.disputed", invoice, actor=ctx.actor, now=ctx.now,
               details={"dispute_id": dispute.id, "payment_id": payment.id, "amount": dispute.amount,
                        "reason": dispute.reason})
        open_case(invoice, kind="dispute", key=f"dispute:{dispute.id}", amount=dispute.amount,
                  currency=dispute.currency or payment.currency, payment=payment,
                  detail=dispute.reason.replace("_", " "), now=ctx.now, notify=False)  # its own email, below
        for to in admin_emails(invoice):
            queue_email("dispute", "dispute", invoice, to=to, dedupe_key=f"dispute:{dispute.id}:{to}", site=ctx.site,
                   now=ctx.now, subject=f"Payment disputed: invoice {invoice.number}", payment=payment,
                   dispute=dispute, admin_url=ctx.site.url(f"/admin/invoices/{invoice.id}", invoice.organization))
    return f"invoice {payment.invoice_id} flagged as disputed"


def _on_group_disputed(group: CheckoutGroup, dispute: DisputeInfo, ctx: Context) -> str:
    """A dispute of a shared charge concerns every invoice it paid: each is flagged (its own case, for its
    share), and the admins get one email per dispute, naming the first invoice."""
    payments = list(db.session.execute(select(Payment).where(Payment.group_id == group.id)
                                       .order_by(Payment.invoice_id)).scalars())
    if not payments:
        raise DomainError("The disputed payment is not recorded yet; retry after its payment event.")
    with atomic():
        invoices = [lock_invoice(payment.invoice_id) for payment in payments]  # id order, like the door
        for invoice, payment in zip(invoices, payments, strict=True):
            if invoice.disputed_at is None:
                invoice.disputed_at = ctx.now
            record("invoice.disputed", invoice, actor=ctx.actor, now=ctx.now,
                   details={"dispute_id": dispute.id, "payment_id": payment.id, "amount": dispute.amount,
                            "share": payment.amount, "reason": dispute.reason, "group_id": group.id})
            open_case(invoice, kind="dispute", key=f"dispute:{dispute.id}:{invoice.id}", amount=payment.amount,
                      currency=payment.currency, payment=payment, detail=dispute.reason.replace("_", " "),
                      now=ctx.now, notify=False)
        numbers = ", ".join(invoice.number or str(invoice.id) for invoice in invoices)
        for to in admin_emails(invoices[0]):
            queue_email("dispute", "dispute", invoices[0], to=to, dedupe_key=f"dispute:{dispute.id}:{to}",
                        site=ctx.site, now=ctx.now, subject=f"Payment disputed: invoices {numbers}",
                        payment=payments[0], dispute=dispute,
                        admin_url=ctx.site.url(f"/admin/invoices/{invoices[0].id}", invoices[0].organization))
    return f"invoices {numbers} flagged as disputed"


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


Handler = Callable[[Event, Context], str]
HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _on_checkout_paid,
    "checkout.session.async_payment_succeeded": _on_checkout_paid,
    "checkout.session.async_payment_failed": _on_checkout_async_failed,
    "checkout.session.expired": _on_checkout_expired,
    "payment_intent.succeeded": _on_payment_intent,
    "payment_intent.processing": _on_payment_intent,
    "payment_intent.payment_failed": _on_payment_intent,
    "charge.refunded": _on_charge_refunded,
    **dict.fromkeys(REFUND_UPDATE_EVENTS, _on_refund_updated),
    "charge.dispute.created": _on_dispute_created,
}
# The events to enable on the Stripe webhook endpoint (README).
EVENT_TYPES = tuple(HANDLERS)
# Stored, applied and queued in one transaction (receive): their handlers only write (provider calls wait).
AT_ONCE = frozenset(INTENT_STATUS)


# --- the admin's view of the inbox ------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxRow:
    event: WebhookEvent
    invoice: Invoice | None


def _invoice_of(row: WebhookEvent) -> Invoice | None:
    return _invoice_in(row.payload)


def _invoice_in(payload: str) -> Invoice | None:
    """The invoice an event is about: from our metadata, else through the payment of its charge or intent."""
    try:
        obj = json.loads(payload)["data"]["object"]
    except (ValueError, KeyError, TypeError):
        return None
    meta = {str(k): str(v) for k, v in (obj.get("metadata") or {}).items()}
    if meta.get("invoice_id"):  # checked against its public id: another installation's invoice 1 is not ours
        return invoice_for(meta)
    charge, intent = obj.get("charge"), obj.get("payment_intent")
    charge, intent = (charge if isinstance(charge, str) else None), (intent if isinstance(intent, str) else None)
    group = group_for(meta) if is_group(meta) else group_for_refs(charge, intent)
    if group is not None:  # filed under its first invoice (they are all the same client's)
        return group.items[0].invoice if group.items else None
    payment = _payment_for(charge, intent)
    return payment.invoice if payment else None


def list_events(organization_id: int | None, *, status: str | None = None, limit: int = 100) -> list[InboxRow]:
    """The latest events, newest first. The inbox is per installation, not per organization: staff see the
    events about their organization's invoices; `organization_id=None` (a superadmin) sees every event."""
    query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
    if organization_id is not None:
        query = query.where(WebhookEvent.organization_id == organization_id)
    if status:
        query = query.where(WebhookEvent.status == status)
    rows = db.session.execute(query).scalars().all()
    invoice_ids = {row.invoice_id for row in rows if row.invoice_id}
    invoices = {i.id: i for i in db.session.execute(select(Invoice).where(Invoice.id.in_(invoice_ids))).scalars()}
    return [InboxRow(row, invoices.get(row.invoice_id or 0)) for row in rows]


def get_event(organization_id: int | None, row_id: int) -> InboxRow:
    row = db.session.get(WebhookEvent, row_id)
    if row is None:
        raise NotFound("Event not found.")
    invoice = db.session.get(Invoice, row.invoice_id) if row.invoice_id else _invoice_of(row)
    if organization_id is not None and (invoice is None or invoice.organization_id != organization_id):
        raise NotFound("Event not found.")
    return InboxRow(row, invoice)


def stored_events(statuses: tuple[str, ...], *, received_before: datetime | None = None,
                  max_attempts: int | None = None) -> list[WebhookEvent]:
    query = select(WebhookEvent).where(WebhookEvent.status.in_(statuses)).order_by(WebhookEvent.id)
    if received_before is not None:
        query = query.where(WebhookEvent.received_at < received_before)
    if max_attempts is not None:
        query = query.where(WebhookEvent.attempts < max_attempts)
    return list(db.session.execute(query).scalars())


def payload_of(row: WebhookEvent) -> Any:
    return json.loads(row.payload)
