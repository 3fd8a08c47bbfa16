"""The one door for money: every change to what an invoice has received goes through apply_payment,
apply_group_payment (one provider payment for several invoices), apply_refund or reverse_refund, which lock the
invoice rows and are idempotent on the provider reference (DESIGN rule 2)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import or_, select, update

from invoicing.extensions import db
from invoicing.gateways.base import REFUND_REVERSED, MethodDetails
from invoicing.models import (
    MANUAL_METHODS,
    CheckoutGroup,
    CheckoutGroupItem,
    Invoice,
    Payment,
    PaymentAttempt,
    ReceiptCounter,
    Refund,
)
from invoicing.money import MAX_AMOUNT, format_money
from invoicing.services import DomainError
from invoicing.services.attention import admin_emails, email_admins, open_case
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic, before_commit, in_larger_transaction, keep, lock_invoice, take_next
from invoicing.services.receipts import queue_manual_receipt
from invoicing.services.site import Site

__all__ = ["admin_emails", "apply_group_payment", "apply_payment", "apply_refund", "record_manual_payment",
           "reverse_refund"]

log = logging.getLogger(__name__)

# Money received is final: once a payment succeeded, a late "processing" or "failed" (events arrive out of
# order) changes nothing; only refunds move it on. Before that, a pending debit can fail, and a failed
# session can be retried on the same PaymentIntent with a slower method, so those two move both ways. Which
# way is decided by the provider's time of each observation (`observed_at`, kept in
# Payment.provider_state_at): an observation older than the one that set the current state is stale and
# ignored. Without a time (manual payments, old callers) the move is applied, as before.
_PENDING = ("processing", "failed")
MAX_REFERENCE = 200  # Payment.reference's column size


@dataclass(frozen=True)
class PaymentResult:
    payment: Payment
    created: bool  # False when this provider reference was already recorded (a replay)


def _existing(**refs: str | None) -> Payment | None:
    clauses = [getattr(Payment, name) == value for name, value in refs.items() if value]
    if not clauses:
        return None
    # populate_existing: under the invoice lock, read what other transactions committed, not what this
    # session loaded earlier (PostgreSQL keeps the session's objects across begin_write).
    query = select(Payment).where(or_(*clauses)).execution_options(populate_existing=True)
    return db.session.execute(query).scalars().first()


def recompute_balance(invoice: Invoice, *, now: datetime) -> None:
    """Derive amount paid and the stored status from the ledger (payments minus refunds)."""
    payments = db.session.execute(
        select(Payment).where(Payment.invoice_id == invoice.id).execution_options(populate_existing=True)
    ).scalars().all()
    invoice.amount_paid = sum(p.amount - p.amount_refunded for p in payments if p.status in COUNTED)
    if invoice.status in ("draft", "void"):
        return
    if invoice.amount_paid >= invoice.total:
        if invoice.status != "paid":
            invoice.paid_at = now
            invoice.status = "paid"
            _subscription_paid(invoice, now=now)
    elif any(p.status == "processing" for p in payments):
        invoice.status = "processing"
        invoice.paid_at = None
    else:
        invoice.status = "open"
        invoice.paid_at = None


COUNTED = ("succeeded", "partially_refunded", "refunded")


def _subscription_paid(invoice: Invoice, *, now: datetime) -> None:
    """An invoice just became paid: its subscription, if past_due, is active again (under this invoice lock)."""
    from invoicing.services.subscriptions.lifecycle import on_invoice_paid  # subscriptions import this module

    on_invoice_paid(invoice, now=now)


def apply_payment(
    invoice_id: int,
    *,
    amount: int,
    currency: str,
    method: str,
    status: str,
    actor: Actor,
    now: datetime,
    checkout_session_id: str | None = None,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
    idempotency_key: str | None = None,
    reference: str = "",
    paid_on: date | None = None,
    contact_id: int | None = None,
    failure_code: str | None = None,
    failure_message: str | None = None,
    observed_at: datetime | None = None,
    then: Callable[[Payment], object] | None = None,
    payer_email: str | None = None,
) -> PaymentResult:
    """Record money received (or pending, or failed) for an invoice, exactly once per provider reference.

    Money that a provider already moved is never refused: a payment on a paid or void invoice, or above the
    amount due, is recorded and flagged as an overpayment for staff to refund.

    `observed_at` is when the provider was in this state: an event's `created`, or `now` for an object just
    retrieved from it. A move between pending states (processing <-> failed) older than the last one is ignored.
    `then(payment)` runs in the same transaction once a new payment is recorded (a manual payment's receipt).
    """
    _check_amount(amount, currency)
    with atomic():
        invoice = lock_invoice(invoice_id)
        refs = dict(
            checkout_session_id=checkout_session_id,
            payment_intent_id=payment_intent_id,
            charge_id=charge_id,
            idempotency_key=idempotency_key,
        )
        payment = _existing(**refs)
        if status == "failed":  # a declined try's charge is the attempt's, never the charge a refund would target
            refs["charge_id"] = None
        if payment is not None and payment.invoice_id != invoice.id:
            raise DomainError("This payment reference belongs to another invoice.")
        if payment is not None:
            _advance(payment, invoice, status=status, actor=actor, now=now, refs=refs, charge_id=charge_id,
                     failure_code=failure_code, failure_message=failure_message, observed_at=observed_at,
                     payer_email=payer_email)
            return PaymentResult(payment, created=False)
        if currency.upper() != invoice.currency:
            raise DomainError(f"This invoice is in {invoice.currency}, not {currency.upper()}.")
        if method in MANUAL_METHODS:
            _check_manual(invoice, amount)
        payment = _create(invoice, amount=amount, method=method, status=status, actor=actor, now=now, refs=refs,
                          charge_id=charge_id, reference=reference.strip(), paid_on=paid_on, contact_id=contact_id,
                          failure_code=failure_code, failure_message=failure_message, observed_at=observed_at,
                          payer_email=payer_email)
        if then is not None:
            then(payment)
    return PaymentResult(payment, created=True)


def _check_amount(amount: int, currency: str) -> None:
    if amount <= 0:
        raise DomainError("The amount must be above zero.")
    if amount > MAX_AMOUNT:  # no provider moves that much; the columns could not hold the sums (services/totals.py)
        raise DomainError(f"The amount is too large: at most {format_money(MAX_AMOUNT, currency)}.")


def _check_manual(invoice: Invoice, amount: int) -> None:
    """Staff record only what is due: a manual payment is refused on a closed invoice or above the amount due."""
    due = invoice.total - invoice.amount_paid if invoice.status in ("open", "processing") else 0
    if invoice.status not in ("open", "processing"):
        raise DomainError(f"Invoice {invoice.number or invoice.id} is {invoice.status}; it cannot take a payment.")
    from invoicing.services.billing.autopay import charge_in_flight  # autopay imports this module

    if charge_in_flight(invoice.id):
        raise DomainError("An autopay charge of this invoice is at the card provider and its outcome is not known "
                          "yet: record a payment once it has settled (the invoice's timeline shows it).")
    if amount > due:
        raise DomainError(f"That is more than the amount due ({format_money(due, invoice.currency)}); "
                          "overpayments are refused.")
    if amount < due and not invoice.organization.allow_partial_payments:
        raise DomainError("Partial payments are turned off for this organization: record the full amount due.")


def _create(invoice: Invoice, *, amount: int, method: str, status: str, actor: Actor, now: datetime,
            refs: dict[str, str | None], charge_id: str | None, reference: str = "", paid_on: date | None = None,
            contact_id: int | None = None, failure_code: str | None = None, failure_message: str | None = None,
            observed_at: datetime | None = None, payer_email: str | None = None,
            group_id: int | None = None) -> Payment:
    """A new payment on a locked invoice, its receipt number, the balance, the audit row and any overpayment flag."""
    due = invoice.total - invoice.amount_paid if invoice.status in ("open", "processing") else 0
    payment = Payment(
        organization_id=invoice.organization_id,
        invoice_id=invoice.id,
        amount=amount,
        currency=invoice.currency,
        method=method,
        status=status,
        reference=reference,
        paid_on=paid_on,
        contact_id=contact_id,
        payer_email=(payer_email or "").strip()[:254] or None,
        group_id=group_id,
        recorded_by_id=actor.id if actor.type == "user" else None,
        overpayment=status == "succeeded" and amount > due,
        succeeded_at=now if status == "succeeded" else None,
        failure_code=failure_code,
        failure_message=failure_message,
        provider_state_at=observed_at.replace(microsecond=0) if observed_at and status in _PENDING else None,
        created_at=now,
        **refs,
    )
    db.session.add(payment)
    db.session.flush()
    keep(payment)
    _number_receipt(payment)
    invoice_status = invoice.status
    recompute_balance(invoice, now=now)
    record(f"payment.{status}", invoice, actor=actor, now=now, details=_details(payment) | _failure(payment))
    if status == "failed":
        _record_attempt(payment, charge_id=charge_id, now=now)
    if payment.overpayment:
        _flag_overpayment(invoice, payment, excess=amount - due, actor=actor, now=now)
        _flag(invoice, payment, excess=amount - due, void=invoice_status == "void", now=now)
    _autopay_hook(invoice, payment, now=now)
    return payment


def _autopay_hook(invoice: Invoice, payment: Payment, *, now: datetime) -> None:
    """Money by another channel cancels the invoice's scheduled autopay (under this invoice lock)."""
    from invoicing.services.billing.autopay import after_payment_recorded  # autopay imports this module

    after_payment_recorded(invoice, idempotency_key=payment.idempotency_key, status=payment.status, now=now)


def apply_group_payment(
    group_id: int,
    *,
    session_id: str,
    status: str,
    actor: Actor,
    now: datetime,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
    failure_code: str | None = None,
    failure_message: str | None = None,
    observed_at: datetime | None = None,
    payer_email: str | None = None,
) -> list[PaymentResult]:
    """Record one provider payment that pays several invoices (a CheckoutGroup): each invoice is credited its
    own item amount, all of it in one transaction, exactly once per (session, invoice).

    The invoice rows are locked in id order, so two callers (the webhook, the return page, reconcile) never
    deadlock and the second finds the first one's payments by their keys `{session_id}:{invoice_id}` and only
    moves them forward. The provider references (intent, charge) are kept on the group, which its payments
    share: they are UNIQUE on a payment. Money already moved is never refused: an invoice paid meanwhile by
    another channel is credited all the same and its share flagged as an overpayment."""
    group = db.session.get(CheckoutGroup, group_id)
    if group is None:
        raise DomainError("Checkout not found.")
    _check_amount(group.amount, group.currency)
    results = []
    with atomic():
        items = db.session.execute(select(CheckoutGroupItem).where(CheckoutGroupItem.group_id == group_id)
                                   .order_by(CheckoutGroupItem.invoice_id)).scalars().all()
        invoices = [lock_invoice(item.invoice_id) for item in items]  # id order: no deadlock between groups
        group = db.session.get(CheckoutGroup, group_id, populate_existing=True)
        assert group is not None
        _fill_group_refs(group, session_id=session_id, payment_intent_id=payment_intent_id,
                         charge_id=charge_id if status == "succeeded" else None)
        for item, invoice in zip(items, invoices, strict=True):
            key = f"{session_id}:{invoice.id}"
            payment = _existing(idempotency_key=key)
            if payment is not None:
                _advance(payment, invoice, status=status, actor=actor, now=now, refs={}, charge_id=None,
                         failure_code=failure_code, failure_message=failure_message, observed_at=observed_at,
                         payer_email=payer_email)
                results.append(PaymentResult(payment, created=False))
                continue
            if invoice.currency != group.currency:
                raise DomainError(f"Invoice {invoice.number} is in {invoice.currency}, not {group.currency}.")
            payment = _create(invoice, amount=item.amount, method=_method_of(group.provider), status=status,
                              actor=actor, now=now, refs={"idempotency_key": key}, charge_id=None,
                              contact_id=group.contact_id, failure_code=failure_code,
                              failure_message=failure_message, observed_at=observed_at, payer_email=payer_email,
                              group_id=group.id)
            results.append(PaymentResult(payment, created=True))
    return results


def _method_of(provider: str) -> str:
    return "sandbox" if provider == "sandbox" else "card"


def _fill_group_refs(group: CheckoutGroup, **refs: str | None) -> None:
    """The provider references a group learns over time (the intent at payment, the charge once it succeeded)."""
    for name, value in refs.items():
        if value and not getattr(group, name):
            setattr(group, name, value)


def _number_receipt(payment: Payment) -> None:
    """Receipt numbers go to money received only, in order and without gaps per organization (a declined
    attempt takes none); a payment that settles later gets its number when it succeeds. Inside a larger
    transaction (the inbox's) the number is taken at its end: the organization's counter row is locked only
    from there to the commit, not while the rest of the event is applied."""
    if payment.status == "succeeded" and payment.receipt_number is None:
        if in_larger_transaction() and not payment.overpayment:  # an overpayment's audit row names it: now
            before_commit(lambda: _take_receipt_number(payment))
        else:
            _take_receipt_number(payment)


def _take_receipt_number(payment: Payment) -> None:
    if payment.receipt_number is None:
        payment.receipt_number = f"R-{take_next(ReceiptCounter, organization_id=payment.organization_id):06d}"


def _flag(invoice: Invoice, payment: Payment, *, excess: int, void: bool, now: datetime) -> None:
    """Money above what was due (all of it on a void invoice) waits for staff: a case, an email to the admins."""
    kind = "void_payment" if void else "overpayment"
    open_case(invoice, kind=kind, key=f"{kind}:{payment.id}", amount=payment.amount if void else excess,
              currency=payment.currency, payment=payment, now=now)


def _failure(payment: Payment) -> dict[str, object]:
    if payment.status != "failed":
        return {}
    return {"failure_code": payment.failure_code or "", "failure_message": payment.failure_message or ""}


def _record_attempt(payment: Payment, *, charge_id: str | None, now: datetime, code: str | None = None,
                    message: str | None = None) -> bool:
    """Keep a failed try once: by the provider's charge of it (a retry in the same checkout is a new charge).
    A failure heard without its charge (the checkout's "async payment failed", a retrieved session) is the
    current failure: recorded when the payment moves into failed, and given its charge when that arrives."""
    code, message = (code, message) if code or message else (payment.failure_code, payment.failure_message)
    attempts = db.session.execute(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment.id)
                                  .order_by(PaymentAttempt.id)).scalars().all()
    if charge_id:
        if any(a.attempt_key == charge_id for a in attempts):
            return False
        chargeless = attempts[-1] if attempts and not attempts[-1].attempt_key.startswith("ch") else None
        if chargeless is not None and chargeless.failure_code == code:
            chargeless.attempt_key = charge_id  # the same failure, now with its charge
            return False
    key = charge_id or f"payment:{payment.id}:{len(attempts) + 1}"
    db.session.add(PaymentAttempt(
        organization_id=payment.organization_id, invoice_id=payment.invoice_id, payment_id=payment.id,
        attempt_key=key, amount=payment.amount, currency=payment.currency, failure_code=code,
        failure_message=message, created_at=now))
    return True


def _advance(payment: Payment, invoice: Invoice, *, status: str, actor: Actor, now: datetime,
             refs: dict[str, str | None], charge_id: str | None, failure_code: str | None,
             failure_message: str | None, observed_at: datetime | None, payer_email: str | None = None) -> None:
    """A known payment heard of again: fill in missing references, and move its state forward only."""
    for name, value in refs.items():
        if value and not getattr(payment, name):
            setattr(payment, name, value)
    if payer_email and not payment.payer_email:  # the checkout's event knows it, the intent's does not
        payment.payer_email = payer_email.strip()[:254]
    if payment.status not in _PENDING or status not in (*_PENDING, "succeeded"):
        return
    if status == payment.status == "failed" and charge_id:  # another try declined in the same checkout
        if _record_attempt(payment, charge_id=charge_id, now=now, code=failure_code, message=failure_message):
            payment.failure_code, payment.failure_message = failure_code, failure_message
            record("payment.failed", invoice, actor=actor, now=now, details=_details(payment) | _failure(payment))
    # Whole seconds, like the provider's `created`, so our clock's fraction never outranks its events; within
    # one second "failed" wins (a retry after a decline takes a person longer than that).
    observed_at = observed_at.replace(microsecond=0) if observed_at is not None else None
    stored = payment.provider_state_at
    if status == payment.status:
        if observed_at is not None and (stored is None or observed_at > stored):
            payment.provider_state_at = observed_at  # the same state seen later: older moves stay stale
        return
    if status in _PENDING and observed_at is not None and stored is not None and (
            observed_at <= stored if status == "processing" else observed_at < stored):
        log.info("stale %s ignored: payment %s is %s since %s (observed %s)", status, payment.id, payment.status,
                 stored.isoformat(), observed_at.isoformat(),
                 extra={"invoice_id": invoice.id, "payment_id": payment.id})
        return
    due = invoice.total - invoice.amount_paid if invoice.status in ("open", "processing") else 0
    payment.status = status
    if status in _PENDING and observed_at is not None:
        payment.provider_state_at = observed_at
    payment.failure_code, payment.failure_message = failure_code, failure_message
    if status == "succeeded":
        payment.succeeded_at = now
        payment.overpayment = payment.amount > due
        payment.charge_id = charge_id or payment.charge_id  # the charge that moved the money, not a failed one
        _number_receipt(payment)
    invoice_status = invoice.status
    recompute_balance(invoice, now=now)
    record(f"payment.{status}", invoice, actor=actor, now=now, details=_details(payment) | _failure(payment))
    if status == "failed":
        _record_attempt(payment, charge_id=charge_id, now=now)
    if status == "succeeded" and payment.overpayment:
        _flag_overpayment(invoice, payment, excess=payment.amount - due, actor=actor, now=now)
        _flag(invoice, payment, excess=payment.amount - due, void=invoice_status == "void", now=now)
    _autopay_hook(invoice, payment, now=now)


def _details(payment: Payment) -> dict[str, object]:
    return {
        "payment_id": payment.id,
        "amount": payment.amount,
        "currency": payment.currency,
        "method": payment.method,
        "reference": payment.reference or payment.payment_intent_id or payment.checkout_session_id or "",
        "overpayment": payment.overpayment,
    }


def _flag_overpayment(invoice: Invoice, payment: Payment, *, excess: int, actor: Actor, now: datetime) -> None:
    """Tell staff how much of which payment is more than the invoice asked for: that excess is what to refund
    (60 then 70 received on a 100 invoice: the second payment, 70, is 30 too much)."""
    log.warning("overpayment recorded", extra={"invoice_id": invoice.id, "payment_id": payment.id})
    record("payment.overpayment_flagged", invoice, actor=actor, now=now,
           details={**_details(payment), "excess": excess, "receipt_number": payment.receipt_number})


def note_method(payment: Payment, method: MethodDetails) -> None:
    """record_method for a payment this transaction holds (the inbox's new one): set on the loaded row, so it
    is written with the rest of the payment's changes instead of by a statement of its own."""
    if payment.method_type is None:
        payment.method_type, payment.method_brand = method.type, method.brand or None
        payment.method_last4, payment.method_wallet = method.last4 or None, method.wallet or None
        payment.method_bank = method.bank_name or None


def record_method(payment_id: int, method: MethodDetails) -> bool:
    """Note how a provider payment was made (card brand and last 4, or the debit), once: the first answer
    wins and later ones change nothing. Moves no money, so it needs no invoice lock."""
    with atomic():
        result = db.session.execute(
            update(Payment).where(Payment.id == payment_id, Payment.method_type.is_(None)).values(
                method_type=method.type, method_brand=method.brand or None, method_last4=method.last4 or None,
                method_wallet=method.wallet or None, method_bank=method.bank_name or None)
            .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def record_manual_payment(
    invoice_id: int,
    *,
    amount: int,
    method: str,
    paid_on: date,
    reference: str,
    actor: Actor,
    now: datetime,
    idempotency_key: str | None = None,
    site: Site | None = None,
) -> PaymentResult:
    """Staff record cash, a bank transfer or a cheque (the form's one-time key makes a double submit safe).

    With `site`, the client is emailed a receipt in the same transaction, unless the organization turned
    receipts for manual payments off (receipts.queue_manual_receipt); without it (demo data), none."""
    if method not in MANUAL_METHODS:
        raise DomainError("Choose cash, bank transfer, cheque or other.")
    if len(reference.strip()) > MAX_REFERENCE:
        raise DomainError(f"The reference can have at most {MAX_REFERENCE} characters.")
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        raise DomainError("Invoice not found.")
    return apply_payment(
        invoice_id, amount=amount, currency=invoice.currency, method=method, status="succeeded",
        actor=actor, now=now, idempotency_key=idempotency_key, reference=reference, paid_on=paid_on,
        then=(lambda payment: queue_manual_receipt(payment, site=site, now=now)) if site is not None else None,
    )


@contextmanager
def _payment_locked(payment_id: int) -> Iterator[tuple[Invoice, Payment]]:
    """One write transaction holding the payment's invoice row lock, with the payment's values fresh under it."""
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        raise DomainError("Payment not found.")
    with atomic():
        invoice = lock_invoice(payment.invoice_id)
        db.session.refresh(payment)
        yield invoice, payment


def apply_refund(
    payment_id: int,
    *,
    amount: int,
    actor: Actor,
    now: datetime,
    provider_refund_id: str | None = None,
    idempotency_key: str | None = None,
    reason: str = "",
) -> Refund:
    """Record money returned on a payment, once per provider refund id; the invoice balance follows
    (a paid invoice refunded in part or in full is open again for what it lacks, until staff void it)."""
    with _payment_locked(payment_id) as (invoice, payment):
        clauses = [c for c in (
            Refund.provider_refund_id == provider_refund_id if provider_refund_id else None,
            Refund.idempotency_key == idempotency_key if idempotency_key else None,
        ) if c is not None]
        if clauses:
            existing = db.session.execute(select(Refund).where(or_(*clauses))).scalars().first()
            if existing is not None:  # heard before (the provider's event can beat the staff form's own call)
                _fill_in(existing, provider_refund_id=provider_refund_id, idempotency_key=idempotency_key,
                         reason=reason.strip(), created_by_id=actor.id if actor.type == "user" else None)
                return existing
        if payment.status not in COUNTED:
            raise DomainError("Only a succeeded payment can be refunded.")
        if not 0 < amount <= payment.amount - payment.amount_refunded:
            raise DomainError("The refund must be above zero and at most what is left of the payment.")
        refund = Refund(
            organization_id=payment.organization_id, invoice_id=invoice.id, payment_id=payment.id,
            amount=amount, currency=payment.currency, provider_refund_id=provider_refund_id,
            idempotency_key=idempotency_key, reason=reason.strip(), created_at=now,
            created_by_id=actor.id if actor.type == "user" else None,
        )
        db.session.add(refund)
        payment.amount_refunded += amount
        payment.status = _refunded_status(payment)
        db.session.flush()
        recompute_balance(invoice, now=now)
        record("payment.refunded", invoice, actor=actor, now=now,
               details={"payment_id": payment.id, "refund_id": refund.id, "amount": amount, "reason": reason})
    return refund


def _fill_in(refund: Refund, **known: str | int | None) -> None:
    """What a later recording of the same refund knows and the first did not (who asked, why, the form's key)."""
    for name, value in known.items():
        if value and not getattr(refund, name):
            setattr(refund, name, value)


def _refunded_status(payment: Payment) -> str:
    if payment.amount_refunded == 0:
        return "succeeded"
    return "refunded" if payment.amount_refunded == payment.amount else "partially_refunded"


def reverse_refund(
    payment_id: int,
    *,
    provider_refund_id: str,
    status: str,
    amount: int,
    actor: Actor,
    now: datetime,
    site: Site,
    failure_reason: str = "",
    reason: str = "",
) -> Refund:
    """A refund the provider could not complete (failed or canceled): the client never got the money, so the
    payment and the invoice count it as received again (a fully refunded invoice is paid again). Once per
    provider refund id; the organization's admins are emailed once that the client must be refunded another way.

    Heard before the refund itself (events out of order, or a crash between the provider call and
    apply_refund), it is recorded as failed from the start and moves no money; apply_refund or a
    `charge.refunded` arriving later finds it by its id and changes nothing (failed is final: state only moves
    forward).
    """
    if status not in REFUND_REVERSED:
        raise DomainError(f"A refund that is {status} has not failed.")
    with _payment_locked(payment_id) as (invoice, payment):
        refund = db.session.execute(
            select(Refund).where(Refund.provider_refund_id == provider_refund_id)
            .execution_options(populate_existing=True)
        ).scalars().first()
        if refund is not None and refund.payment_id != payment.id:
            raise DomainError("This refund belongs to another payment.")
        if refund is not None and refund.status in REFUND_REVERSED:
            return refund  # heard before
        restored = 0
        if refund is None:
            if amount <= 0:
                raise DomainError("The amount must be above zero.")
            refund = Refund(
                organization_id=payment.organization_id, invoice_id=invoice.id, payment_id=payment.id,
                amount=amount, currency=payment.currency, provider_refund_id=provider_refund_id,
                reason=reason.strip(), created_at=now,
            )
            db.session.add(refund)
        else:
            restored = refund.amount
            payment.amount_refunded -= refund.amount
            payment.status = _refunded_status(payment)
        refund.status, refund.failure_reason, refund.failed_at = status, failure_reason[:100] or None, now
        db.session.flush()
        recompute_balance(invoice, now=now)
        record(f"payment.refund_{status}", invoice, actor=actor, now=now, details={
            "payment_id": payment.id, "refund_id": refund.id, "amount": refund.amount, "currency": refund.currency,
            "restored": restored, "failure_reason": refund.failure_reason or "", "reason": refund.reason})
        excess = min(invoice.amount_paid - invoice.total, restored)
        if restored and excess > 0 and invoice.status != "void":  # e.g. the client was paid back another way
            payment.overpayment = True
            log.warning("overpayment after a failed refund", extra={"invoice_id": invoice.id, "refund_id": refund.id})
            _flag_overpayment(invoice, payment, excess=excess, actor=actor, now=now)
        _alert_admins(invoice, payment, refund, site=site, now=now)
    return refund


def _alert_admins(invoice: Invoice, payment: Payment, refund: Refund, *, site: Site, now: datetime) -> None:
    """Open the "refund failed" case and queue its email in this transaction, once per refund and admin."""
    key = f"refund_failed:{refund.provider_refund_id or refund.id}"
    open_case(invoice, kind="refund_failed", key=key, amount=refund.amount, currency=refund.currency, payment=payment,
              detail=(refund.failure_reason or refund.status).replace("_", " "), now=now, notify=False)
    what = "failed" if refund.status == "failed" else "was canceled"
    subject = (f"Refund {what}: {format_money(refund.amount, refund.currency)} on invoice "
               f"{invoice.number or invoice.id}, refund the client another way")
    email_admins(invoice, kind="refund_failed", subject=subject, key=key, now=now, site=site, payment=payment,
                 refund=refund)
