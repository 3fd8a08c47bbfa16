"""Verify-on-return racing the webhook: the contact's return page (twice: a reload, a second tab) and Stripe's
checkout.session.completed and payment_intent.succeeded, all at the same moment, each in its own thread with
its own database session (on PostgreSQL, really concurrent): one payment per invoice, one receipt each."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import CheckoutGroup, CheckoutSession, Payment, WebhookEvent
from tests.conftest import World, make_invoice, portal_login
from tests.pay.support import WebhookCapture, assert_invariants, fresh, receipts, stripe_signature
from tests.pay.support import stripe_app as stripe_app  # noqa: F401  (fixture)


@pytest.fixture
def capture(stripe_app: Any) -> Iterator[WebhookCapture]:  # noqa: F811
    hook = WebhookCapture()
    stripe_app.register_webhook(hook.url, "whsec_capture", id="capture")
    yield hook
    stripe_app.unregister_webhooks("capture")
    hook.close()


@pytest.mark.parametrize("count", [1, 2], ids=["pay now", "pay several"])
def test_the_return_page_and_the_webhook_at_the_same_moment_record_each_invoice_once(
        app: Flask, world: World, stripe_app: Any, capture: WebhookCapture, count: int) -> None:  # noqa: F811
    invoices = [make_invoice(world.client_a, status="open") for _ in range(count)]
    contact = world.client_a.contacts[0]
    tabs = [app.test_client() for _ in range(2)]
    for tab in tabs:
        portal_login(tab, contact)
    if count == 1:
        tabs[0].post(f"/portal/invoices/{invoices[0].id}/pay")
        session_id = db.session.scalars(select(CheckoutSession.session_id)).one()
    else:
        tabs[0].post("/portal/pay", data={"invoice": [i.id for i in invoices]})
        session_id = db.session.scalars(select(CheckoutGroup.session_id)).one()
    back = stripe_app.pay(session_id).removeprefix("http://billing.test")
    events = [capture.wait_for("checkout.session.completed")[0], capture.wait_for("payment_intent.succeeded")[0]]
    db.session.rollback()  # nothing of ours held open while the threads run
    start, results, errors = threading.Barrier(4), [], []

    def open_return_page(tab: Any) -> None:
        try:
            start.wait(timeout=30)
            response = tab.get(back)
            results.append((response.status_code, "Payment received, thank you" in response.text))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    def deliver_webhook(raw: bytes) -> None:
        try:
            start.wait(timeout=30)
            response = app.test_client().post("/webhooks/stripe", data=raw, headers={
                "Stripe-Signature": stripe_signature(raw), "Content-Type": "application/json"})
            results.append((response.status_code, response.json["status"] == "processed"))
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=open_return_page, args=(tab,)) for tab in tabs]
    threads += [threading.Thread(target=deliver_webhook, args=(raw,)) for raw in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and sorted(results) == [(200, True)] * 4
    db.session.rollback()
    payments = db.session.scalars(select(Payment).order_by(Payment.invoice_id)).all()
    assert [(p.invoice_id, p.status, p.paid_by_contact_id) for p in payments] == [
        (i.id, "succeeded", contact.id) for i in invoices]
    assert all(fresh(i).status == "paid" for i in invoices)
    assert sorted(r.dedupe_key for r in receipts()) == sorted(f"receipt:{p.id}" for p in payments)
    assert {e.status for e in db.session.scalars(select(WebhookEvent))} == {"processed"}
    assert_invariants()
