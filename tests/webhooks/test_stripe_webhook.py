"""POST /webhooks/stripe: the inbox's front door (rule 5). Events are the Stripe test server's own objects,
signed like Stripe signs them, posted to the in-process app."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.gateways.sandbox import sign, webhook_secret
from invoicing.models import (
    AttentionCase,
    AuditEvent,
    CheckoutSession,
    OutboxEmail,
    PaymentAttempt,
    Refund,
    WebhookEvent,
)
from invoicing.services.checkout import start_checkout
from invoicing.services.refunds import refund_payment
from tests.conftest import NOW, SYSTEM, login, make_invoice, make_user
from tests.pay.support import (
    WebhookCapture,
    assert_invariants,
    event_body,
    fresh,
    pay_path,
    payments_of,
    receipts,
    site,
    stripe_gateway,
    stripe_object,
    stripe_signature,
)


def deliver(client, type_: str, obj: dict[str, Any], *, event_id: str | None = None, secret: str | None = None,
            timestamp: int | None = None, raw: bytes | None = None):
    raw = raw or event_body(type_, obj, event_id)
    signature = stripe_signature(raw, timestamp=timestamp, **({"secret": secret} if secret else {}))
    return client.post("/webhooks/stripe", data=raw, headers={"Stripe-Signature": signature,
                                                               "Content-Type": "application/json"})


def paid_session(stripe_server, invoice, card: str = "4242424242424242") -> dict[str, Any]:
    started = start_checkout(invoice.id, amount=invoice.amount_due, gateway=stripe_gateway(stripe_server),
                             site=site(), now=NOW)
    stripe_server.pay(started.session_id, card=card)
    return stripe_object(stripe_server, f"/v1/checkout/sessions/{started.session_id}")


def events() -> list[tuple[str, str, int]]:
    return [(e.type, e.status, e.attempts) for e in db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))]


def test_it_records_a_completed_checkout_once_however_often_it_arrives(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    session = paid_session(stripe_app, invoice)
    first = deliver(client, "checkout.session.completed", session, event_id="evt_1")
    assert (first.status_code, first.json["status"]) == (200, "processed")
    for _ in range(3):
        again = deliver(client, "checkout.session.completed", session, event_id="evt_1")
        assert (again.status_code, again.json["status"]) == (200, "duplicate")
    payment, = payments_of(invoice)
    assert (payment.status, payment.amount, payment.checkout_session_id) == ("succeeded", 27000, session["id"])
    assert payment.payment_intent_id == session["payment_intent"]
    assert fresh(invoice).status == "paid" and len(receipts()) == 1
    assert events() == [("checkout.session.completed", "processed", 1)]
    stored = db.session.scalar(select(WebhookEvent))
    assert json.loads(stored.payload)["data"]["object"]["id"] == session["id"] and stored.provider == "stripe"
    assert_invariants()


def test_it_refuses_a_forged_stale_or_unsigned_event_and_writes_nothing(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    session = paid_session(stripe_app, invoice)
    forged = deliver(client, "checkout.session.completed", session, secret="whsec_attacker")
    stale = deliver(client, "checkout.session.completed", session, timestamp=int(time.time()) - 301)
    unsigned = client.post("/webhooks/stripe", data=event_body("checkout.session.completed", session))
    raw = event_body("checkout.session.completed", session)
    swapped = client.post("/webhooks/stripe", data=raw.replace(b"27000", b"1"),
                          headers={"Stripe-Signature": stripe_signature(raw)})
    assert [r.status_code for r in (forged, stale, unsigned, swapped)] == [400, 400, 400, 400]
    assert forged.json == {"error": "invalid signature"}
    assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
    assert payments_of(invoice) == [] and fresh(invoice).status == "open"
    fresh_enough = deliver(client, "checkout.session.completed", session, timestamp=int(time.time()) - 290)
    assert fresh_enough.status_code == 200


NOT_EVENTS = {b"[1,2,3]": "the body is JSON but not an object", b"null": "the body is JSON but not an object",
              b'"x"': "the body is JSON but not an object", b"{}": "no 'data' in the event",
              b"not json": "the body is not JSON"}


def test_it_answers_400_to_a_genuinely_signed_body_that_is_not_an_event_and_stores_nothing(client, stripe_app):
    for raw, reason in NOT_EVENTS.items():
        response = deliver(client, "", {}, raw=raw)
        assert (response.status_code, response.json) == (400, {"error": f"not an event: {reason}"}), raw
    assert events() == []


def test_it_answers_400_to_a_signed_sandbox_body_that_is_not_an_event_and_stores_nothing(app, client):
    secret = webhook_secret(app.config["SECRET_KEY"])
    for raw, reason in NOT_EVENTS.items():
        response = client.post("/webhooks/sandbox", data=raw, headers={"Sandbox-Signature": sign(raw, secret),
                                                                         "Content-Type": "application/json"})
        assert (response.status_code, response.json) == (400, {"error": f"not an event: {reason}"}), raw
    assert events() == []


def test_it_stores_types_it_does_not_act_on_and_answers_200(client, world, stripe_app):
    response = deliver(client, "customer.created", {"id": "cus_1", "object": "customer"}, event_id="evt_c")
    assert (response.status_code, response.json["status"]) == (200, "ignored")
    row = db.session.scalar(select(WebhookEvent))
    assert (row.event_id, row.type, row.status, row.error) == ("evt_c", "customer.created", "ignored",
                                                                "ignored: not a type we act on")


def test_it_answers_500_and_keeps_the_event_when_applying_fails_then_applies_it_on_redelivery(client, world,
                                                                                               stripe_app):
    from tests.pay.support import payment_inserts_fail

    invoice = make_invoice(world.client_a, status="open")
    session = paid_session(stripe_app, invoice)
    with payment_inserts_fail():
        failed = deliver(client, "checkout.session.completed", session, event_id="evt_f")
    assert failed.status_code == 500 and failed.json["status"] == "failed"
    row = db.session.scalar(select(WebhookEvent))
    assert row.status == "failed" and "injected fault" in row.error and row.attempts == 1
    assert payments_of(invoice) == []
    retried = deliver(client, "checkout.session.completed", session, event_id="evt_f")  # Stripe retries
    assert (retried.status_code, retried.json["status"]) == (200, "processed")
    assert events() == [("checkout.session.completed", "processed", 2)]
    assert [p.status for p in payments_of(invoice)] == ["succeeded"] and len(receipts()) == 1
    assert_invariants()


def test_it_records_partial_and_full_refunds_once_including_those_made_by_staff(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    session = paid_session(stripe_app, invoice)
    deliver(client, "checkout.session.completed", session)
    payment, = payments_of(invoice)
    gateway = stripe_gateway(stripe_app)
    staff = refund_payment(invoice.id, payment.id, amount=7000, reason="Late", key="form-1", actor=SYSTEM,
                           gateway=gateway, now=NOW)
    charge_id = gateway.retrieve_payment_intent(payment.payment_intent_id).charge_id
    partial = stripe_object(stripe_app, f"/v1/charges/{charge_id}")
    assert deliver(client, "charge.refunded", partial).status_code == 200  # the staff refund, heard again
    gateway.refund(amount=20000, currency="USD", idempotency_key="dashboard", charge_id=charge_id)  # elsewhere
    full = stripe_object(stripe_app, f"/v1/charges/{charge_id}")
    deliver(client, "charge.refunded", full)
    deliver(client, "charge.refunded", full)
    refunds = db.session.scalars(select(Refund).order_by(Refund.id)).all()
    assert [(r.amount, r.reason) for r in refunds] == [(7000, "Late"), (20000, "")]
    assert refunds[0].provider_refund_id == staff.provider_refund_id
    assert (payments_of(invoice)[0].status, fresh(invoice).amount_paid, fresh(invoice).status) == (
        "refunded", 0, "open")
    assert_invariants()


def refund_failure_deliveries(stripe_server, refund_id: str) -> dict[str, bytes]:
    """Fail the refund at the Stripe test server and keep its real events (raw bodies) to post to the app."""
    capture = WebhookCapture()
    stripe_server.register_webhook(capture.url, "whsec_capture", id="capture")
    try:
        stripe_server.fail_refund(refund_id)
        return {type_: capture.wait_for(type_)[0]
                for type_ in ("refund.updated", "charge.refund.updated", "refund.failed")}
    finally:
        stripe_server.unregister_webhooks("capture")
        capture.close()


def test_it_gives_a_failed_refund_back_to_the_invoice_and_alerts_the_admins_once(client, world, stripe_app):
    ops = make_user(world.org_a, "ops@a.test", "admin")
    make_user(world.org_a, "clerk@a.test", "staff")
    invoice = make_invoice(world.client_a, status="open")
    deliver(client, "checkout.session.completed", paid_session(stripe_app, invoice))
    payment, = payments_of(invoice)
    staff = refund_payment(invoice.id, payment.id, amount=27000, reason="Order cancelled", key="form-full",
                           actor=SYSTEM, gateway=stripe_gateway(stripe_app), now=NOW)
    assert (fresh(invoice).status, fresh(invoice).amount_paid, payments_of(invoice)[0].status) == (
        "open", 0, "refunded")

    raws = refund_failure_deliveries(stripe_app, staff.provider_refund_id)
    responses = [deliver(client, type_, {}, raw=raws[type_])
                 for type_ in ("refund.failed", "charge.refund.updated", "refund.updated")]
    assert [(r.status_code, r.json["status"]) for r in responses] == [(200, "processed")] * 3
    again = deliver(client, "refund.failed", {}, raw=raws["refund.failed"])  # Stripe delivers it again
    assert (again.status_code, again.json["status"]) == (200, "duplicate")

    refund = db.session.scalar(select(Refund))
    assert (refund.id, refund.status, refund.failure_reason, refund.amount) == (
        staff.id, "failed", "expired_or_canceled_card", 27000)
    assert refund.failed_at is not None
    payment, = payments_of(invoice)
    assert (payment.status, payment.amount_refunded) == ("succeeded", 0)
    invoice = fresh(invoice)
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("paid", 27000, 0)
    assert invoice.paid_at is not None
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "payment.refund_failed")).all()
    assert [(a.details["refund_id"], a.details["restored"], a.actor_label) for a in audit] == [
        (refund.id, 27000, "payment provider")]
    alerts = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "refund_failed")).all()
    assert sorted(a.to_addr for a in alerts) == sorted([world.alice.email, ops.email])
    assert alerts[0].subject == f"Refund failed: $270.00 on invoice {invoice.number}, refund the client another way"
    assert "Order cancelled" in alerts[0].text_body and "expired or canceled card" in alerts[0].text_body
    case, = db.session.scalars(select(AttentionCase))  # in the attention view, with this email as its alert
    assert (case.kind, case.amount, case.detail, case.resolved_at) == ("refund_failed", 27000,
                                                                      "expired or canceled card", None)
    assert invoice.attention_since is not None and "attention" in invoice.badges(NOW.date())
    assert events() == [("checkout.session.completed", "processed", 1), ("refund.failed", "processed", 1),
                        ("charge.refund.updated", "processed", 1), ("refund.updated", "processed", 1)]
    assert_invariants()


def test_it_flags_a_dispute_and_alerts_the_admins_once(client, world, stripe_app):
    second_admin = make_user(world.org_a, "ops@a.test", "admin")
    make_user(world.org_a, "clerk@a.test", "staff")
    invoice = make_invoice(world.client_a, status="open")
    session = paid_session(stripe_app, invoice)
    deliver(client, "checkout.session.completed", session)
    payment, = payments_of(invoice)
    dispute = {"id": "dp_1", "object": "dispute", "amount": 27000, "currency": "usd", "reason": "fraudulent",
               "status": "needs_response", "charge": "ch_unknown", "payment_intent": payment.payment_intent_id}
    for _ in range(2):
        assert deliver(client, "charge.dispute.created", dispute, event_id="evt_d").status_code == 200
    deliver(client, "charge.dispute.created", dispute)  # a new event id for the same dispute
    invoice = fresh(invoice)
    assert invoice.disputed_at is not None and "disputed" in invoice.badges(NOW.date())
    assert db.session.scalar(select(AuditEvent.details).where(AuditEvent.action == "invoice.disputed"))["reason"] \
        == "fraudulent"
    alerts = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "dispute")).all()
    assert sorted(a.to_addr for a in alerts) == sorted([world.alice.email, second_admin.email])
    assert "Payment disputed: invoice" in alerts[0].subject and "fraudulent" in alerts[0].text_body
    case, = db.session.scalars(select(AttentionCase))  # one case for the dispute, however often it is heard
    assert (case.kind, case.case_key, case.amount, case.detail) == ("dispute", "dispute:dp_1",
                                                                   27000, "fraudulent")
    assert "attention" in invoice.badges(NOW.date())
    assert_invariants()


def test_it_ignores_events_about_invoices_of_another_installation(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    session = paid_session(stripe_app, invoice)
    session["metadata"]["invoice_public_id"] = "f" * 32
    response = deliver(client, "checkout.session.completed", session)
    assert (response.status_code, response.json["status"]) == (200, "ignored")
    assert payments_of(invoice) == []


def test_it_marks_an_expired_session(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    started = start_checkout(invoice.id, amount=27000, gateway=stripe_gateway(stripe_app), site=site(), now=NOW)
    stripe_gateway(stripe_app).expire_checkout(started.session_id)
    expired = stripe_object(stripe_app, f"/v1/checkout/sessions/{started.session_id}")
    assert deliver(client, "checkout.session.expired", expired).json["status"] == "processed"
    assert db.session.scalar(select(CheckoutSession.status)) == "expired"


def test_it_only_listens_on_the_configured_providers_endpoint(client, stripe_app):
    assert client.post("/webhooks/sandbox", data=b"{}").status_code == 404


def test_it_answers_404_on_the_stripe_endpoint_in_sandbox_mode(client):
    assert client.post("/webhooks/stripe", data=b"{}", headers={"Stripe-Signature": "t=1,v1=0"}).status_code == 404
    assert client.post("/webhooks/sandbox", data=b"{}", headers={"Sandbox-Signature": "t=1,v1=0"}).status_code == 400


def test_it_tells_staff_how_much_of_which_payment_was_too_much(client, world, stripe_app, time_machine):
    """150 then 170 paid in two tabs on a 270 invoice: the second payment is 50 too much, not 170."""
    time_machine.move_to(NOW, tick=True)  # the pay link is dated from NOW
    invoice = make_invoice(world.client_a, status="open")
    for amount in ("150", "170"):
        assert client.post(pay_path(invoice), data={"amount": amount}).status_code == 303
    sessions = [row.session_id for row in db.session.scalars(select(CheckoutSession).order_by(CheckoutSession.id))]
    for session_id in sessions:
        stripe_app.pay(session_id, card="4242424242424242")
    for session_id in sessions:
        session = stripe_object(stripe_app, f"/v1/checkout/sessions/{session_id}")
        assert deliver(client, "checkout.session.completed", session).status_code == 200
    paid, extra = payments_of(invoice)
    assert (paid.amount, paid.overpayment, extra.amount, extra.overpayment) == (15000, False, 17000, True)
    flagged, = db.session.scalars(select(AuditEvent.details).where(AuditEvent.action == "payment.overpayment_flagged"))
    assert (flagged["payment_id"], flagged["amount"], flagged["excess"]) == (extra.id, 17000, 5000)

    login(client, world.alice)
    page = client.get(f"/admin/invoices/{invoice.id}").text
    assert (f"overpayment</span> of $50.00 flagged for a refund: payment {extra.receipt_number} of $170.00 was "
            "$50.00 more than the amount due") in page
    assert "<dt>Overpaid</dt>" in page and "$50.00 too much</span> to refund" in page
    assert "overpayment: $50.00 too much" in page  # on the payment's row
    assert "$170.00 flagged" not in page


def test_it_keeps_each_declined_try_of_one_checkout_with_the_providers_reason(client, world, stripe_app,
                                                                            time_machine):
    time_machine.move_to(NOW, tick=True)  # the pay link's return page is valid then
    invoice = make_invoice(world.client_a, status="open")
    started = start_checkout(invoice.id, amount=27000, gateway=stripe_gateway(stripe_app), site=site(), now=NOW)
    capture = WebhookCapture()
    stripe_app.register_webhook(capture.url, "whsec_capture", id="capture")
    try:
        for card in ("4000000000000002", "4000000000009995"):
            assert stripe_app.pay(started.session_id, card=card) is None  # 402: declined, the session stays open
        declines = capture.wait_for("payment_intent.payment_failed", 2)
    finally:
        stripe_app.unregister_webhooks("capture")
        capture.close()
    for raw in (*declines, declines[0]):  # the first delivered again: Stripe retries
        assert deliver(client, "payment_intent.payment_failed", {}, raw=raw).status_code == 200

    payment, = payments_of(invoice)
    assert (payment.status, payment.receipt_number, payment.charge_id) == ("failed", None, None)
    tries = db.session.scalars(select(PaymentAttempt).order_by(PaymentAttempt.id)).all()
    assert [(t.attempt_key.startswith("ch_"), t.failure_message) for t in tries] == [
        (True, "Your card was declined."), (True, "Your card has insufficient funds.")]
    assert len({t.attempt_key for t in tries}) == 2
    failed = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "payment.failed").order_by(AuditEvent.id))
    assert [a.details["failure_message"] for a in failed] == ["Your card was declined.",
                                                             "Your card has insufficient funds."]
    assert stripe_app.pay(started.session_id) is not None  # a good card on the same checkout
    page = client.get(f"{pay_path(invoice)}/return?session_id={started.session_id}")
    assert "Payment received, thank you" in page.text
    paid, = payments_of(invoice)
    assert paid.status == "succeeded" and paid.receipt_number == "R-000001"
    assert paid.charge_id not in {t.attempt_key for t in tries}  # a refund never targets a declined charge
    assert_invariants()
