"""An invoice in the portal: lines and totals, the PDF, the payment history (partial payments, a declined card,
refunds, who paid, card brand and last 4) and the receipts, page and PDF."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import pytest

from invoicing.extensions import db
from invoicing.gateways.base import MethodDetails
from invoicing.models import Invoice, Payment
from invoicing.services.payments import apply_payment, apply_refund, record_manual_payment, record_method
from tests.conftest import NOW, SYSTEM, World, make_invoice, portal_login


@dataclass
class Paid:
    invoice: Invoice
    card: Payment  # paid by contact 2 with a Visa, partly refunded
    declined: Payment
    cash: Payment  # recorded by staff: nobody named as payer


@pytest.fixture
def paid(world: World, time_machine: Any) -> Paid:
    time_machine.move_to(NOW)
    invoice = make_invoice(world.client_a, status="open", project_ref="Website", notes="Thanks for your business")
    payer = world.client_a.contacts[1]
    declined = apply_payment(invoice.id, amount=10000, currency="USD", method="card", status="failed", actor=SYSTEM,
                             now=NOW, payment_intent_id="pi_declined", contact_id=payer.id,
                             failure_code="card_declined", failure_message="Your card was declined.").payment
    card = apply_payment(invoice.id, amount=10000, currency="USD", method="card", status="succeeded", actor=SYSTEM,
                         now=NOW, payment_intent_id="pi_ok", charge_id="ch_ok", contact_id=payer.id).payment
    record_method(card.id, MethodDetails(type="card", brand="visa", last4="4242"))
    apply_refund(card.id, amount=2500, actor=SYSTEM, now=NOW, provider_refund_id="re_1", reason="Goodwill")
    cash = record_manual_payment(invoice.id, amount=5000, method="cash", paid_on=NOW.date(), reference="Till 3",
                                 actor=SYSTEM, now=NOW).payment
    db.session.expire_all()
    return Paid(db.session.get(Invoice, invoice.id), db.session.get(Payment, card.id),
                db.session.get(Payment, declined.id), db.session.get(Payment, cash.id))


def test_it_shows_the_invoice_with_its_lines_and_totals(client, world, paid):
    portal_login(client, world.client_a.contacts[0])
    response = client.get(f"/portal/invoices/{paid.invoice.public_id}")
    assert response.status_code == 200
    page = response.text
    assert "Invoice 2026-0001" in page and "Consulting" in page and "Travel" in page and "Website" in page
    assert "$270.00" in page and "$125.00" in page  # total; paid 100 - 25 refunded + 50 cash
    assert re.search(r'id="amount-due">\$145\.00<', page)
    assert 'badge-partial">partial' in page and "Thanks for your business" in page
    assert f'href="/portal/invoices/{paid.invoice.public_id}/pdf"' in page
    assert response.headers["Cache-Control"] == "no-store"


def test_it_lists_every_payment_refund_and_attempt_with_who_paid(client, world, paid):
    portal_login(client, world.client_a.contacts[0])
    page = client.get(f"/portal/invoices/{paid.invoice.public_id}").text
    history = page[page.index('id="history"'):]
    rows = re.findall(r"<tr>(.*?)</tr>", history, re.S)
    text = [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", r))).strip() for r in rows[1:]]
    payer = world.client_a.contacts[1].name
    assert len(text) == 4, text
    declined, card, refund, cash = text
    assert "Payment" in declined and "Your card was declined." in declined and "failed" in declined
    assert payer in declined and "$100.00" in declined
    assert "Visa •••• 4242" in card and payer in card and "$100.00" in card and "partially refunded" in card
    assert card.endswith(paid.card.receipt_number)
    assert "Refund" in refund and "−$25.00" in refund and f"Refund of receipt {paid.card.receipt_number}" in refund
    assert refund.endswith("—")  # a refund has no receipt of its own
    assert "Cash" in cash and "—" in cash and "$50.00" in cash and cash.endswith(paid.cash.receipt_number)
    assert f'href="/portal/payments/{paid.card.id}/receipt"' in history
    assert f'href="/portal/payments/{paid.declined.id}/receipt"' not in history  # no money, no receipt


def test_it_downloads_the_invoice_pdf(client, world, paid):
    portal_login(client, world.client_a.contacts[0])
    response = client.get(f"/portal/invoices/{paid.invoice.public_id}/pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert 'filename="invoice-2026-0001.pdf"' in response.headers["Content-Disposition"]


def test_it_shows_and_downloads_a_receipt(client, world, paid):
    portal_login(client, world.client_a.contacts[0])
    response = client.get(f"/portal/payments/{paid.card.id}/receipt")
    assert response.status_code == 200
    page = response.text
    assert f"Receipt {paid.card.receipt_number}" in page and "$100.00" in page and "Visa •••• 4242" in page
    assert "Refunded" in page and "$25.00" in page and "2026-0001" in page
    pdf = client.get(f"/portal/payments/{paid.card.id}/receipt.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert f'filename="receipt-{paid.card.receipt_number}.pdf"' in pdf.headers["Content-Disposition"]


def test_the_receipt_pdf_says_what_was_received(app, paid):
    from flask import render_template

    from invoicing.pdf import RECEIPT_TEMPLATE

    payment = paid.cash
    html = render_template(RECEIPT_TEMPLATE, payment=payment, invoice=payment.invoice,
                           organization=payment.invoice.organization, client=payment.invoice.client, logo_uri=None)
    assert payment.receipt_number in html and "$50.00" in html and "Cash" in html and "Till 3" in html
    assert "Client A" in html and "2026-0001" in html


def test_a_failed_payment_has_no_receipt(client, world, paid):
    portal_login(client, world.client_a.contacts[0])
    assert client.get(f"/portal/payments/{paid.declined.id}/receipt").status_code == 404
    assert client.get(f"/portal/payments/{paid.declined.id}/receipt.pdf").status_code == 404


def test_a_paid_invoice_says_so_and_shows_no_amount_due_row(client, world, time_machine):
    time_machine.move_to(NOW)
    invoice = make_invoice(world.client_a, status="open")
    record_manual_payment(invoice.id, amount=invoice.total, method="cheque", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW)
    portal_login(client, world.client_a.contacts[0])
    page = client.get(f"/portal/invoices/{invoice.public_id}").text
    assert 'badge-paid">paid' in page and "Cheque" in page and 'id="amount-due">$0.00<' in page
