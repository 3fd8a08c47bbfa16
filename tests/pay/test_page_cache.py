"""The pay page is kept rendered per invoice version (invoicing/pay/cache.py): whatever changes what it shows
shows on the next load, in this process and in another one, and its opens are written later but all of them."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.gateways.base import MethodDetails
from invoicing.models import AuditEvent, Invoice
from invoicing.pay.cache import flush_opens
from invoicing.services.db import atomic
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import apply_payment, apply_refund, record_manual_payment, record_method
from tests.conftest import NOW, SYSTEM, make_invoice
from tests.live_fixture import start_live_server
from tests.pay.support import fresh, pay_path, wait_until


def _page(client: Any, invoice: Invoice) -> str:
    response = client.get(pay_path(invoice))
    assert response.status_code == 200
    return str(response.text)


def _version(invoice: Invoice) -> int:
    return fresh(invoice).version


def test_a_payment_a_refund_and_a_failed_attempt_show_at_once(client, world):
    invoice = make_invoice(world.client_a, status="open")  # $270.00
    assert "$270.00" in _page(client, invoice) and "Pay now" in _page(client, invoice)  # kept from here on
    part = record_manual_payment(invoice.id, amount=7000, method="cash", paid_on=NOW.date(), reference="",
                                 actor=SYSTEM, now=NOW).payment
    page = _page(client, invoice)
    assert '<strong id="amount-due">$200.00</strong>' in page and "partially paid" in page
    rest = record_manual_payment(invoice.id, amount=20000, method="bank_transfer", paid_on=NOW.date(),
                                 reference="", actor=SYSTEM, now=NOW).payment
    page = _page(client, invoice)
    assert "Paid, thank you" in page and rest.receipt_number in page and "Pay now" not in page
    apply_refund(part.id, amount=7000, actor=SYSTEM, now=NOW, reason="Paid twice")
    page = _page(client, invoice)
    assert '<strong id="amount-due">$70.00</strong>' in page and "Pay now" in page and "Paid, thank you" not in page
    apply_payment(invoice.id, amount=7000, currency="USD", method="card", status="failed", actor=SYSTEM, now=NOW,
                  payment_intent_id="pi_declined", failure_code="card_declined",
                  failure_message="Your card was declined.")
    assert "Your last payment attempt did not go through: Your card was declined" in _page(client, invoice)


def test_a_bulk_update_of_a_payment_shows_too(client, world):
    """record_method writes one UPDATE (no ORM object): the version still moves, and the receipt names the card."""
    invoice = make_invoice(world.client_a, status="open")
    payment = apply_payment(invoice.id, amount=invoice.total, currency="USD", method="card", status="succeeded",
                            actor=SYSTEM, now=NOW, payment_intent_id="pi_paid").payment
    assert "Card" in _page(client, invoice) and "Visa" not in _page(client, invoice)
    before = _version(invoice)
    assert record_method(payment.id, MethodDetails(type="card", brand="visa", last4="4242"))
    assert _version(invoice) == before + 1
    assert "Visa •••• 4242" in _page(client, invoice)


def test_a_void_answers_410_and_a_replaced_link_the_new_page(client, world):
    invoice = make_invoice(world.client_a, status="open")
    old = pay_path(invoice)
    assert client.get(old).status_code == 200
    void_invoice(invoice.id, reason="Issued in error", actor=SYSTEM, now=NOW)
    assert client.get(old).status_code == 410


def test_the_organization_and_client_settings_show_at_once(client, world):
    invoice = make_invoice(world.client_a, status="open")
    assert 'name="amount"' in _page(client, invoice) and "Org A" in _page(client, invoice)
    with atomic():
        world.org_a.allow_partial_payments = False
        world.org_a.name = "Org A Renamed"
        world.org_a.brand_color = "#00aa00"
        world.org_a.payment_instructions = "IBAN XX00 1234"
        world.client_a.name = "Client A Holdings"
    page = _page(client, invoice)
    assert 'name="amount"' not in page and "Org A Renamed" in page and "--brand: #00aa00" in page
    assert "IBAN XX00 1234" in page and "Client A Holdings" in page


def test_a_dispute_flag_shows_and_views_move_no_version(app, client, world):
    invoice = make_invoice(world.client_a, status="open")
    before = _version(invoice)
    _page(client, invoice), _page(client, invoice)
    after_views = fresh(invoice)
    assert (after_views.view_count, after_views.version) == (2, before)  # opens are not news on the page
    with atomic():
        db.session.get(Invoice, invoice.id).disputed_at = NOW
    assert 'badge-disputed' in _page(client, invoice) and _version(invoice) == before + 1


def test_the_form_carries_the_links_own_csrf_token_and_a_post_without_it_is_refused(app, client, world):
    invoice = make_invoice(world.client_a, status="open")
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        page = _page(client, invoice)
        assert "Set-Cookie" not in client.get(pay_path(invoice)).headers  # nothing of the visitor's own
        assert 'name="csrf_token" value="' in page
        refused = client.post(pay_path(invoice), data={"csrf_token": "forged"})
        assert refused.status_code == 400 and "out of date" in refused.text
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        assert client.post(pay_path(invoice), data={"csrf_token": token}).status_code == 303  # to the checkout
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


def test_opens_are_written_later_all_of_them_and_the_first_lands_on_the_timeline(app: Flask, client, world):
    invoice = make_invoice(world.client_a, status="open")
    app.config["PAY_VIEW_FLUSH_SECONDS"] = 60  # the writer thread will not come by during this test
    try:
        for _ in range(5):
            _page(client, invoice)
        assert (fresh(invoice).view_count, fresh(invoice).viewed_at) == (0, None)  # not in the request's path
        assert flush_opens(app) == 5
    finally:
        app.config["PAY_VIEW_FLUSH_SECONDS"] = 0
    invoice = fresh(invoice)
    assert invoice.view_count == 5 and invoice.viewed_at is not None
    views = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "invoice.viewed")).all()
    assert [(v.object_id, v.actor_type) for v in views] == [(invoice.id, "anonymous")]
    assert flush_opens(app) == 0


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def _views() -> int:
    return int(db.session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.action == "invoice.viewed")) or 0)


def test_another_process_serves_the_new_state_and_writes_every_open_by_its_exit(app, world, tmp_path):
    """gunicorn (another process, its own kept pages) serves the page; this process records payments; the served
    page shows them at once. Its opens (written only at exit here: a 60 s writer) are all counted."""
    invoice = make_invoice(world.client_a, status="open", now=NOW)
    with atomic():  # the served app checks expiry against the real clock
        db.session.get(Invoice, invoice.id).link_expires_on = None
    server = start_live_server(app, tmp_path / "gunicorn.log", PAY_VIEW_FLUSH_SECONDS="60")
    try:
        url = server.url + pay_path(invoice)
        assert '<strong id="amount-due">$270.00</strong>' in _get(url)
        assert '<strong id="amount-due">$270.00</strong>' in _get(url)  # from its kept page
        record_manual_payment(invoice.id, amount=7000, method="cash", paid_on=NOW.date(), reference="",
                              actor=SYSTEM, now=NOW)
        assert '<strong id="amount-due">$200.00</strong>' in _get(url)
        record_manual_payment(invoice.id, amount=20000, method="cash", paid_on=NOW.date(), reference="",
                              actor=SYSTEM, now=NOW)
        assert "Paid, thank you" in _get(url)
        assert (fresh(invoice).view_count, _views()) == (0, 0)  # still in the server's memory
    finally:
        server.stop()  # SIGTERM: the worker writes what it holds as it exits
    assert server.process.returncode == 0, server.log()[-2000:]
    assert fresh(invoice).view_count == 4 and _views() == 1


def test_a_live_servers_writer_thread_writes_opens_within_seconds(app, world, tmp_path):
    invoice = make_invoice(world.client_a, status="open", now=NOW)
    with atomic():
        db.session.get(Invoice, invoice.id).link_expires_on = None
    server = start_live_server(app, tmp_path / "gunicorn.log", PAY_VIEW_FLUSH_SECONDS="1")
    try:
        started = time.monotonic()
        for _ in range(3):
            _get(server.url + pay_path(invoice))
        wait_until(lambda: fresh(invoice).view_count == 3, what="three opens written")
        assert _views() == 1 and time.monotonic() - started < 10
    finally:
        server.stop()
