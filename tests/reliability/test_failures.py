"""Forged events, a failure while applying, the webhook down entirely, SMTP down during the receipt."""

from __future__ import annotations

import time
import urllib.request
from datetime import timedelta

from invoicing.mail import deliver_due
from invoicing.models import OutboxEmail
from tests.pay.support import (
    assert_invariants,
    event_body,
    fresh,
    live_invoice,
    payment_inserts_fail,
    payments_of,
    post,
    real_now,
    receipts,
    stripe_object,
    stripe_signature,
    wait_until,
)
from tests.reliability.helpers import event_rows, open_checkout, settled_payments, wait_for_event


def test_a_forged_or_stale_signature_gets_400_and_writes_nothing(stripe_server, stripe_live, world):
    stripe_server.fault(webhooks="pause")
    invoice = live_invoice(world.client_a)
    started = open_checkout(stripe_server, stripe_live, invoice)
    stripe_server.pay(started.session_id)
    raw = event_body("checkout.session.completed",
                     stripe_object(stripe_server, f"/v1/checkout/sessions/{started.session_id}"))
    url = f"{stripe_live.url}/webhooks/stripe"
    forged = post(url, raw, {"Stripe-Signature": stripe_signature(raw, secret="whsec_forger")})
    stale = post(url, raw, {"Stripe-Signature": stripe_signature(raw, timestamp=int(time.time()) - 301)})
    bare = post(url, raw, {})
    assert [forged[0], stale[0], bare[0]] == [400, 400, 400]
    assert event_rows() == [] and payments_of(invoice) == [] and fresh(invoice).status == "open"
    assert_invariants()


def test_a_failure_while_applying_answers_5xx_and_the_redelivery_applies_it(stripe_server, stripe_live, world):
    invoice = live_invoice(world.client_a)
    started = open_checkout(stripe_server, stripe_live, invoice)
    with payment_inserts_fail():
        stripe_server.pay(started.session_id)
        failed = wait_for_event("checkout.session.completed", status="failed")[0]
        wait_for_event("payment_intent.succeeded", status="failed")
    assert "injected fault" in failed.error and payments_of(invoice) == []
    raw = failed.payload.encode()  # Stripe redelivers the same event, newly signed
    status, body = post(f"{stripe_live.url}/webhooks/stripe", raw, {"Stripe-Signature": stripe_signature(raw)})
    assert (status, b'"processed"' in body) == (200, True)
    payment, = payments_of(invoice)
    assert payment.status == "succeeded" and fresh(invoice).status == "paid"
    assert {e.type: e.status for e in event_rows()}["checkout.session.completed"] == "processed"
    # The other failed event is left for the provider's retry (or the reconcile job): it is marked, not lost.
    assert {e.type: e.status for e in event_rows()}["payment_intent.succeeded"] == "failed"
    assert_invariants()


def test_the_return_page_records_the_payment_when_webhooks_are_down(stripe_server, stripe_live, world):
    stripe_server.fault(webhooks="pause")
    invoice = live_invoice(world.client_a)
    started = open_checkout(stripe_server, stripe_live, invoice)
    with urllib.request.urlopen(stripe_server.pay(started.session_id), timeout=30) as response:
        page = response.read().decode()
    assert "Payment received, thank you" in page
    payment, = payments_of(invoice)
    assert payment.status == "succeeded" and fresh(invoice).status == "paid" and len(receipts()) == 1
    assert event_rows() == []
    stripe_server.fault(webhooks="resume")  # the webhook comes back later: nothing changes twice
    wait_for_event("checkout.session.completed")
    wait_for_event("payment_intent.succeeded")
    assert payments_of(invoice) == [payment] and len(receipts()) == 1
    assert_invariants()


def test_smtp_down_during_the_receipt_keeps_the_payment_and_sends_the_receipt_later_once(
        app, stripe_server, stripe_live, world, smtp):
    invoice = live_invoice(world.client_a)
    started = open_checkout(stripe_server, stripe_live, invoice)
    stripe_server.pay(started.session_id)
    settled_payments(invoice)
    receipt = wait_until(lambda: receipts()[0] if receipts() else None, what="the receipt in the outbox")
    app.config["MAIL_PORT"] = smtp.closed_port  # the mail server is down
    now = real_now()
    report = deliver_due(now=now)
    assert (report.sent, report.retrying) == (0, 1)
    db_receipt = wait_until(lambda: fresh_email(receipt.id))
    assert db_receipt.status == "queued" and db_receipt.attempts == 1 and smtp.messages == []
    assert fresh(invoice).status == "paid" and len(payments_of(invoice)) == 1

    app.config["MAIL_PORT"] = smtp.port  # back up
    assert deliver_due(now=now + timedelta(minutes=2)).sent == 1
    assert deliver_due(now=now + timedelta(hours=1)).sent == 0
    message, = smtp.wait_for(1)
    assert message["To"] == "clienta@clients.test" and message["Subject"].startswith("Receipt R-")
    assert payments_of(invoice)[0].receipt_number in message.get_body(("plain",)).get_content()
    assert_invariants()


def fresh_email(email_id: int) -> OutboxEmail | None:
    from invoicing.extensions import db

    return db.session.get(OutboxEmail, email_id)
