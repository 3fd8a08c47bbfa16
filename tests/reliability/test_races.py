"""The return page and the webhook at the same moment; two sessions paid for one invoice."""

from __future__ import annotations

import threading
import urllib.request

from tests.pay.support import assert_invariants, fresh, live_invoice, payments_of, receipts, wait_until
from tests.reliability.helpers import open_checkout, settled_payments, wait_for_event


def test_the_webhook_and_the_return_page_at_the_same_moment_make_one_payment(stripe_server, stripe_live, world):
    stripe_server.fault(webhooks="pause")
    invoice = live_invoice(world.client_a)
    started = open_checkout(stripe_server, stripe_live, invoice)
    back = stripe_server.pay(started.session_id)
    assert back.startswith(stripe_live.url)
    barrier, pages = threading.Barrier(3), []

    def open_return_page() -> None:
        barrier.wait()
        with urllib.request.urlopen(back, timeout=30) as response:
            pages.append((response.status, response.read().decode()))

    threads = [threading.Thread(target=open_return_page) for _ in range(2)]
    for thread in threads:
        thread.start()
    barrier.wait()
    stripe_server.fault(webhooks="resume")  # the held events go out now
    for thread in threads:
        thread.join()
    assert [status for status, _ in pages] == [200, 200]
    assert all("Payment received, thank you" in page for _, page in pages)
    wait_for_event("checkout.session.completed")
    payment, = settled_payments(invoice)
    assert payment.checkout_session_id == started.session_id and fresh(invoice).status == "paid"
    assert len(receipts()) == 1
    assert_invariants()


def test_two_sessions_paid_for_one_invoice_record_both_and_flag_the_second(stripe_server, stripe_live, world):
    invoice = live_invoice(world.client_a)  # org A takes partial payments: two tabs, two amounts
    whole = open_checkout(stripe_server, stripe_live, invoice)
    part = open_checkout(stripe_server, stripe_live, invoice, amount=20000)
    stripe_server.fault(webhooks="pause")
    stripe_server.pay(whole.session_id)
    stripe_server.pay(part.session_id)
    stripe_server.fault(webhooks="resume")
    payments = wait_until(lambda: found if len(found := payments_of(invoice)) == 2 else None, what="two payments")
    assert sorted(p.amount for p in payments) == [20000, 27000]
    assert [p.overpayment for p in payments].count(True) == 1
    invoice = fresh(invoice)
    assert (invoice.status, invoice.amount_paid) == ("paid", 47000)
    wait_until(lambda: len(receipts()) == 2, what="two receipts")
    assert_invariants()
