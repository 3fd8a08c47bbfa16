"""Tests of the test-only Stripe server (tests/stripe_server.py) through the real stripe SDK."""
from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import pytest
import stripe

WEBHOOK_SECRET = "whsec_test_launcher"
SUCCESS_URL = "http://app.test/paid?session_id={CHECKOUT_SESSION_ID}"


class Delivery(NamedTuple):
    event: dict[str, Any]  # parsed body
    raw: bytes
    signature: str  # Stripe-Signature header

    @property
    def object(self) -> dict[str, Any]:
        return self.event["data"]["object"]

    def verified(self) -> stripe.Event:
        return stripe.Webhook.construct_event(self.raw, self.signature, WEBHOOK_SECRET)


class WebhookReceiver:
    """Tiny stdlib HTTP server collecting webhook deliveries."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                delivery = Delivery(json.loads(raw), raw, self.headers["Stripe-Signature"])
                with receiver.cond:
                    receiver.deliveries.append(delivery)
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def of_type(self, type: str) -> list[Delivery]:
        with self.cond:
            return [d for d in self.deliveries if d.event["type"] == type]

    def wait_for(self, type: str, count: int = 1, timeout: float = 5.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.of_type(type)) < count:
                if not self.cond.wait(deadline - time.monotonic()):
                    seen = [d.event["type"] for d in self.deliveries]
                    raise AssertionError(f"no {count} x {type} within {timeout}s; received {seen}")
            return self.of_type(type)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(autouse=True)
def clean(stripe_server):
    stripe_server.reset()
    yield
    stripe_server.clear_faults()


@pytest.fixture
def webhooks(stripe_server):
    receiver = WebhookReceiver()
    stripe_server.register_webhook(receiver.url, WEBHOOK_SECRET, id="test_stripe_server")
    yield receiver
    stripe_server.unregister_webhooks("test_stripe_server")
    receiver.close()


def make_client(stripe_server, retries: int = 0) -> tuple[stripe.StripeClient, stripe.HTTPClient]:
    http_client = stripe.RequestsClient()
    client = stripe.StripeClient(stripe_server.api_key, base_addresses={"api": stripe_server.base_url},
                                 http_client=http_client, max_network_retries=retries)
    return client, http_client


@pytest.fixture
def client(stripe_server):
    client, http_client = make_client(stripe_server)
    yield client
    http_client.close()


@pytest.fixture
def global_stripe(stripe_server):
    saved = stripe.api_key, stripe.api_base, stripe.default_http_client, stripe.max_network_retries
    stripe.api_key, stripe.api_base = stripe_server.api_key, stripe_server.base_url
    stripe.default_http_client, stripe.max_network_retries = stripe.RequestsClient(), 0
    yield stripe
    stripe.default_http_client.close()
    stripe.api_key, stripe.api_base, stripe.default_http_client, stripe.max_network_retries = saved


def session_params(amount: int = 1234, currency: str = "eur", quantity: int = 2, **extra: Any) -> Any:
    price_data = {"currency": currency, "unit_amount": amount, "product_data": {"name": "Invoice INV-7"}}
    return {"mode": "payment", "success_url": SUCCESS_URL, "cancel_url": "http://app.test/cancel",
            "line_items": [{"price_data": price_data, "quantity": quantity}], **extra}


def post_customer(stripe_server, idempotency_key: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {stripe_server.api_key}", "Idempotency-Key": idempotency_key}
    req = urllib.request.Request(stripe_server.base_url + "/v1/customers", data=b"email=a%40example.com",
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def test_it_creates_pays_and_signs_a_checkout_session(stripe_server, client, webhooks):
    created = client.v1.checkout.sessions.create(session_params(
        client_reference_id="inv_7", metadata={"invoice_id": "7"}, customer_email="payer@example.com",
        payment_intent_data={"metadata": {"invoice_id": "7"}}, payment_method_types=["card"]))
    assert created.id.startswith("cs_test_") and created.object == "checkout.session"
    assert (created.status, created.payment_status, created.payment_intent) == ("open", "unpaid", None)
    assert (created.amount_total, created.amount_subtotal, created.currency) == (2468, 2468, "eur")
    assert created.url == f"{stripe_server.base_url}/_config/checkout/{created.id}"
    assert created.livemode is False and created.metadata.to_dict() == {"invoice_id": "7"}
    assert created.expires_at - created.created == 86400

    assert client.v1.checkout.sessions.retrieve(created.id).client_reference_id == "inv_7"
    assert stripe_server.pay(created.id) == f"http://app.test/paid?session_id={created.id}"

    paid = client.v1.checkout.sessions.retrieve(created.id)
    assert (paid.status, paid.payment_status, paid.url) == ("complete", "paid", None)
    assert paid.payment_intent.startswith("pi_")
    intent = client.v1.payment_intents.retrieve(paid.payment_intent)
    assert (intent.status, intent.amount) == ("succeeded", 2468)
    assert intent.metadata.to_dict() == {"invoice_id": "7"}

    completed, = webhooks.wait_for("checkout.session.completed")
    event = completed.verified()
    assert event.id.startswith("evt_") and event.type == "checkout.session.completed"
    assert (event.data.object.id, event.data.object.payment_status) == (created.id, "paid")
    assert event.data.object.payment_intent == paid.payment_intent
    assert completed.event["object"] == "event" and completed.event["livemode"] is False
    assert completed.event["api_version"] and completed.event["created"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(completed.raw, completed.signature, "whsec_wrong")
    succeeded, = webhooks.wait_for("payment_intent.succeeded")
    assert succeeded.verified().data.object.id == paid.payment_intent


def test_it_keeps_the_session_open_when_the_card_is_declined(stripe_server, client, webhooks):
    session = client.v1.checkout.sessions.create(session_params())
    status, _, page = stripe_server.request("GET", f"/_config/checkout/{session.id}")
    assert status == 200 and b"Card number" in page and b"24.68 EUR" in page and b">Pay</button>" in page

    assert stripe_server.pay(session.id, card="4000000000000002") is None
    status, _, page = stripe_server.request("POST", f"/_config/checkout/{session.id}/pay",
                                            data={"card": "4000 0000 0000 0002", "email": "a@example.com"})
    assert status == 402 and b"Your card was declined." in page and b'name="card"' in page
    webhooks.wait_for("payment_intent.payment_failed")
    still = client.v1.checkout.sessions.retrieve(session.id)
    assert (still.status, still.payment_status, still.payment_intent) == ("open", "unpaid", None)

    assert stripe_server.pay(session.id, card="4242424242424242")
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    status, _, page = stripe_server.request("GET", f"/_config/checkout/{session.id}")
    assert b"complete" in page and b'name="card"' not in page


def test_it_expires_open_sessions_only(stripe_server, client, webhooks):
    session = client.v1.checkout.sessions.create(session_params())
    expired = client.v1.checkout.sessions.expire(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    assert webhooks.wait_for("checkout.session.expired")[0].object["id"] == session.id
    with pytest.raises(stripe.InvalidRequestError, match=r'status in \["open"\] can be expired'):
        client.v1.checkout.sessions.expire(session.id)
    assert b"has expired" in stripe_server.request("GET", f"/_config/checkout/{session.id}")[2]
    with pytest.raises(RuntimeError, match="HTTP 400"):
        stripe_server.pay(session.id)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert missing.value.code == "resource_missing"


def test_it_replays_requests_with_the_same_idempotency_key(stripe_server, client):
    first = client.v1.checkout.sessions.create(session_params(), {"idempotency_key": "inv-7-attempt-1"})
    again = client.v1.checkout.sessions.create(session_params(), {"idempotency_key": "inv-7-attempt-1"})
    other = client.v1.checkout.sessions.create(session_params(), {"idempotency_key": "inv-7-attempt-2"})
    assert first.id == again.id != other.id
    assert len(client.v1.checkout.sessions.list().data) == 2
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(session_params(amount=1), {"idempotency_key": "inv-7-attempt-1"})

    status1, headers1, body1 = post_customer(stripe_server, "raw")
    status2, headers2, body2 = post_customer(stripe_server, "raw")
    assert (status1, status2, body1) == (200, 200, body2)
    assert ("Idempotent-Replayed" in headers1, headers2.get("Idempotent-Replayed")) == (False, "true")


def test_it_answers_409_to_a_concurrent_duplicate(stripe_server):
    stripe_server.fault(path_prefix="/v1/customers", method="POST", mode="delay", seconds=0.5, count=1)
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(post_customer, stripe_server, "dup-1")
        time.sleep(0.2)
        fast = pool.submit(post_customer, stripe_server, "dup-1")
        (fast_status, _, fast_body), (slow_status, _, _) = fast.result(), slow.result()
    assert (fast_status, slow_status) == (409, 200)
    assert json.loads(fast_body)["error"]["type"] == "idempotency_error"


def test_it_emits_charge_refunded_on_refunds(stripe_server, client, webhooks):
    session = client.v1.checkout.sessions.create(session_params(amount=2000, quantity=1))
    stripe_server.pay(session.id)
    intent = client.v1.checkout.sessions.retrieve(session.id).payment_intent

    refund = client.v1.refunds.create({"payment_intent": intent, "amount": 500, "reason": "duplicate"})
    assert (refund.amount, refund.payment_intent, refund.reason) == (500, intent, "duplicate")
    refunded, = webhooks.wait_for("charge.refunded")
    charge = refunded.verified().data.object
    assert (charge.payment_intent, charge.amount_refunded, charge.refunded) == (intent, 500, False)
    assert [r["id"] for r in refunded.object["refunds"]["data"]] == [refund.id]
    webhooks.wait_for("refund.created")

    assert client.v1.refunds.create({"charge": charge.id}).amount == 1500  # what is left
    last = webhooks.wait_for("charge.refunded", count=2)[-1].object
    assert (last["amount_refunded"], last["refunded"]) == (2000, True)
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create({"payment_intent": intent, "amount": 1})
    assert again.value.code == "charge_already_refunded"


def test_it_fails_a_refund_later_with_stripes_refund_events(stripe_server, client, webhooks):
    session = client.v1.checkout.sessions.create(session_params(amount=2000, quantity=1))
    stripe_server.pay(session.id)
    intent = client.v1.checkout.sessions.retrieve(session.id).payment_intent
    refund = client.v1.refunds.create({"payment_intent": intent, "amount": 1500})

    failed = stripe_server.fail_refund(refund.id)
    reason = "expired_or_canceled_card"
    assert (failed["status"], failed["failure_reason"], failed["amount"]) == ("failed", reason, 1500)
    for type_ in ("refund.updated", "charge.refund.updated", "refund.failed"):
        delivery, = webhooks.wait_for(type_)
        verified = delivery.verified().data.object
        assert (verified.id, verified.status, verified.failure_reason) == (refund.id, "failed", reason)
        assert (delivery.object["charge"], delivery.object["payment_intent"]) == (refund.charge, intent)
    charge = client.v1.charges.retrieve(refund.charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)  # the money is back: it can be refunded again
    again = client.v1.refunds.create({"charge": charge.id})
    assert again.amount == 2000

    canceled = stripe_server.fail_refund(again.id, status="canceled")
    assert (canceled["status"], canceled.get("failure_reason")) == ("canceled", None)
    assert webhooks.wait_for("refund.updated", count=2)[-1].object["status"] == "canceled"
    status, _, body = stripe_server.request("POST", f"/_config/refunds/{refund.id}/fail", data={"status": "failed"})
    assert status == 400 and b"only a pending or succeeded refund can fail" in body
    time.sleep(0.3)
    assert len(webhooks.of_type("refund.failed")) == 1  # a canceled refund did not fail


def test_it_injects_http_500_and_dropped_connections(stripe_server, client):
    stripe_server.fault(path_prefix="/v1/checkout/sessions", method="POST", mode="error_500", count=1)
    with pytest.raises(stripe.APIError):
        client.v1.checkout.sessions.create(session_params())
    stripe_server.fault(path_prefix="/v1/checkout/sessions", method="POST", mode="drop_before")
    with pytest.raises(stripe.APIConnectionError):
        client.v1.checkout.sessions.create(session_params())
    assert client.v1.checkout.sessions.list().data == []

    # A lost response (processed, then dropped) is retried by the SDK with the same Idempotency-Key.
    retrying, http_client = make_client(stripe_server, retries=2)
    try:
        stripe_server.fault(path_prefix="/v1/checkout/sessions", method="POST", mode="drop_after")
        session = retrying.v1.checkout.sessions.create(session_params())
    finally:
        http_client.close()
    assert [s.id for s in client.v1.checkout.sessions.list().data] == [session.id]


def test_it_settles_later_payments(stripe_server, client, webhooks):
    session = client.v1.checkout.sessions.create(session_params())
    assert stripe_server.pay(session.id, card="4000000000000077").startswith("http://app.test/paid")
    pending = client.v1.checkout.sessions.retrieve(session.id)
    assert (pending.status, pending.payment_status) == ("complete", "unpaid")
    assert client.v1.payment_intents.retrieve(pending.payment_intent).status == "processing"
    assert webhooks.wait_for("checkout.session.completed")[0].object["payment_status"] == "unpaid"

    assert stripe_server.settle(session.id, "succeeded")["payment_status"] == "paid"
    settled, = webhooks.wait_for("checkout.session.async_payment_succeeded")
    assert settled.verified().data.object.payment_status == "paid"
    assert client.v1.payment_intents.retrieve(pending.payment_intent).status == "succeeded"
    with pytest.raises(RuntimeError, match="HTTP 400"):
        stripe_server.settle(session.id, "succeeded")

    failing = client.v1.checkout.sessions.create(session_params())
    stripe_server.pay(failing.id, card="4000000000000077")
    assert stripe_server.settle(failing.id, "failed")["payment_status"] == "unpaid"
    assert webhooks.wait_for("checkout.session.async_payment_failed")[0].object["id"] == failing.id


def test_it_keeps_zero_decimal_amounts_exact(stripe_server, global_stripe):
    session = global_stripe.checkout.Session.create(**session_params(amount=1500, currency="JPY", quantity=3))
    assert (session.amount_total, session.currency) == (4500, "jpy")
    assert b"4,500 JPY" in stripe_server.request("GET", f"/_config/checkout/{session.id}")[2]
    stripe_server.pay(session.id)
    paid = global_stripe.checkout.Session.retrieve(session.id)
    intent = global_stripe.PaymentIntent.retrieve(paid.payment_intent)
    assert (intent.amount, intent.currency) == (4500, "jpy")
    with pytest.raises(stripe.InvalidRequestError, match="quantity"):
        global_stripe.checkout.Session.create(**session_params(quantity=0))


def test_it_pauses_duplicates_and_drops_webhooks(stripe_server, client, webhooks):
    stripe_server.fault(webhooks="pause")
    client.v1.customers.create({"email": "held@example.com"})
    time.sleep(0.3)
    assert webhooks.of_type("customer.created") == []
    assert stripe_server.fault(webhook_duplicates=1)["held_webhooks"] == 1
    stripe_server.fault(webhooks="resume")
    first, second = webhooks.wait_for("customer.created", count=2)
    assert first.event["id"] == second.event["id"]

    stripe_server.fault(webhooks="pause")
    client.v1.customers.create({"email": "dropped@example.com"})
    time.sleep(0.3)
    stripe_server.fault(webhooks="drop")
    client.v1.customers.create({"email": "after@example.com"})
    emails = [d.object["email"] for d in webhooks.wait_for("customer.created", count=4)]
    assert emails == ["held@example.com"] * 2 + ["after@example.com"] * 2


def test_it_resets_sessions_and_idempotency_keys(stripe_server, client):
    session = client.v1.checkout.sessions.create(session_params(), {"idempotency_key": "reset-me"})
    stripe_server.reset()
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.retrieve(session.id)
    recreated = client.v1.checkout.sessions.create(session_params(), {"idempotency_key": "reset-me"})
    assert recreated.id != session.id
