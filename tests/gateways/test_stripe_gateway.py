"""The Stripe gateway against the Stripe test server (real HTTP, the real SDK; nothing patched)."""

from __future__ import annotations

import json
import time

import pytest

from invoicing.gateways.base import CheckoutRequest, GatewayError, SignatureError
from invoicing.gateways.stripe import from_stripe, to_stripe
from tests.pay.support import WEBHOOK_SECRET, event_body, stripe_gateway, stripe_object, stripe_signature


@pytest.fixture
def gateway(stripe_server):
    stripe_server.reset()
    yield stripe_gateway(stripe_server)
    stripe_server.reset()


def request(amount: int = 27000, currency: str = "USD", key: str = "k1", **extra) -> CheckoutRequest:
    values = dict(amount=amount, currency=currency, product_name="Invoice 2026-0001",
                  success_url="http://app.test/pay/t/return?session_id={CHECKOUT_SESSION_ID}",
                  cancel_url="http://app.test/pay/t", idempotency_key=key,
                  metadata={"invoice_id": "7", "invoice_number": "2026-0001"})
    values.update(extra)
    return CheckoutRequest(**values)


@pytest.mark.parametrize(("currency", "amount"), [("USD", 123456), ("EUR", 99), ("JPY", 27000), ("KWD", 12340)])
def test_it_round_trips_amounts_to_the_provider_exactly(stripe_server, gateway, currency, amount):
    checkout = gateway.create_checkout(request(amount, currency, key=f"rt-{currency}"))
    remote = stripe_object(stripe_server, f"/v1/checkout/sessions/{checkout.id}")
    assert (remote["amount_total"], remote["currency"]) == (amount, currency.lower())  # minor units as-is
    assert (checkout.amount, checkout.currency, checkout.status) == (amount, currency, "open")
    stripe_server.pay(checkout.id)
    paid = gateway.retrieve_checkout(checkout.id)
    intent = gateway.retrieve_payment_intent(paid.payment_intent_id)
    assert (paid.payment_status, paid.amount, intent.amount, intent.currency) == ("paid", amount, amount, currency)
    refund = gateway.refund(amount=amount, currency=currency, idempotency_key=f"rf-{currency}",
                            payment_intent_id=intent.id, reason="test")
    assert (refund.amount, refund.payment_intent_id) == (amount, intent.id)


def test_it_refuses_three_decimal_amounts_stripe_cannot_charge(stripe_server, gateway):
    with pytest.raises(GatewayError, match="steps of KWD"):
        gateway.create_checkout(request(12345, "KWD"))
    assert stripe_object(stripe_server, "/v1/checkout/sessions")["data"] == []


def test_it_converts_currencies_stripe_counts_differently_from_iso():
    assert (to_stripe(500, "ISK"), from_stripe(50000, "ISK")) == (50000, 500)  # ISK: 0 decimals, Stripe 2
    assert (to_stripe(1999, "USD"), to_stripe(1999, "JPY"), to_stripe(1990, "KWD")) == (1999, 1999, 1990)
    with pytest.raises(GatewayError):
        to_stripe(12345, "LYD")  # 3 decimals in ISO, 2 at Stripe: 12.345 cannot be sent exactly
    with pytest.raises(ValueError):
        from_stripe(50001, "ISK")


def test_it_replays_a_repeated_create_with_the_same_key(stripe_server, gateway):
    first = gateway.create_checkout(request(key="same"))
    again = gateway.create_checkout(request(key="same"))
    other = gateway.create_checkout(request(key="other"))
    assert first.id == again.id != other.id
    assert first.url == f"{stripe_server.base_url}/_config/checkout/{first.id}"
    assert first.metadata == {"invoice_id": "7", "invoice_number": "2026-0001"} and first.invoice_id == 7


def test_it_recovers_a_lost_response_by_retrying_with_the_same_key(stripe_server, gateway):
    stripe_server.fault(path_prefix="/v1/checkout/sessions", method="POST", mode="drop_after", count=1)
    checkout = gateway.create_checkout(request(key="lost"))
    assert [s["id"] for s in stripe_object(stripe_server, "/v1/checkout/sessions")["data"]] == [checkout.id]


def test_it_reports_an_unreachable_provider_as_retryable(stripe_server):
    gateway = stripe_gateway(stripe_server, max_network_retries=0)
    stripe_server.fault(path_prefix="/v1/checkout/sessions", mode="error_500", count=1)
    with pytest.raises(GatewayError) as error:
        gateway.create_checkout(request())
    assert error.value.retryable and "could not be reached" in error.value.message
    with pytest.raises(GatewayError) as missing:
        gateway.retrieve_checkout("cs_test_missing")
    assert (missing.value.retryable, missing.value.code) == (False, "resource_missing")


def test_it_expires_an_open_session_and_reports_a_closed_one_as_it_is(stripe_server, gateway):
    checkout = gateway.create_checkout(request())
    assert gateway.expire_checkout(checkout.id).status == "expired"
    assert gateway.expire_checkout(checkout.id).status == "expired"  # no error the second time
    paid = gateway.create_checkout(request(key="k2"))
    stripe_server.pay(paid.id)
    assert gateway.expire_checkout(paid.id).status == "complete"  # too late: money moved


def test_it_creates_a_customer_once_per_key(stripe_server, gateway):
    first = gateway.create_customer(name="Client A", email="a@client.test", metadata={"client_id": "1"},
                                    idempotency_key="customer:abc")
    again = gateway.create_customer(name="Client A", email="a@client.test", metadata={"client_id": "1"},
                                    idempotency_key="customer:abc")
    assert first == again and first.startswith("cus_")
    checkout = gateway.create_checkout(request(customer_id=first))
    assert checkout.customer_id == first


def paid_intent(stripe_server, gateway, amount):
    """A checkout paid at the test server, as its PaymentIntent."""
    checkout = gateway.create_checkout(request(amount))
    stripe_server.pay(checkout.id)
    return gateway.retrieve_payment_intent(gateway.retrieve_checkout(checkout.id).payment_intent_id)


def test_it_refunds_in_parts_and_lists_them_on_the_charge(stripe_server, gateway):
    intent = paid_intent(stripe_server, gateway, 10000)
    part = gateway.refund(amount=2500, currency="USD", idempotency_key="r1", payment_intent_id=intent.id,
                          reason="late delivery")
    again = gateway.refund(amount=2500, currency="USD", idempotency_key="r1", payment_intent_id=intent.id,
                           reason="late delivery")
    assert part.id == again.id
    with pytest.raises(GatewayError, match="greater than unrefunded"):
        gateway.refund(amount=9000, currency="USD", idempotency_key="r2", charge_id=intent.charge_id)
    charge = gateway.retrieve_charge(intent.charge_id)
    assert (charge.amount, charge.amount_refunded, [r.id for r in charge.refunds]) == (10000, 2500, [part.id])
    assert charge.refunds[0].reason == "late delivery"


def test_it_charges_a_saved_card_off_session(stripe_server, gateway):
    customer = gateway.create_customer(name="Autopay Co", email=None, metadata={}, idempotency_key="c-auto")
    ok = gateway.charge_off_session(customer_id=customer, payment_method_id="pm_card_visa", amount=4200,
                                    currency="EUR", idempotency_key="auto-1", metadata={"invoice_id": "7"})
    assert (ok.status, ok.amount, ok.currency) == ("succeeded", 4200, "EUR") and ok.payment_intent_id
    again = gateway.charge_off_session(customer_id=customer, payment_method_id="pm_card_visa", amount=4200,
                                       currency="EUR", idempotency_key="auto-1", metadata={"invoice_id": "7"})
    assert again.payment_intent_id == ok.payment_intent_id
    declined = gateway.charge_off_session(customer_id=customer, payment_method_id="pm_card_chargeCustomerFail",
                                          amount=4200, currency="EUR", idempotency_key="auto-2", metadata={})
    assert (declined.status, declined.failure_code) == ("failed", "card_declined")


def test_it_verifies_webhook_signatures_on_the_raw_body(gateway):
    raw = event_body("checkout.session.completed", {"id": "cs_1", "object": "checkout.session",
                                                    "amount_total": 500, "currency": "jpy", "status": "complete",
                                                    "payment_status": "paid", "metadata": {"invoice_id": "3"}})
    event = gateway.parse_event(raw, stripe_signature(raw))
    assert (event.provider, event.type, event.checkout().amount, event.checkout().currency) == (
        "stripe", "checkout.session.completed", 500, "JPY")
    assert event.checkout().invoice_id == 3
    for bad in (stripe_signature(raw, "whsec_other"), stripe_signature(raw + b" "), None, "garbage",
                stripe_signature(raw, timestamp=int(time.time()) - 301)):
        with pytest.raises(SignatureError):
            gateway.parse_event(raw, bad)
    tampered = json.dumps({**json.loads(raw), "type": "charge.refunded"}).encode()
    with pytest.raises(SignatureError):
        gateway.parse_event(tampered, stripe_signature(raw, WEBHOOK_SECRET))


def test_it_normalizes_refund_status_events(stripe_server, gateway):
    intent = paid_intent(stripe_server, gateway, 10000)
    refund = gateway.refund(amount=2500, currency="USD", idempotency_key="r1", payment_intent_id=intent.id,
                            reason="late delivery")
    assert (refund.status, refund.reason, refund.reversed) == ("succeeded", "late delivery", False)
    failed = stripe_server.fail_refund(refund.id, failure_reason="lost_or_stolen_card")
    for type_ in ("charge.refund.updated", "refund.updated", "refund.failed"):
        raw = event_body(type_, failed)
        info = gateway.parse_event(raw, stripe_signature(raw)).refund()
        assert (info.id, info.status, info.failure_reason, info.reversed) == (
            refund.id, "failed", "lost_or_stolen_card", True)
        assert (info.amount, info.currency, info.charge_id, info.payment_intent_id, info.reason) == (
            2500, "USD", intent.charge_id, intent.id, "late delivery")
    listed, = gateway.retrieve_charge(intent.charge_id).refunds
    assert (listed.id, listed.status, listed.failure_reason) == (refund.id, "failed", "lost_or_stolen_card")
