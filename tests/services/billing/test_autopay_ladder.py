"""The autopay ladder, through time (time-machine) against the Stripe test server, emails through a real SMTP
server: charged on the due date; a soft decline retried 3, 7 and 14 days after the first failure, the admins and
the client told after the third, stopped after the fourth; a success on the second attempt paid through the money
door with a receipt; a hard decline stops at once and asks for another card; authentication required sends the
client the on-session pay link. Each attempt is a row (its own idempotency key and PaymentIntent) and an audit
event on the invoice's timeline with its decline code and next retry date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from invoicing.extensions import db
from invoicing.mail import deliver_due
from invoicing.models import Invoice, Payment
from invoicing.services.billing import autopay
from tests.conftest import login
from tests.services.billing.autopay_support import attempts, autopay_of, charge_now, stripe_card
from tests.services.billing.helpers import events, open_invoice, utc

DUE = date(2026, 3, 20)  # Org A is in New York: 09:00 on the due date is 13:00 UTC


def issue(world: Any) -> Invoice:
    """An invoice issued on March 5 (autopay already on: it is scheduled for its due date)."""
    return open_invoice(world.client_a, due=DUE, opened=utc(2026, 3, 5, 15))


def tick(time_machine: Any, *when: int) -> str | None:
    time_machine.move_to(utc(*when))
    return charge_now(datetime.now(UTC))


def mail(smtp: Any) -> list[tuple[str, str]]:
    deliver_due(now=datetime.now(UTC))
    return sorted((m["To"], m["Subject"]) for m in smtp.messages)


def test_a_soft_decline_is_retried_3_7_and_14_days_after_the_first_failure_then_stops(
        world, stripe_app, smtp, time_machine):
    card = stripe_card(stripe_app, world.client_a)
    invoice = issue(world)
    stripe_app.script_charges(card.provider_id, *["insufficient_funds"] * 4)

    assert tick(time_machine, 2026, 3, 20, 12, 55) is not None and attempts() == []  # not yet: 09:00 New York
    tick(time_machine, 2026, 3, 20, 13, 5)
    first, = attempts()
    assert (first.status, first.error_code, first.decline_kind, first.next_retry_at) == (
        "failed", "insufficient_funds", "soft", utc(2026, 3, 23, 13, 5))
    state = autopay_of(invoice.id)
    assert (state.status, state.next_charge_at, state.attempt_count) == ("scheduled", utc(2026, 3, 23, 13, 5), 1)
    assert not autopay.autopay_pending(invoice)  # a failed autopay gets the overdue reminders
    assert mail(smtp) == []  # nobody is bothered after one decline

    tick(time_machine, 2026, 3, 22, 13, 5)  # not due yet
    assert len(attempts()) == 1
    tick(time_machine, 2026, 3, 23, 13, 10)
    tick(time_machine, 2026, 3, 27, 13, 10)  # the third: 7 days after the first failure
    assert [a.next_retry_at for a in attempts()] == [utc(2026, 3, 23, 13, 5), utc(2026, 3, 27, 13, 5),
                                                      utc(2026, 4, 3, 13, 5)]
    assert mail(smtp) == [
        ("alice@a.test", f"Autopay declined 3 times: invoice {invoice.number} (Client A)"),
        ("clienta@clients.test", f"Your card was declined for invoice {invoice.number}"),
    ]
    client_email = next(m for m in smtp.messages if m["To"] == "clienta@clients.test")
    body = client_email.get_body(("plain",)).get_content()
    assert "We tried 3 times" in body and "We will try once more on Apr 3, 2026" in body
    assert "/pay/" in body and "/portal/payment-methods" in body

    tick(time_machine, 2026, 4, 3, 13, 10)  # the fourth and last
    tick(time_machine, 2026, 4, 20, 13, 10)  # nothing more, ever
    rows = attempts()
    assert [(a.attempt_number, a.status, a.error_code) for a in rows] == [
        (n, "failed", "insufficient_funds") for n in (1, 2, 3, 4)]
    assert len({a.idempotency_key for a in rows}) == 4 and len({a.payment_intent_id for a in rows}) == 4
    assert stripe_app.count("payment_intents") == 4
    state = autopay_of(invoice.id)
    assert (state.status, state.end_reason, state.next_charge_at, state.attempt_count) == (
        "failed", "retries_exhausted", None, 4)
    assert [e.details["next_retry"] for e in events("autopay.attempted", invoice.id)] == [
        "2026-03-23T13:05:00+00:00", "2026-03-27T13:05:00+00:00", "2026-04-03T13:05:00+00:00", None]
    assert [e.details["decline_code"] for e in events("autopay.attempted", invoice.id)] == ["insufficient_funds"] * 4
    assert len(events("autopay.retry_scheduled", invoice.id)) == 3
    final, = events("autopay.failed", invoice.id)
    assert final.details == {"reason": "retries_exhausted", "attempts": 4, "decline_code": "insufficient_funds"}
    assert len(mail(smtp)) == 2  # after the last attempt it stops: no more emails
    assert db.session.get(Invoice, invoice.id).status == "open"


def test_a_success_on_the_second_attempt_pays_through_the_money_door_with_a_receipt(
        client, world, stripe_app, smtp, time_machine):
    card = stripe_card(stripe_app, world.client_a)
    invoice = issue(world)
    stripe_app.script_charges(card.provider_id, "generic_decline", "succeeded")
    tick(time_machine, 2026, 3, 20, 13, 5)
    tick(time_machine, 2026, 3, 23, 13, 5)
    first, second = attempts()
    assert (first.status, second.status) == ("failed", "succeeded")
    payment, = db.session.query(Payment).all()
    assert (payment.status, payment.amount, payment.payment_intent_id, payment.idempotency_key) == (
        "succeeded", invoice.total, second.payment_intent_id, second.idempotency_key)
    assert payment.receipt_number and second.payment_id == payment.id
    assert db.session.get(Invoice, invoice.id).status == "paid"
    state = autopay_of(invoice.id)
    assert (state.status, state.attempt_count, state.payment_method_id) == ("succeeded", 2, card.id)
    succeeded, = events("autopay.succeeded", invoice.id)
    assert succeeded.details["attempt"] == 2 and succeeded.details["card"] == "Visa •••• 4242"
    [(to, subject)] = mail(smtp)
    assert to == "clienta@clients.test" and "receipt" in subject.lower()
    tick(time_machine, 2026, 3, 27, 13, 5)
    assert len(attempts()) == 2 and stripe_app.count("payment_intents") == 2

    login(client, world.alice)  # the timeline: each attempt, its code and the next try
    page = client.get(f"/admin/invoices/{invoice.id}").text
    assert "Autopay attempt 1 declined" in page and "generic_decline" in page and "next try Mar 23, 2026" in page
    assert "Autopay attempt 2 succeeded" in page


def test_a_hard_decline_stops_at_once_and_asks_for_another_card(world, stripe_app, smtp, time_machine):
    card = stripe_card(stripe_app, world.client_a)
    invoice = issue(world)
    stripe_app.script_charges(card.provider_id, "lost_card")
    tick(time_machine, 2026, 3, 20, 13, 5)
    tick(time_machine, 2026, 3, 23, 13, 5)
    only, = attempts()
    assert (only.status, only.error_code, only.decline_kind, only.next_retry_at) == (
        "failed", "lost_card", "hard", None)
    state = autopay_of(invoice.id)
    assert (state.status, state.end_reason) == ("failed", "hard_decline")
    [(to, subject)] = mail(smtp)
    assert (to, subject) == ("clienta@clients.test",
                             f"Your card was refused for invoice {invoice.number}: please use another card")
    assert "save a new card" in smtp.messages[0].get_body(("plain",)).get_content()


def test_authentication_required_sends_the_on_session_pay_link(world, stripe_app, smtp, time_machine):
    stripe_card(stripe_app, world.client_a, "4000002500003155")  # a 3D Secure card: off-session it must ask
    invoice = issue(world)
    tick(time_machine, 2026, 3, 20, 13, 5)
    tick(time_machine, 2026, 3, 23, 13, 5)
    only, = attempts()
    assert (only.status, only.error_code, only.decline_kind) == ("failed", "authentication_required", "authentication")
    assert autopay_of(invoice.id).end_reason == "authentication_required"
    [(to, subject)] = mail(smtp)
    assert (to, subject) == ("clienta@clients.test", f"Please confirm your payment for invoice {invoice.number}")
    body = smtp.messages[0].get_body(("plain",)).get_content()
    assert "your bank wants you to confirm this payment yourself" in body and "http://billing.test/pay/" in body
