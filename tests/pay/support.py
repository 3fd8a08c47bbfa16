"""Helpers for the payment tests: gateways pointed at the test servers, signed events, waiting, invariants.

Plain functions (fixtures live in each directory's conftest.py and wrap these)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from flask import Flask, current_app
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.gateways import get_gateway
from invoicing.gateways.sandbox import SandboxGateway
from invoicing.gateways.stripe import StripeGateway
from invoicing.models import Invoice, OutboxEmail, Payment, Refund, WebhookEvent
from invoicing.services.checkout import Site
from invoicing.services.paylinks import token_for

WEBHOOK_SECRET = "whsec_test_invoicing_app"
STRIPE_KEYS = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE")
T = TypeVar("T")


def site() -> Site:
    return Site.from_config(current_app.config)


def sandbox() -> SandboxGateway:
    """The app's sandbox gateway (events delivered in-process to the inbox), as with no Stripe key."""
    gateway = get_gateway({**current_app.config, "STRIPE_SECRET_KEY": None})
    assert isinstance(gateway, SandboxGateway)
    return gateway


def stripe_gateway(stripe_server: Any, **kwargs: Any) -> StripeGateway:
    return StripeGateway(api_key=stripe_server.api_key, webhook_secret=WEBHOOK_SECRET,
                         api_base=stripe_server.base_url, **kwargs)


def stripe_env(stripe_server: Any) -> dict[str, str]:
    return {"STRIPE_SECRET_KEY": stripe_server.api_key, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": stripe_server.base_url}


@contextmanager
def stripe_configured(app: Flask, stripe_server: Any) -> Iterator[None]:
    """The in-process app talks to the Stripe test server for the duration (its config restored after)."""
    saved = {key: app.config.get(key) for key in STRIPE_KEYS}
    app.config.update(stripe_env(stripe_server))
    try:
        yield
    finally:
        app.config.update(saved)


def token(invoice: Invoice) -> str:
    return token_for(invoice, current_app.config["SECRET_KEY"])


def pay_path(invoice: Invoice, suffix: str = "") -> str:
    return f"/pay/{token(invoice)}{suffix}"


# --- signed events ----------------------------------------------------------------------------------------


def stripe_signature(raw: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()


def event_body(type_: str, obj: dict[str, Any], event_id: str | None = None, created: int | None = None) -> bytes:
    """A Stripe event around `obj`; `created` (unix seconds, default now) is when the provider made it."""
    payload = {"id": event_id or f"evt_test_{secrets.token_hex(8)}", "object": "event", "type": type_,
               "created": int(time.time()) if created is None else created, "livemode": False,
               "data": {"object": obj}}
    return json.dumps(payload).encode()


def stripe_object(stripe_server: Any, path: str) -> dict[str, Any]:
    """An object as the Stripe test server returns it (e.g. /v1/checkout/sessions/cs_...)."""
    status, _, body = stripe_server.request("GET", path, auth=True)
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def post(url: str, raw: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=raw, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


class WebhookCapture:
    """A tiny HTTP server that keeps the signed deliveries of the Stripe test server (to replay them in any
    order, any number of times, against the app)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, Any], bytes]] = []
        self.lock = threading.Lock()
        capture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with capture.lock:
                    capture.deliveries.append((json.loads(raw), raw))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def bodies(self, type_: str) -> list[bytes]:
        with self.lock:
            return [raw for event, raw in self.deliveries if event["type"] == type_]

    def wait_for(self, type_: str, count: int = 1) -> list[bytes]:
        return wait_until(lambda: self.bodies(type_) if len(self.bodies(type_)) >= count else None,
                          what=f"{count} x {type_}")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


# --- waiting and checking ---------------------------------------------------------------------------------


def wait_until(check: Callable[[], T | None], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `check` (with a fresh view of the database each time) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()
        db.session.expire_all()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def settled_inbox() -> list[WebhookEvent]:
    """Every stored event, once none is left half-way ("received") by a request still running."""
    def check() -> list[WebhookEvent] | None:
        rows = list(db.session.execute(select(WebhookEvent)).scalars())
        return rows if all(r.status != "received" for r in rows) else None

    if not db.session.scalar(select(func.count()).select_from(WebhookEvent)):
        return []
    return wait_until(check, what="the inbox to settle")


def assert_invariants() -> None:
    """DESIGN.md's reliability invariants, checked after every scenario."""
    db.session.rollback()
    db.session.expire_all()
    payments = list(db.session.execute(select(Payment)).scalars())
    for ref in ("checkout_session_id", "payment_intent_id", "charge_id"):
        values = Counter(getattr(p, ref) for p in payments if getattr(p, ref))
        assert all(n == 1 for n in values.values()), f"{ref} maps to several payments: {values}"
    for invoice in db.session.execute(select(Invoice)).scalars():
        mine = [p for p in payments if p.invoice_id == invoice.id]
        refunded = db.session.scalar(select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.invoice_id == invoice.id, Refund.status.not_in(("failed", "canceled"))))  # those gave it back
        counted = sum(p.amount for p in mine if p.status in ("succeeded", "partially_refunded", "refunded"))
        assert invoice.amount_paid == counted - refunded, (invoice.number, invoice.amount_paid, counted, refunded)
        assert sum(p.amount_refunded for p in mine) == refunded
    stuck = [(e.type, e.status) for e in settled_inbox() if e.status not in ("processed", "ignored", "failed")]
    assert not stuck, f"inbox events neither applied nor marked failed: {stuck}"
    keys = Counter(e.dedupe_key for e in db.session.execute(select(OutboxEmail)).scalars() if e.dedupe_key)
    assert all(n == 1 for n in keys.values()), f"an email was queued twice: {keys}"
    receipts = Counter(e.dedupe_key for e in db.session.execute(
        select(OutboxEmail).where(OutboxEmail.kind == "receipt")).scalars())
    assert set(receipts) <= {f"receipt:{p.id}" for p in payments}, receipts


def receipts() -> list[OutboxEmail]:
    db.session.rollback()
    return list(db.session.execute(select(OutboxEmail).where(OutboxEmail.kind == "receipt")).scalars())


def payments_of(invoice: Invoice) -> list[Payment]:
    db.session.rollback()  # a fresh snapshot: other processes (the served app) write too
    return list(db.session.execute(select(Payment).where(Payment.invoice_id == invoice.id)
                                   .order_by(Payment.id)).scalars())


def fresh(invoice: Invoice) -> Invoice:
    db.session.rollback()
    found = db.session.get(Invoice, invoice.id)
    assert found is not None
    return found


@contextmanager
def payment_inserts_fail() -> Iterator[None]:
    """A fault injected in the database itself (a trigger), not in our code: inserting a payment fails."""
    if db.engine.dialect.name == "postgresql":
        statements = ("CREATE OR REPLACE FUNCTION injected_fault() RETURNS trigger AS $$ "
                      "BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql",
                      "CREATE TRIGGER injected_fault BEFORE INSERT ON payment FOR EACH ROW "
                      "EXECUTE FUNCTION injected_fault()")
        undo = ("DROP TRIGGER IF EXISTS injected_fault ON payment", "DROP FUNCTION IF EXISTS injected_fault()")
    else:
        statements = ("CREATE TRIGGER injected_fault BEFORE INSERT ON payment "
                      "BEGIN SELECT RAISE(ABORT, 'injected fault'); END",)
        undo = ("DROP TRIGGER IF EXISTS injected_fault",)
    db.session.rollback()  # DDL waits for every open transaction on the table, ours included
    with db.engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        db.session.rollback()
        with db.engine.begin() as conn:
            for statement in undo:
                conn.exec_driver_sql(statement)


# --- fixtures (imported by the conftest.py of each payment test directory) --------------------------------


@pytest.fixture
def stripe_app(app: Flask, stripe_server: Any) -> Iterator[Any]:
    """The in-process app configured with Stripe keys pointing at the Stripe test server (reset per test)."""
    stripe_server.reset()
    with stripe_configured(app, stripe_server):
        yield stripe_server
    stripe_server.reset()


LIVE_HOOK = "invoicing-app"


@pytest.fixture
def stripe_live(live_server_factory: Any, stripe_server: Any) -> Iterator[Any]:
    """The app under gunicorn with Stripe keys for the test server, which delivers its webhooks to it."""
    stripe_server.reset()
    live = live_server_factory(**stripe_env(stripe_server))
    stripe_server.register_webhook(f"{live.url}/webhooks/stripe", WEBHOOK_SECRET, id=LIVE_HOOK)
    yield live
    stripe_server.unregister_webhooks(LIVE_HOOK)  # returns once a delivery in flight has been answered
    stripe_server.reset()


def live_site(live: Any) -> Site:
    return Site(live.url, current_app.config["SECRET_KEY"], "billing@localhost")


def real_now() -> datetime:
    return datetime.now(UTC)


def live_invoice(client: Any, **overrides: Any) -> Invoice:
    """An open invoice dated today on the real clock (the served app checks link expiry against it)."""
    from tests.conftest import make_invoice

    now = real_now()
    return make_invoice(client, status="open", now=now, issue_date=now.date(), **overrides)
