"""Refunds staff make from the invoice page: through the provider first (with an idempotency key), then
recorded through the money door (services/payments.apply_refund) with the provider's refund id.

The provider's later `charge.refunded` event carries the same refund id, so it changes nothing twice; if we
crash between the provider call and the record, that event records it (and a retried form submit with the
same key replays the same provider refund).
"""

from __future__ import annotations

from datetime import datetime

from invoicing.extensions import db
from invoicing.gateways.base import Gateway, GatewayError
from invoicing.models import MANUAL_METHODS, Payment, Refund
from invoicing.money import format_money
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor
from invoicing.services.payments import apply_refund

REFUNDABLE = ("succeeded", "partially_refunded")


def refundable_payments(invoice_id: int) -> list[Payment]:
    return [p for p in db.session.query(Payment).filter(Payment.invoice_id == invoice_id).order_by(Payment.id)
            if p.status in REFUNDABLE and p.amount > p.amount_refunded]


def refund_payment(invoice_id: int, payment_id: int, *, amount: int, reason: str, key: str, actor: Actor,
                   gateway: Gateway, now: datetime) -> Refund:
    """Refund part or all of a payment. `key` is the form's one-time key: a double submit refunds once."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.invoice_id != invoice_id:
        raise NotFound("Payment not found.")
    reason = reason.strip()
    if not reason:
        raise DomainError("Give a reason for the refund.")
    left = payment.amount - payment.amount_refunded
    if payment.status not in REFUNDABLE or left <= 0:
        raise DomainError("This payment has nothing left to refund.")
    if not 0 < amount <= left:
        raise DomainError(f"The refund must be above zero and at most {format_money(left, payment.currency)}.")
    idempotency_key = f"refund:{payment.id}:{key}"
    if payment.method in MANUAL_METHODS:  # cash, transfer, cheque: staff returned it themselves
        return apply_refund(payment.id, amount=amount, actor=actor, now=now, idempotency_key=idempotency_key,
                            reason=reason)
    if payment.method != gateway.method:
        raise DomainError(f"This payment was made with {payment.method}, which is not the configured provider now: "
                          "refund it there, then record it here.")
    # A share of a payment for several invoices (portal "pay several at once") refunds the charge they share,
    # this invoice's amount at most; the refund's metadata names the payment, so its event finds the share.
    charge_id = payment.charge_id or (payment.group.charge_id if payment.group is not None else None)
    try:
        refund = gateway.refund(amount=amount, currency=payment.currency, idempotency_key=idempotency_key,
                                payment_intent_id=payment.provider_intent_id, charge_id=charge_id,
                                reason=reason, payment_ref=str(payment.id))
    except GatewayError as exc:
        raise DomainError(f"The refund was not made: {exc.message}") from None
    if refund.reversed:  # refused at once (e.g. the card is closed): nothing went back, nothing to record
        why = refund.failure_reason.replace("_", " ") or refund.status
        raise DomainError(f"The provider did not make the refund ({why}): refund the client another way.")
    return apply_refund(payment.id, amount=refund.amount, actor=actor, now=now, provider_refund_id=refund.id,
                        idempotency_key=idempotency_key, reason=reason)
