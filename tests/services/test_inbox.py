"""services/inbox.py: events applied in any order, any number of times; state only moves forward."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, OutboxEmail, Refund, WebhookEvent
from invoicing.services import DomainError
from invoicing.services.checkout import start_checkout
from invoicing.services.inbox import get_event, list_events, reapply, receive
from tests.conftest import NOW, make_client, make_invoice
from tests.pay.support import (
    assert_invariants,
    event_body,
    fresh,
    payment_inserts_fail,
    payments_of,
    receipts,
    site,
    stripe_gateway,
    stripe_object,
    stripe_signature,
)


@pytest.fixture
def stripe(stripe_server: Any) -> Any:
    stripe_server.reset()
    yield stripe_server
    stripe_server.reset()


def paid(stripe_server: Any, invoice: Any, amount: int | None = None) -> dict[str, dict[str, Any]]:
    """Pay the invoice at the Stripe test server; return its session, payment intent and charge objects."""
    started = start_checkout(invoice.id, amount=amount or invoice.amount_due, gateway=stripe_gateway(stripe_server),
                             site=site(), now=NOW)
    stripe_server.pay(started.session_id)
    session = stripe_object(stripe_server, f"/v1/checkout/sessions/{started.session_id}")
    intent = stripe_object(stripe_server, f"/v1/payment_intents/{session['payment_intent']}")
    charge_id = intent["latest_charge"]["id"] if isinstance(intent["latest_charge"], dict) else intent["latest_charge"]
    return {"session": session, "intent": intent, "charge": stripe_object(stripe_server, f"/v1/charges/{charge_id}")}


def send(stripe_server: Any, type_: str, obj: dict[str, Any], event_id: str | None = None) -> Any:
    raw = event_body(type_, obj, event_id)
    return receive("stripe", raw, stripe_signature(raw), gateway=stripe_gateway(stripe_server), site=site(), now=NOW)


def test_it_records_one_payment_when_the_intent_succeeds_before_the_session_completes(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    objects = paid(stripe, invoice)
    assert send(stripe, "payment_intent.succeeded", objects["intent"]).status == "processed"
    first, = payments_of(invoice)
    assert (first.status, first.payment_intent_id) == ("succeeded", objects["intent"]["id"])
    assert send(stripe, "checkout.session.completed", objects["session"]).status == "processed"
    payment, = payments_of(invoice)
    assert payment.checkout_session_id == objects["session"]["id"] and payment.charge_id == objects["charge"]["id"]
    assert fresh(invoice).status == "paid" and len(receipts()) == 1
    assert_invariants()


def test_it_records_a_refund_failure_that_arrives_before_the_refund_and_the_payment(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    objects = paid(stripe, invoice)
    charge_id = objects["charge"]["id"]
    made = stripe_gateway(stripe).refund(amount=27000, currency="USD", idempotency_key="r", charge_id=charge_id,
                                         reason="Duplicate order")
    refunded = stripe_object(stripe, f"/v1/charges/{charge_id}")  # charge.refunded as sent when it was made
    failed = stripe.fail_refund(made.id)
    first = send(stripe, "refund.failed", failed)  # the first event we hear about any of it
    assert (first.status, first.http_status) == ("processed", 200)

    def check() -> None:
        payment, = payments_of(invoice)  # recorded from the charge: a refunded charge had succeeded
        assert (payment.status, payment.amount, payment.amount_refunded) == ("succeeded", 27000, 0)
        refund, = db.session.scalars(select(Refund))
        assert (refund.provider_refund_id, refund.status, refund.amount, refund.reason, refund.failure_reason) == (
            made.id, "failed", 27000, "Duplicate order", "expired_or_canceled_card")
        assert (fresh(invoice).status, fresh(invoice).amount_paid) == ("paid", 27000)
        assert [e.to_addr for e in db.session.scalars(select(OutboxEmail).where(
            OutboxEmail.kind == "refund_failed"))] == [world.alice.email]
        assert db.session.scalars(select(AuditEvent.details).where(
            AuditEvent.action == "payment.refund_failed")).one()["restored"] == 0

    check()
    later = [("charge.refunded", refunded), ("checkout.session.completed", objects["session"]),
             ("refund.updated", failed), ("charge.refund.updated", failed), ("payment_intent.succeeded",
                                                                          objects["intent"])]
    assert [send(stripe, type_, obj).status for type_, obj in later] == ["processed"] * 5
    check()  # the refund heard after its failure (still "succeeded" in that old event) moved nothing
    assert len(receipts()) == 1
    assert_invariants()


def test_it_records_a_refund_that_arrives_before_the_payment(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    objects = paid(stripe, invoice)
    stripe_gateway(stripe).refund(amount=5000, currency="USD", idempotency_key="r", charge_id=objects["charge"]["id"])
    refunded = stripe_object(stripe, f"/v1/charges/{objects['charge']['id']}")
    assert send(stripe, "charge.refunded", refunded).status == "processed"
    payment, = payments_of(invoice)
    assert (payment.status, payment.amount, payment.amount_refunded) == ("partially_refunded", 27000, 5000)
    later = (("payment_intent.succeeded", objects["intent"]), ("checkout.session.completed", objects["session"]),
             ("charge.refunded", refunded))
    for type_, obj in later:
        assert send(stripe, type_, obj).status == "processed"
    payment, = payments_of(invoice)
    assert (payment.status, payment.amount_refunded, payment.checkout_session_id) == (
        "partially_refunded", 5000, objects["session"]["id"])
    assert fresh(invoice).amount_paid == 22000 and db.session.query(Refund).count() == 1
    assert_invariants()


def test_it_never_moves_a_payment_backwards(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    objects = paid(stripe, invoice)
    send(stripe, "checkout.session.completed", objects["session"])
    late = {**objects["intent"], "status": "requires_payment_method",
            "last_payment_error": {"code": "card_declined", "message": "Your card was declined."}}
    send(stripe, "payment_intent.payment_failed", late)
    send(stripe, "payment_intent.processing", {**objects["intent"], "status": "processing"})
    payment, = payments_of(invoice)
    assert (payment.status, payment.failure_code) == ("succeeded", None) and fresh(invoice).status == "paid"
    assert_invariants()


def test_it_reapplies_a_failed_event_but_not_a_processed_one(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    objects = paid(stripe, invoice)
    with payment_inserts_fail():
        failed = send(stripe, "checkout.session.completed", objects["session"], event_id="evt_x")
    assert (failed.status, failed.http_status) == ("failed", 500)
    row = db.session.scalar(select(WebhookEvent))
    again = reapply(row.id, gateway=stripe_gateway(stripe), site=site(), now=NOW)
    assert again.status == "processed" and [p.status for p in payments_of(invoice)] == ["succeeded"]
    with pytest.raises(DomainError, match="already processed"):
        reapply(row.id, gateway=stripe_gateway(stripe), site=site(), now=NOW)
    assert_invariants()


def test_it_shows_an_organization_its_events_however_many_another_one_has(stripe, world):
    mine = make_invoice(world.client_a, status="open")
    send(stripe, "checkout.session.completed", paid(stripe, mine)["session"])
    for n in range(12):  # a busy neighbour: more than three pages of the inbox's old "read 3 x limit" window
        send(stripe, "customer.created", {"id": f"cus_{n}", "object": "customer"})
    rows = list_events(world.org_a.id, limit=4)
    assert [(r.event.type, r.invoice.id) for r in rows] == [("checkout.session.completed", mine.id)]
    stored = db.session.execute(
        select(WebhookEvent).where(WebhookEvent.type == "checkout.session.completed")).scalar_one()
    assert (stored.invoice_id, stored.organization_id) == (mine.id, world.org_a.id)
    assert len(list_events(None, limit=4)) == 4


def test_it_files_another_installations_event_under_no_organization(stripe, world):
    mine = make_invoice(world.client_a, status="open")
    # Two installations share one Stripe account: theirs has an invoice with our invoice's id, not its public id.
    foreign = {"id": "cs_other_install", "object": "checkout.session", "status": "complete", "payment_status": "paid",
               "amount_total": 27000, "currency": "usd",
               "metadata": {"invoice_id": str(mine.id), "invoice_public_id": "f" * 32}}
    assert send(stripe, "checkout.session.completed", foreign).status == "ignored"
    stored = db.session.execute(select(WebhookEvent)).scalar_one()
    assert (stored.invoice_id, stored.organization_id) == (None, None)
    assert list_events(world.org_a.id) == [] and payments_of(mine) == []


def test_it_shows_staff_only_the_events_about_their_organization(stripe, world):
    mine = make_invoice(world.client_a, status="open")
    theirs = make_invoice(make_client(world.org_b, "B2"), status="open")
    for invoice in (mine, theirs):
        send(stripe, "checkout.session.completed", paid(stripe, invoice)["session"])
    send(stripe, "customer.created", {"id": "cus_1", "object": "customer"})
    rows = list_events(world.org_a.id)
    assert [(r.event.type, r.invoice.id) for r in rows] == [("checkout.session.completed", mine.id)]
    assert len(list_events(None)) == 3  # a superadmin sees everything, unrelated events too
    assert list_events(world.org_a.id, status="failed") == []
    other = next(r for r in list_events(None) if r.invoice and r.invoice.id == theirs.id)
    with pytest.raises(DomainError):
        get_event(world.org_a.id, other.event.id)


def test_a_payment_intent_event_is_stored_applied_and_queued_in_one_transaction(stripe, world):
    """payment_intent.succeeded: the event, the payment (numbered), its audit row and the receipt, which names the
    receipt number and the card (asked before the transaction); a duplicate changes nothing. (All or nothing:
    the next test.)"""
    invoice = make_invoice(world.client_a, status="open")
    intent = paid(stripe, invoice)["intent"]
    first = send(stripe, "payment_intent.succeeded", intent, event_id="evt_once")
    assert (first.status, first.http_status) == ("processed", 200)
    payment, = payments_of(invoice)
    receipt, = receipts()
    assert payment.receipt_number == "R-000001" and payment.method_label == "Visa •••• 4242"
    assert "R-000001" in receipt.subject and "R-000001" in receipt.text_body and "Visa •••• 4242" in receipt.text_body
    row = db.session.scalar(select(WebhookEvent))
    assert (row.status, row.attempts, row.invoice_id) == ("processed", 1, invoice.id)
    again = send(stripe, "payment_intent.succeeded", intent, event_id="evt_once")
    assert (again.status, again.note) == ("duplicate", "processed") and len(payments_of(invoice)) == 1
    assert_invariants()


def test_a_failure_in_the_one_transaction_keeps_nothing_but_the_failed_event(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    intent = paid(stripe, invoice)["intent"]
    with payment_inserts_fail():
        failed = send(stripe, "payment_intent.succeeded", intent, event_id="evt_fails")
    assert (failed.status, failed.http_status) == ("failed", 500)
    row = db.session.scalar(select(WebhookEvent))
    assert (row.status, row.attempts) == ("failed", 1) and "injected fault" in (row.error or "")
    assert payments_of(invoice) == [] and receipts() == [] and fresh(invoice).status == "open"
    retried = send(stripe, "payment_intent.succeeded", intent, event_id="evt_fails")  # the provider retries
    assert retried.status == "processed" and [p.status for p in payments_of(invoice)] == ["succeeded"]
    assert db.session.scalar(select(WebhookEvent.attempts)) == 2 and len(receipts()) == 1
    assert_invariants()


def test_a_payment_intent_event_costs_a_bounded_number_of_statements(stripe, world):
    """The inbox's throughput is mostly its statements (issue 14): the rows its transaction locked or wrote are
    not read again, the receipt's counter is one UPDATE ... RETURNING, the receipt one INSERT ... ON CONFLICT, the
    webhook endpoints are read once. The event's one transaction (store, apply, number, queue the receipt) took
    34 statements before, 22 now (21 once the receipt counter exists); a new read in that path fails this."""
    invoice = make_invoice(world.client_a, status="open")
    intent = paid(stripe, invoice)["intent"]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split())[:80])

    def committed(_conn: Any) -> None:
        statements.append("COMMIT")

    event.listen(db.engine, "before_cursor_execute", count)
    event.listen(db.engine, "commit", committed)
    try:
        delivered = send(stripe, "payment_intent.succeeded", intent, event_id="evt_counted")
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
        event.remove(db.engine, "commit", committed)
    assert delivered.status == "processed"
    payment, = payments_of(invoice)
    receipt, = receipts()
    assert payment.receipt_number == "R-000001" and "R-000001" in receipt.text_body
    assert payment.method_label == "Visa •••• 4242" and "Visa •••• 4242" in receipt.text_body
    assert fresh(invoice).status == "paid" and fresh(invoice).amount_paid == payment.amount
    assert db.session.scalar(select(WebhookEvent.invoice_id)) == invoice.id
    start = next(n for n, s in enumerate(statements) if s.startswith("INSERT INTO webhook_event"))
    transaction = statements[start:statements.index("COMMIT", start)]
    assert transaction[-1].startswith("INSERT INTO outbox_email")  # the receipt, queued last
    assert len(transaction) <= 22, "\n".join(transaction)
    assert_invariants()
