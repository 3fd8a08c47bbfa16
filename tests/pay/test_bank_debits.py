"""Bank debits and the method actually used: the sandbox's ACH debit is accepted, then settles or fails days
later (two minutes here); a failure reopens the invoice and tells the client and the admins; receipts, the
invoice page and exports name the card or the debit."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import OutboxEmail
from invoicing.services.checkout import notify_payment_failed
from tests.conftest import login, make_invoice, make_user
from tests.pay.support import assert_invariants, fresh, pay_path, payments_of, receipts, site

DEBIT = "ACH bank debit, SANDBOX TEST BANK •••• 6789 (sandbox, no money moved)"
CLOSED = "ACH bank debit, SANDBOX TEST BANK •••• 1113 (sandbox, no money moved)"


def start(client, invoice) -> str:
    return client.post(pay_path(invoice)).headers["Location"].removeprefix("http://billing.test")


def emails(kind: str) -> list[OutboxEmail]:
    return list(db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == kind).order_by(OutboxEmail.id)))


def test_it_offers_test_bank_accounts_on_the_sandbox_checkout(client, world):
    invoice = make_invoice(world.client_a, status="open")
    page = client.get(start(client, invoice)).text
    assert "Pay by bank debit" in page and "000123456789" in page and "000111111113" in page
    assert "Accepted, then fails days later (account closed)" in page


def test_it_refuses_an_unknown_test_account_and_records_nothing(client, world):
    invoice = make_invoice(world.client_a, status="open")
    response = client.post(start(client, invoice), data={"account": "12345"})
    assert response.status_code == 402 and "Use one of the test bank account numbers" in response.text
    assert payments_of(invoice) == [] and fresh(invoice).status == "open"


def test_it_keeps_a_debit_processing_then_settles_it_and_names_it_everywhere(client, runner, world, time_machine):
    invoice = make_invoice(world.client_a, status="open")
    back = client.post(start(client, invoice), data={"account": "000123456789", "email": "ap@clienta.test"})
    assert back.status_code == 303
    payment, = payments_of(invoice)
    assert (payment.status, payment.method_type, payment.method_last4, payment.method_bank) == (
        "processing", "us_bank_account", "6789", "SANDBOX TEST BANK")
    assert fresh(invoice).status == "processing" and receipts() == []
    confirmation = client.get(back.headers["Location"].removeprefix("http://billing.test")).text
    assert "Payment processing" in confirmation and DEBIT in confirmation

    assert "settled 0 payment(s)" in runner.invoke(args=["billing", "sandbox-settle"]).output
    time_machine.move_to(datetime.now(UTC) + timedelta(minutes=3))
    assert "settled 1 payment(s)" in runner.invoke(args=["billing", "sandbox-settle"]).output
    assert fresh(invoice).status == "paid" and payments_of(invoice)[0].status == "succeeded"
    receipt, = receipts()
    assert DEBIT in receipt.text_body and DEBIT in receipt.html_body
    assert DEBIT in client.get(pay_path(invoice)).text

    login(client, world.alice)
    assert DEBIT in client.get(f"/admin/invoices/{invoice.id}").text
    export = client.get("/admin/invoices/export.csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["Number"], r["Paid with"]) for r in rows] == [(invoice.number, DEBIT)]
    assert_invariants()


def test_it_reopens_the_invoice_and_tells_client_and_admins_when_a_debit_fails_later(client, runner, world,
                                                                                    time_machine):
    make_user(world.org_a, "carol@a.test", "admin")
    make_user(world.org_a, "dave@a.test", "staff")  # staff are not alerted
    invoice = make_invoice(world.client_a, status="open")
    client.post(start(client, invoice), data={"account": "000111111113"})
    assert fresh(invoice).status == "processing"
    time_machine.move_to(datetime.now(UTC) + timedelta(minutes=3))
    assert "settled 1 payment(s)" in runner.invoke(args=["billing", "sandbox-settle"]).output

    payment, = payments_of(invoice)
    assert (payment.status, payment.failure_code) == ("failed", "account_closed")
    assert fresh(invoice).status == "open" and fresh(invoice).amount_paid == 0 and receipts() == []
    to_client, = emails("payment_failed")
    assert to_client.to_addr == "clienta@clients.test" and CLOSED in to_client.text_body
    assert "The bank account is closed" in to_client.text_body and pay_path(invoice) in to_client.text_body
    alerts = emails("payment_failed_admin")
    assert sorted(a.to_addr for a in alerts) == ["alice@a.test", "carol@a.test"]
    assert all(invoice.number in a.subject and "now open again" in a.subject and CLOSED in a.subject
               for a in alerts)
    assert f"/admin/invoices/{invoice.id}" in alerts[0].text_body and "$270.00" in alerts[0].text_body
    assert "Pay now" in client.get(pay_path(invoice)).text

    # The same failure heard again (a redelivered event, reconcile) alerts nobody twice.
    assert notify_payment_failed(payment.id, site=site(), now=datetime.now(UTC)) is False
    assert len(emails("payment_failed_admin")) == 2 and len(emails("payment_failed")) == 1
    assert_invariants()
