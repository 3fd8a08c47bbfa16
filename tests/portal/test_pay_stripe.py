"""Paying in the portal against the Stripe test server (no webhook reaches the in-process app): the return
page verifies each session with the provider and records it; several invoices on the hosted Checkout (the
fallback of the embedded form); the embedded form's session and the page's Content-Security-Policy."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import CheckoutGroup, CheckoutSession, Payment
from tests.conftest import World, make_invoice, portal_login
from tests.pay.support import assert_invariants, fresh, payments_of, receipts, stripe_object
from tests.pay.support import stripe_app as stripe_app  # noqa: F401  (fixture)

HX = {"HX-Request": "true"}
RETURN = "http://billing.test/portal/checkout/return?session_id="


def local(url: str) -> str:
    return url.removeprefix("http://billing.test")


def test_the_return_page_alone_records_a_pay_now_payment_once(client: FlaskClient, world: World,
                                                              stripe_app: Any) -> None:
    invoice = make_invoice(world.client_a, status="open")
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    response = client.post(f"/portal/invoices/{invoice.id}/pay")
    session = db.session.scalars(select(CheckoutSession)).one()
    assert response.headers["Location"] == session.url == stripe_app.checkout_url(session.session_id)
    remote = stripe_object(stripe_app, f"/v1/checkout/sessions/{session.session_id}")
    assert remote["success_url"] == RETURN + "{CHECKOUT_SESSION_ID}" and remote["ui_mode"] == "hosted_page"
    assert remote["cancel_url"] == "http://billing.test/portal/pay"
    assert remote["metadata"]["contact_id"] == str(contact.id)

    back = stripe_app.pay(session.session_id, email="someone@clienta.test")
    assert back == RETURN + session.session_id and payments_of(invoice) == []  # no webhook arrives
    for _ in range(2):  # and a reload
        page = client.get(local(back))
        assert page.status_code == 200 and "Payment received, thank you" in page.text
    payment, = payments_of(invoice)
    assert (payment.status, payment.paid_by_contact_id, payment.payer_email) == (
        "succeeded", contact.id, "someone@clienta.test")
    assert fresh(invoice).status == "paid" and len(receipts()) == 1
    assert "Visa •••• 4242" in page.text and f"Client A contact 1 ({contact.email})" in page.text
    assert_invariants()


def test_several_invoices_are_paid_on_the_hosted_checkout_and_confirmed_on_return(client: FlaskClient,
                                                                                  world: World,
                                                                                  stripe_app: Any) -> None:
    a = make_invoice(world.client_a, status="open")
    b = make_invoice(world.client_a, status="open", discount_kind="amount", discount_value=7000)
    contact = world.client_a.contacts[1]
    portal_login(client, contact)
    response = client.post("/portal/pay", data={"invoice": [a.id, b.id]})  # no JavaScript: the hosted page
    group = db.session.scalars(select(CheckoutGroup)).one()
    assert response.status_code == 303 and response.headers["Location"] == stripe_app.checkout_url(group.session_id)
    remote = stripe_object(stripe_app, f"/v1/checkout/sessions/{group.session_id}")
    assert (remote["amount_total"], remote["ui_mode"], remote["metadata"]["checkout_group"]) == (
        46440, "hosted_page", group.ref)
    assert client.post("/portal/pay", data={"invoice": [b.id, a.id]}).headers["Location"] == response.headers[
        "Location"]  # the same checkout again: a double click
    assert stripe_app.pay(group.session_id, card="4000000000000002") is None  # declined: nothing recorded
    back = stripe_app.pay(group.session_id)
    page = client.get(local(back))
    assert "Payment received, thank you" in page.text and "$464.40 paid for" in page.text
    assert [(p.invoice_id, p.amount, p.status) for p in db.session.scalars(
        select(Payment).where(Payment.status != "failed").order_by(Payment.invoice_id))] == [
        (a.id, 27000, "succeeded"), (b.id, 19440, "succeeded")]
    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"]
    assert page.text.count(f"Client A contact 2 ({contact.email})") == 2
    assert_invariants()


def test_the_pay_dialog_opens_stripes_embedded_checkout_with_a_hosted_fallback(app: Flask, client: FlaskClient,
                                                                               world: World, stripe_app: Any,
                                                                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(app.config, "STRIPE_PUBLISHABLE_KEY", "pk_test_portal")
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    portal_login(client, world.client_a.contacts[0])
    page = client.get("/portal/pay")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' https://js.stripe.com" in policy and "frame-src https://js.stripe.com" in policy
    assert "connect-src 'self' https://api.stripe.com" in policy
    assert 'data-stripe-key="pk_test_portal"' in page.text and 'data-stripe-js="https://js.stripe.com/' in page.text
    assert "js.stripe.com" in client.get("/portal/").headers["Content-Security-Policy"]  # the list pays in place too
    assert "js.stripe.com" not in client.get("/portal/account").headers["Content-Security-Policy"]  # only where it pays
    assert "js.stripe.com" not in client.get("/admin/login").headers["Content-Security-Policy"]

    dialog = client.post("/portal/pay", data={"invoice": [a.id, b.id]}, headers=HX)
    group = db.session.scalars(select(CheckoutGroup)).one()
    secret = re.search(r'data-client-secret="([^"]+)"', dialog.text).group(1)
    remote = stripe_object(stripe_app, f"/v1/checkout/sessions/{group.session_id}")
    assert (remote["ui_mode"], remote["client_secret"], remote["url"]) == ("embedded_page", secret, None)
    assert remote["return_url"] == RETURN + "{CHECKOUT_SESSION_ID}" and remote["success_url"] is None
    assert group.ui_mode == "embedded" and group.url == ""
    fallback = re.search(r'<form id="pay-hosted"(.*?)</form>', dialog.text, re.S).group(1)
    assert 'name="ui" value="hosted"' in fallback and 'name="csrf_token"' in fallback
    assert re.findall(r'name="invoice" value="(\d+)"', fallback) == [str(a.id), str(b.id)]

    hosted = client.post("/portal/pay", data={"invoice": [a.id, b.id], "ui": "hosted"})  # Stripe.js did not load
    second = db.session.scalars(select(CheckoutGroup).where(CheckoutGroup.ui_mode == "hosted")).one()
    assert hosted.status_code == 303 and hosted.headers["Location"] == stripe_app.checkout_url(second.session_id)

    back = stripe_app.pay(group.session_id)  # the test server's page stands in for the embedded form
    assert back == RETURN + group.session_id
    assert "Payment received, thank you" in client.get(local(back)).text
    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"]
    # The other checkout of the same invoices is closed at the provider, so nobody pays them twice.
    assert stripe_object(stripe_app, f"/v1/checkout/sessions/{second.session_id}")["status"] == "expired"
    assert_invariants()


def test_pay_now_in_the_dialog_embeds_one_invoices_checkout(app: Flask, client: FlaskClient, world: World,
                                                            stripe_app: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(app.config, "STRIPE_PUBLISHABLE_KEY", "pk_test_portal")
    invoice = make_invoice(world.client_a, status="open")
    portal_login(client, world.client_a.contacts[0])
    dialog = client.post(f"/portal/invoices/{invoice.id}/pay", headers=HX)
    session = db.session.scalars(select(CheckoutSession)).one()
    assert session.ui_mode == "embedded" and 'data-client-secret="' in dialog.text
    again = client.post(f"/portal/invoices/{invoice.id}/pay", headers=HX)  # reopened: the same session
    assert re.search(r'data-client-secret="([^"]+)"', again.text).group(1) == stripe_object(
        stripe_app, f"/v1/checkout/sessions/{session.session_id}")["client_secret"]
    assert len(db.session.scalars(select(CheckoutSession)).all()) == 1
    without_key = client.post(f"/portal/invoices/{invoice.id}/pay", data={"ui": "hosted"}, headers=HX)
    hosted = db.session.scalars(select(CheckoutSession).where(CheckoutSession.ui_mode == "hosted")).one()
    assert without_key.headers["HX-Redirect"] == hosted.url  # asked for the hosted page: the whole page goes
