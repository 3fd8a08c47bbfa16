"""Which invoices autopay schedules and when (services/billing/autopay.py): at issue for a client with autopay on
(consent, default card), on the due date at the organization's send hour or at issue per the consent; cancelled
by autopay off or a payment by another channel; the reminders wait for a first charge but not after a failure."""

from __future__ import annotations

from datetime import date

from invoicing.extensions import db
from invoicing.models import InvoiceAutopay
from invoicing.services.billing import autopay
from invoicing.services.db import atomic, lock_invoice
from invoicing.services.payments import record_manual_payment
from invoicing.services.portal.autopay import turn_off
from tests.conftest import SYSTEM
from tests.services.billing.helpers import autopay_on, events, fresh, open_invoice, utc


def state(invoice_id: int) -> InvoiceAutopay:
    found = fresh(InvoiceAutopay, invoice_id)
    assert found is not None
    return found


def test_an_invoice_issued_with_autopay_on_is_scheduled_for_its_due_date_at_the_send_hour(world):
    card = autopay_on(world.client_a)  # Org A is in New York: 09:00 there on March 20 is 13:00 UTC (summer time)
    invoice = open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))
    row = state(invoice.id)
    assert (row.status, row.mode, row.next_charge_at, row.payment_method_id, row.attempt_count) == (
        "scheduled", "due_date", utc(2026, 3, 20, 13), card.id, 0)
    event, = events("autopay.scheduled", invoice.id)
    assert event.details["card"] == "Visa •••• 4242" and event.details["amount"] == invoice.total
    with atomic():  # idempotent: subscriptions may call it again for an invoice finalize already scheduled
        assert autopay.schedule_invoice(lock_invoice(invoice.id), now=utc(2026, 3, 6)) is True
    assert len(events("autopay.scheduled", invoice.id)) == 1
    assert autopay.autopay_pending(invoice)


def test_on_issue_charges_at_once_and_clients_without_autopay_are_not_scheduled(world):
    autopay_on(world.client_a, mode="on_issue")
    mine = open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))
    theirs = open_invoice(world.client_b, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))
    assert state(mine.id).next_charge_at == utc(2026, 3, 5, 15)
    assert fresh(InvoiceAutopay, theirs.id) is None
    with atomic():
        assert autopay.schedule_invoice(lock_invoice(theirs.id), now=utc(2026, 3, 6)) is False


def test_autopay_off_and_a_manual_payment_cancel_what_is_scheduled(world):
    autopay_on(world.client_a)
    paid = open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))
    other = open_invoice(world.client_a, due=date(2026, 3, 25), opened=utc(2026, 3, 5, 15))
    record_manual_payment(paid.id, amount=paid.total, method="bank_transfer", paid_on=date(2026, 3, 6),
                          reference="wire", actor=SYSTEM, now=utc(2026, 3, 6))
    assert (state(paid.id).status, state(paid.id).end_reason) == ("cancelled", "paid_another_way")
    assert state(other.id).status == "scheduled"
    turn_off(world.client_a.id, actor=SYSTEM, now=utc(2026, 3, 7))
    assert (state(other.id).status, state(other.id).end_reason) == ("cancelled", "autopay_off")
    assert [e.details["reason"] for e in events("autopay.cancelled")] == ["paid_another_way", "autopay_off"]
    assert not autopay.autopay_pending(db.session.get(type(other), other.id))


def test_listeners_hear_each_outcome_in_its_transaction(world):
    heard: list[autopay.AutopayOutcome] = []
    listener = autopay.on_autopay_outcome(heard.append)
    try:
        autopay_on(world.client_a)
        invoice = open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))
        turn_off(world.client_a.id, actor=SYSTEM, now=utc(2026, 3, 7))
    finally:
        autopay._LISTENERS.remove(listener)
    outcome, = heard
    assert (outcome.invoice_id, outcome.status, outcome.final, outcome.reason) == (
        invoice.id, "cancelled", True, "autopay_off")


def test_while_a_charge_is_at_the_provider_no_other_payment_can_start(world):
    """Between the attempt row (committed) and its outcome, a pay-link or portal checkout, a group checkout and a
    staff payment are refused, so the card and another payment can never both go through; the outcome settles
    it, then paying works again (here: the charge failed softly and a retry is scheduled)."""
    import pytest

    from invoicing.gateways import current_gateway
    from invoicing.gateways.base import ChargeResult
    from invoicing.models import ChargeAttempt, Invoice, Payment
    from invoicing.services import DomainError
    from invoicing.services.billing import charges
    from invoicing.services.checkout import start_checkout
    from invoicing.services.checkout_groups import refusal
    from tests.services.billing.helpers import site

    autopay_on(world.client_a, mode="on_issue", now=utc(2026, 3, 1))
    invoice = open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))
    now = utc(2026, 3, 5, 16)
    attempt_id = charges._claim(invoice.id, now=now, gateway=current_gateway(), site=site())
    assert isinstance(attempt_id, int)
    with pytest.raises(DomainError, match="automatic card payment"):
        start_checkout(invoice.id, amount=invoice.total, gateway=current_gateway(), site=site(), now=now)
    assert "automatic card payment" in (refusal(db.session.get(Invoice, invoice.id)) or "")
    with pytest.raises(DomainError, match="autopay charge"):
        record_manual_payment(invoice.id, amount=invoice.total, method="cash", paid_on=date(2026, 3, 5),
                              reference="", actor=SYSTEM, now=now)
    assert db.session.scalars(db.select(Payment)).all() == []
    charges.record_outcome(attempt_id, ChargeResult(None, "failed", invoice.total, invoice.currency,
                                                    failure_code="card_declined",
                                                    failure_message="Your card was declined."),
                           now=now, gateway=current_gateway(), site=site())
    assert fresh(ChargeAttempt, attempt_id).status == "failed"
    started = start_checkout(invoice.id, amount=invoice.total, gateway=current_gateway(), site=site(), now=now)
    assert started.session_id
