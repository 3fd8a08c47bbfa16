"""DESIGN rule 4: when staff settle or void an invoice by hand, its open checkout sessions are expired."""

from __future__ import annotations

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import CheckoutSession
from invoicing.services.checkout import start_checkout
from tests.conftest import NOW, login, make_invoice
from tests.pay.support import fresh, payments_of, sandbox, site


def test_it_expires_open_checkouts_when_staff_record_the_payment_by_hand(client, world):
    invoice = make_invoice(world.client_a, status="open")
    started = start_checkout(invoice.id, amount=invoice.amount_due, gateway=sandbox(), site=site(), now=NOW)
    login(client, world.alice)
    form = {"payment-amount": "270.00", "payment-method": "bank_transfer", "payment-paid_on": NOW.date().isoformat(),
            "payment-reference": "TRF-9", "payment-idempotency_key": "once"}
    assert client.post(f"/admin/invoices/{invoice.id}/payments", data=form).status_code == 303
    session = db.session.execute(select(CheckoutSession).where(
        CheckoutSession.session_id == started.session_id)).scalar_one()
    assert fresh(invoice).status == "paid" and session.status == "expired"
    outcome = sandbox().pay(started.session_id, card="4242424242424242", email="")
    assert outcome.kind == "closed"  # the client can no longer pay it at the provider
    assert len(payments_of(invoice)) == 1


def test_it_expires_open_checkouts_when_staff_void_the_invoice(client, world):
    invoice = make_invoice(world.client_a, status="open")
    started = start_checkout(invoice.id, amount=invoice.amount_due, gateway=sandbox(), site=site(), now=NOW)
    login(client, world.alice)
    assert client.post(f"/admin/invoices/{invoice.id}/void", data={"void-reason": "Sent in error"}).status_code == 303
    assert sandbox().pay(started.session_id, card="4242424242424242", email="").kind == "closed"
    assert fresh(invoice).status == "void" and payments_of(invoice) == []
