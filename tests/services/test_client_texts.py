"""The organization's texts in what clients receive: the sent emails and the PDF use them; a text that fails at
send time gives way to the default, the email still goes, and the admins hear about it once per version."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta

from pypdf import PdfReader
from sqlalchemy import select

import invoicing.mail as mail
from invoicing import pdf
from invoicing.extensions import db
from invoicing.models import OutboxEmail, TemplateOverride
from invoicing.services import client_texts
from invoicing.services.audit import Actor
from invoicing.services.checkout import start_checkout
from invoicing.services.sending import send_invoice, send_reminder
from tests.conftest import NOW, SYSTEM, make_invoice, make_user
from tests.pay.support import pay_path, receipts, sandbox, site

MAIL = dict(base_url="http://billing.test", secret_key="test-secret-key-" + "x" * 32,
            default_sender="Billing <billing@example.test>")


def save(world, kind: str, **parts: str) -> TemplateOverride:
    return client_texts.save_texts(world.org_a.id, kind, parts, organization_name="Org A",
                                   actor=Actor.user(world.alice), now=NOW)


def emails(kind: str) -> list[OutboxEmail]:
    db.session.rollback()
    return list(db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == kind).order_by(OutboxEmail.id)))


def test_it_sends_the_invoice_email_with_the_organizations_text(app, world, smtp):
    save(world, "invoice", subject="{{ organization_name }} invoice {{ invoice_number }} ({{ amount_due }})",
         body="Dear {{ contact_name }} <team>,\n\nPay by {{ due_date }} here: {{ pay_link }}\nThanks.")
    invoice = make_invoice(world.client_a)
    send_invoice(invoice.id, actor=SYSTEM, now=NOW, **MAIL)
    assert mail.deliver_due(now=NOW).sent == 1
    [message] = smtp.wait_for(1)
    assert message["Subject"] == "Org A invoice 2026-0001 ($270.00)"
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert "Dear Client A <team>,\n\nPay by Apr 9, 2026 here: http://billing.test/pay/" in text
    assert '<p style="margin:0 0 12px;">Dear Client A &lt;team&gt;,</p>' in html
    assert "Pay by Apr 9, 2026 here: http://billing.test/pay/" in html and "<br>\nThanks.</p>" in html
    # The app keeps the rest: the amounts, the button, the PDF.
    assert "Amount due: $270.00" in text and "Pay now" in html and "Consulting" in html
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "invoice-2026-0001.pdf"
    assert "has sent you invoice" not in text  # the default text is gone


def test_it_uses_the_reminder_text_and_its_overdue_flag(world):
    save(world, "reminder", subject="{% if overdue %}Overdue{% else %}Due soon{% endif %}: {{ invoice_number }}",
         body="Hi {{ client_name }}, {{ amount_due }} is {% if overdue %}late{% else %}due {{ due_date }}{% endif %}.")
    invoice = make_invoice(world.client_a, status="open")
    send_reminder(invoice.id, actor=SYSTEM, now=NOW, **MAIL)
    [email] = emails("reminder")
    assert email.subject == "Due soon: 2026-0001"
    assert "Hi Client A, $270.00 is due Apr 9, 2026." in email.text_body
    assert "Hi Client A, $270.00 is due Apr 9, 2026.</p>" in email.html_body


def test_it_uses_the_receipt_text(world):
    save(world, "receipt", subject="Thanks for {{ payment_amount }} ({{ receipt_number }})",
         body="Got {{ payment_amount }} by {{ payment_method }} for {{ invoice_number }}.")
    invoice = make_invoice(world.client_a, status="open")
    gateway = sandbox()
    started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    gateway.pay(started.session_id, card="4242424242424242", email="")
    [email] = receipts()
    assert email.subject.startswith("Thanks for $270.00 (")
    assert "Got $270.00 by Visa •••• 4242" in email.text_body and "paid in full" in email.text_body


def test_it_falls_back_to_the_default_and_alerts_the_admins_once_per_version(world):
    # It fills in with the demo values (so it was saved) but divides by zero for this client.
    broken = save(world, "invoice", subject="{{ 100 // (0 if client_name == 'Client A' else 1) }}", body="Hi")
    make_user(world.org_a, "second-admin@a.test", "admin")
    invoice = make_invoice(world.client_a)
    send_invoice(invoice.id, actor=SYSTEM, now=NOW, **MAIL)
    send_invoice(invoice.id, actor=SYSTEM, now=NOW, **MAIL)  # resent: the same broken version
    sent = emails("invoice")
    assert [e.subject for e in sent] == ["Invoice 2026-0001 from Org A — $270.00 due Apr 9, 2026"] * 2
    assert all("Org A has sent you invoice 2026-0001." in e.text_body for e in sent)
    alerts = emails("template_failed")
    assert sorted(a.to_addr for a in alerts) == ["alice@a.test", "second-admin@a.test"]
    assert {a.dedupe_key for a in alerts} == {f"template_failed:{broken.id}:alice@a.test",
                                              f"template_failed:{broken.id}:second-admin@a.test"}
    assert "integer division or modulo by zero" in alerts[0].text_body
    assert "http://billing.test/admin/settings/texts/invoice" in alerts[0].text_body
    # A new version that fails too is a new alert.
    again = save(world, "invoice", subject="{{ 1 // (0 if invoice_number == '2026-0001' else 1) }}", body="Hi")
    send_invoice(invoice.id, actor=SYSTEM, now=NOW, **MAIL)
    assert len(emails("invoice")) == 3 and len(emails("template_failed")) == 4
    assert {a.dedupe_key for a in emails("template_failed")[2:]} == {
        f"template_failed:{again.id}:alice@a.test", f"template_failed:{again.id}:second-admin@a.test"}


def test_it_stops_a_stored_runaway_template_quickly_and_sends_the_default(world):
    """A template that got in some other way (an older app version) is still bounded at send time."""
    db.session.add(TemplateOverride(organization_id=world.org_a.id, template="reminder", created_at=NOW, parts={
        "subject": "{{ config }}", "body": "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}"
                                           "{% endfor %}"}))
    db.session.commit()
    invoice = make_invoice(world.client_a, status="open")
    started = time.monotonic()
    send_reminder(invoice.id, actor=SYSTEM, now=NOW, **MAIL)
    assert time.monotonic() - started < 3
    [email] = emails("reminder")
    assert email.subject.startswith("Reminder: invoice 2026-0001 from Org A") and "friendly reminder" in email.text_body
    [alert] = emails("template_failed")
    assert "&#39;config&#39; is undefined" in alert.html_body or "'config' is undefined" in alert.text_body


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_it_prints_the_pdf_header_note_payment_instructions_terms_and_footer(app, world):
    world.org_a.payment_instructions = "IBAN DE00 1234"
    db.session.commit()
    invoice = make_invoice(world.client_a, status="open")
    before = pdf_text(pdf.invoice_pdf(invoice))
    assert "IBAN DE00 1234" in before and "Late fees" not in before
    save(world, "pdf", header_note="Thank you for your business, {{ client_name }}!",
         payment_instructions="{{ payment_instructions }} (reference {{ invoice_number }})",
         terms="Late fees apply after {{ payment_terms_days }} days.", footer="{{ organization_name }} · VAT FR123")
    text = pdf_text(pdf.invoice_pdf(invoice))  # a new version: the texts are part of what the PDF shows
    for expected in ("Thank you for your business, Client A!", "IBAN DE00 1234 (reference 2026-0001)",
                     "Late fees apply after 30 days.", "Org A · VAT FR123", "$270.00"):
        assert expected in text, expected
    client_texts.reset_texts(world.org_a.id, "pdf", actor=Actor.user(world.alice), now=NOW)
    after = pdf_text(pdf.invoice_pdf(invoice))
    assert "IBAN DE00 1234" in after and "VAT FR123" not in after and "(reference" not in after


def test_it_uses_the_payment_failed_text(client, runner, world, time_machine):
    time_machine.move_to(NOW, tick=True)  # the pay page runs on the clock; the invoice is dated NOW
    save(world, "payment_failed", subject="{{ invoice_number }}: your {{ payment_amount }} bounced",
         body="{{ payment_method }} said: {{ failure_reason }}. Still due: {{ amount_due }}.")
    invoice = make_invoice(world.client_a, status="open")
    checkout = client.post(pay_path(invoice)).headers["Location"].removeprefix("http://billing.test")
    client.post(checkout, data={"account": "000111111113"})  # accepted, then the account is closed
    time_machine.move_to(datetime.now(UTC) + timedelta(minutes=3))
    assert "settled 1 payment(s)" in runner.invoke(args=["billing", "sandbox-settle"]).output
    [email] = emails("payment_failed")
    assert email.subject == "2026-0001: your $270.00 bounced"
    assert ("ACH bank debit, SANDBOX TEST BANK •••• 1113 (sandbox, no money moved) said: The bank account is "
            "closed. Still due: $270.00.") in email.text_body
    assert "You can pay again here: http://billing.test/pay/" in email.text_body
