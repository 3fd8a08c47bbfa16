"""Saving a card for later through each gateway: Checkout in setup mode at the Stripe test server (its launcher
adds setup mode on top of localstripe's SetupIntent) and the sandbox's setup page; detaching; and the sandbox
charging a card saved that way off-session (what autopay will do)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.gateways.base import GatewayError, SetupRequest
from invoicing.models import SandboxObject
from tests.pay.support import sandbox, stripe_gateway, stripe_object

RETURN = "http://app.test/portal/payment-methods/added?session_id={CHECKOUT_SESSION_ID}"


def setup_request(key: str = "s1", customer_id: str | None = None, **extra) -> SetupRequest:
    values = dict(currency="USD", success_url=RETURN, cancel_url="http://app.test/portal/payment-methods",
                  idempotency_key=key, metadata={"client_id": "7"}, customer_id=customer_id)
    values.update(extra)
    return SetupRequest(**values)


@pytest.fixture
def stripe(stripe_server):
    stripe_server.reset()
    yield stripe_gateway(stripe_server)
    stripe_server.reset()


def save(stripe_server, url: str, card: str, expiry: str = "04 / 31") -> tuple[int, str]:
    status, headers, body = stripe_server.request("POST", url.removeprefix(stripe_server.base_url) + "/save",
                                                  data={"card": card, "expiry": expiry})
    return status, headers.get("Location") or body.decode()


def test_stripe_saves_a_card_in_setup_mode_and_attaches_it_to_the_customer(stripe_server, stripe):
    customer = stripe.create_customer(name="Client A", email="a@client.test", metadata={}, idempotency_key="c1")
    setup = stripe.create_setup_checkout(setup_request(customer_id=customer))
    assert (setup.mode, setup.status, setup.customer_id, setup.card, setup.saved) == (
        "setup", "open", customer, None, False)
    assert setup.url == f"{stripe_server.base_url}/_config/setup/{setup.id}"
    remote = stripe_object(stripe_server, f"/v1/checkout/sessions/{setup.id}")
    assert (remote["currency"], remote["payment_status"], remote["setup_intent"][:5]) == (
        "usd", "no_payment_required", "seti_")

    status, location = save(stripe_server, setup.url, "5555 5555 5555 4444")
    assert (status, location) == (303, RETURN.replace("{CHECKOUT_SESSION_ID}", setup.id))
    done = stripe.retrieve_setup_checkout(setup.id)
    assert (done.status, done.setup_status, done.saved, done.url) == ("complete", "succeeded", True, None)
    card = done.card
    assert (card.brand, card.last4, card.exp_month, card.exp_year, card.customer_id) == (
        "mastercard", "4444", 4, 2031, customer)
    assert card.id.startswith("pm_") and stripe_object(stripe_server, f"/v1/payment_methods/{card.id}")[
        "customer"] == customer

    stripe.detach_payment_method(card.id)
    stripe.detach_payment_method(card.id)  # again (a retry after a lost answer): not an error
    assert stripe_object(stripe_server, f"/v1/payment_methods/{card.id}")["customer"] is None


@pytest.mark.parametrize(("card", "expiry", "message"), [
    ("4000000000000002", "04 / 31", "Your card was declined."),
    ("4242424242424241", "04 / 31", "Your card number is incorrect."),
    ("4242424242424242", "01 / 20", "Your card's expiration date is in the past."),
])
def test_stripe_keeps_the_setup_open_when_a_card_is_refused(stripe_server, stripe, card, expiry, message):
    setup = stripe.create_setup_checkout(setup_request())
    status, body = save(stripe_server, setup.url, card, expiry)
    assert status == 402 and message.replace("'", "&#x27;") in body
    again = stripe.retrieve_setup_checkout(setup.id)
    assert again.status == "open" and not again.saved
    status, _ = save(stripe_server, setup.url, "4242424242424242")  # another card on the same page
    assert status == 303 and stripe.retrieve_setup_checkout(setup.id).saved


def test_stripe_setup_mode_refuses_what_stripe_refuses(stripe):
    with pytest.raises(GatewayError, match="currency"):
        stripe.create_setup_checkout(setup_request(currency=""))
    with pytest.raises(GatewayError, match="No such customer"):
        stripe.create_setup_checkout(setup_request(customer_id="cus_missing"))


def test_a_payment_session_is_not_a_setup(stripe_server, stripe):
    from invoicing.gateways.base import CheckoutRequest

    checkout = stripe.create_checkout(CheckoutRequest(
        amount=100, currency="USD", product_name="x", success_url=RETURN, cancel_url="http://app.test/",
        idempotency_key="p1", metadata={"client_id": "7"}))
    setup = stripe.retrieve_setup_checkout(checkout.id)
    assert (setup.mode, setup.saved, setup.card) == ("payment", False, None)
    status, _, _ = stripe_server.request("GET", f"/_config/setup/{checkout.id}")
    assert status == 404


def test_the_sandbox_saves_a_card_once_per_idempotency_key_and_charges_it_off_session(app):
    gateway = sandbox()
    customer = gateway.create_customer(name="Client A", email=None, metadata={}, idempotency_key="c1")
    setup = gateway.create_setup_checkout(setup_request(customer_id=customer))
    assert gateway.create_setup_checkout(setup_request(customer_id=customer)).id == setup.id  # same key: replay
    assert setup.url == f"http://billing.test/pay/sandbox/setup/{setup.id}" and setup.status == "open"
    outcome = gateway.save_card(setup.id, number="4242 4242 4242 4242", exp_month=12, exp_year=2034,
                                today=date(2026, 3, 10))
    assert outcome.redirect_url == RETURN.replace("{CHECKOUT_SESSION_ID}", setup.id)
    done = gateway.retrieve_setup_checkout(setup.id)
    assert (done.status, done.setup_status, done.card.brand, done.card.last4, done.card.customer_id) == (
        "complete", "succeeded", "visa", "4242", customer)
    assert gateway.save_card(setup.id, number="4242424242424242", exp_month=12, exp_year=2034).kind == "closed"
    assert {row.kind for row in db.session.scalars(select(SandboxObject))} >= {"setup_session", "setup_intent",
                                                                                "payment_method"}

    charged = gateway.charge_off_session(customer_id=customer, payment_method_id=done.card.id, amount=2500,
                                         currency="USD", idempotency_key="a1", metadata={"invoice_id": "1"})
    assert (charged.status, charged.amount) == ("succeeded", 2500)
    gateway.detach_payment_method(done.card.id)
    with pytest.raises(GatewayError, match="no longer saved"):
        gateway.charge_off_session(customer_id=customer, payment_method_id=done.card.id, amount=2500,
                                   currency="USD", idempotency_key="a2", metadata={})


def test_the_sandbox_declines_later_charges_of_its_decline_test_card(app):
    gateway = sandbox()
    setup = gateway.create_setup_checkout(setup_request(customer_id="cus_sbx_x"))
    gateway.save_card(setup.id, number="4000000000000341", exp_month=1, exp_year=2030)
    card = gateway.retrieve_setup_checkout(setup.id).card
    charged = gateway.charge_off_session(customer_id="cus_sbx_x", payment_method_id=card.id, amount=100,
                                         currency="USD", idempotency_key="d1", metadata={})
    assert (charged.status, charged.failure_code) == ("failed", "card_declined")


def test_the_sandbox_setup_page_is_not_a_payment_page(app, client):
    gateway = sandbox()
    setup = gateway.create_setup_checkout(setup_request())
    assert client.get(f"/pay/sandbox/{setup.id}").status_code == 404
    assert client.get(f"/pay/sandbox/setup/{setup.id}").status_code == 200
    assert client.get("/pay/sandbox/setup/cs_sbx_missing").status_code == 404
    with pytest.raises(GatewayError):
        gateway.retrieve_setup_checkout("cs_sbx_missing")
