"""services/reconcile.py: what the provider knows and we missed is looked up and applied (job `reconcile`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import CheckoutSession, OutboxEmail, WebhookEvent
from invoicing.services.checkout import start_checkout
from invoicing.services.inbox import receive
from invoicing.services.reconcile import reconcile
from tests.conftest import NOW, make_invoice
from tests.pay.support import (
    assert_invariants,
    event_body,
    fresh,
    pay_path,
    payment_inserts_fail,
    payments_of,
    receipts,
    sandbox,
    site,
    stripe_gateway,
    stripe_object,
    stripe_signature,
)

LATER = datetime.now(UTC) + timedelta(days=2)  # past every session's expiry (the test server runs on real time)


@pytest.fixture
def stripe(stripe_server: Any) -> Any:
    stripe_server.reset()
    yield stripe_server
    stripe_server.reset()


def session_status(session_id: str) -> str:
    db.session.expire_all()
    return db.session.scalar(select(CheckoutSession.status).where(CheckoutSession.session_id == session_id))


def test_it_records_a_payment_nobody_told_us_about(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    gateway = stripe_gateway(stripe)
    started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    stripe.pay(started.session_id)  # no webhook, the client closed the tab before the return page
    unpaid = start_checkout(make_invoice(world.client_a, status="open").id, amount=27000, gateway=gateway,
                            site=site(), now=NOW)
    report = reconcile(gateway=gateway, site=site(), now=LATER)
    assert (report.sessions, report.errors) == (2, [])
    assert [p.status for p in payments_of(invoice)] == ["succeeded"] and fresh(invoice).status == "paid"
    assert len(receipts()) == 1
    assert session_status(started.session_id) == "complete"
    assert session_status(unpaid.session_id) == "open"  # still open at the provider until its own expiry
    assert_invariants()


def test_it_expires_open_sessions_of_paid_or_void_invoices(world):
    gateway = sandbox()
    invoice = make_invoice(world.client_a, status="open")
    started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    from invoicing.services.payments import record_manual_payment
    from tests.conftest import SYSTEM

    record_manual_payment(invoice.id, amount=27000, method="cash", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW)
    assert reconcile(gateway=gateway, site=site(), now=NOW, dry_run=True).sessions == 1
    assert session_status(started.session_id) == "open"
    reconcile(gateway=gateway, site=site(), now=NOW)
    assert session_status(started.session_id) == "expired"
    assert gateway.retrieve_checkout(started.session_id).status == "expired"


def test_it_settles_processing_payments_with_what_the_provider_says(stripe, world):
    gateway = stripe_gateway(stripe)
    paid, failed = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    sessions = []
    for invoice in (paid, failed):
        started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
        stripe.pay(started.session_id, card="4000000000000077")
        sessions.append(started.session_id)
    reconcile(gateway=gateway, site=site(), now=LATER)
    assert fresh(paid).status == fresh(failed).status == "processing"
    stripe.settle(sessions[0], "succeeded")
    stripe.settle(sessions[1], "failed")
    report = reconcile(gateway=gateway, site=site(), now=LATER)
    assert report.payments == 2 and report.errors == []
    assert (fresh(paid).status, fresh(failed).status) == ("paid", "open")
    assert [p.status for p in payments_of(failed)] == ["failed"]
    email, = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "payment_failed"))
    assert email.invoice_id == failed.id and len(receipts()) == 1
    assert_invariants()


def test_it_reapplies_failed_inbox_events(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    gateway = stripe_gateway(stripe)
    started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    stripe.pay(started.session_id)
    raw = event_body("checkout.session.completed", stripe_object(stripe, f"/v1/checkout/sessions/{started.session_id}"))
    with payment_inserts_fail():
        receive("stripe", raw, stripe_signature(raw), gateway=gateway, site=site(), now=NOW)
        report = reconcile(gateway=gateway, site=site(), now=NOW)  # still failing: counted, kept failed
    assert report.events == 1 and report.errors
    assert db.session.scalar(select(WebhookEvent.attempts)) == 2
    reconcile(gateway=gateway, site=site(), now=NOW)
    assert db.session.scalar(select(WebhookEvent.status)) == "processed"
    assert [p.status for p in payments_of(invoice)] == ["succeeded"]
    assert_invariants()


def test_it_queues_a_receipt_that_never_reached_the_outbox(world):
    gateway = sandbox()
    invoice = make_invoice(world.client_a, status="open")
    started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    gateway.pay(started.session_id, card="4242424242424242", email="")
    db.session.execute(OutboxEmail.__table__.delete())  # as if we crashed between payment and receipt
    db.session.commit()
    now = payments_of(invoice)[0].created_at
    assert reconcile(gateway=gateway, site=site(), now=now, dry_run=True).receipts == 1
    assert receipts() == []
    assert reconcile(gateway=gateway, site=site(), now=now).receipts == 1
    assert reconcile(gateway=gateway, site=site(), now=now).receipts == 0
    assert len(receipts()) == 1


def test_it_is_a_job_and_a_cli_command(runner, world):
    result = runner.invoke(args=["billing", "reconcile", "--dry-run"])
    assert result.exit_code == 0 and "reconcile would look at 0 checkout session(s)" in result.output
    result = runner.invoke(args=["billing", "reconcile"])
    assert result.exit_code == 0 and "reconcile looked at" in result.output


def test_the_sandbox_bank_settles_waiting_payments_after_a_while(runner, world, time_machine):
    gateway = sandbox()
    invoice = make_invoice(world.client_a, status="open")
    started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    gateway.pay(started.session_id, card="4000000000000077", email="")
    assert "settled 0 payment(s)" in runner.invoke(args=["billing", "sandbox-settle"]).output
    time_machine.move_to(datetime.now(UTC) + timedelta(minutes=3))
    assert "settled 1 payment(s)" in runner.invoke(args=["billing", "sandbox-settle"]).output
    assert fresh(invoice).status == "paid" and len(receipts()) == 1


def test_it_finds_a_paid_session_within_minutes_when_the_webhook_and_the_return_page_are_lost(
        runner, client, world, stripe_app, time_machine):
    time_machine.move_to(NOW, tick=True)  # the pay link is valid then (the Stripe test server runs on real time)
    invoice = make_invoice(world.client_a, status="open")
    client.post(pay_path(invoice))  # Pay now on the pay page; the app hears nothing after this
    session_id = db.session.scalar(select(CheckoutSession.session_id))
    stripe_app.pay(session_id)
    untouched = runner.invoke(args=["billing", "reconcile"])  # within the grace: the client may still be typing
    assert "looked at 0 checkout session(s)" in untouched.output and fresh(invoice).status == "open"

    time_machine.move_to(NOW + timedelta(minutes=4), tick=True)
    result = runner.invoke(args=["billing", "reconcile"])
    assert result.exit_code == 0 and "looked at 1 checkout session(s)" in result.output
    payment, = payments_of(invoice)
    assert (payment.status, payment.checkout_session_id) == ("succeeded", session_id)
    assert fresh(invoice).status == "paid" and session_status(session_id) == "complete"
    assert [r.dedupe_key for r in receipts()] == [f"receipt:{payment.id}"]
    time_machine.move_to(NOW + timedelta(minutes=14), tick=True)  # the next run: nothing left to ask about
    assert "looked at 0 checkout session(s)" in runner.invoke(args=["billing", "reconcile"]).output
    assert_invariants()
