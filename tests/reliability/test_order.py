"""Events out of order, replayed from the Stripe test server's real deliveries."""

from __future__ import annotations

from tests.pay.support import (
    WebhookCapture,
    assert_invariants,
    fresh,
    live_invoice,
    payments_of,
    post,
    receipts,
    stripe_gateway,
    stripe_signature,
)
from tests.reliability.helpers import event_rows, open_checkout


def capture_payment(stripe_server, live, invoice):
    """Pay the invoice while the test server delivers to a capture instead of the app."""
    capture = WebhookCapture()
    stripe_server.unregister_webhooks("invoicing-app")
    stripe_server.register_webhook(capture.url, "whsec_capture", id="capture")
    started = open_checkout(stripe_server, live, invoice)
    stripe_server.pay(started.session_id)
    return capture, started


def replay(live, raw: bytes) -> int:
    status, _ = post(f"{live.url}/webhooks/stripe", raw, {"Stripe-Signature": stripe_signature(raw)})
    return status


def test_it_records_one_payment_when_the_intent_succeeds_before_the_session_completes(stripe_server, stripe_live,
                                                                                      world):
    invoice = live_invoice(world.client_a)
    capture, started = capture_payment(stripe_server, stripe_live, invoice)
    try:
        succeeded, = capture.wait_for("payment_intent.succeeded")
        completed, = capture.wait_for("checkout.session.completed")
    finally:
        stripe_server.unregister_webhooks("capture")
        capture.close()
    assert [replay(stripe_live, raw) for raw in (succeeded, completed, succeeded)] == [200, 200, 200]
    payment, = payments_of(invoice)
    assert (payment.status, payment.checkout_session_id) == ("succeeded", started.session_id)
    assert fresh(invoice).status == "paid" and len(receipts()) == 1
    assert [e.status for e in event_rows()] == ["processed", "processed"]
    assert_invariants()


def test_it_records_a_refund_that_arrives_before_the_payment_succeeded(stripe_server, stripe_live, world):
    invoice = live_invoice(world.client_a)
    capture, started = capture_payment(stripe_server, stripe_live, invoice)
    try:
        intent_id = stripe_gateway(stripe_server).retrieve_checkout(started.session_id).payment_intent_id
        stripe_gateway(stripe_server).refund(amount=7000, currency="USD", idempotency_key="early",
                                             payment_intent_id=intent_id)
        refunded, = capture.wait_for("charge.refunded")
        succeeded, = capture.wait_for("payment_intent.succeeded")
        completed, = capture.wait_for("checkout.session.completed")
    finally:
        stripe_server.unregister_webhooks("capture")
        capture.close()
    assert [replay(stripe_live, raw) for raw in (refunded, succeeded, completed, refunded)] == [200] * 4
    payment, = payments_of(invoice)
    assert (payment.status, payment.amount, payment.amount_refunded) == ("partially_refunded", 27000, 7000)
    assert (fresh(invoice).status, fresh(invoice).amount_paid) == ("open", 20000)
    assert_invariants()
