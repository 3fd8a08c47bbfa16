"""Autopay: which invoices are charged to the client's saved card, when, and what became of it (the public
side; charging itself is services/billing/charges.py, job `process-recurring-charges`).

An invoice is opted in when it is issued (draft -> open, `invoices.finalize` calls `schedule_invoice`) while its
client has autopay on, an active consent and a default card: it gets an `InvoiceAutopay` row, scheduled for the
consent's moment (on the due date at the organization's send hour, or at issue). Every change to that row
happens under the invoice's row lock. Stable API for other services (see AUTOPAY_API.md at the repository root):

- `schedule_invoice(invoice, *, now) -> bool`: opt an invoice in (idempotent; the caller's transaction, invoice
  row locked). Subscriptions that issue invoices through `invoices.finalize` get it for free.
- `cancel_invoice(invoice, *, reason, now, actor) -> bool`: cancel what is scheduled for one invoice.
- `on_autopay_outcome(listener)`: register a function called with an `AutopayOutcome` in the very transaction
  that records each outcome (a success, a retry planned, the ladder's final failure, a cancellation).
- `autopay_pending`, `autopay_pending_clause`: reminders wait while a first charge is still to come.
- `charges_preview`: the charges due in a window (the Scheduler page and `--dry-run`, same code as the job).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, select, update
from sqlalchemy.sql.elements import ColumnElement

from invoicing.extensions import db
from invoicing.models import (
    AutopayConsent,
    ChargeAttempt,
    Client,
    Invoice,
    InvoiceAutopay,
    Organization,
    PaymentMethod,
    not_archived,
)
from invoicing.services.audit import Actor, record

log = logging.getLogger(__name__)

ACTOR = Actor.system("autopay")
WAITING = ("scheduled", "processing")  # the ladder is still going
RETRY_DAYS = (3, 7, 14)  # after the first failure: attempts 2, 3 and 4
MAX_ATTEMPTS = 1 + len(RETRY_DAYS)
NOTIFY_AFTER_ATTEMPT = 3  # the third failed attempt tells the organization's admins and asks the client to act


@dataclass(frozen=True)
class AutopayOutcome:
    """What just happened to an invoice's autopay, handed to the `on_autopay_outcome` listeners.

    status: succeeded (paid by the card), retry_scheduled (a soft decline; `next_charge_at` is the retry),
    failed (for good: hard decline, authentication needed, or the last retry declined), cancelled (autopay
    turned off, the invoice paid another way, voided, the card gone...). `final` is True for all but
    retry_scheduled."""

    invoice_id: int
    organization_id: int
    client_id: int
    status: str
    final: bool
    attempt_number: int  # the attempt that led here; 0 for a cancellation before any attempt
    decline_code: str | None = None
    decline_kind: str | None = None  # soft, hard, authentication
    next_charge_at: datetime | None = None
    payment_id: int | None = None  # the succeeded payment
    reason: str | None = None  # failed / cancelled: why (retries_exhausted, hard_decline, autopay_off, paid...)


Listener = Callable[[AutopayOutcome], None]
_LISTENERS: list[Listener] = []


def on_autopay_outcome(listener: Listener) -> Listener:
    """Register `listener` (usable as a decorator). It is called once per outcome, inside the transaction that
    records it, with the invoice row locked: it may write rows of its own (they commit with the outcome), must
    not call a provider, and if it raises, the outcome is rolled back and recorded again later."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)
    return listener


def emit(outcome: AutopayOutcome) -> None:
    for listener in list(_LISTENERS):
        listener(outcome)


# --- scheduling -------------------------------------------------------------------------------------------


def active_mode(client_id: int) -> str | None:
    """The active consent's mode (due_date, on_issue), or None when there is no active consent."""
    return db.session.execute(
        select(AutopayConsent.mode).where(AutopayConsent.client_id == client_id, AutopayConsent.ended_at.is_(None))
        .order_by(AutopayConsent.id.desc())
    ).scalars().first()


def client_card(client: Client) -> PaymentMethod | None:
    """The client's default card, if it is still saved (at whichever provider saved it)."""
    if not client.autopay_payment_method:
        return None
    return db.session.execute(select(PaymentMethod).where(
        PaymentMethod.client_id == client.id, PaymentMethod.provider_id == client.autopay_payment_method,
        PaymentMethod.removed_at.is_(None))).scalar_one_or_none()


def due_moment(organization: Organization, day: date) -> datetime:
    """The organization's send hour (its reminder policy's) on `day`, in its time zone, as UTC."""
    from invoicing.services.billing.reminders import Policy  # reminders import this module

    return Policy.of(organization).moment(day, ZoneInfo(organization.timezone))


def first_charge_at(invoice: Invoice, mode: str, now: datetime) -> datetime:
    if mode == "on_issue":
        return now
    return max(due_moment(invoice.organization, invoice.due_date), now)


def schedule_invoice(invoice: Invoice, *, now: datetime) -> bool:
    """Opt the invoice in to autopay if its client has autopay on (consent active, default card saved): a
    scheduled `InvoiceAutopay` row, charged at the consent's moment. In the caller's transaction, with the
    invoice row locked. Idempotent: True if the invoice is (now, or already) on autopay; False if it is not
    (autopay off, no card, not open, nothing due)."""
    known = db.session.get(InvoiceAutopay, invoice.id)
    if known is not None:
        return known.status in WAITING or known.status == "succeeded"
    client = invoice.client
    if invoice.status != "open" or invoice.amount_due <= 0 or not client.autopay_enabled:
        return False
    mode, card = active_mode(client.id), client_card(client)
    if mode is None or card is None:
        return False
    at = first_charge_at(invoice, mode, now)
    db.session.add(InvoiceAutopay(invoice_id=invoice.id, organization_id=invoice.organization_id,
                                  client_id=client.id, mode=mode, status="scheduled", payment_method_id=card.id,
                                  next_charge_at=at, attempt_count=0, created_at=now, updated_at=now))
    db.session.flush()
    record("autopay.scheduled", invoice, actor=ACTOR, now=now,
           details={"mode": mode, "card": card.label, "at": at.isoformat(), "amount": invoice.amount_due,
                    "currency": invoice.currency})
    return True


def cancel_invoice(invoice: Invoice, *, reason: str, now: datetime, actor: Actor = ACTOR) -> bool:
    """Cancel the invoice's scheduled autopay (not one already at the provider: its answer decides). In the
    caller's transaction, invoice row locked. True if something was cancelled."""
    state = db.session.get(InvoiceAutopay, invoice.id, populate_existing=True)
    if state is None or state.status != "scheduled":
        return False
    _cancel(state, reason=reason, now=now, actor=actor, invoice=invoice)
    return True


def _cancel(state: InvoiceAutopay, *, reason: str, now: datetime, actor: Actor, invoice: Invoice | None) -> None:
    state.status, state.end_reason, state.next_charge_at, state.updated_at = "cancelled", reason, None, now
    record("autopay.cancelled", invoice or db.session.get(Invoice, state.invoice_id), actor=actor, now=now,
           details={"reason": reason, "attempts": state.attempt_count})
    emit(AutopayOutcome(state.invoice_id, state.organization_id, state.client_id, "cancelled", True,
                        state.attempt_count, reason=reason))


def cancel_for_client(client_id: int, *, reason: str, now: datetime, actor: Actor = ACTOR) -> int:
    """Cancel every scheduled autopay of a client (autopay turned off, its card removed), in the caller's
    transaction with the client row locked. Returns how many were cancelled."""
    states = db.session.execute(select(InvoiceAutopay).where(
        InvoiceAutopay.client_id == client_id, InvoiceAutopay.status == "scheduled")
        .execution_options(populate_existing=True)).scalars().all()
    for state in states:
        _cancel(state, reason=reason, now=now, actor=actor, invoice=None)
    planned = db.session.execute(update(ChargeAttempt).where(
        ChargeAttempt.status == "scheduled",
        ChargeAttempt.invoice_id.in_(select(Invoice.id).where(Invoice.client_id == client_id)))
        .values(status="canceled", error_code=reason, finished_at=now).execution_options(synchronize_session=False))
    return len(states) + int(planned.rowcount)  # type: ignore[attr-defined]


def after_payment_recorded(invoice: Invoice, *, idempotency_key: str | None, status: str, now: datetime) -> None:
    """The money door's hook (payments.py, invoice row locked): money received or on its way by another channel
    (pay link, portal, manual payment, bank transfer) cancels what autopay had scheduled for the invoice."""
    if status not in ("succeeded", "processing") or (idempotency_key or "").startswith("autopay:"):
        return
    cancel_invoice(invoice, reason="paid_another_way", now=now)


# --- reading ----------------------------------------------------------------------------------------------


def autopay_pending(invoice: Invoice) -> bool:
    """True while the invoice's first autopay charge is still to come or at the provider: reminders wait for
    its outcome. Once an attempt failed, reminders go again (the overdue notices), retries or not."""
    state = db.session.get(InvoiceAutopay, invoice.id, populate_existing=True)
    return state is not None and state.status in WAITING and state.first_failed_at is None


def charge_in_flight(invoice_id: int) -> bool:
    """An autopay charge of the invoice was sent (or is about to be) and its outcome is not known yet: other ways
    to pay wait for it, or the card could be charged twice. Once an attempt is `unknown` (no answer after the
    provider's key window) it no longer blocks: staff settle it from the timeline."""
    return bool(db.session.scalar(select(exists().where(ChargeAttempt.invoice_id == invoice_id,
                                                        ChargeAttempt.status == "pending"))))


IN_FLIGHT_MESSAGE = "An automatic card payment of this invoice is in progress: we will email you when it clears."


def autopay_pending_clause() -> ColumnElement[bool]:
    """`autopay_pending` as a WHERE condition on Invoice (for sweeps over many invoices)."""
    return exists().where(InvoiceAutopay.invoice_id == Invoice.id, InvoiceAutopay.status.in_(WAITING),
                          InvoiceAutopay.first_failed_at.is_(None))


def invoice_state(invoice_id: int) -> InvoiceAutopay | None:
    return db.session.get(InvoiceAutopay, invoice_id)


def attempts_of(invoice_id: int) -> list[ChargeAttempt]:
    return list(db.session.execute(select(ChargeAttempt).where(ChargeAttempt.invoice_id == invoice_id)
                                   .order_by(ChargeAttempt.attempt_number)).scalars())


@dataclass(frozen=True)
class ClientAutopay:
    """The client page's autopay panel: invoices waiting for a charge, and the last failure."""

    scheduled: int
    next_charge_at: datetime | None
    last_failure: InvoiceAutopay | None  # the latest invoice whose last attempt failed


def client_autopay(client_id: int) -> ClientAutopay:
    waiting = db.session.execute(select(InvoiceAutopay.next_charge_at).where(
        InvoiceAutopay.client_id == client_id, InvoiceAutopay.status == "scheduled")).scalars().all()
    failure = db.session.execute(select(InvoiceAutopay).where(
        InvoiceAutopay.client_id == client_id, InvoiceAutopay.last_failure_code.is_not(None))
        .order_by(InvoiceAutopay.last_attempt_at.desc())).scalars().first()
    return ClientAutopay(len(waiting), min((w for w in waiting if w), default=None), failure)


# --- what the job will charge (the Scheduler page, --dry-run and the job itself) --------------------------


@dataclass(frozen=True)
class PlannedCharge:
    invoice_id: int
    organization_id: int
    number: str
    client_name: str
    at: datetime
    amount: int
    currency: str
    card: str = ""
    attempt_number: int = 1


def due_clause(until: datetime) -> ColumnElement[bool]:
    return and_(InvoiceAutopay.status == "scheduled", InvoiceAutopay.next_charge_at <= until,
                not_archived(InvoiceAutopay.organization_id))


def charges_preview(*, now: datetime, until: datetime, organization_id: int | None = None,
                    limit: int | None = None) -> list[PlannedCharge]:
    """Cards to charge between now and `until` (work already due first): open invoices with money due whose
    autopay is scheduled by then, with the card that would be charged and the amount due now."""
    query = (
        select(InvoiceAutopay, Invoice.number, Client.name, Invoice.total - Invoice.amount_paid, Invoice.currency,
               PaymentMethod)
        .join(Invoice, Invoice.id == InvoiceAutopay.invoice_id)
        .join(Client, Client.id == InvoiceAutopay.client_id)
        .outerjoin(PaymentMethod, and_(PaymentMethod.client_id == Client.id,
                                       PaymentMethod.provider_id == Client.autopay_payment_method,
                                       PaymentMethod.removed_at.is_(None)))
        .where(due_clause(until), Invoice.status == "open", Invoice.total > Invoice.amount_paid)
        .order_by(InvoiceAutopay.next_charge_at, InvoiceAutopay.invoice_id)
    )
    if organization_id is not None:
        query = query.where(InvoiceAutopay.organization_id == organization_id)
    if limit is not None:
        query = query.limit(limit)
    return [PlannedCharge(state.invoice_id, state.organization_id, number or "", client_name,
                          max(state.next_charge_at or now, now), due, currency, card.label if card else "no card",
                          state.attempt_count + 1)
            for state, number, client_name, due, currency, card in db.session.execute(query)]


__all__ = ["ACTOR", "MAX_ATTEMPTS", "RETRY_DAYS", "AutopayOutcome", "ClientAutopay", "InvoiceAutopay", "PlannedCharge",
           "autopay_pending",
           "autopay_pending_clause", "cancel_for_client", "cancel_invoice", "charges_preview", "emit",
           "on_autopay_outcome", "schedule_invoice"]
