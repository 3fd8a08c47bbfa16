"""Outgoing webhooks against a real HTTP receiver started here: which changes become events (in the change's
transaction), the signature, retries after 500s and timeouts, an invoice's order, exactly one delivery after
success, giving up after 3 days, disabling a failing endpoint (admins emailed), and the SSRF guard."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import current_app
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import OutboxEmail, OutgoingEvent, WebhookDelivery, WebhookEndpoint
from invoicing.services.api import webhooks
from invoicing.services.api.events import emit_overdue
from invoicing.services.checkout import record_view
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import apply_payment, record_manual_payment
from invoicing.services.refunds import refund_payment
from invoicing.services.sending import send_invoice
from tests.api.conftest import cid
from tests.conftest import NOW, SYSTEM, make_invoice
from tests.pay.support import sandbox


@dataclass
class Receiver:
    """A local endpoint: answers each POST with the next planned status (a number, or "hang" for longer than the
    app waits), then 200; keeps what it received."""

    url: str = ""
    plan: list[Any] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def events(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((dict(self.headers), body))
            answer = state.plan.pop(0) if state.plan else 200
            if answer == "hang":
                time.sleep(2.5)
                answer = 200
            self.send_response(answer)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def private_allowed(app: Any) -> Iterator[None]:
    app.config.update(WEBHOOKS_ALLOW_PRIVATE=True, WEBHOOK_TIMEOUT=1)
    yield
    app.config.update(WEBHOOKS_ALLOW_PRIVATE=False, WEBHOOK_TIMEOUT=10)


def endpoint_for(world: Any, receiver: Receiver, events: list[str] | None = None) -> WebhookEndpoint:
    return webhooks.create_endpoint(world.org_a.id, url=receiver.url, description="", allow_private=True,
                                    events=events or list(webhooks.WEBHOOK_EVENT_TYPES), actor=SYSTEM,
                                    now=NOW - timedelta(days=1))


def deliver(at: Any = NOW) -> webhooks.DeliveryReport:
    return webhooks.deliver_due(now=at)


def deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.execute(select(WebhookDelivery).order_by(WebhookDelivery.id)).scalars())


def test_it_writes_an_event_for_each_change_in_that_changes_transaction(world, receiver, private_allowed):
    endpoint_for(world, receiver)
    invoice = make_invoice(world.client_a)  # invoice.created
    site_args = {"base_url": "http://billing.test", "secret_key": current_app.config["SECRET_KEY"],
                 "default_sender": "billing@a.test"}
    send_invoice(invoice.id, actor=SYSTEM, now=NOW, **site_args)  # invoice.sent
    record_view(invoice.id, now=NOW)  # invoice.viewed
    record_view(invoice.id, now=NOW)  # a second view is no news
    apply_payment(invoice.id, amount=500, currency="USD", method="card", status="failed", actor=SYSTEM, now=NOW,
                  payment_intent_id="pi_declined", failure_code="card_declined")  # payment.failed
    payment = record_manual_payment(invoice.id, amount=invoice.total, method="bank_transfer", paid_on=NOW.date(),
                                    reference="", actor=SYSTEM, now=NOW).payment  # payment.succeeded, invoice.paid
    refund_payment(invoice.id, payment.id, amount=100, reason="Goodwill", key="r1", actor=SYSTEM, gateway=sandbox(),
                   now=NOW)  # payment.refunded
    other = make_invoice(world.client_a, status="open")
    void_invoice(other.id, reason="Wrong", actor=SYSTEM, now=NOW)  # invoice.created, invoice.voided
    events = db.session.execute(select(OutgoingEvent.type).order_by(OutgoingEvent.id)).scalars().all()
    assert events == ["invoice.created", "invoice.sent", "invoice.viewed", "payment.failed", "payment.succeeded",
                      "invoice.paid", "payment.refunded", "invoice.created", "invoice.voided"]
    assert len(deliveries()) == len(events)
    paid = json.loads(db.session.execute(select(OutgoingEvent.payload).where(
        OutgoingEvent.type == "invoice.paid")).scalar_one())
    assert paid["data"]["object"]["status"] == "paid" and paid["data"]["object"]["amount_due"] == 0
    refunded = json.loads(db.session.execute(select(OutgoingEvent.payload).where(
        OutgoingEvent.type == "payment.refunded")).scalar_one())
    assert refunded["data"]["object"]["amount_refunded"] == 100 and refunded["id"].startswith("evt_")


def test_it_writes_nothing_when_no_endpoint_listens(world, receiver, private_allowed):
    endpoint_for(world, receiver, events=["invoice.paid"])
    invoice = make_invoice(world.client_a, status="open")
    assert db.session.execute(select(OutgoingEvent)).first() is None
    record_manual_payment(invoice.id, amount=invoice.total, method="cash", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW)
    assert db.session.execute(select(OutgoingEvent.type)).scalars().all() == ["invoice.paid"]


def test_it_delivers_signed_events_once(world, receiver, private_allowed):
    endpoint = endpoint_for(world, receiver)
    make_invoice(world.client_a)
    report = deliver()
    assert report.succeeded == 1
    [(headers, body)] = receiver.received
    event = db.session.execute(select(OutgoingEvent)).scalar_one()
    assert body == event.payload.encode() and headers["Content-Type"] == "application/json"
    assert headers["Invoicing-Event-Type"] == "invoice.created"
    assert headers["Invoicing-Event-Id"] == json.loads(body)["id"]
    signed = dict(part.split("=", 1) for part in headers["Invoicing-Signature"].split(","))
    secret = webhooks.secret_for(endpoint, current_app.config["SECRET_KEY"])
    expected = hmac.new(secret.encode(), signed["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signed["v1"], expected) and abs(time.time() - int(signed["t"])) < 60
    for later in (NOW, NOW + timedelta(hours=1), NOW + timedelta(days=4)):
        deliver(later)
    assert len(receiver.received) == 1  # exactly one delivery once it succeeded
    [delivery] = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)


def test_it_retries_after_a_500_and_a_timeout_with_backoff(world, receiver, private_allowed):
    endpoint_for(world, receiver)
    make_invoice(world.client_a)
    receiver.plan = [500, "hang"]
    deliver()
    [delivery] = deliveries()
    assert (delivery.status, delivery.last_status_code, delivery.next_attempt_at) == ("pending", 500,
                                                                                      NOW + timedelta(minutes=1))
    assert deliver(NOW + timedelta(seconds=59)).succeeded == 0 and len(receiver.received) == 1  # not yet
    deliver(NOW + timedelta(minutes=1))
    [delivery] = deliveries()
    assert delivery.last_status_code is None and "No answer within 1 s" in (delivery.last_error or "")
    assert delivery.next_attempt_at == NOW + timedelta(minutes=6)
    assert deliver(NOW + timedelta(minutes=6)).succeeded == 1
    [delivery] = deliveries()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3) and len(receiver.received) == 3
    assert db.session.get(WebhookEndpoint, delivery.endpoint_id).failing_since is None


def test_it_keeps_an_invoices_events_in_order(world, receiver, private_allowed):
    endpoint_for(world, receiver)
    first = make_invoice(world.client_a)
    send_invoice(first.id, actor=SYSTEM, now=NOW, base_url="http://billing.test",
                 secret_key=current_app.config["SECRET_KEY"], default_sender="billing@a.test")
    receiver.plan = [503]
    deliver()
    assert receiver.events() == ["invoice.created"]  # sent waits for created: nothing jumps the queue
    deliver(NOW + timedelta(seconds=30))
    assert receiver.events() == ["invoice.created"]
    deliver(NOW + timedelta(minutes=1))
    assert receiver.events() == ["invoice.created", "invoice.created", "invoice.sent"]


def test_it_gives_up_after_three_days_and_disables_an_endpoint_failing_for_days(world, receiver, private_allowed):
    endpoint_for(world, receiver)
    make_invoice(world.client_a)
    receiver.plan = [500] * 100
    at = NOW
    while deliveries()[0].status == "pending" and at < NOW + timedelta(days=5):
        deliver(at)
        at = deliveries()[0].next_attempt_at or at
    [delivery] = deliveries()
    assert delivery.status == "failed" and NOW + timedelta(days=3) <= at < NOW + timedelta(days=3, hours=13)
    assert 8 <= delivery.attempts <= 14
    endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
    assert not endpoint.enabled and "failed for 3 days" in endpoint.disabled_reason
    [email] = db.session.execute(select(OutboxEmail).where(OutboxEmail.kind == "webhook_disabled")).scalars().all()
    assert email.to_addr == "alice@a.test" and receiver.url in email.text_body
    make_invoice(world.client_a)  # a disabled endpoint hears nothing new
    assert len(deliveries()) == 1


def test_it_resends_a_delivery_on_request(world, receiver, private_allowed):
    endpoint_for(world, receiver)
    make_invoice(world.client_a)
    deliver()
    [delivery] = deliveries()
    webhooks.resend(delivery.id, world.org_a.id, actor=SYSTEM, now=NOW + timedelta(hours=1))
    deliver(NOW + timedelta(hours=1))
    assert receiver.events() == ["invoice.created", "invoice.created"]
    with pytest.raises(webhooks.NotFound):
        webhooks.resend(delivery.id, world.org_b.id, actor=SYSTEM, now=NOW)


def test_it_announces_overdue_invoices_once(world, receiver, private_allowed):
    endpoint_for(world, receiver, events=["invoice.overdue"])
    due_yesterday = make_invoice(world.client_a, status="open", issue_date=NOW.date() - timedelta(days=31))
    make_invoice(world.client_a, status="open", issue_date=NOW.date() - timedelta(days=90))  # overdue long before
    make_invoice(world.client_a, status="open")  # not due yet
    assert emit_overdue(now=NOW) == 1 and emit_overdue(now=NOW + timedelta(hours=1)) == 0
    payload = json.loads(db.session.execute(select(OutgoingEvent.payload)).scalar_one())
    assert payload["type"] == "invoice.overdue" and payload["data"]["object"]["id"] == f"inv_{due_yesterday.public_id}"
    assert "overdue" in payload["data"]["object"]["statuses"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hook", "http://localhost/hook", "http://169.254.169.254/",
                                 "http://10.1.2.3/x", "http://[::1]/x", "http://192.168.1.1/", "ftp://example.com/x",
                                 "https://user:pass@example.com/"])
def test_it_refuses_urls_it_must_not_call(world, url):
    with pytest.raises(webhooks.DomainError):
        webhooks.create_endpoint(world.org_a.id, url=url, description="", events=["invoice.paid"],
                                 allow_private=False, actor=SYSTEM, now=NOW)
    assert db.session.execute(select(WebhookEndpoint)).first() is None


def test_it_checks_the_address_again_when_delivering(world, receiver, app):
    endpoint_for(world, receiver)  # saved while an operator allowed private addresses
    make_invoice(world.client_a)
    deliver()  # now they are not allowed
    assert receiver.received == []
    [delivery] = deliveries()
    assert delivery.status == "pending" and "private, loopback or link-local" in (delivery.last_error or "")


def test_it_is_a_scheduler_job_and_a_command(world, receiver, private_allowed, runner):
    endpoint_for(world, receiver)
    make_invoice(world.client_a)
    assert "would try 1" in runner.invoke(args=["billing", "deliver-webhooks", "--dry-run"]).output
    result = runner.invoke(args=["billing", "deliver-webhooks"])
    assert "1 delivered" in result.output and len(receiver.received) == 1


def test_it_sends_api_changes_too(api, world, receiver, private_allowed):
    endpoint_for(world, receiver)
    response = api.post("/api/v1/invoices", json={"client": cid(world.client_a),
                                                   "lines": [{"description": "x", "unit_price": 100}]})
    deliver(datetime.now(UTC))  # the API works on the real clock
    assert json.loads(receiver.received[0][1])["data"]["object"] == response.json
