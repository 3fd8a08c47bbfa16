"""The invoice page and its actions: send, remind, record a payment, void, duplicate, delete, finalize."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from invoicing import mail
from invoicing.extensions import db
from invoicing.models import Invoice, OutboxEmail, Payment
from invoicing.services.audit import record
from invoicing.services.invoices import void_invoice
from invoicing.services.paylinks import LinkGone, resolve
from tests.conftest import NOW, SYSTEM, login, make_invoice

SECRET = "test-secret-key-" + "x" * 32


def emails():
    return list(db.session.execute(select(OutboxEmail).order_by(OutboxEmail.id)).scalars())


def payments():
    return list(db.session.execute(select(Payment).order_by(Payment.id)).scalars())


def fresh(invoice):
    db.session.expire_all()
    return db.session.get(Invoice, invoice.id)


def payment_form(**extra):
    data = {"amount": "270.00", "method": "bank_transfer", "paid_on": "2026-03-10", "reference": "TRF-77",
            "idempotency_key": "form-key-1"}
    data.update(extra)
    return {f"payment-{name}": value for name, value in data.items()}


def test_it_shows_everything_about_an_open_invoice(client, world, time_machine):
    time_machine.move_to(NOW)
    invoice = make_invoice(world.client_a, status="open", project_ref="Website")
    login(client, world.alice)
    page = client.get(f"/admin/invoices/{invoice.id}").text
    assert "2026-0001" in page and "Consulting" in page and "$270.00" in page and "Website" in page
    assert "Finalized as 2026-0001" in page and "Draft created" in page
    link = re.search(r'id="paylink" type="text" readonly value="([^"]+)"', page).group(1)
    assert link.startswith("http://billing.test/pay/")  # from BASE_URL, never the Host header
    assert resolve(link.rsplit("/", 1)[1], secret_key=SECRET, today=NOW.date()).id == invoice.id
    for action in ("Send invoice…", "Send a reminder", "Record payment", "Void invoice", "Duplicate"):
        assert action in page
    assert "Send again" not in page and 'id="email-state"' not in page  # finalized, never emailed
    assert "Edit draft" not in page and "Delete draft" not in page
    has_pdf = "admin.invoice_pdf" in client.application.view_functions
    assert (f"/admin/invoices/{invoice.id}/pdf" in page) == has_pdf


def test_it_offers_draft_actions_and_no_pay_link_for_a_draft(client, world):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    page = client.get(f"/admin/invoices/{draft.id}").text
    assert "Edit draft" in page and "Send invoice" in page and "Delete draft" in page and 'id="paylink"' not in page


def test_it_sends_a_draft_and_queues_one_email_with_the_pay_link(client, world):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{draft.id}/send", data={"send-to": "", "send-key": "k1"})
    assert response.status_code == 303 and response.location.endswith(f"/admin/invoices/{draft.id}")
    invoice = fresh(draft)
    assert invoice.status == "open" and invoice.number == "2026-0001" and invoice.sent_count == 1
    [email] = emails()
    token = re.search(r"http://billing\.test/pay/(\S+)", email.text_body).group(1)
    assert resolve(token, secret_key=SECRET, today=NOW.date()).id == invoice.id
    assert email.attachments == [{"kind": "invoice_pdf", "invoice_id": invoice.id}]
    page = client.get(f"/admin/invoices/{draft.id}").text
    assert "queued for email" in page and "Sent to clienta@clients.test" in page and "Email “Invoice 2026-0001" in page


def test_it_resends_with_a_new_link_when_asked(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    client.post(f"/admin/invoices/{invoice.id}/send", data={"send-to": "", "send-key": "k2"})
    old = re.search(r'/pay/(\S+)"', client.get(f"/admin/invoices/{invoice.id}").text).group(1)
    client.post(f"/admin/invoices/{invoice.id}/send", data={"send-to": "", "send-rotate_link": "y", "send-key": "k3"})
    assert len(emails()) == 2 and fresh(invoice).link_version == 2
    with pytest.raises(LinkGone):
        resolve(old, secret_key=SECRET, today=NOW.date())


def test_it_refuses_to_send_a_void_invoice_with_a_clear_message(client, world):
    invoice = make_invoice(world.client_a, status="open")
    void_invoice(invoice.id, reason="dup", actor=SYSTEM, now=NOW)
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{invoice.id}/send", data={"send-to": "", "send-key": "k4"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 422 and "is void; it cannot be sent" in response.text
    assert response.headers["HX-Push-Url"] == f"/admin/invoices/{invoice.id}"  # not the action's URL
    assert emails() == []


def test_it_refuses_a_recipient_that_is_not_an_email(client, world):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{draft.id}/send", data={"send-to": "nobody", "send-key": "k5"})
    assert response.status_code == 422 and "Invalid email address" in response.text
    assert emails() == [] and fresh(draft).status == "draft"


def test_it_queues_a_reminder_once_a_day(client, world, time_machine):
    time_machine.move_to(NOW)
    invoice = make_invoice(world.client_a, status="open", issue_date=NOW.date() - timedelta(days=40))
    login(client, world.alice)
    assert client.post(f"/admin/invoices/{invoice.id}/remind").status_code == 303
    client.post(f"/admin/invoices/{invoice.id}/remind")
    assert [e.kind for e in emails()] == ["reminder"]
    assert "A reminder already went out today." in client.get(f"/admin/invoices/{invoice.id}").text


def test_it_records_a_manual_payment_once_even_if_the_form_is_posted_twice(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    first = client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form())
    second = client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form())
    assert first.status_code == second.status_code == 303
    [payment] = payments()
    assert (payment.amount, payment.method, payment.reference, payment.recorded_by_id) == (
        27000, "bank_transfer", "TRF-77", world.alice.id)
    assert str(payment.paid_on) == "2026-03-10" and fresh(invoice).status == "paid"
    assert "That payment was already recorded." in client.get(f"/admin/invoices/{invoice.id}").text


def test_it_records_a_partial_payment_when_the_organization_allows_it(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form(amount="100"))
    assert fresh(invoice).amount_paid == 10000 and fresh(invoice).status == "open"


def test_it_refuses_a_partial_payment_when_the_organization_does_not(client, world):
    invoice = make_invoice(world.client_b, status="open")  # org B: full payments only, JPY
    login(client, world.bob)
    response = client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form(amount="100"))
    assert response.status_code == 422 and "Partial payments are turned off" in response.text
    assert payments() == []


def test_it_refuses_an_overpayment_with_a_clear_message(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form(amount="270.01"))
    assert response.status_code == 422
    # said once, beside the amount, in money (not "27000 minor units")
    assert response.text.count("That is more than the amount due ($270.00); overpayments are refused.") == 1
    assert "minor units" not in response.text
    assert 'details class="action" open' in response.text  # the form stays open with the error beside it
    assert payments() == [] and fresh(invoice).amount_paid == 0


@pytest.mark.parametrize(("amount", "message"), [("", "Enter an amount."), ("12.345", "at most 2 decimals"),
                                                 ("-5", "cannot be negative"), ("ten", "is not an amount"),
                                                 ("99999999999999999999", "too large: at most $9,999,999,999,999.99")])
def test_it_refuses_bad_amounts(client, world, amount, message):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form(amount=amount))
    assert response.status_code == 422 and message in response.text and payments() == []


def test_it_refuses_to_pay_a_void_invoice(client, world):
    invoice = make_invoice(world.client_a, status="open")
    void_invoice(invoice.id, reason="dup", actor=SYSTEM, now=NOW)
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form())
    assert response.status_code == 422 and "is void; it cannot take a payment" in response.text
    assert payments() == []


def test_it_voids_with_a_reason_and_revokes_the_link(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    missing = client.post(f"/admin/invoices/{invoice.id}/void", data={"void-reason": " "})
    assert missing.status_code == 422 and "Give a reason for voiding." in missing.text
    assert fresh(invoice).status == "open"
    assert client.post(f"/admin/invoices/{invoice.id}/void", data={"void-reason": "Sent twice"}).status_code == 303
    voided = fresh(invoice)
    assert (voided.status, voided.void_reason, voided.link_version) == ("void", "Sent twice", 2)
    assert "Voided: Sent twice" in client.get(f"/admin/invoices/{invoice.id}").text


def test_it_duplicates_into_a_new_draft_and_opens_the_editor(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{invoice.id}/duplicate")
    copy = db.session.execute(select(Invoice).where(Invoice.id != invoice.id)).scalar_one()
    assert response.location.endswith(f"/admin/invoices/{copy.id}/edit")
    assert copy.status == "draft" and copy.total == invoice.total


def test_it_deletes_a_draft_but_not_an_open_invoice(client, world):
    draft = make_invoice(world.client_a)
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    assert client.post(f"/admin/invoices/{draft.id}/delete").status_code == 303
    refused = client.post(f"/admin/invoices/{invoice.id}/delete")
    assert refused.status_code == 422 and "Only drafts can be deleted" in refused.text
    assert db.session.execute(select(func.count()).select_from(Invoice)).scalar() == 1


def test_it_finalizes_without_emailing(client, world):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    client.post(f"/admin/invoices/{draft.id}/finalize")
    assert fresh(draft).number == "2026-0001" and emails() == []


@pytest.mark.parametrize(("method", "path", "data"), [
    ("get", "", None), ("get", "/edit", None), ("post", "/send", {"send-to": "", "send-key": "k6"}),
    ("post", "/remind", {}),
    ("post", "/payments", payment_form()), ("post", "/void", {"void-reason": "x"}), ("post", "/duplicate", {}),
    ("post", "/delete", {}), ("post", "/finalize", {}),
])
def test_it_answers_404_to_staff_of_another_organization(client, world, method, path, data):
    invoice = make_invoice(world.client_a, status="draft" if path in ("/delete", "/finalize", "/edit") else "open")
    login(client, world.bob)
    response = getattr(client, method)(f"/admin/invoices/{invoice.id}{path}", data=data)
    assert response.status_code == 404
    after = fresh(invoice)
    assert (after.status, after.sent_count, after.link_version) == (invoice.status, 0, 1)
    assert emails() == [] and payments() == [] and db.session.execute(select(func.count()).select_from(
        Invoice)).scalar() == 1


def test_it_lets_a_superadmin_act_on_any_organizations_invoice(client, world):
    invoice = make_invoice(world.client_b, status="open")
    login(client, world.root)
    assert client.post(f"/admin/invoices/{invoice.id}/payments",
                       data=payment_form(amount="27,000")).status_code == 303
    assert fresh(invoice).status == "paid"


def test_it_tells_the_story_of_the_invoice_in_its_timeline(client, world):
    invoice = make_invoice(world.client_a)
    login(client, world.alice)
    client.post(f"/admin/invoices/{invoice.id}/send", data={"send-to": "", "send-key": "k7"})
    page = client.get(f"/admin/invoices/{invoice.id}").text
    assert "Draft created" in page and "Finalized as 2026-0001" in page and "Sent to clienta@clients.test" in page
    assert "Email “Invoice 2026-0001 from Org A" in page and ": queued" in page  # still in the outbox
    sent = fresh(invoice)
    [email] = emails()
    email.status = "sent"  # what the delivery job writes, with its audit event
    record("email.delivered", sent, actor=SYSTEM, now=NOW,
           details={"outbox_id": email.id, "to": email.to_addr, "kind": "invoice"})
    record("invoice.viewed", sent, actor=SYSTEM, now=NOW)
    db.session.commit()
    client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form())
    page = client.get(f"/admin/invoices/{invoice.id}").text
    assert "Email delivered to clienta@clients.test" in page
    assert "Email “Invoice 2026-0001 from Org A” to clienta@clients.test: queued" not in page
    assert "Viewed by the client" in page and "Payment succeeded: $270.00 (bank transfer) · TRF-77" in page
    assert "Email “Receipt R-000001 for invoice 2026-0001 from Org A” to clienta@clients.test: queued" in page


def test_it_queues_one_email_when_the_same_send_form_is_submitted_twice(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    form = {"send-to": "", "send-key": "one-click"}
    assert client.post(f"/admin/invoices/{invoice.id}/send", data=form).status_code == 303
    assert client.post(f"/admin/invoices/{invoice.id}/send", data=form).status_code == 303
    assert len(emails()) == 1 and fresh(invoice).sent_count == 1
    assert client.post(f"/admin/invoices/{invoice.id}/send", data={**form, "send-key": "a-new-form"}).status_code == 303
    assert len(emails()) == 2 and fresh(invoice).sent_count == 2  # a deliberate resend from a fresh form


def test_it_refuses_a_send_form_without_its_key(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{invoice.id}/send", data={"send-to": ""})
    assert response.status_code == 422 and "The form expired; reload the page." in response.text
    assert emails() == [] and fresh(invoice).sent_count == 0


def sent_state(client, invoice):
    """The email badge on the invoice page and in the list row, and the invoice page's "Email" line."""
    page = client.get(f"/admin/invoices/{invoice.id}").text
    row = re.search(rf'href="/admin/invoices/{invoice.id}">.*?</tr>', client.get("/admin/invoices").text, re.S).group(0)
    heading = re.search(r"<h1>.*?</h1>", page, re.S).group(0)
    badge = " ".join(re.findall(r'class="badge badge-(?:email_\w+|sent)">([^<]+)<', heading))
    assert badge == " ".join(re.findall(r'class="badge badge-(?:email_\w+|sent)">([^<]+)<', row)), row
    line = re.sub(r"\s+", " ", re.search(r'id="email-state">(.*?)<', page, re.S).group(1)).strip()
    return badge, line, "Send again" in page


def send(client, invoice, key="k1"):
    response = client.post(f"/admin/invoices/{invoice.id}/send", data={"send-to": "", "send-key": key})
    assert response.status_code == 303


def test_it_shows_an_email_held_without_a_mail_server_as_held_not_sent(client, world, runner):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    send(client, draft)
    assert sent_state(client, draft) == ("email queued", "queued in the outbox", True)
    assert "1 held" in runner.invoke(args=["billing", "deliver-mail"]).output
    assert [e.status for e in emails()] == ["held"]
    assert sent_state(client, draft) == ("email held", "held in the outbox: no mail server is set", True)


def test_it_shows_a_delivered_email_as_delivered(client, world, runner, smtp):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    send(client, draft)
    runner.invoke(args=["billing", "deliver-mail"])
    assert smtp.wait_for(1)[0]["To"] == "clienta@clients.test"
    assert [e.status for e in emails()] == ["sent"]
    assert sent_state(client, draft) == ("email delivered", "delivered", True)


def test_it_shows_a_refused_email_as_failed(client, world, runner, smtp):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    smtp.refuse(550, "5.1.1 No such user")
    send(client, draft)
    runner.invoke(args=["billing", "deliver-mail"])
    assert smtp.messages == [] and [e.status for e in emails()] == ["failed"]
    assert sent_state(client, draft) == ("email failed", "failed: see the outbox", True)
    smtp.recover()
    send(client, fresh(draft), key="k2")  # sent again: the badge follows the latest email
    assert mail.deliver_due(now=datetime.now(UTC)).sent == 1  # the job ran this minute: its work, directly
    assert sent_state(client, draft) == ("email delivered", "delivered", True)
