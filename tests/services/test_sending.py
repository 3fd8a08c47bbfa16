from datetime import date, timedelta

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Invoice, OutboxEmail
from invoicing.services import DomainError
from invoicing.services.audit import Actor
from invoicing.services.invoices import void_invoice
from invoicing.services.paylinks import LinkGone, resolve
from invoicing.services.payments import apply_payment, record_manual_payment
from invoicing.services.sending import send_invoice, send_reminder
from tests.conftest import NOW, SYSTEM, make_invoice

SECRET = "test-secret-key-" + "x" * 32
MAIL = dict(base_url="http://billing.test", secret_key=SECRET, default_sender="Billing <billing@example.test>")


def send(invoice_id, **kw):
    return send_invoice(invoice_id, actor=SYSTEM, now=kw.pop("now", NOW), **MAIL, **kw)


def outbox():
    return list(db.session.execute(select(OutboxEmail).order_by(OutboxEmail.id)).scalars())


def pay_token(email):
    marker = "http://billing.test/pay/"
    start = email.text_body.index(marker) + len(marker)
    return email.text_body[start:].split()[0]


def actions(invoice_id):
    return [e.action for e in db.session.execute(
        select(AuditEvent).where(AuditEvent.object_type == "invoice", AuditEvent.object_id == invoice_id)
        .order_by(AuditEvent.id)).scalars()]


def test_it_finalizes_a_draft_and_queues_exactly_one_email_with_the_pay_link_and_the_pdf(world):
    draft = make_invoice(world.client_a)
    invoice = send(draft.id)
    assert invoice.status == "open" and invoice.number == "2026-0001"
    assert invoice.sent_count == 1 and invoice.sent_at == NOW
    [email] = outbox()
    assert email.kind == "invoice" and email.invoice_id == invoice.id and email.organization_id == world.org_a.id
    assert email.to_addr == "clienta@clients.test"  # no contact chosen: the client's billing email
    assert email.subject == "Invoice 2026-0001 from Org A — $270.00 due Apr 9, 2026"
    assert email.from_addr == "Org A <billing@example.test>"
    assert email.dedupe_key == f"invoice:{invoice.id}:send:1"
    assert email.attachments == [{"kind": "invoice_pdf", "invoice_id": invoice.id}]
    token = pay_token(email)
    assert f'href="http://billing.test/pay/{token}"' in email.html_body and "Pay now" in email.html_body
    assert "$270.00" in email.html_body and "Consulting" in email.html_body and "Org A" in email.html_body
    assert resolve(token, secret_key=SECRET, today=NOW.date()).id == invoice.id
    assert actions(invoice.id) == ["invoice.created", "invoice.finalized", "invoice.sent"]
    sent = db.session.execute(select(AuditEvent).where(AuditEvent.action == "invoice.sent")).scalar_one()
    assert sent.details["to"] == "clienta@clients.test" and sent.details["email_id"] == email.id


def test_it_sends_to_the_invoice_contact_or_to_whom_staff_say(world):
    contact = world.client_a.contacts[1]
    invoice = make_invoice(world.client_a, contact_id=contact.id)
    send(invoice.id)
    send(invoice.id, to="ap@elsewhere.test")
    assert [e.to_addr for e in outbox()] == [contact.email, "ap@elsewhere.test"]


def test_it_resends_with_the_same_link_unless_asked_to_rotate_it(world):
    invoice = send(make_invoice(world.client_a).id)
    first = pay_token(outbox()[0])
    send(invoice.id)
    assert pay_token(outbox()[1]) == first
    again = send(invoice.id, rotate_link=True)
    third = pay_token(outbox()[2])
    assert third != first and again.sent_count == 3 and again.link_version == 2
    assert [e.dedupe_key for e in outbox()] == [f"invoice:{invoice.id}:send:{n}" for n in (1, 2, 3)]
    with pytest.raises(LinkGone):
        resolve(first, secret_key=SECRET, today=NOW.date())
    assert resolve(third, secret_key=SECRET, today=NOW.date()).id == invoice.id
    assert actions(invoice.id)[-2:] == ["invoice.link_rotated", "invoice.sent"]


def test_it_gives_an_expired_link_new_life_when_resending(world):
    invoice = send(make_invoice(world.client_a, issue_date=date(2025, 10, 1)).id, now=NOW - timedelta(days=150))
    assert invoice.link_expires_on < NOW.date()
    again = send(invoice.id)
    assert again.link_expires_on == NOW.date() + timedelta(days=30)
    assert resolve(pay_token(outbox()[-1]), secret_key=SECRET, today=NOW.date()).id == invoice.id


@pytest.mark.parametrize("state", ["void", "paid", "processing"])
def test_it_refuses_to_send_a_void_paid_or_processing_invoice(world, state):
    invoice = make_invoice(world.client_a, status="open")
    if state == "void":
        void_invoice(invoice.id, reason="dup", actor=SYSTEM, now=NOW)
    elif state == "paid":
        record_manual_payment(invoice.id, amount=27000, method="cash", paid_on=NOW.date(), reference="",
                              actor=SYSTEM, now=NOW)
    else:
        apply_payment(invoice.id, amount=27000, currency="USD", method="card", status="processing",
                      payment_intent_id="pi_1", actor=SYSTEM, now=NOW)
    with pytest.raises(DomainError, match={"void": "void", "paid": "already paid", "processing": "processing"}[state]):
        send(invoice.id)
    assert outbox() == [] and db.session.get(Invoice, invoice.id).sent_count == 0


def test_it_keeps_the_draft_when_the_email_cannot_be_queued(world):
    draft = make_invoice(world.client_a)
    with pytest.raises(DomainError, match="line breaks"):
        send(draft.id, to="a@b.test\r\nBcc: victim@x.test")
    db.session.expire_all()
    invoice = db.session.get(Invoice, draft.id)
    assert invoice.status == "draft" and invoice.number is None and outbox() == []
    assert send(draft.id).number == "2026-0001"  # the number was given back: no gap


def test_it_refuses_a_client_without_any_email_address(world):
    world.client_a.email = ""
    db.session.commit()
    with pytest.raises(DomainError, match="no billing email"):
        send(make_invoice(world.client_a).id)
    assert outbox() == []


def test_it_queues_one_reminder_per_invoice_per_day(world):
    invoice = send(make_invoice(world.client_a, status="open", issue_date=date(2026, 1, 1)).id)
    email = send_reminder(invoice.id, actor=Actor.user(world.alice), now=NOW, **MAIL)
    assert email is not None and email.kind == "reminder"
    assert email.subject == "Reminder: invoice 2026-0001 from Org A is overdue by 38 days — $270.00"
    assert email.dedupe_key == f"invoice:{invoice.id}:reminder:2026-03-10"
    assert "overdue" in email.text_body and resolve(pay_token(email), secret_key=SECRET, today=NOW.date())
    assert send_reminder(invoice.id, actor=SYSTEM, now=NOW + timedelta(hours=2), **MAIL) is None
    tomorrow = send_reminder(invoice.id, actor=SYSTEM, now=NOW + timedelta(days=1), **MAIL)
    assert tomorrow is not None and len(outbox()) == 3
    assert actions(invoice.id).count("invoice.reminded") == 2


def test_it_does_not_remind_about_a_draft(world):
    with pytest.raises(DomainError, match="not been sent"):
        send_reminder(make_invoice(world.client_a).id, actor=SYSTEM, now=NOW, **MAIL)
