"""The Outbox page: scoped lists, the sandboxed preview, attachments, retry and release."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import select

import invoicing.mail as mail
from invoicing.extensions import db
from invoicing.models import AuditEvent, OutboxEmail
from invoicing.services.db import atomic
from tests.conftest import NOW, login, make_invoice


def queue(org, *, invoice=None, to="c1@clienta.test", subject="Invoice 2026-0001", html="<p>Hello <b>there</b></p>"):
    with atomic():
        email = mail.enqueue(
            kind="invoice", to=to, subject=subject, text_body="Hello there, plain.", html_body=html,
            from_addr=f"{org.name} <billing@invoicing.test>", now=NOW, organization_id=org.id,
            invoice_id=invoice.id if invoice else None,
            attachments=[{"kind": "invoice_pdf", "invoice_id": invoice.id}] if invoice else [],
        )
    assert email is not None
    return email


def fresh(email_id: int) -> OutboxEmail:
    db.session.rollback()
    return db.session.get_one(OutboxEmail, email_id)


def test_it_lists_the_organizations_emails_with_their_delivery_state(client, world):
    mine = queue(world.org_a, subject="For client A")
    queue(world.org_b, to="c1@clientb.test", subject="For client B")
    with atomic():
        row = db.session.get_one(OutboxEmail, mine.id)
        row.status, row.attempts, row.last_error = "queued", 2, "451 4.3.0 Mailbox busy"
        row.next_attempt_at = NOW + timedelta(minutes=5)
    login(client, world.alice)
    page = client.get("/admin/outbox").text
    assert "For client A" in page and "c1@clienta.test" in page and "451 4.3.0 Mailbox busy" in page
    assert "For client B" not in page
    assert "Emails are kept here because no MAIL_SERVER is set" in page


def test_it_filters_by_status_and_answers_htmx_with_rows_only(client, world):
    queue(world.org_a, subject="Still waiting")
    sent = queue(world.org_a, subject="Already sent")
    with atomic():
        db.session.get_one(OutboxEmail, sent.id).status = "sent"
    login(client, world.alice)
    page = client.get("/admin/outbox?status=sent").text
    assert "Already sent" in page and "Still waiting" not in page and "Sent (1)" in page
    fragment = client.get("/admin/outbox", headers={"HX-Request": "true"}).text
    assert "<html" not in fragment and "Still waiting" in fragment and "Already sent" in fragment


def test_it_shows_no_banner_when_a_mail_server_is_configured(client, world, smtp):
    login(client, world.alice)
    assert "no MAIL_SERVER is set" not in client.get("/admin/outbox").text


def test_it_lets_a_superadmin_see_every_organizations_emails(client, world):
    queue(world.org_a, subject="For client A")
    queue(world.org_b, to="c1@clientb.test", subject="For client B")
    login(client, world.root)
    page = client.get("/admin/outbox").text
    assert "For client A" in page and "For client B" in page


def test_it_previews_the_html_in_a_sandbox_with_the_text_and_attachments(client, world):
    invoice = make_invoice(world.client_a, status="open")
    email = queue(world.org_a, invoice=invoice, html='<p>Pay <a href="http://billing.test/pay/x">now</a></p>'
                                                    '<script>alert(1)</script>')
    login(client, world.alice)
    response = client.get(f"/admin/outbox/{email.id}")
    assert response.status_code == 200
    page = response.text
    assert 'sandbox srcdoc="&lt;p&gt;Pay &lt;a href=&#34;http://billing.test/pay/x&#34;&gt;now' in page
    assert "<script>alert(1)</script>" not in page  # only ever inside the escaped srcdoc attribute
    assert "Hello there, plain." in page and "Invoice PDF" in page
    policy = response.headers["Content-Security-Policy"]  # its own, stricter than the app-wide one
    assert "script-src 'self'" in policy and "form-action 'self'" in policy and "frame-src 'self'" in policy


def test_it_downloads_an_attachment_rendered_on_demand(client, world):
    invoice = make_invoice(world.client_a, status="open")
    email = queue(world.org_a, invoice=invoice)
    login(client, world.alice)
    response = client.get(f"/admin/outbox/{email.id}/attachments/0")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert 'filename="invoice-2026-0001.pdf"' in response.headers["Content-Disposition"]
    assert "2026-0001" in PdfReader(io.BytesIO(response.data)).pages[0].extract_text()
    assert client.get(f"/admin/outbox/{email.id}/attachments/1").status_code == 404


@pytest.mark.parametrize("path", ["", "/attachments/0"])
def test_it_answers_404_for_another_organizations_email(client, world, path):
    invoice = make_invoice(world.client_a, status="open")
    email = queue(world.org_a, invoice=invoice)
    login(client, world.bob)
    assert client.get(f"/admin/outbox/{email.id}{path}").status_code == 404
    assert client.post(f"/admin/outbox/{email.id}/retry").status_code == 404


def test_it_retries_a_failed_email_now_and_delivers_it(client, world, smtp):
    email = queue(world.org_a)
    with atomic():
        row = db.session.get_one(OutboxEmail, email.id)
        row.status, row.attempts, row.next_attempt_at, row.last_error = "failed", 6, None, "550 No such user"
    login(client, world.alice)
    assert "Retry now" in client.get(f"/admin/outbox/{email.id}").text

    response = client.post(f"/admin/outbox/{email.id}/retry")

    assert response.status_code == 303
    queued = fresh(email.id)
    assert (queued.status, queued.attempts) == ("queued", 0)
    [event] = db.session.execute(select(AuditEvent).where(AuditEvent.action == "email.retried")).scalars()
    assert event.actor_label == world.alice.email and event.details["from"] == "failed"
    assert queued.next_attempt_at is not None
    assert mail.deliver_due(now=queued.next_attempt_at).sent == 1
    assert smtp.wait_for(1)[0]["To"] == "c1@clienta.test"


def test_it_refuses_to_send_a_sent_email_again(client, world):
    email = queue(world.org_a)
    with atomic():
        db.session.get_one(OutboxEmail, email.id).status = "sent"
    login(client, world.alice)
    response = client.post(f"/admin/outbox/{email.id}/retry")
    assert response.status_code == 422 and "only failed, held or waiting emails" in response.text
    assert fresh(email.id).status == "sent"


def test_it_releases_held_emails_once_a_server_is_configured(client, world, smtp):
    held = [queue(world.org_a, to=f"c{n}@clienta.test") for n in range(2)]
    other = queue(world.org_b, to="c1@clientb.test")
    with atomic():
        for email in [*held, other]:
            db.session.get_one(OutboxEmail, email.id).status = "held"
    login(client, world.alice)
    assert "2 emails were kept" in client.get("/admin/outbox").text

    response = client.post("/admin/outbox/release")

    assert response.status_code == 303
    assert [fresh(e.id).status for e in held] == ["queued", "queued"]
    assert fresh(other.id).status == "held"  # another organization's mail is not ours to release
    mail.deliver_due(now=datetime.now(UTC))  # released "now", by the wall clock
    assert sorted(m["To"] for m in smtp.wait_for(2)) == ["c0@clienta.test", "c1@clienta.test"]
