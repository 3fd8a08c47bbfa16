"""Duplicate deliveries of one event, one after another and all at once: one payment, one receipt."""

from __future__ import annotations

import threading
from collections import Counter

from tests.conftest import make_client
from tests.pay.support import (
    assert_invariants,
    event_body,
    fresh,
    live_invoice,
    payments_of,
    post,
    receipts,
    stripe_object,
    stripe_signature,
)
from tests.reliability.helpers import event_rows, open_checkout, settled_payments, wait_for_event


def test_it_applies_a_triplicated_delivery_once(stripe_server, stripe_live, world):
    stripe_server.fault(webhook_duplicates=2)  # every event is delivered three times
    invoice = live_invoice(world.client_a)
    started = open_checkout(stripe_server, stripe_live, invoice)
    stripe_server.pay(started.session_id)
    wait_for_event("checkout.session.completed")
    wait_for_event("payment_intent.succeeded")
    payment, = settled_payments(invoice)
    assert payment.checkout_session_id == started.session_id and fresh(invoice).status == "paid"
    assert Counter(e.event_id for e in event_rows()).most_common(1)[0][1] == 1  # each event stored once
    assert all(e.attempts == 1 for e in event_rows())
    assert len(receipts()) == 1
    assert_invariants()


def test_it_applies_ten_concurrent_deliveries_of_one_event_once(stripe_server, stripe_live, world):
    stripe_server.fault(webhooks="pause")  # only our ten copies reach the app
    invoice = live_invoice(make_client(world.org_a, "Concurrent Co"))
    started = open_checkout(stripe_server, stripe_live, invoice)
    stripe_server.pay(started.session_id)
    raw = event_body("checkout.session.completed",
                     stripe_object(stripe_server, f"/v1/checkout/sessions/{started.session_id}"), "evt_concurrent")
    headers = {"Stripe-Signature": stripe_signature(raw)}
    barrier, answers = threading.Barrier(10), []

    def deliver() -> None:
        barrier.wait()
        answers.append(post(f"{stripe_live.url}/webhooks/stripe", raw, headers))

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in answers) == [200] * 10, answers
    assert sum(b'"processed"' in body for _, body in answers) == 1
    payment, = payments_of(invoice)
    assert payment.status == "succeeded" and fresh(invoice).status == "paid"
    assert [(e.event_id, e.status) for e in event_rows()] == [("evt_concurrent", "processed")]
    assert len(receipts()) == 1
    assert_invariants()
