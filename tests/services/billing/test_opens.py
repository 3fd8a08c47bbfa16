"""Email open tracking (services/billing/opens.py, pay/opens.py): the pixel goes out with invoice and reminder
emails only, the first load is an "email opened" event on the invoice, and nothing can be learnt or faked by
guessing; a real SMTP server receives the pixel, the pay link and the PDF."""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import update

from invoicing.extensions import db
from invoicing.mail import build_message, deliver_due, enqueue
from invoicing.models import Organization, OutboxEmail
from invoicing.services.billing import opens
from invoicing.services.billing.reminders import send_due_reminders
from invoicing.services.db import atomic
from invoicing.services.sending import send_invoice
from tests.conftest import SYSTEM, login
from tests.services.billing.helpers import emails, events, fresh, open_invoice, site, utc

PIXEL_URL = re.compile(r'<img src="(http://billing\.test/pay/opened/(\d+)\.([A-Za-z0-9_-]+))" width="1"')


def queue_reminder(world):  # noqa: ANN001, ANN201
    invoice = open_invoice(world.client_a, due=date(2026, 4, 10))
    send_due_reminders(now=utc(2026, 4, 12, 13), site=site())
    [email] = emails("reminder")
    return invoice, email


def pixel(email: OutboxEmail) -> str:
    match = PIXEL_URL.search(build_message(email).html or "")
    assert match, "no tracking pixel"
    return match.group(1).removeprefix("http://billing.test")


def test_it_adds_the_pixel_when_delivering_never_to_the_stored_email(world):
    invoice, email = queue_reminder(world)
    assert "/pay/opened/" not in email.html_body  # staff previewing the outbox cannot "open" it for the client
    path = pixel(email)
    assert path == f"/pay/opened/{email.id}.{opens.token_for(email.id, site().secret_key).split('.')[1]}"
    assert len(path.rsplit(".", 1)[1]) == 43  # 256 bits of HMAC: not guessable, not enumerable
    assert "/pay/opened/" not in (build_message(email).body or "")  # the text part has no image
    send_invoice(open_invoice(world.client_a, due=date(2026, 5, 1)).id, actor=SYSTEM, now=utc(2026, 4, 12),
                 base_url="http://billing.test", secret_key=site().secret_key, default_sender="b@example.test")
    assert PIXEL_URL.search(build_message(emails("invoice")[0]).html or "")
    with atomic():  # a receipt (any other kind of email about the invoice) carries no pixel
        receipt = enqueue(kind="receipt", to="clienta@clients.test", subject="Receipt", text_body="Thanks",
                          html_body=email.html_body, from_addr="b@example.test", now=utc(2026, 4, 12),
                          organization_id=world.org_a.id, invoice_id=invoice.id)
    assert receipt is not None and PIXEL_URL.search(build_message(receipt).html or "") is None


def test_the_first_open_is_an_event_on_the_invoice_and_later_ones_count(client, world):
    invoice, email = queue_reminder(world)
    path = pixel(email)
    first = client.get(path)
    assert first.status_code == 200 and first.mimetype == "image/gif" and first.data == opens.PIXEL
    assert "no-store" in first.headers["Cache-Control"]
    assert client.get(path).status_code == 200
    stored = fresh(OutboxEmail, email.id)
    assert stored.open_count == 2 and stored.opened_at is not None
    [opened] = events("email.opened", invoice.id)
    assert opened.details == {"outbox_id": email.id, "kind": "reminder", "subject": email.subject,
                              "to": "clienta@clients.test"}
    assert opened.actor_type == "anonymous"
    login(client, world.alice)
    assert "Reminder opened (“Reminder: invoice 2026-0001" in client.get(f"/admin/invoices/{invoice.id}").text
    assert "2 times" in client.get(f"/admin/outbox/{email.id}").text


def test_guessed_tokens_link_checkers_and_staff_record_nothing(client, world):
    invoice, email = queue_reminder(world)
    path = pixel(email)
    for wrong in (f"/pay/opened/{email.id}.{'A' * 43}", f"/pay/opened/{email.id + 1}.{path.rsplit('.', 1)[1]}",
                  "/pay/opened/not-a-token", f"/pay/opened/{email.id}"):
        answer = client.get(wrong)
        assert (answer.status_code, answer.data) == (200, opens.PIXEL)  # the same answer: nothing to learn
    assert client.head(path).status_code == 200  # a link checker
    login(client, world.alice)
    assert client.get(path).status_code == 200  # staff looking at it are not the client
    assert fresh(OutboxEmail, email.id).open_count == 0 and events("email.opened") == []


def test_an_organization_can_turn_tracking_off(client, world):
    invoice, email = queue_reminder(world)
    path = pixel(email)
    with atomic():
        db.session.execute(update(Organization).where(Organization.id == world.org_a.id)
                           .values(track_email_opens=False))
    assert PIXEL_URL.search(build_message(fresh(OutboxEmail, email.id)).html or "") is None
    client.get(path)  # an email that went out while it was on: its loads are ignored now
    assert events("email.opened") == []


def test_a_reminder_reaches_a_real_smtp_server_with_pay_link_pdf_and_pixel(client, world, smtp):
    invoice, email = queue_reminder(world)
    report = deliver_due(now=utc(2026, 4, 12, 13, 1))
    assert report.sent == 1, report
    [message] = smtp.messages
    subject = " ".join(message["Subject"].split())  # header folding of the encoded dash may double a space
    assert subject == "Reminder: invoice 2026-0001 from Org A is overdue by 2 days — $270.00"
    assert message["To"] == "clienta@clients.test"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    pay_link = site().pay_url(fresh(type(invoice), invoice.id))
    assert pay_link in text and pay_link in html and "overdue by 2 days" in text
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf" and attachment.get_filename() == "invoice-2026-0001.pdf"
    assert attachment.get_content().startswith(b"%PDF")
    url = PIXEL_URL.search(html)
    assert url is not None
    client.get(url.group(1).removeprefix("http://billing.test"))  # the client's mail program shows it
    assert [e.details["kind"] for e in events("email.opened", invoice.id)] == ["reminder"]
    assert fresh(OutboxEmail, email.id).status == "sent"
