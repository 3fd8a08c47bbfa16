"""Autopay charging: job `process-recurring-charges` (every 15 minutes) and `flask billing
process-recurring-charges [--dry-run]`. Charges the scheduled invoices (services/billing/autopay.py) whose time
has come, off-session, with the client's default saved card, each charge exactly once.

One invoice, three steps (DESIGN rules 2-4):

1. Claim, in one transaction under the invoice row lock (and the client's, shared): still scheduled and due,
   the invoice still open with money due, no checkout in progress (an open CheckoutSession or CheckoutGroup:
   then it waits an hour), autopay still on with a usable card. Then the attempt row is written with its
   deterministic idempotency key (`autopay:{hmac}:{invoice}:{attempt}`, per installation), and the invoice's
   autopay moves to `processing`. Another scheduler finds it processing and moves on.
2. Call the provider outside any lock, with that key and parameters kept on the attempt row.
3. Record the answer, under the invoice lock: a success through the money door (`apply_payment`, idempotent
   on the key and the PaymentIntent), then the receipt; a decline on the ladder: soft declines are retried 3, 7
   and 14 days after the first failure (after the third failed attempt the organization's admins and the client
   are emailed; after the fourth it stops), hard declines stop at once and ask the client for a new card,
   "authentication required" stops and emails the client the on-session pay link.

A provider that times out or answers 5xx leaves the attempt `pending` and the invoice `processing`: nothing is
decided on an unknown outcome. `settle_pending` (the reconcile job, and this job) replays the very same request
(same key, same parameters) later: the provider answers with the first outcome (Stripe keeps keys 24 hours),
so a crash between the call and the commit never charges twice. An attempt still unknown after REPLAY_WINDOW
becomes `unknown` (on the timeline, for staff), never replayed with a key the provider may have forgotten.

The provider's webhooks for these charges (payment_intent.succeeded / .payment_failed carrying
`autopay_key` in metadata) go through the same `record_outcome` from the inbox.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, exists, select

from invoicing.extensions import db
from invoicing.gateways import current_gateway
from invoicing.gateways.base import ChargeResult, Gateway, GatewayError, MethodDetails, PaymentIntentInfo
from invoicing.jobs import register
from invoicing.models import (
    ChargeAttempt,
    CheckoutGroup,
    CheckoutGroupItem,
    CheckoutSession,
    Client,
    Invoice,
    InvoiceAutopay,
    Payment,
)
from invoicing.money import format_money
from invoicing.services.attention import email_admins
from invoicing.services.audit import record
from invoicing.services.billing.autopay import (
    ACTOR,
    MAX_ATTEMPTS,
    NOTIFY_AFTER_ATTEMPT,
    RETRY_DAYS,
    AutopayOutcome,
    PlannedCharge,
    _cancel,
    active_mode,
    charges_preview,
    client_card,
    due_clause,
    emit,
)
from invoicing.services.checkout import _recipient, after_payment, queue_email
from invoicing.services.db import atomic, inside_atomic, lock_invoice
from invoicing.services.payments import apply_payment
from invoicing.services.portal.cards import expiry_state
from invoicing.services.site import Site

log = logging.getLogger(__name__)

KEY_PREFIX = "autopay:"
OPEN_ATTEMPT = ("pending", "unknown", "processing")  # an answer can still be recorded
PAGE = 200  # invoices claimed per query of a sweep
CHECKOUT_WAIT = timedelta(hours=1)  # a checkout in progress: look again in an hour
PENDING_GRACE = timedelta(minutes=2)  # an attempt pending this long lost its worker (crash) or its answer
MIN_GAP = timedelta(days=1)  # between two tries of one invoice, whatever the schedule says after downtime
REPLAY_WINDOW = timedelta(hours=23)  # Stripe keeps an idempotency key at least 24 hours
# Stripe's "never retry without a new card" list and the declines whose next step is another card, plus what a
# provider refuses outright (the card is gone, the amount cannot be taken): no retry can succeed.
HARD_CODES = frozenset({
    "incorrect_number", "lost_card", "pickup_card", "stolen_card", "revocation_of_authorization",
    "revocation_of_all_authorizations", "highest_risk_level", "expired_card", "invalid_account",
    "card_not_supported", "resource_missing", "payment_method_unattached", "amount_not_chargeable",
    "amount_precision", "card_unusable", "authentication", "idempotency_error", "provider_refused",
})
AUTH_CODES = frozenset({"authentication_required", "authentication_not_handled"})


def classify(code: str | None, advice_code: str | None) -> str:
    """soft (retry later), hard (never this card again) or authentication (only the cardholder can pay it)."""
    if code in AUTH_CODES:
        return "authentication"
    if code in HARD_CODES or advice_code == "do_not_try_again":
        return "hard"
    return "soft"


def attempt_key(secret_key: str, invoice_id: int, attempt_number: int) -> str:
    """The idempotency key of an invoice's n-th attempt: the same on every worker and every replay, and unique
    to this installation (two installs sharing a Stripe account never collide)."""
    mac = hmac.new(secret_key.encode(), f"autopay:{invoice_id}:{attempt_number}".encode(), hashlib.sha256)
    return f"{KEY_PREFIX}{mac.hexdigest()[:24]}:{invoice_id}:{attempt_number}"


def _metadata(attempt: ChargeAttempt, invoice: Invoice) -> dict[str, str]:
    """What the PaymentIntent carries: built from stored values only, so a replay sends exactly the same."""
    return {"invoice_id": str(invoice.id), "invoice_public_id": invoice.public_id,
            "invoice_number": invoice.number or "", "autopay_key": attempt.idempotency_key,
            "autopay_attempt": str(attempt.attempt_number)}


# --- 1. claim -------------------------------------------------------------------------------------------


def _checkout_in_progress(invoice_id: int, now: datetime) -> bool:
    session = exists().where(CheckoutSession.invoice_id == invoice_id, CheckoutSession.status == "open",
                             CheckoutSession.expires_at > now)
    group = exists().where(CheckoutGroupItem.invoice_id == invoice_id, CheckoutGroupItem.group_id == CheckoutGroup.id,
                           CheckoutGroup.status == "open")
    return bool(db.session.execute(select(session | group)).scalar())


def _claim(invoice_id: int, *, now: datetime, gateway: Gateway, site: Site) -> int | str:
    """The attempt id to send, or what happened instead (skipped, waiting, cancelled, failed)."""
    with atomic():
        invoice = lock_invoice(invoice_id)
        client = db.session.execute(select(Client).where(Client.id == invoice.client_id)
                                    .with_for_update(read=True).execution_options(populate_existing=True)).scalar_one()
        state = db.session.get(InvoiceAutopay, invoice_id, populate_existing=True)
        if state is None or state.status != "scheduled" or state.next_charge_at is None \
                or state.next_charge_at > now:
            return "skipped"  # another scheduler took it, or it was cancelled or moved meanwhile
        if invoice.status != "open" or invoice.amount_due <= 0:
            _cancel(state, reason="not_open" if invoice.status != "open" else "nothing_due", now=now, actor=ACTOR,
                    invoice=invoice)
            return "cancelled"
        if not client.autopay_enabled or active_mode(client.id) is None:
            _cancel(state, reason="autopay_off", now=now, actor=ACTOR, invoice=invoice)
            return "cancelled"
        if _checkout_in_progress(invoice.id, now):
            state.next_charge_at, state.updated_at = now + CHECKOUT_WAIT, now
            return "waiting"
        try:  # e.g. 3.545 KWD: cards take it only in steps of 0.010; not the card's fault, so no decline ladder
            gateway.check_amount(invoice.amount_due, invoice.currency)
        except GatewayError:
            _cancel(state, reason="amount_not_chargeable", now=now, actor=ACTOR, invoice=invoice)
            return "cancelled"
        card = client_card(client)
        number = state.attempt_count + 1
        attempt = ChargeAttempt(
            invoice_id=invoice.id, organization_id=invoice.organization_id, attempt_number=number,
            idempotency_key=attempt_key(site.secret_key, invoice.id, number), amount=invoice.amount_due,
            currency=invoice.currency, status="pending", provider=gateway.name,
            payment_method_id=card.id if card else None, provider_method_id=card.provider_id if card else None,
            customer_id=(card.customer_id or client.stripe_customer_id) if card else None, created_at=now)
        db.session.add(attempt)
        state.status, state.attempt_count, state.last_attempt_at, state.updated_at = "processing", number, now, now
        state.payment_method_id = card.id if card else state.payment_method_id
        db.session.flush()
        unusable = _unusable(card, gateway, now)
        if unusable is not None:  # decided without asking the provider: nothing to charge it with
            _record_failure(invoice, state, attempt, ChargeResult(None, "failed", attempt.amount, attempt.currency,
                                                                  failure_code=unusable[0],
                                                                  failure_message=unusable[1]), now=now, site=site)
            return "failed"
        return attempt.id


def _unusable(card: object, gateway: Gateway, now: datetime) -> tuple[str, str] | None:
    from invoicing.models import PaymentMethod

    if not isinstance(card, PaymentMethod):
        return "card_unusable", "No saved card to charge."
    if card.provider != gateway.name:
        return "card_unusable", "The saved card belongs to another payment provider."
    if expiry_state(card, now.date()) == "expired":
        return "expired_card", "The saved card has expired."
    return None


# --- 2. call --------------------------------------------------------------------------------------------


def _call(attempt_id: int, *, gateway: Gateway) -> ChargeResult | None:
    """The provider's answer to the attempt's request (sent again with the same key on a replay), or None when
    the outcome is unknown (timeout, 5xx, connection lost): the attempt stays pending."""
    if inside_atomic():  # the attempt row (its key) must be committed before the card is charged, never after
        raise RuntimeError("autopay charges a card only outside a transaction")
    attempt = db.session.get(ChargeAttempt, attempt_id, populate_existing=True)
    assert attempt is not None
    invoice = db.session.get(Invoice, attempt.invoice_id)
    assert invoice is not None
    request = dict(customer_id=attempt.customer_id or "", payment_method_id=attempt.provider_method_id or "",
                   amount=attempt.amount, currency=attempt.currency, idempotency_key=attempt.idempotency_key,
                   metadata=_metadata(attempt, invoice))
    db.session.rollback()  # no transaction held open across the network call
    try:
        return gateway.charge_off_session(**request)  # type: ignore[arg-type]
    except GatewayError as exc:
        if exc.retryable:
            log.warning("autopay attempt %s: outcome unknown (%s); left for reconciliation", attempt_id, exc.code)
            return None
        return ChargeResult(None, "failed", request["amount"], request["currency"],  # type: ignore[arg-type]
                            failure_code=exc.code or "provider_refused", failure_message=exc.message)


# --- 3. record ------------------------------------------------------------------------------------------


def record_outcome(attempt_id: int, result: ChargeResult, *, now: datetime, gateway: Gateway, site: Site) -> str:
    """Record the provider's answer to an attempt once (the job, a replay, or the provider's webhook, in any
    order): returns the attempt's status after it."""
    attempt = db.session.get(ChargeAttempt, attempt_id)
    assert attempt is not None
    payment: Payment | None = None
    status: str | None = None
    if result.status in ("succeeded", "processing") and attempt.status in OPEN_ATTEMPT:
        def settle(new: Payment) -> None:  # the door's own transaction, invoice locked: a new payment
            nonlocal status
            if result.method is not None:  # the answer said which card: the receipt needs no second provider call
                _note_method(new, result.method)
            status = _settle_locked(new.invoice, attempt_id, result, now=now, site=site, payment=new)

        payment = apply_payment(
            attempt.invoice_id, amount=attempt.amount, currency=attempt.currency, method=gateway.method,
            status=result.status, actor=ACTOR, now=now, observed_at=now, payment_intent_id=result.payment_intent_id,
            charge_id=result.charge_id, idempotency_key=attempt.idempotency_key, then=settle).payment
    if status is None:  # a decline, or a payment the webhook had recorded first
        with atomic():
            status = _settle_locked(lock_invoice(attempt.invoice_id), attempt_id, result, now=now, site=site,
                                    payment=payment)
    if payment is not None and status == "succeeded":
        after_payment(payment.id, gateway=gateway, site=site, now=now)  # receipt, card details, stale checkouts
    return status


def _note_method(payment: Payment, method: MethodDetails) -> None:
    """payments.record_method's values, on the new payment in the door's transaction (no transaction of its own)."""
    payment.method_type, payment.method_brand = method.type, method.brand or None
    payment.method_last4, payment.method_wallet = method.last4 or None, method.wallet or None
    payment.method_bank = method.bank_name or None


def _settle_locked(invoice: Invoice, attempt_id: int, result: ChargeResult, *, now: datetime, site: Site,
                   payment: Payment | None) -> str:
    """Record the answer on the attempt and the invoice's autopay, once (the caller holds the invoice lock)."""
    attempt = db.session.get(ChargeAttempt, attempt_id, populate_existing=True)
    state = db.session.get(InvoiceAutopay, invoice.id, populate_existing=True)
    assert attempt is not None and state is not None
    if attempt.status not in ("pending", "unknown") and not (attempt.status == "processing"
                                                             and result.status != "processing"):
        return attempt.status  # recorded before (the webhook and the job both heard it)
    attempt.payment_intent_id = result.payment_intent_id or attempt.payment_intent_id
    if result.status in ("succeeded", "processing"):
        _record_success(invoice, state, attempt, result, payment, now=now)
    else:
        _record_failure(invoice, state, attempt, result, now=now, site=site)
    return attempt.status


def _record_success(invoice: Invoice, state: InvoiceAutopay, attempt: ChargeAttempt, result: ChargeResult,
                    payment: Payment | None, *, now: datetime) -> None:
    attempt.status, attempt.charge_id = result.status, result.charge_id or attempt.charge_id
    attempt.payment_id = payment.id if payment is not None else attempt.payment_id
    if result.status == "processing":  # a debit still settling: its webhook or reconcile finishes it
        return
    attempt.finished_at = now
    state.status, state.next_charge_at, state.updated_at = "succeeded", None, now
    card = attempt.payment_method.label if attempt.payment_method else ""
    record("autopay.succeeded", invoice, actor=ACTOR, now=now, details={
        "attempt": attempt.attempt_number, "amount": attempt.amount, "currency": attempt.currency, "card": card,
        "payment_intent": attempt.payment_intent_id or "", "payment_id": attempt.payment_id})
    emit(AutopayOutcome(invoice.id, invoice.organization_id, invoice.client_id, "succeeded", True,
                        attempt.attempt_number, payment_id=attempt.payment_id))


def _record_failure(invoice: Invoice, state: InvoiceAutopay, attempt: ChargeAttempt, result: ChargeResult, *,
                    now: datetime, site: Site) -> None:
    code = result.failure_code or ("authentication_required" if result.status == "requires_action" else
                                   "card_declined")
    kind = classify(code, result.advice_code)
    number = attempt.attempt_number
    attempt.status, attempt.finished_at, attempt.decline_kind = "failed", now, kind
    attempt.error_code, attempt.error_message = code[:100], result.failure_message
    state.first_failed_at = state.first_failed_at or now
    state.last_failure_code, state.last_failure_message, state.updated_at = code[:100], result.failure_message, now
    retry = kind == "soft" and number < MAX_ATTEMPTS
    if retry:
        # 3, 7 and 14 days after the first failure; after downtime, never two tries within a day (no burst).
        attempt.next_retry_at = max(state.first_failed_at + timedelta(days=RETRY_DAYS[number - 1]), now + MIN_GAP)
        state.status, state.next_charge_at = "scheduled", attempt.next_retry_at
    else:
        state.status, state.next_charge_at = "failed", None
        state.end_reason = {"soft": "retries_exhausted", "hard": "hard_decline"}.get(kind, "authentication_required")
        if code == "card_unusable":
            state.end_reason = "card_unusable"
    card = attempt.payment_method.label if attempt.payment_method else "no card"
    zone = ZoneInfo(invoice.organization.timezone)
    retry_on = attempt.next_retry_at.astimezone(zone).date().isoformat() if attempt.next_retry_at else None
    record("autopay.attempted", invoice, actor=ACTOR, now=now, details={
        "attempt": number, "outcome": "failed", "amount": attempt.amount, "currency": attempt.currency,
        "card": card, "decline_code": code, "decline_kind": kind, "message": result.failure_message or "",
        "advice_code": result.advice_code or "", "payment_intent": attempt.payment_intent_id or "",
        "next_retry": attempt.next_retry_at.isoformat() if attempt.next_retry_at else None,
        "next_retry_on": retry_on})
    if retry and attempt.next_retry_at is not None:
        record("autopay.retry_scheduled", invoice, actor=ACTOR, now=now,
               details={"attempt": number + 1, "at": attempt.next_retry_at.isoformat(), "at_on": retry_on})
    else:
        record("autopay.failed", invoice, actor=ACTOR, now=now,
               details={"reason": state.end_reason, "attempts": number, "decline_code": code})
    if (retry and number == NOTIFY_AFTER_ATTEMPT) or kind in ("hard", "authentication"):
        _tell(invoice, attempt, kind=kind, card=card, now=now, site=site)
    emit(AutopayOutcome(invoice.id, invoice.organization_id, invoice.client_id,
                        "retry_scheduled" if retry else "failed", not retry, number, decline_code=code,
                        decline_kind=kind, next_charge_at=state.next_charge_at, reason=state.end_reason))


def _tell(invoice: Invoice, attempt: ChargeAttempt, *, kind: str, card: str, now: datetime, site: Site) -> None:
    """The client gets a link to pay (and to update the card); after the third soft decline the organization's
    admins hear of it too. Once per attempt and recipient (outbox dedupe keys)."""
    zone = ZoneInfo(invoice.organization.timezone)
    next_retry = attempt.next_retry_at.astimezone(zone).date() if attempt.next_retry_at else None
    reason = (attempt.error_message or attempt.error_code or "declined").rstrip(".")
    context = dict(attempt=attempt, decline=kind, card_label=card, next_retry=next_retry, reason=reason,
                   max_attempts=MAX_ATTEMPTS, cards_url=site.url("/portal/payment-methods", invoice.organization))
    if kind == "soft":
        email_admins(invoice, kind="autopay_failed_admin", key=f"autopay_failed_admin:{attempt.idempotency_key}",
                     subject=f"Autopay declined {attempt.attempt_number} times: invoice {invoice.number} "
                             f"({invoice.client.name})", now=now, site=site, **context)
    to = _recipient(invoice)
    if not to:
        return
    subject = {"authentication": f"Please confirm your payment for invoice {invoice.number}",
               "hard": f"Your card was refused for invoice {invoice.number}: please use another card"}.get(
        kind, f"Your card was declined for invoice {invoice.number}")
    queue_email("autopay_failed", "autopay_failed", invoice, to=to, subject=subject, site=site, now=now,
                dedupe_key=f"autopay_failed:{attempt.idempotency_key}", **context)


# --- the sweep ------------------------------------------------------------------------------------------


def charge_invoice(invoice_id: int, *, now: datetime, gateway: Gateway, site: Site) -> str:
    """Claim, charge and record one invoice's due autopay; returns what happened."""
    claimed = _claim(invoice_id, now=now, gateway=gateway, site=site)
    if isinstance(claimed, str):
        return claimed
    result = _call(claimed, gateway=gateway)
    if result is None:
        return "unknown"
    return record_outcome(claimed, result, now=now, gateway=gateway, site=site)


@dataclass
class ChargeReport:
    outcomes: dict[str, int] = field(default_factory=dict)
    settled: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def __str__(self) -> str:
        done = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items())) or "nothing due"
        text = f"process-recurring-charges: {done}; {self.settled} pending attempt(s) settled"
        return text + (f"; {len(self.errors)} error(s): " + "; ".join(self.errors[:5]) if self.errors else "")


def _due_ids(now: datetime, after: tuple[datetime, int] | None, organization_id: int | None) -> list[tuple[datetime,
                                                                                                              int]]:
    query = (select(InvoiceAutopay.next_charge_at, InvoiceAutopay.invoice_id).where(due_clause(now))
             .order_by(InvoiceAutopay.next_charge_at, InvoiceAutopay.invoice_id).limit(PAGE))
    if after is not None:
        query = query.where((InvoiceAutopay.next_charge_at > after[0]) | and_(
            InvoiceAutopay.next_charge_at == after[0], InvoiceAutopay.invoice_id > after[1]))
    if organization_id is not None:
        query = query.where(InvoiceAutopay.organization_id == organization_id)
    rows = [(at, invoice_id) for at, invoice_id in db.session.execute(query) if at is not None]
    db.session.rollback()
    return rows


def process_due(*, now: datetime, gateway: Gateway, site: Site, organization_id: int | None = None) -> ChargeReport:
    """Charge every invoice whose autopay is due now (each once, whatever other schedulers do at the same time),
    after settling attempts left pending by a crash or a timeout."""
    report = ChargeReport()
    report.settled = settle_pending(now=now, gateway=gateway, site=site, report=report)
    after: tuple[datetime, int] | None = None
    while rows := _due_ids(now, after, organization_id):
        for _at, invoice_id in rows:
            try:
                report.add(charge_invoice(invoice_id, now=now, gateway=gateway, site=site))
            except Exception as exc:  # noqa: BLE001 - one bad invoice must not stop the others
                db.session.rollback()
                report.errors.append(f"invoice {invoice_id}: {exc.__class__.__name__}: {exc}")
                log.exception("autopay: invoice %s", invoice_id)
        after = rows[-1]
    return report


def settle_pending(*, now: datetime, gateway: Gateway, site: Site, report: ChargeReport | None = None) -> int:
    """Replay the attempts whose outcome we never heard (a crash, a timeout), with the same key and parameters:
    the provider answers with what it did the first time. Returns how many were settled."""
    rows = db.session.execute(select(ChargeAttempt.id, ChargeAttempt.created_at).where(
        ChargeAttempt.status == "pending", ChargeAttempt.provider == gateway.name,
        ChargeAttempt.created_at < now - PENDING_GRACE).order_by(ChargeAttempt.id)).all()
    db.session.rollback()
    settled = 0
    for attempt_id, created_at in rows:
        if created_at < now - REPLAY_WINDOW:
            _give_up_replaying(attempt_id, now=now)
            continue
        try:
            result = _call(attempt_id, gateway=gateway)
            if result is not None:
                record_outcome(attempt_id, result, now=now, gateway=gateway, site=site)
                settled += 1
        except Exception as exc:  # noqa: BLE001
            db.session.rollback()
            if report is not None:
                report.errors.append(f"attempt {attempt_id}: {exc.__class__.__name__}: {exc}")
            log.exception("autopay: settling attempt %s", attempt_id)
    return settled


def _give_up_replaying(attempt_id: int, *, now: datetime) -> None:
    """An attempt whose outcome is still unknown after REPLAY_WINDOW: the provider may have forgotten its key, so
    a replay could charge again. It becomes `unknown` (never replayed; its webhook, or staff at the provider,
    settle it: `record_outcome` still takes its answer) and the invoice's timeline says so."""
    with atomic():
        attempt = db.session.get(ChargeAttempt, attempt_id, populate_existing=True)
        assert attempt is not None
        invoice = lock_invoice(attempt.invoice_id)
        db.session.refresh(attempt)
        if attempt.status != "pending":
            return
        attempt.status = "unknown"
        record("autopay.outcome_unknown", invoice, actor=ACTOR, now=now, details={
            "attempt": attempt.attempt_number, "amount": attempt.amount, "currency": attempt.currency,
            "idempotency_key": attempt.idempotency_key})


def is_autopay(metadata: Mapping[str, str]) -> bool:
    return str(metadata.get("autopay_key") or "").startswith(KEY_PREFIX)


def apply_intent_event(intent: PaymentIntentInfo, *, status: str, now: datetime, gateway: Gateway,
                       site: Site) -> str:
    """The inbox's handler for payment_intent.succeeded / .processing / .payment_failed of an autopay charge:
    the same `record_outcome` as the job's own answer, so whichever comes first records it, once."""
    attempt = db.session.execute(select(ChargeAttempt).where(
        ChargeAttempt.idempotency_key == intent.metadata.get("autopay_key"))).scalar_one_or_none()
    if attempt is None or str(attempt.invoice_id) != intent.metadata.get("invoice_id"):
        return "ignored: not one of our autopay charges"
    result = ChargeResult(intent.id, status, attempt.amount, attempt.currency, charge_id=intent.charge_id,
                          failure_code=intent.failure_code if status == "failed" else None,
                          failure_message=intent.failure_message if status == "failed" else None)
    return f"autopay attempt {attempt.id} {record_outcome(attempt.id, result, now=now, gateway=gateway, site=site)}"


def dry_run(now: datetime) -> tuple[list[PlannedCharge], int]:
    """What the job would charge now (the same plan as the Scheduler page's) and the pending attempts it would
    replay."""
    planned = charges_preview(now=now, until=now)
    pending = db.session.scalar(select(ChargeAttempt.id).where(
        ChargeAttempt.status == "pending", ChargeAttempt.created_at < now - PENDING_GRACE).limit(1))
    return planned, int(pending is not None)


@register("process-recurring-charges", every_seconds=900)
def charges_job(now: datetime, dry_run_: bool) -> str:
    """Charge autopay invoices whose time has come to the client's saved card (each charge once)."""
    if dry_run_:
        planned, pending = dry_run(now)
        db.session.rollback()
        lines = [f"  {p.number} ({p.client_name}): {format_money(p.amount, p.currency)} to {p.card}, attempt "
                 f"{p.attempt_number}" for p in planned[:50]]
        more = [f"  ... and {len(planned) - 50} more"] if len(planned) > 50 else []
        head = f"process-recurring-charges would charge {len(planned)} card(s)"
        return "\n".join([head + ("; and replay pending attempts" if pending else ""), *lines, *more])
    return str(process_due(now=now, gateway=current_gateway(), site=Site.from_config(current_app.config)))
