"""Reconciliation: ask the provider about whatever we are unsure of, and record what it says through the
same door as the webhooks (job `reconcile`, every 10 minutes; `flask billing reconcile [--dry-run]`).

- checkout sessions (and group checkouts: several invoices, one session) open for longer than a short grace
  period (the client may have paid and closed the tab before the return page, with the webhook lost), past
  their expiry, or open on an invoice paid or void;
- payments stuck in processing (settles-later methods) whose outcome we have not heard;
- inbox events that failed (or were left half-applied by a crash) and have attempts left;
- card payments whose receipt never reached the outbox.

An archived organization's checkouts, payments and receipts wait until it is un-archived.

Also the sandbox's "bank": job `sandbox-settle` settles its settles-later payments after a short delay, so
the demo shows the processing -> paid path without a person standing in for the bank.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import String, cast, exists, or_, select

from invoicing.extensions import db
from invoicing.gateways import current_gateway
from invoicing.gateways.base import Gateway, GatewayError
from invoicing.jobs import register
from invoicing.models import CheckoutGroup, CheckoutSession, Invoice, OutboxEmail, Payment, not_archived
from invoicing.services.audit import Actor
from invoicing.services.billing.charges import settle_pending
from invoicing.services.checkout import (
    COUNTED,
    PROVIDER_METHODS,
    Site,
    after_payment,
    apply_checkout,
    enqueue_receipt,
    expire_stale_sessions,
    notify_payment_failed,
)
from invoicing.services.checkout_groups import apply_group_checkout, expire_group, stale_groups
from invoicing.services.inbox import reapply, stored_events
from invoicing.services.payments import apply_payment

log = logging.getLogger(__name__)

ACTOR = Actor.system("reconcile")
MAX_ATTEMPTS = 10  # an event that failed this often waits for staff
STUCK_RECEIVED = timedelta(minutes=5)  # an event stored but not applied for this long was abandoned mid-way
RECEIPT_WINDOW = timedelta(days=7)
SANDBOX_SETTLE_AFTER = timedelta(minutes=2)
# A session open this long may have been paid without us hearing of it; younger ones are most likely a client
# still typing a card number (the return page or the webhook will tell us within seconds anyway).
SESSION_GRACE = timedelta(minutes=3)


@dataclass
class Report:
    sessions: int = 0
    payments: int = 0
    events: int = 0
    receipts: int = 0
    charges: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self, dry_run: bool) -> str:
        verb = "would look at" if dry_run else "looked at"
        text = (f"reconcile {verb} {self.sessions} checkout session(s), {self.payments} processing payment(s), "
                f"{self.events} inbox event(s); queued {self.receipts} missing receipt(s); settled {self.charges} "
                "autopay attempt(s)")
        return text + (f"; {len(self.errors)} error(s): " + "; ".join(self.errors[:5]) if self.errors else "")


def reconcile(*, gateway: Gateway, site: Site, now: datetime, dry_run: bool = False) -> Report:
    report = Report()
    _sessions(report, gateway=gateway, site=site, now=now, dry_run=dry_run)
    _groups(report, gateway=gateway, site=site, now=now, dry_run=dry_run)
    _processing(report, gateway=gateway, site=site, now=now, dry_run=dry_run)
    _events(report, gateway=gateway, site=site, now=now, dry_run=dry_run)
    _receipts(report, site=site, now=now, dry_run=dry_run)
    if not dry_run:  # autopay attempts whose answer was lost: replayed with the same key (billing/charges.py)
        report.charges = settle_pending(now=now, gateway=gateway, site=site)
    return report


def _sessions(report: Report, *, gateway: Gateway, site: Site, now: datetime, dry_run: bool) -> None:
    rows = db.session.execute(
        select(CheckoutSession.session_id, CheckoutSession.invoice_id).join(Invoice)
        .where(CheckoutSession.status == "open", CheckoutSession.provider == gateway.name,
               not_archived(Invoice.organization_id),
               or_(CheckoutSession.created_at < now - SESSION_GRACE, CheckoutSession.expires_at < now,
                   Invoice.status.in_(("paid", "void")),
                   CheckoutSession.amount > Invoice.total - Invoice.amount_paid))
        .order_by(CheckoutSession.id)
    ).all()
    report.sessions = len(rows)
    if dry_run:
        return
    for session_id, invoice_id in rows:
        try:
            checkout = gateway.retrieve_checkout(session_id)
            if checkout.status == "open":  # still payable at the provider: close it if it should not be
                expire_stale_sessions(invoice_id, gateway=gateway, site=site, now=now)
            else:  # complete (money we may not have recorded) or expired
                apply_checkout(checkout, gateway=gateway, site=site, now=now, actor=ACTOR, retrieved=True)
        except Exception as exc:  # noqa: BLE001 - one bad session must not stop the others
            db.session.rollback()
            report.errors.append(f"session {session_id}: {exc}")
            log.exception("reconcile: session %s", session_id)


def _groups(report: Report, *, gateway: Gateway, site: Site, now: datetime, dry_run: bool) -> None:
    """Open group checkouts (several invoices, one session), on the same terms as the sessions above; one made
    here but never handed to the provider (a crash in between) is closed after its grace period."""
    stale = set(stale_groups(provider=gateway.name))
    rows = db.session.execute(
        select(CheckoutGroup.id, CheckoutGroup.session_id)
        .where(CheckoutGroup.status == "open", CheckoutGroup.provider == gateway.name,
               not_archived(CheckoutGroup.organization_id),
               or_(CheckoutGroup.created_at < now - SESSION_GRACE, CheckoutGroup.expires_at < now,
                   CheckoutGroup.id.in_(stale)))
        .order_by(CheckoutGroup.id)
    ).all()
    report.sessions += len(rows)
    if dry_run:
        return
    for group_id, session_id in rows:
        try:
            checkout = gateway.retrieve_checkout(session_id) if session_id else None
            if checkout is None or (checkout.status == "open" and group_id in stale):
                expire_group(group_id, gateway=gateway, site=site, now=now)
            elif checkout.status != "open":  # complete (money we may not have recorded) or expired
                apply_group_checkout(checkout, gateway=gateway, site=site, now=now, actor=ACTOR, retrieved=True)
        except Exception as exc:  # noqa: BLE001 - one bad group must not stop the others
            db.session.rollback()
            report.errors.append(f"group checkout {group_id}: {exc}")
            log.exception("reconcile: group checkout %s", group_id)


def _processing(report: Report, *, gateway: Gateway, site: Site, now: datetime, dry_run: bool) -> None:
    payments = db.session.execute(
        select(Payment.id, Payment.payment_intent_id, Payment.checkout_session_id, Payment.group_id)
        .where(Payment.status == "processing", Payment.method == gateway.method,
               not_archived(Payment.organization_id)).order_by(Payment.id)
    ).all()
    report.payments = len(payments)
    if dry_run:
        return
    groups_done: set[int] = set()
    for payment_id, intent_id, session_id, group_id in payments:
        try:
            if group_id:  # a share of a group's payment: the group's session says what happened to all of them
                if group_id not in groups_done:
                    groups_done.add(group_id)
                    _settle_group(group_id, gateway=gateway, site=site, now=now)
            elif intent_id:
                _settle_intent(payment_id, intent_id, gateway=gateway, site=site, now=now)
            elif session_id:
                apply_checkout(gateway.retrieve_checkout(session_id), gateway=gateway, site=site, now=now, actor=ACTOR,
                               retrieved=True)
        except Exception as exc:  # noqa: BLE001
            db.session.rollback()
            report.errors.append(f"payment {payment_id}: {exc}")
            log.exception("reconcile: payment %s", payment_id)


def _settle_group(group_id: int, *, gateway: Gateway, site: Site, now: datetime) -> None:
    group = db.session.get(CheckoutGroup, group_id)
    if group is not None and group.session_id:
        apply_group_checkout(gateway.retrieve_checkout(group.session_id), gateway=gateway, site=site, now=now,
                             actor=ACTOR, retrieved=True)


def _settle_intent(payment_id: int, intent_id: str, *, gateway: Gateway, site: Site, now: datetime) -> None:
    intent = gateway.retrieve_payment_intent(intent_id)
    if intent.status in ("processing", "requires_action", "requires_confirmation", "requires_capture"):
        return
    payment = db.session.get(Payment, payment_id)
    assert payment is not None
    status = "succeeded" if intent.status == "succeeded" else "failed"
    apply_payment(payment.invoice_id, amount=payment.amount, currency=payment.currency, method=payment.method,
                  status=status, actor=ACTOR, now=now, observed_at=now, payment_intent_id=intent_id,
                  charge_id=intent.charge_id,
                  failure_code=intent.failure_code if status == "failed" else None,
                  failure_message=intent.failure_message if status == "failed" else None)
    if status == "succeeded":
        after_payment(payment_id, gateway=gateway, site=site, now=now)
    else:
        notify_payment_failed(payment_id, site=site, now=now)


def _events(report: Report, *, gateway: Gateway, site: Site, now: datetime, dry_run: bool) -> None:
    rows = [r for r in stored_events(("failed",), max_attempts=MAX_ATTEMPTS)
            + stored_events(("received",), received_before=now - STUCK_RECEIVED) if r.provider == gateway.name]
    report.events = len(rows)
    if dry_run:
        return
    for row_id in [r.id for r in rows]:
        delivery = reapply(row_id, gateway=gateway, site=site, now=now)
        if delivery.status == "failed":
            report.errors.append(f"event {delivery.event_id}: {delivery.note}")


def _receipts(report: Report, *, site: Site, now: datetime, dry_run: bool) -> None:
    missing = db.session.execute(
        select(Payment.id).where(
            Payment.status.in_(COUNTED), Payment.method.in_(PROVIDER_METHODS),
            Payment.created_at > now - RECEIPT_WINDOW, not_archived(Payment.organization_id),
            ~exists().where(OutboxEmail.dedupe_key == "receipt:" + cast(Payment.id, String)),
        ).order_by(Payment.id)
    ).scalars().all()
    if dry_run:
        report.receipts = len(missing)
        return
    report.receipts = sum(enqueue_receipt(payment_id, site=site, now=now) for payment_id in missing)


@register("reconcile", every_seconds=600)
def reconcile_job(now: datetime, dry_run: bool) -> str:
    """Look up open checkouts, processing payments and failed webhook events at the provider; apply them."""
    report = reconcile(gateway=current_gateway(), site=Site.from_config(current_app.config), now=now, dry_run=dry_run)
    return report.summary(dry_run)


@register("sandbox-settle", every_seconds=60)
def sandbox_settle_job(now: datetime, dry_run: bool) -> str:
    """Sandbox only: settle "settles later" test payments that have been processing for two minutes (a
    failing test bank account fails, as its bank would)."""
    from invoicing.gateways.sandbox import SandboxGateway

    gateway = current_gateway()
    if not isinstance(gateway, SandboxGateway):
        return "sandbox-settle: the sandbox is not in use (Stripe is configured)"
    pending = gateway.pending_settlements(older_than=now - SANDBOX_SETTLE_AFTER)
    if dry_run:
        return f"sandbox-settle would settle {len(pending)} payment(s)"
    settled = 0
    for session_id in pending:
        try:
            gateway.settle(session_id)
            settled += 1
        except GatewayError as exc:
            log.warning("sandbox-settle %s: %s", session_id, exc.message)
    return f"sandbox-settle settled {settled} payment(s)"
