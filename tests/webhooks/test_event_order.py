"""Pending payments heard out of order (rule 5): a processing <-> failed move older than the last one is stale.

Events are the Stripe test server's own objects for a settles-later payment, signed and posted to the
in-process app with the `created` time we choose (Stripe does not deliver in order)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, OutboxEmail
from invoicing.services.checkout import start_checkout
from tests.conftest import NOW
from tests.pay.support import (
    assert_invariants,
    event_body,
    fresh,
    live_invoice,
    pay_path,
    payments_of,
    site,
    stripe_gateway,
    stripe_object,
    stripe_signature,
)

SETTLES_LATER = "4000000000000077"


def deliver(client, type_: str, obj: dict[str, Any], *, created: int):
    raw = event_body(type_, obj, created=created)
    return client.post("/webhooks/stripe", data=raw, headers={"Stripe-Signature": stripe_signature(raw),
                                                               "Content-Type": "application/json"})


def debit(stripe_server, invoice) -> dict[str, dict[str, Any]]:
    """A bank debit at the test server, then its failure: the session and intent as each event carries them."""
    started = start_checkout(invoice.id, amount=invoice.amount_due, gateway=stripe_gateway(stripe_server),
                             site=site(), now=NOW)
    stripe_server.pay(started.session_id, card=SETTLES_LATER)
    session = stripe_object(stripe_server, f"/v1/checkout/sessions/{started.session_id}")
    processing = stripe_object(stripe_server, f"/v1/payment_intents/{session['payment_intent']}")
    stripe_server.settle(started.session_id, "failed")
    failed = stripe_object(stripe_server, f"/v1/payment_intents/{session['payment_intent']}")
    assert (session["payment_status"], processing["status"], failed["status"]) == (
        "unpaid", "processing", "requires_payment_method")
    return {"session": session, "processing": processing, "failed": failed}


def outcome(invoice) -> tuple[str, str]:
    payment, = payments_of(invoice)
    return payment.status, fresh(invoice).status


def failure_emails() -> list[str]:
    return list(db.session.scalars(select(OutboxEmail.to_addr).where(OutboxEmail.kind == "payment_failed")))


def audit_actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("payment.%"))
                                   .order_by(AuditEvent.id)))


def test_it_ignores_a_processing_event_older_than_the_failure_and_the_client_can_pay_again(client, world,
                                                                                           stripe_app):
    invoice = live_invoice(world.client_a)  # the pay page checks link expiry on the real clock
    objects = debit(stripe_app, invoice)
    t = int(time.time())
    assert deliver(client, "payment_intent.processing", objects["processing"], created=t - 50).status_code == 200
    assert outcome(invoice) == ("processing", "processing")
    failed = deliver(client, "payment_intent.payment_failed", objects["failed"], created=t - 30)
    assert (failed.status_code, failed.json["status"]) == (200, "processed")
    assert outcome(invoice) == ("failed", "open")
    assert failure_emails() == ["clienta@clients.test"]
    audit = audit_actions()

    for type_, obj in (("payment_intent.processing", objects["processing"]),  # sent before the failure
                       ("checkout.session.completed", objects["session"])):
        late = deliver(client, type_, obj, created=t - 40)
        assert (late.status_code, late.json["status"]) == (200, "processed")
    assert outcome(invoice) == ("failed", "open")
    payment, = payments_of(invoice)
    assert payment.failure_code and payment.provider_state_at.timestamp() == t - 30
    page = client.get(pay_path(invoice))
    assert page.status_code == 200 and "Pay now" in page.text and "is being processed" not in page.text
    assert "did not go through" in page.text
    assert failure_emails() == ["clienta@clients.test"] and audit_actions() == audit

    # The client retries on the same PaymentIntent with another debit: heard after the failure, it counts.
    retry = deliver(client, "payment_intent.processing", objects["processing"], created=t - 10)
    assert (retry.status_code, retry.json["status"]) == (200, "processed")
    assert outcome(invoice) == ("processing", "processing")
    assert "is being processed" in client.get(pay_path(invoice)).text
    assert audit_actions() == [*audit, "payment.processing"] and failure_emails() == ["clienta@clients.test"]
    assert_invariants()


def test_it_ignores_a_failure_older_than_the_processing_it_follows(client, world, stripe_app):
    invoice = live_invoice(world.client_a)  # the pay page checks link expiry on the real clock
    objects = debit(stripe_app, invoice)
    t = int(time.time())
    # A declined attempt first, then the client pays the same PaymentIntent by bank debit.
    assert deliver(client, "payment_intent.payment_failed", objects["failed"], created=t - 50).status_code == 200
    assert outcome(invoice) == ("failed", "open")
    assert deliver(client, "payment_intent.processing", objects["processing"], created=t - 30).status_code == 200
    assert outcome(invoice) == ("processing", "processing")
    audit = audit_actions()

    for type_, obj in (("payment_intent.payment_failed", objects["failed"]),  # the decline, delivered again late
                       ("checkout.session.async_payment_failed", objects["session"])):
        late = deliver(client, type_, obj, created=t - 40)
        assert (late.status_code, late.json["status"]) == (200, "processed")
    assert outcome(invoice) == ("processing", "processing")
    assert "is being processed" in client.get(pay_path(invoice)).text
    assert failure_emails() == [] and audit_actions() == audit

    # The debit itself fails later: that failure is news, and the client is told once.
    failed = deliver(client, "payment_intent.payment_failed", objects["failed"], created=t - 10)
    assert (failed.status_code, failed.json["status"]) == (200, "processed")
    assert outcome(invoice) == ("failed", "open")
    assert "Pay now" in client.get(pay_path(invoice)).text
    assert audit_actions() == [*audit, "payment.failed"] and failure_emails() == ["clienta@clients.test"]
    assert_invariants()


def test_it_shows_a_failed_debit_as_failed_on_the_return_page_and_ignores_older_events(client, world,
                                                                                       stripe_app):
    invoice = live_invoice(world.client_a)  # the pay page checks link expiry on the real clock
    t = int(time.time())
    objects = debit(stripe_app, invoice)  # failed at the provider; no webhook heard yet
    back = client.get(pay_path(invoice, f"/return?session_id={objects['session']['id']}"))
    assert back.status_code == 200 and "is being processed" not in back.text
    assert outcome(invoice) == ("failed", "open")  # the unpaid session's PaymentIntent says failed
    assert failure_emails() == ["clienta@clients.test"]
    for type_, obj in (("payment_intent.processing", objects["processing"]),
                       ("checkout.session.completed", objects["session"])):
        assert deliver(client, type_, obj, created=t - 5).status_code == 200
    assert outcome(invoice) == ("failed", "open") and failure_emails() == ["clienta@clients.test"]
    assert "Pay now" in client.get(pay_path(invoice)).text
    assert_invariants()


def test_it_keeps_a_failure_when_a_processing_event_of_the_same_second_arrives_after_it(client, world, stripe_app):
    invoice = live_invoice(world.client_a)
    objects = debit(stripe_app, invoice)
    t = int(time.time())
    deliver(client, "payment_intent.processing", objects["processing"], created=t - 5)
    assert deliver(client, "payment_intent.payment_failed", objects["failed"], created=t).status_code == 200
    same_second = deliver(client, "payment_intent.processing", objects["processing"], created=t)
    assert (same_second.status_code, same_second.json["status"]) == (200, "processed")
    assert outcome(invoice) == ("failed", "open")  # the client can pay again at once
    assert failure_emails() == ["clienta@clients.test"]
    payment, = payments_of(invoice)
    assert payment.provider_state_at.timestamp() == t
