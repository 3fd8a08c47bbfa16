"""services/checkout.py: starting, reusing and closing checkout sessions; recording them; follow-ups."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import CheckoutSession
from invoicing.services import DomainError
from invoicing.services.checkout import (
    apply_checkout,
    enqueue_receipt,
    expire_stale_sessions,
    record_view,
    start_checkout,
)
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, make_invoice
from tests.pay.support import (
    assert_invariants,
    fresh,
    payments_of,
    receipts,
    sandbox,
    site,
    stripe_gateway,
)


def rows(invoice) -> list[tuple[int, str]]:
    db.session.rollback()  # a fresh snapshot (other threads wrote)
    return [(s.amount, s.status) for s in db.session.scalars(
        select(CheckoutSession).where(CheckoutSession.invoice_id == invoice.id).order_by(CheckoutSession.id))]


def test_it_reuses_the_open_session_for_the_same_amount_only(world):
    invoice = make_invoice(world.client_a, status="open")
    first = start_checkout(invoice.id, amount=27000, gateway=sandbox(), site=site(), now=NOW)
    again = start_checkout(invoice.id, amount=27000, gateway=sandbox(), site=site(), now=NOW + timedelta(hours=3))
    other = start_checkout(invoice.id, amount=10000, gateway=sandbox(), site=site(), now=NOW)
    assert (first.reused, again.reused, other.reused) == (False, True, False)
    assert first.session_id == again.session_id != other.session_id
    assert rows(invoice) == [(27000, "open"), (10000, "open")]


def test_it_does_not_hand_out_a_session_about_to_expire(world):
    invoice = make_invoice(world.client_a, status="open")
    first = start_checkout(invoice.id, amount=27000, gateway=sandbox(), site=site(), now=NOW)
    row = db.session.scalar(select(CheckoutSession))
    later = row.expires_at - timedelta(minutes=5)
    second = start_checkout(invoice.id, amount=27000, gateway=sandbox(), site=site(), now=later)
    assert second.session_id != first.session_id and not second.reused


def test_it_gives_racing_clicks_one_session(app: Flask, world):
    invoice = make_invoice(world.client_a, status="open")
    invoice_id, results, errors = invoice.id, [], []

    def click() -> None:
        with app.app_context():
            try:
                results.append(start_checkout(invoice_id, amount=27000, gateway=sandbox(), site=site(), now=NOW))
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=click) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len({r.session_id for r in results}) == 1
    assert rows(invoice) == [(27000, "open")]


def test_it_expires_open_sessions_once_the_invoice_is_paid_by_another_channel(world):
    invoice = make_invoice(world.client_a, status="open")
    gateway = sandbox()
    started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    record_manual_payment(invoice.id, amount=27000, method="cheque", paid_on=NOW.date(), reference="CHQ 12",
                          actor=SYSTEM, now=NOW)
    assert expire_stale_sessions(invoice.id, gateway=gateway, site=site(), now=NOW) == 1
    assert rows(invoice) == [(27000, "expired")]
    assert gateway.retrieve_checkout(started.session_id).status == "expired"
    assert gateway.pay(started.session_id, card="4242424242424242", email="").kind == "closed"


def test_it_expires_sessions_above_what_is_still_due_after_a_partial_payment(world):
    invoice = make_invoice(world.client_a, status="open")
    gateway = sandbox()
    start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    small = start_checkout(invoice.id, amount=20000, gateway=gateway, site=site(), now=NOW)
    gateway.pay(small.session_id, card="4242424242424242", email="")  # its events expire the 270.00 session
    assert rows(invoice) == [(27000, "expired"), (20000, "complete")]
    assert fresh(invoice).amount_due == 7000


def test_it_flags_the_second_of_two_sessions_paid_for_one_invoice(stripe_server, world):
    stripe_server.reset()
    gateway = stripe_gateway(stripe_server)
    invoice = make_invoice(world.client_a, status="open")
    first = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    second = start_checkout(invoice.id, amount=20000, gateway=gateway, site=site(), now=NOW)
    stripe_server.pay(first.session_id)
    stripe_server.pay(second.session_id)  # two tabs, both paid before we heard of either
    apply_checkout(gateway.retrieve_checkout(first.session_id), gateway=gateway, site=site(), now=NOW)
    # Expiring the second session found it complete: it was recorded too, flagged for a refund.
    paid, extra = payments_of(invoice)
    assert (paid.amount, paid.overpayment, extra.amount, extra.overpayment) == (27000, False, 20000, True)
    assert fresh(invoice).status == "paid" and fresh(invoice).amount_paid == 47000
    assert rows(invoice) == [(27000, "complete"), (20000, "complete")]
    assert len(receipts()) == 2
    assert_invariants()
    stripe_server.reset()


def test_it_refuses_to_start_a_checkout_while_a_payment_is_processing(world):
    invoice = make_invoice(world.client_a, status="open")
    gateway = sandbox()
    started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    gateway.pay(started.session_id, card="4000000000000077", email="")
    with pytest.raises(DomainError, match="still being processed"):
        start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)


def test_it_marks_viewed_once_and_counts_every_open(world):
    invoice = make_invoice(world.client_a, status="open")
    record_view(invoice.id, now=NOW)
    record_view(invoice.id, now=NOW + timedelta(days=1))
    assert (fresh(invoice).viewed_at, fresh(invoice).view_count) == (NOW, 2)


def test_it_queues_a_receipt_only_for_card_payments_and_only_once(world):
    invoice = make_invoice(world.client_a, status="open")
    manual = record_manual_payment(invoice.id, amount=1000, method="cash", paid_on=NOW.date(), reference="",
                                   actor=SYSTEM, now=NOW).payment
    assert enqueue_receipt(manual.id, site=site(), now=NOW) is False
    gateway = sandbox()
    started = start_checkout(invoice.id, amount=26000, gateway=gateway, site=site(), now=NOW)
    gateway.pay(started.session_id, card="4242424242424242", email="")
    card = payments_of(invoice)[-1]
    assert enqueue_receipt(card.id, site=site(), now=NOW) is False  # the event already queued it
    email, = receipts()
    assert email.dedupe_key == f"receipt:{card.id}" and email.to_addr == "clienta@clients.test"
    assert email.from_addr == '"Org A" <billing@localhost>' or email.from_addr.startswith("Org A")
    assert "Still due" not in email.text_body and "paid in full" in email.text_body
