"""The sandbox gateway: Stripe-shaped state in its own table, idempotency keys, signed events."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.gateways.base import CheckoutRequest, GatewayError, SignatureError
from invoicing.gateways.sandbox import SandboxGateway, sign, webhook_secret
from invoicing.models import SandboxObject
from tests.conftest import make_invoice


class Recorder:
    """Stands in for the inbox: keeps the signed events the sandbox sends."""

    def __init__(self) -> None:
        self.events: list[tuple[bytes, str]] = []

    def __call__(self, raw: bytes, signature: str) -> None:
        self.events.append((raw, signature))

    def types(self) -> list[str]:
        return [json.loads(raw)["type"] for raw, _ in self.events]


@pytest.fixture
def sent() -> Recorder:
    return Recorder()


@pytest.fixture
def gateway(app, sent) -> SandboxGateway:
    return SandboxGateway(secret_key=app.config["SECRET_KEY"], base_url="http://billing.test", deliver=sent)


def request(amount: int = 5000, key: str = "k1", currency: str = "EUR") -> CheckoutRequest:
    return CheckoutRequest(amount=amount, currency=currency, product_name="Invoice 1", success_url="http://s/{CHECKOUT_SESSION_ID}",
                           cancel_url="http://c", idempotency_key=key, metadata={"invoice_id": "1"})


def test_it_creates_a_session_once_per_idempotency_key(gateway):
    first, again, other = gateway.create_checkout(request()), gateway.create_checkout(request()), \
        gateway.create_checkout(request(key="k2"))
    assert first.id == again.id != other.id and first.id.startswith("cs_sbx_")
    assert first.url == f"http://billing.test/pay/sandbox/{first.id}"
    assert (first.amount, first.currency, first.status, first.payment_status) == (5000, "EUR", "open", "unpaid")
    kinds = sorted(db.session.scalars(select(SandboxObject.kind)))
    assert kinds == ["checkout.session", "checkout.session", "idempotency", "idempotency"]


def test_it_applies_the_same_amount_rules_as_stripe(gateway):
    with pytest.raises(GatewayError, match="steps of KWD"):
        gateway.create_checkout(request(12345, currency="KWD"))


def test_it_pays_then_refunds_within_what_is_left(gateway, sent):
    checkout = gateway.create_checkout(request())
    outcome = gateway.pay(checkout.id, card="4242 4242 4242 4242", email="p@x.test")
    assert outcome.kind == "paid" and outcome.redirect_url == f"http://s/{checkout.id}"
    assert sent.types() == ["payment_intent.succeeded", "checkout.session.completed"]
    paid = gateway.retrieve_checkout(checkout.id)
    assert (paid.status, paid.payment_status, paid.payer_email, paid.url) == ("complete", "paid", "p@x.test", None)
    refund = gateway.refund(amount=2000, currency="EUR", idempotency_key="r1", payment_intent_id=paid.payment_intent_id,
                            reason="goodwill")
    assert gateway.refund(amount=2000, currency="EUR", idempotency_key="r1",
                          payment_intent_id=paid.payment_intent_id).id == refund.id
    with pytest.raises(GatewayError, match="more than what is left"):
        gateway.refund(amount=3001, currency="EUR", idempotency_key="r2", payment_intent_id=paid.payment_intent_id)
    charge = gateway.retrieve_charge(refund.charge_id)
    assert (charge.amount_refunded, [(r.id, r.reason) for r in charge.refunds]) == (2000, [(refund.id, "goodwill")])
    assert sent.types()[-1] == "charge.refunded" and sent.types().count("charge.refunded") == 1
    assert gateway.pay(checkout.id, card="4242424242424242", email="").kind == "closed"


def test_it_fails_a_refund_later_and_gives_the_charge_its_money_back(gateway, sent):
    checkout = gateway.create_checkout(request())
    gateway.pay(checkout.id, card="4242424242424242", email="")
    intent_id = gateway.retrieve_checkout(checkout.id).payment_intent_id
    refund = gateway.refund(amount=5000, currency="EUR", idempotency_key="r1", payment_intent_id=intent_id,
                            reason="cancelled")
    failed = gateway.fail_refund(refund.id)
    assert (failed.id, failed.status, failed.failure_reason, failed.reversed) == (
        refund.id, "failed", "expired_or_canceled_card", True)
    assert sent.types()[-3:] == ["refund.updated", "charge.refund.updated", "refund.failed"]
    event = gateway.parse_event(*sent.events[-1])
    assert (event.refund().id, event.refund().amount, event.refund().charge_id) == (refund.id, 5000, refund.charge_id)
    assert (event.refund().status, event.refund().reason) == ("failed", "cancelled")
    charge = gateway.retrieve_charge(refund.charge_id)
    assert (charge.amount_refunded, [r.status for r in charge.refunds]) == (0, ["failed"])
    with pytest.raises(GatewayError, match="Only a pending or succeeded refund"):
        gateway.fail_refund(refund.id)
    again = gateway.refund(amount=5000, currency="EUR", idempotency_key="r2", payment_intent_id=intent_id)
    assert gateway.fail_refund(again.id, status="canceled").status == "canceled"
    assert sent.types()[-2:] == ["refund.updated", "charge.refund.updated"]  # refund.failed only when it failed


def test_it_expires_sessions_and_says_so(gateway, sent):
    checkout = gateway.create_checkout(request())
    assert gateway.expire_checkout(checkout.id).status == "expired"
    assert gateway.expire_checkout(checkout.id).status == "expired"
    assert sent.types() == ["checkout.session.expired"]


def test_it_charges_saved_test_methods_off_session(gateway, sent):
    ok = gateway.charge_off_session(customer_id="cus_x", payment_method_id="pm_sandbox_visa", amount=700,
                                    currency="USD", idempotency_key="a1", metadata={"invoice_id": "9"})
    assert ok.status == "succeeded" and sent.types() == ["payment_intent.succeeded"]
    declined = gateway.charge_off_session(customer_id="cus_x", payment_method_id="pm_sandbox_decline", amount=700,
                                          currency="USD", idempotency_key="a2", metadata={})
    auth = gateway.charge_off_session(customer_id="cus_x", payment_method_id="pm_sandbox_auth", amount=700,
                                      currency="USD", idempotency_key="a3", metadata={})
    assert (declined.status, declined.failure_code, auth.status) == ("failed", "card_declined", "requires_action")


def test_it_signs_events_with_a_key_derived_from_the_secret_key(app, gateway, sent, world):
    invoice = make_invoice(world.client_a, status="open")
    gateway.charge_off_session(customer_id="c", payment_method_id="pm_sandbox_visa", amount=100, currency="USD",
                               idempotency_key="s1", metadata={"invoice_id": str(invoice.id)})
    raw, signature = sent.events[0]
    event = gateway.parse_event(raw, signature)
    assert (event.provider, event.type, event.payment_intent().invoice_id) == (
        "sandbox", "payment_intent.succeeded", invoice.id)
    secret = webhook_secret(app.config["SECRET_KEY"])
    for bad in (sign(raw, "not-the-secret"), sign(raw + b"x", secret), sign(raw, secret, int(time.time()) - 301),
                None, "t=abc,v1=00"):
        with pytest.raises(SignatureError):
            gateway.parse_event(raw, bad)
