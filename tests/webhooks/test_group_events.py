"""Stripe's events about a group checkout (several invoices, one session, one PaymentIntent): the real events of
the Stripe test server, posted to the in-process app in any order and more than once. Each finds the group's
payments: one set of shares, refunds of the right share, disputes flag every invoice it paid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AttentionCase, CheckoutGroup, OutboxEmail, Payment, Refund, WebhookEvent
from invoicing.services.audit import Actor
from invoicing.services.checkout_groups import GroupRequest, start_group_checkout
from invoicing.services.refunds import refund_payment
from tests.conftest import NOW, make_invoice, make_user
from tests.pay.support import WebhookCapture, assert_invariants, fresh, payments_of, receipts, site, stripe_gateway
from tests.webhooks.test_stripe_webhook import deliver

RETURN = "http://billing.test/portal/checkout/return?session_id={CHECKOUT_SESSION_ID}"


@pytest.fixture
def capture(stripe_app: Any) -> Iterator[WebhookCapture]:
    hook = WebhookCapture()
    stripe_app.register_webhook(hook.url, "whsec_capture", id="capture")
    yield hook
    stripe_app.unregister_webhooks("capture")
    hook.close()


def paid_group(stripe_server: Any, world: Any, *invoices: Any, card: str = "4242424242424242") -> str:
    contact = world.client_a.contacts[0]
    started = start_group_checkout(GroupRequest(
        client_id=contact.client_id, invoice_ids=[i.id for i in invoices], contact_id=contact.id, return_url=RETURN,
        cancel_url="http://billing.test/portal/pay", payer_email=contact.email, actor=Actor.contact(contact)),
        gateway=stripe_gateway(stripe_server), site=site(), now=NOW)
    stripe_server.pay(started.session_id, card=card, email="someone@clienta.test")
    return started.session_id


def shares(*invoices: Any) -> list[tuple[int, str, int]]:
    return [(p.invoice_id, p.status, p.amount_refunded) for i in invoices for p in payments_of(i)]


def statuses() -> list[tuple[str, str]]:
    db.session.rollback()
    return [(e.type, e.status) for e in db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))]


def test_it_records_the_shares_once_in_whatever_order_the_events_come(client, world, stripe_app, capture):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    paid_group(stripe_app, world, a, b)
    intent, = capture.wait_for("payment_intent.succeeded")
    completed, = capture.wait_for("checkout.session.completed")
    for raw in (intent, completed, intent, completed):  # the intent's event first; both delivered twice
        assert deliver(client, "", {}, raw=raw).status_code == 200
    assert shares(a, b) == [(a.id, "succeeded", 0), (b.id, "succeeded", 0)]
    assert statuses() == [("payment_intent.succeeded", "processed"), ("checkout.session.completed", "processed")]
    group = db.session.scalar(select(CheckoutGroup))
    assert group.status == "complete" and group.charge_id and group.payment_intent_id
    assert all(p.payer_email == "someone@clienta.test" and p.paid_by_contact_id == world.client_a.contacts[0].id
               for i in (a, b) for p in payments_of(i))
    assert {e.organization_id for e in db.session.scalars(select(WebhookEvent))} == {world.org_a.id}
    assert sorted(r.to_addr for r in receipts()) == ["c1@clienta.test"] * 2  # the contact who paid
    assert_invariants()


def test_it_takes_a_settles_later_payment_through_processing_for_every_invoice(client, world, stripe_app, capture):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    session_id = paid_group(stripe_app, world, a, b, card="4000000000000077")
    deliver(client, "", {}, raw=capture.wait_for("checkout.session.completed")[0])
    assert shares(a, b) == [(a.id, "processing", 0), (b.id, "processing", 0)]
    assert [fresh(i).status for i in (a, b)] == ["processing", "processing"] and receipts() == []
    stripe_app.settle(session_id, "succeeded")
    deliver(client, "", {}, raw=capture.wait_for("checkout.session.async_payment_succeeded")[0])
    deliver(client, "", {}, raw=capture.wait_for("payment_intent.succeeded")[0])
    assert shares(a, b) == [(a.id, "succeeded", 0), (b.id, "succeeded", 0)]
    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"] and len(receipts()) == 2
    assert_invariants()


def test_a_settles_later_payment_that_fails_reopens_every_invoice_and_tells_the_client(client, world, stripe_app,
                                                                                       capture):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    session_id = paid_group(stripe_app, world, a, b, card="4000000000000077")
    deliver(client, "", {}, raw=capture.wait_for("checkout.session.completed")[0])
    stripe_app.settle(session_id, "failed")
    deliver(client, "", {}, raw=capture.wait_for("checkout.session.async_payment_failed")[0])
    deliver(client, "", {}, raw=capture.wait_for("payment_intent.payment_failed")[0])
    assert shares(a, b) == [(a.id, "failed", 0), (b.id, "failed", 0)]
    assert [fresh(i).status for i in (a, b)] == ["open", "open"]
    failed = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "payment_failed")).all()
    assert sorted(e.invoice_id for e in failed) == [a.id, b.id]
    assert_invariants()


def test_refund_events_find_the_share_they_gave_back(client, world, stripe_app, capture):
    a = make_invoice(world.client_a, status="open")
    b = make_invoice(world.client_a, status="open", discount_kind="amount", discount_value=7000)
    paid_group(stripe_app, world, a, b)
    deliver(client, "", {}, raw=capture.wait_for("checkout.session.completed")[0])
    deliver(client, "", {}, raw=capture.wait_for("payment_intent.succeeded")[0])
    share_b, = payments_of(b)
    staff = refund_payment(b.id, share_b.id, amount=5000, reason="Damaged", key="k" * 16, actor=Actor.user(world.alice),
                           gateway=stripe_gateway(stripe_app), now=NOW)
    group = db.session.scalar(select(CheckoutGroup))
    # Made at the provider's dashboard, not here: no metadata; it fits the first share (by invoice) that can take it.
    status, _, body = stripe_app.request("POST", "/v1/refunds", data={"payment_intent": group.payment_intent_id,
                                                                      "amount": 3000}, auth=True)
    assert status == 200, body
    dashboard = json.loads(body)["id"]
    for raw in capture.wait_for("charge.refunded", 2) * 2:
        assert deliver(client, "", {}, raw=raw).status_code == 200
    refunds = {r.provider_refund_id: (r.payment.invoice_id, r.amount) for r in db.session.scalars(select(Refund))}
    assert refunds == {staff.provider_refund_id: (b.id, 5000), dashboard: (a.id, 3000)}
    assert shares(a, b) == [(a.id, "partially_refunded", 3000), (b.id, "partially_refunded", 5000)]
    assert (fresh(a).amount_paid, fresh(b).amount_paid) == (24000, 14440)

    stripe_app.fail_refund(staff.provider_refund_id)  # the card network sends it back days later
    assert deliver(client, "", {}, raw=capture.wait_for("refund.failed")[0]).status_code == 200
    assert shares(a, b) == [(a.id, "partially_refunded", 3000), (b.id, "succeeded", 0)]
    assert fresh(b).status == "paid"
    assert_invariants()


def test_a_dashboard_refund_larger_than_any_share_waits_for_staff(client, world, stripe_app, capture):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    paid_group(stripe_app, world, a, b)
    deliver(client, "", {}, raw=capture.wait_for("checkout.session.completed")[0])
    group = db.session.scalar(select(CheckoutGroup))
    stripe_app.request("POST", "/v1/refunds", data={"payment_intent": group.payment_intent_id, "amount": 40000},
                       auth=True)
    response = deliver(client, "", {}, raw=capture.wait_for("charge.refunded")[0])
    assert response.status_code == 500 and response.json["status"] == "failed"  # kept, and Stripe retries
    assert db.session.scalars(select(Refund)).all() == [] and shares(a, b)[0][2] == 0
    event = db.session.scalar(select(WebhookEvent).where(WebhookEvent.type == "charge.refunded"))
    assert event.status == "failed" and "more than any one invoice's share" in event.error
    assert event.organization_id == world.org_a.id  # in the staff's inbox, to record it by hand


def test_a_dispute_of_the_shared_charge_flags_every_invoice_it_paid(client, world, stripe_app, capture):
    make_user(world.org_a, "ops@a.test", "admin")
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    paid_group(stripe_app, world, a, b)
    deliver(client, "", {}, raw=capture.wait_for("checkout.session.completed")[0])
    deliver(client, "", {}, raw=capture.wait_for("payment_intent.succeeded")[0])
    group = db.session.scalar(select(CheckoutGroup))
    dispute = {"id": "dp_group", "object": "dispute", "amount": 54000, "currency": "usd", "reason": "fraudulent",
               "status": "needs_response", "charge": group.charge_id, "payment_intent": group.payment_intent_id}
    for event_id in ("evt_d1", "evt_d1", "evt_d2"):
        assert deliver(client, "charge.dispute.created", dispute, event_id=event_id).status_code == 200
    assert [fresh(i).disputed_at is not None for i in (a, b)] == [True, True]
    cases = db.session.scalars(select(AttentionCase).order_by(AttentionCase.invoice_id)).all()
    assert [(c.invoice_id, c.kind, c.amount) for c in cases] == [(a.id, "dispute", 27000), (b.id, "dispute", 27000)]
    alerts = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dispute")).all()
    assert sorted(e.to_addr for e in alerts) == sorted([world.alice.email, "ops@a.test"])
    assert f"invoices {fresh(a).number}, {fresh(b).number}" in alerts[0].subject
    assert [p.status for p in db.session.scalars(select(Payment))] == ["succeeded", "succeeded"]  # money kept
    assert_invariants()


def test_how_a_group_was_paid_is_asked_before_the_transaction_not_inside_it(client, world, stripe_app, capture,
                                                                             monkeypatch):
    """The provider is never called while the inbox's transaction holds every invoice of the group locked: the
    payment method is asked first, then the shares and receipts (naming the card) are written in one go."""
    from invoicing.gateways.stripe import StripeGateway
    from invoicing.services.db import inside_atomic

    calls: list[bool] = []
    real = StripeGateway.retrieve_payment_intent

    def observed(self: StripeGateway, payment_intent_id: str) -> Any:
        calls.append(inside_atomic())
        return real(self, payment_intent_id)

    monkeypatch.setattr(StripeGateway, "retrieve_payment_intent", observed)
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    paid_group(stripe_app, world, a, b)
    intent, = capture.wait_for("payment_intent.succeeded")
    assert deliver(client, "", {}, raw=intent).status_code == 200
    assert shares(a, b) == [(a.id, "succeeded", 0), (b.id, "succeeded", 0)]
    assert not any(calls), calls  # never inside a transaction (the test server's events carry the method)
    assert {(p.method_brand, p.method_last4) for i in (a, b) for p in payments_of(i)} == {("visa", "4242")}
    assert_invariants()
