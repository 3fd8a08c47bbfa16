"""The outbox's delivery: a real SMTP server (aiosmtpd) receives what the job sends, once, even when it fails."""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

import invoicing.mail as mail
from invoicing import jobs
from invoicing.extensions import db
from invoicing.models import AuditEvent, Invoice, OutboxEmail
from invoicing.services import DomainError
from invoicing.services.db import atomic
from tests.conftest import NOW, login, make_invoice


def queue(world, *, invoice: Invoice | None = None, to: str = "c1@clienta.test", subject: str = "Invoice 2026-0001",
          dedupe_key: str | None = None, pdf: bool = True, now=NOW) -> OutboxEmail | None:
    from_addr, reply_to = mail.sender_for(world.org_a, "billing@invoicing.test")
    with atomic():
        return mail.enqueue(
            kind="invoice", to=to, subject=subject, text_body="Please pay: http://billing.test/pay/x",
            html_body="<p>Please <a href='http://billing.test/pay/x'>pay</a> ✓</p>", from_addr=from_addr,
            reply_to=reply_to, now=now, organization_id=world.org_a.id, invoice_id=invoice.id if invoice else None,
            attachments=[{"kind": "invoice_pdf", "invoice_id": invoice.id}] if invoice and pdf else [],
            dedupe_key=dedupe_key,
        )


def row(email_id: int) -> OutboxEmail:
    db.session.rollback()
    return db.session.get_one(OutboxEmail, email_id)


def events(action: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars())


def test_it_delivers_text_html_reply_to_and_the_invoice_pdf(app, world, smtp):
    world.org_a.sender_email = "accounts@org-a.test"
    db.session.commit()
    invoice = make_invoice(world.client_a, status="open")
    email = queue(world, invoice=invoice)
    assert email is not None

    report = mail.deliver_due(now=NOW)

    assert (report.sent, report.retrying, report.failed) == (1, 0, 0)
    [message] = smtp.wait_for(1)
    assert message["To"] == "c1@clienta.test" and message["Subject"] == "Invoice 2026-0001"
    assert message["From"] == "Org A <billing@invoicing.test>" and message["Reply-To"] == "accounts@org-a.test"
    assert smtp.envelopes[0].rcpt_tos == ["c1@clienta.test"]
    assert "Please pay" in message.get_body(("plain",)).get_content()
    assert "✓" in message.get_body(("html",)).get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "invoice-2026-0001.pdf" and attachment.get_content_type() == "application/pdf"
    text = PdfReader(io.BytesIO(attachment.get_content())).pages[0].extract_text()
    assert "2026-0001" in text and "Client A" in text and "$270.00" in text

    sent = row(email.id)
    assert (sent.status, sent.sent_at, sent.attempts, sent.last_error) == ("sent", NOW, 1, None)
    [delivered] = events("email.delivered")
    assert (delivered.object_type, delivered.object_id) == ("invoice", invoice.id)
    assert delivered.details["to"] == "c1@clienta.test"


def test_it_shows_the_delivery_on_the_invoice_timeline(client, app, world, smtp):
    invoice = make_invoice(world.client_a, status="open")
    queue(world, invoice=invoice, pdf=False)
    mail.deliver_due(now=NOW)
    login(client, world.alice)
    assert "email delivered" in client.get(f"/admin/invoices/{invoice.id}").text.lower()


def test_it_sends_each_email_once(app, world, smtp):
    first = queue(world, dedupe_key="reminder:1:due")
    assert queue(world, dedupe_key="reminder:1:due") is None  # the same key again: nothing queued
    assert first is not None
    mail.deliver_due(now=NOW)
    mail.deliver_due(now=NOW + timedelta(hours=1))
    assert len(smtp.wait_for(1)) == 1
    time.sleep(0.1)
    assert len(smtp.messages) == 1
    assert db.session.execute(select(func.count()).select_from(OutboxEmail)).scalar_one() == 1


@pytest.mark.parametrize(("field", "value"), [
    ("to", "c1@clienta.test\r\nBcc: everyone@evil.test"),
    ("to", "c1@clienta.test\nBcc: everyone@evil.test"),
    ("subject", "Invoice\r\nBcc: everyone@evil.test"),
])
def test_it_refuses_header_injection(app, world, field, value):
    with pytest.raises(DomainError, match="line breaks"):
        queue(world, **{field: value})
    assert db.session.execute(select(func.count()).select_from(OutboxEmail)).scalar_one() == 0


def test_it_holds_emails_when_no_smtp_server_is_configured(app, world, smtp_server):
    smtp_server.clear()
    assert not app.config["MAIL_SERVER"]
    email = queue(world)
    assert email is not None

    report = mail.deliver_due(now=NOW)

    assert report.held == 1 and "held" in str(report)
    held = row(email.id)
    assert (held.status, held.attempts, held.next_attempt_at) == ("held", 0, None)
    assert held.last_error == mail.NO_SERVER
    assert mail.deliver_due(now=NOW + timedelta(days=1)).held == 0  # held stays held: nothing is sent by itself
    assert smtp_server.messages == []


def test_it_retries_a_temporary_refusal_with_backoff_then_delivers_once(app, world, smtp):
    smtp.refuse(451, "4.3.0 Mailbox busy")
    email = queue(world)
    assert email is not None

    report = mail.deliver_due(now=NOW)

    assert report.retrying == 1
    waiting = row(email.id)
    assert (waiting.status, waiting.attempts) == ("queued", 1)
    assert waiting.next_attempt_at == NOW + timedelta(minutes=1)
    assert "451" in (waiting.last_error or "")
    assert smtp.messages == []

    smtp.recover()
    assert mail.deliver_due(now=NOW + timedelta(seconds=30)).sent == 0  # not due yet
    assert mail.deliver_due(now=NOW + timedelta(minutes=1)).sent == 1
    assert len(smtp.wait_for(1)) == 1
    assert (row(email.id).status, row(email.id).attempts) == ("sent", 2)


def test_it_backs_off_1_5_30_120_720_minutes_then_fails_visibly(app, world, smtp):
    smtp.refuse(451)
    invoice = make_invoice(world.client_a, status="open")
    email = queue(world, invoice=invoice, pdf=False)
    assert email is not None
    now, waits = NOW, []
    for _ in range(mail.MAX_ATTEMPTS):
        mail.deliver_due(now=now)
        current = row(email.id)
        if current.next_attempt_at is not None:
            waits.append(int((current.next_attempt_at - now).total_seconds() // 60))
            now = current.next_attempt_at
    assert waits == [1, 5, 30, 120, 720]
    failed = row(email.id)
    assert (failed.status, failed.attempts) == ("failed", mail.MAX_ATTEMPTS)
    [event] = events("email.failed")
    assert (event.object_type, event.object_id) == ("invoice", invoice.id)
    assert smtp.messages == []


def test_it_fails_at_once_when_the_recipient_is_refused_for_good(app, world, smtp):
    smtp.refuse(550, "5.1.1 No such user")
    email = queue(world)
    assert email is not None
    report = mail.deliver_due(now=NOW)
    assert report.failed == 1
    failed = row(email.id)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert "550 5.1.1 No such user" in (failed.last_error or "")


def test_it_gives_up_on_a_hanging_server_within_the_timeout_and_delivers_later(app, world, smtp):
    app.config["MAIL_TIMEOUT"] = 1
    smtp.hang(30)
    email = queue(world)
    assert email is not None

    started = time.monotonic()
    report = mail.deliver_due(now=NOW)
    elapsed = time.monotonic() - started

    assert elapsed < 5, elapsed
    assert report.retrying == 1
    waiting = row(email.id)
    assert (waiting.status, waiting.attempts) == ("queued", 1)
    assert "timed out" in (waiting.last_error or "").lower()

    smtp.recover()
    assert mail.deliver_due(now=NOW + timedelta(minutes=1)).sent == 1
    assert len(smtp.wait_for(1)) == 1


@pytest.mark.parametrize("port", ["blackhole_port", "closed_port"])
def test_it_stops_the_run_when_the_server_is_unreachable_and_loses_nothing(app, world, smtp, port):
    app.config.update(MAIL_PORT=getattr(smtp, port), MAIL_TIMEOUT=1)
    emails = [queue(world, to=f"c{n}@clienta.test") for n in range(3)]

    started = time.monotonic()
    report = mail.deliver_due(now=NOW)

    assert time.monotonic() - started < 5
    assert (report.sent, report.retrying) == (0, 1)  # one try, then the run stops: no timeout per email
    rows = [row(e.id) for e in emails if e is not None]
    assert [r.status for r in rows] == ["queued"] * 3
    assert sorted(r.attempts for r in rows) == [0, 0, 1]

    app.config["MAIL_PORT"] = smtp.port
    assert mail.deliver_due(now=NOW + timedelta(minutes=1)).sent == 3
    assert sorted(m["To"] for m in smtp.wait_for(3)) == ["c0@clienta.test", "c1@clienta.test", "c2@clienta.test"]


def test_it_sends_again_after_the_lease_when_a_sender_died_mid_send(app, world, smtp):
    email = queue(world)
    assert email is not None
    assert mail._claim_next(NOW) == email.id  # a worker claims it, then its process is killed
    assert row(email.id).status == "sending"

    assert mail.deliver_due(now=NOW + timedelta(minutes=4)).sent == 0  # the lease still holds
    assert mail.deliver_due(now=NOW + mail.LEASE).sent == 1
    [message] = smtp.wait_for(1)
    assert (row(email.id).status, row(email.id).attempts) == ("sent", 2)
    assert message["Message-ID"] == mail._message_id(row(email.id))  # stable: a repeat is recognisable


def test_it_delivers_each_email_once_with_several_workers_at_the_same_time(app, world, smtp):
    ids = [e.id for e in (queue(world, to=f"c{n}@clienta.test") for n in range(12)) if e is not None]
    errors: list[BaseException] = []

    def worker() -> None:
        with app.app_context():
            try:
                mail.deliver_due(now=NOW)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    messages = smtp.wait_for(12)
    time.sleep(0.1)
    assert len(smtp.messages) == 12
    assert len({m["Message-ID"] for m in messages}) == 12
    assert {row(i).status for i in ids} == {"sent"} and {row(i).attempts for i in ids} == {1}


def test_it_is_a_scheduler_job_and_a_cli_command(app, world, smtp, runner, time_machine):
    time_machine.move_to(NOW + timedelta(minutes=1), tick=False)
    assert "deliver-mail" in jobs.load_jobs()
    queue(world)
    dry = runner.invoke(args=["billing", "deliver-mail", "--dry-run"])
    assert dry.exit_code == 0 and "would send 1 email" in dry.output
    assert smtp.messages == []
    result = runner.invoke(args=["billing", "deliver-mail"])
    assert result.exit_code == 0, result.output
    assert "1 sent" in result.output
    assert len(smtp.wait_for(1)) == 1


def test_it_fails_for_good_when_the_attachment_cannot_be_made(app, world, smtp):
    foreign = make_invoice(world.client_b, status="open")  # another organization's invoice
    from_addr, _ = mail.sender_for(world.org_a, "billing@invoicing.test")
    with atomic():
        email = mail.enqueue(kind="invoice", to="c1@clienta.test", subject="Invoice", text_body="t", html_body="h",
                             from_addr=from_addr, now=NOW, organization_id=world.org_a.id,
                             attachments=[{"kind": "invoice_pdf", "invoice_id": foreign.id}])
    assert email is not None
    assert mail.deliver_due(now=NOW).failed == 1
    failed = row(email.id)
    assert failed.status == "failed" and "gone" in (failed.last_error or "")
    assert smtp.messages == []


def test_it_refuses_an_unknown_attachment_kind(app, world):
    with pytest.raises(DomainError, match="Unknown attachment kind"), atomic():
        mail.enqueue(kind="invoice", to="c1@clienta.test", subject="x", text_body="t", html_body="h",
                     from_addr="billing@invoicing.test", now=NOW, attachments=[{"kind": "file", "path": "/etc/passwd"}])


def test_it_sends_an_invoice_at_once_while_the_smtp_server_hangs(client, app, world, smtp):
    smtp.hang(30)
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    started = time.monotonic()
    response = client.post(f"/admin/invoices/{draft.id}/send", data={"send-to": "", "send-key": "hang-test"})
    assert response.status_code in (200, 303) and time.monotonic() - started < 5  # SMTP hangs 30 s: never waited on
    queued = db.session.execute(select(OutboxEmail).where(OutboxEmail.invoice_id == draft.id)).scalar_one()
    assert queued.status == "queued" and queued.attempts == 0
