"""Autopay when things break, against the Stripe test server: a 500 or a dropped connection leaves the attempt
pending (never failed, never retried with a new key) and reconciliation settles it with the same key; a scheduler
killed between the provider call and its commit, then reconciliation, gives one charge. The provider's webhooks
for off-session charges (payment_intent.succeeded / .payment_failed, charge.refunded) go through the same inbox
and door: heard before, after or instead of the job's own answer, each is recorded once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from invoicing.extensions import db
from invoicing.gateways import current_gateway
from invoicing.models import Invoice, Payment, Refund
from invoicing.services.billing.charges import settle_pending
from invoicing.services.inbox import receive
from invoicing.services.reconcile import reconcile
from tests.pay.support import WebhookCapture, assert_invariants, site, stripe_env, stripe_signature
from tests.services.billing.autopay_support import attempts, autopay_of, charge_now, stripe_card
from tests.services.billing.helpers import events, open_invoice, utc

ROOT = Path(__file__).resolve().parents[3]
DUE_AT = utc(2026, 3, 20, 13, 5)  # 09:05 in New York on the due date


def issue(world: Any) -> Invoice:
    return open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))


def lose_the_answer(stripe_app: Any) -> None:
    """The server charges, then the connection drops; the SDK's own retries (same key) get 500s."""
    stripe_app.fault(path_prefix="/v1/payment_intents", method="POST", mode="drop_after", count=1)
    stripe_app.fault(path_prefix="/v1/payment_intents", method="POST", mode="error_500", count=10)


def test_the_sdk_retry_after_a_dropped_answer_gets_the_first_outcome(world, stripe_app):
    stripe_card(stripe_app, world.client_a)
    invoice = issue(world)
    stripe_app.fault(path_prefix="/v1/payment_intents", method="POST", mode="drop_after", count=1)
    charge_now(DUE_AT)
    assert attempts()[0].status == "succeeded" and stripe_app.count("payment_intents") == 1
    assert db.session.get(Invoice, invoice.id).status == "paid"


def test_a_provider_500_leaves_the_attempt_pending_and_reconciliation_charges_once(world, stripe_app):
    stripe_card(stripe_app, world.client_a)
    invoice = issue(world)
    stripe_app.fault(path_prefix="/v1/payment_intents", method="POST", mode="error_500", count=20)
    charge_now(DUE_AT)
    pending, = attempts()
    assert pending.status == "pending" and autopay_of(invoice.id).status == "processing"
    charge_now(DUE_AT + timedelta(minutes=15))  # the next tick neither fails it nor sends a second attempt
    assert len(attempts()) == 1 and attempts()[0].status == "pending"
    assert stripe_app.count("payment_intents") == 0

    stripe_app.clear_faults()
    report = reconcile(gateway=current_gateway(), site=site(), now=DUE_AT + timedelta(minutes=30))
    assert report.charges == 1
    done, = attempts()
    assert (done.status, done.idempotency_key) == ("succeeded", pending.idempotency_key)
    assert stripe_app.count("payment_intents") == 1
    assert db.session.get(Invoice, invoice.id).status == "paid"
    assert_invariants()


def test_a_lost_answer_is_replayed_with_the_same_key_and_never_charges_twice(world, stripe_app):
    stripe_card(stripe_app, world.client_a)
    invoice = issue(world)
    lose_the_answer(stripe_app)
    charge_now(DUE_AT)
    assert attempts()[0].status == "pending" and stripe_app.count("payment_intents") == 1
    stripe_app.clear_faults()
    assert settle_pending(now=DUE_AT + timedelta(minutes=1), gateway=current_gateway(), site=site()) == 0  # grace
    assert settle_pending(now=DUE_AT + timedelta(minutes=5), gateway=current_gateway(), site=site()) == 1
    assert attempts()[0].status == "succeeded" and stripe_app.count("payment_intents") == 1
    payment, = db.session.query(Payment).all()
    assert payment.payment_intent_id == attempts()[0].payment_intent_id
    assert db.session.get(Invoice, invoice.id).status == "paid"


def test_a_scheduler_killed_between_the_charge_and_its_commit_then_reconcile_gives_one_charge(app, world, stripe_app):
    stripe_card(stripe_app, world.client_a)
    invoice_id = issue(world).id
    # The charge is made and remembered at the server, but its answer takes 30 s: the worker dies waiting.
    stripe_app.fault(path_prefix="/v1/payment_intents", method="POST", mode="delay_after", seconds=30)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    db.session.remove()
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.scheduler_worker", url, DUE_AT.isoformat(), json.dumps(stripe_env(stripe_app))],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while stripe_app.count("payment_intents") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stripe_app.count("payment_intents") == 1, "the worker never reached the provider"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    pending, = attempts()
    assert pending.status == "pending" and autopay_of(invoice_id).status == "processing"  # written before the call

    stripe_app.clear_faults()
    report = reconcile(gateway=current_gateway(), site=site(), now=DUE_AT + timedelta(minutes=10))
    assert report.charges == 1
    assert attempts()[0].status == "succeeded" and stripe_app.count("payment_intents") == 1
    assert db.session.get(Invoice, invoice_id).status == "paid"
    assert len(events("autopay.succeeded", invoice_id)) == 1
    assert_invariants()


def deliver(raw: bytes) -> Any:
    return receive("stripe", raw, stripe_signature(raw), gateway=current_gateway(), site=site(),
                   now=DUE_AT + timedelta(minutes=1))


def test_webhooks_of_autopay_charges_are_recorded_once_with_the_job_and_refunds_go_through_the_door(
        world, stripe_app):
    capture = WebhookCapture()
    stripe_app.register_webhook(capture.url, "whsec_test_invoicing_app", id="autopay-capture")
    try:
        card = stripe_card(stripe_app, world.client_a)
        declined, paid = issue(world), issue(world)
        stripe_app.script_charges(card.provider_id, "insufficient_funds", "succeeded")
        charge_now(DUE_AT)
        failed_event, = capture.wait_for("payment_intent.payment_failed")
        succeeded_event, = capture.wait_for("payment_intent.succeeded")
        # Each heard twice more (redelivery): the job already recorded both; nothing changes.
        for raw in (failed_event, succeeded_event):
            assert deliver(raw).status == "processed"
        first, second = attempts()
        assert (first.invoice_id, first.status, second.invoice_id, second.status) == (
            declined.id, "failed", paid.id, "succeeded")
        assert autopay_of(declined.id).attempt_count == 1 and len(events("autopay.attempted", declined.id)) == 1
        assert db.session.query(Payment).count() == 1

        from tests.pay.support import stripe_gateway
        stripe_gateway(stripe_app).refund(amount=500, currency="USD", idempotency_key="refund-autopay-1",
                                          payment_intent_id=second.payment_intent_id, reason="goodwill")
        refunded, = capture.wait_for("charge.refunded")
        assert deliver(refunded).status == "processed"
        refund, = db.session.query(Refund).all()
        assert (refund.amount, refund.payment_id) == (500, second.payment_id)
        assert db.session.get(Invoice, paid.id).status == "open"  # 5.00 short again after the refund
        assert_invariants()
    finally:
        stripe_app.unregister_webhooks("autopay-capture")
        capture.close()


def test_the_webhook_alone_records_an_autopay_charge_whose_answer_was_lost(world, stripe_app):
    capture = WebhookCapture()
    stripe_app.register_webhook(capture.url, "whsec_test_invoicing_app", id="autopay-capture")
    try:
        stripe_card(stripe_app, world.client_a)
        invoice = issue(world)
        lose_the_answer(stripe_app)
        charge_now(DUE_AT)
        assert attempts()[0].status == "pending"
        raw, = capture.wait_for("payment_intent.succeeded")
        assert deliver(raw).status == "processed"
        done, = attempts()
        assert done.status == "succeeded" and db.session.get(Invoice, invoice.id).status == "paid"
        stripe_app.clear_faults()
        assert settle_pending(now=DUE_AT + timedelta(minutes=10), gateway=current_gateway(), site=site()) == 0
        assert stripe_app.count("payment_intents") == 1 and db.session.query(Payment).count() == 1
    finally:
        stripe_app.unregister_webhooks("autopay-capture")
        capture.close()


def test_a_card_is_never_charged_inside_an_open_transaction(world, stripe_app):
    """The attempt row and its key must be committed before the provider is called: called from inside another
    transaction (whose commit could still be lost), the charge is refused and nothing reaches the provider."""
    import pytest

    from invoicing.services.billing.charges import charge_invoice
    from invoicing.services.db import atomic

    stripe_card(stripe_app, world.client_a)
    invoice = issue(world)
    with pytest.raises(RuntimeError, match="outside a transaction"), atomic():
        charge_invoice(invoice.id, now=DUE_AT, gateway=current_gateway(), site=site())
    assert stripe_app.count("payment_intents") == 0
    assert attempts() == [] and db.session.get(Invoice, invoice.id).status == "open"
