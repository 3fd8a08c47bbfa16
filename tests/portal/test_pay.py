"""Paying in the portal (sandbox): "Pay now" on one invoice, several at once, the pay dialog (htmx), the return
page, who paid; everything scoped to the signed-in contact's company."""

from __future__ import annotations

import csv
import io
import re

from flask.testing import FlaskClient
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import CheckoutGroup, CheckoutSession, Invoice, OutboxEmail, Payment, SandboxObject
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, World, login, make_client, make_invoice, portal_login
from tests.pay.support import assert_invariants, fresh, pay_path, payments_of, real_now, receipts, sandbox

HX = {"HX-Request": "true"}


def local(url: str) -> str:
    return url.removeprefix("http://billing.test")


def nothing_started() -> bool:
    db.session.rollback()
    return not db.session.scalars(select(CheckoutSession)).all() and not db.session.scalars(
        select(CheckoutGroup)).all() and not db.session.scalar(select(func.count()).select_from(SandboxObject))


def two_open(world: World) -> tuple[Invoice, Invoice]:
    return make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")


def test_it_lists_what_the_company_can_pay_with_forms_that_carry_their_csrf_token(client: FlaskClient, world: World):
    a, b = two_open(world)
    paid = make_invoice(world.client_a, status="open")
    record_manual_payment(paid.id, amount=paid.total, method="cash", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW)
    draft = make_invoice(world.client_a)
    theirs = make_invoice(world.client_b, status="open")
    portal_login(client, world.client_a.contacts[0])
    page = client.get("/portal/pay")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    boxes = re.findall(r'name="invoice" value="(\d+)" form="pay-several"', page.text)
    assert boxes == [str(a.id), str(b.id)]
    for hidden in (paid, theirs, draft):
        assert f"/portal/invoices/{hidden.id}/pay" not in page.text
    forms = re.findall(r"<form[^>]*method=\"post\"[^>]*>(.*?)</form>", page.text, re.S)
    assert len(forms) == 4  # sign out, Pay now twice, Pay selected
    assert all('name="csrf_token"' in form for form in forms)
    assert 'id="pay-dialog"' in page.text and "js/portal-pay.js" in page.text
    assert "js.stripe.com" not in page.headers["Content-Security-Policy"]  # the sandbox: nothing from Stripe


def test_it_sends_a_visitor_to_sign_in_and_starts_nothing(client: FlaskClient, world: World):
    a, _ = two_open(world)
    assert client.get("/portal/pay").status_code == 303
    response = client.post(f"/portal/invoices/{a.id}/pay")
    assert response.status_code == 303 and "/portal/login" in response.headers["Location"]
    assert client.post("/portal/pay", data={"invoice": [a.id]}).status_code == 303
    assert nothing_started()


def test_pay_now_pays_the_amount_due_with_the_contact_as_payer(client: FlaskClient, world: World):
    contact = world.client_a.contacts[1]
    invoice = make_invoice(world.client_a, status="open", contact_id=world.client_a.contacts[0].id)
    portal_login(client, contact)
    response = client.post(f"/portal/invoices/{invoice.id}/pay")
    session = db.session.scalars(select(CheckoutSession)).one()
    assert response.status_code == 303 and response.headers["Location"] == session.url
    assert (session.amount, session.contact_id, session.ui_mode) == (27000, contact.id, "hosted")
    remote = sandbox().retrieve_checkout(session.session_id)
    assert remote.metadata["contact_id"] == str(contact.id) and remote.payer_email == contact.email
    assert client.post(f"/portal/invoices/{invoice.id}/pay").headers["Location"] == session.url  # a double click

    back = client.post(local(session.url), data={"card": "4242 4242 4242 4242", "email": contact.email})
    assert back.headers["Location"] == f"http://billing.test/portal/checkout/return?session_id={session.session_id}"
    page = client.get(local(back.headers["Location"]))
    assert page.status_code == 200 and "Payment received, thank you" in page.text
    payment, = payments_of(invoice)
    assert (payment.status, payment.paid_by_contact_id, payment.checkout_session_id) == (
        "succeeded", contact.id, session.session_id)
    row = re.search(r'<tr data-invoice="[^"]+">(.*?)</tr>', page.text, re.S).group(1)
    assert "paid" in row and payment.receipt_number in row and f"Client A contact 2 ({contact.email})" in row
    receipt, = receipts()
    assert receipt.to_addr == contact.email  # the contact who paid, not the invoice's addressee
    assert_invariants()


def test_pay_now_and_pay_several_answer_404_for_another_companys_invoice(client: FlaskClient, world: World):
    mine = make_invoice(world.client_b, status="open")
    theirs = make_invoice(world.client_a, status="open")
    other_client = make_client(world.org_b, "Client C", currency="JPY")
    neighbour = make_invoice(other_client, status="open")  # same organization, another company
    draft = make_invoice(world.client_b)
    portal_login(client, world.client_b.contacts[0])
    for invoice_id in (theirs.id, neighbour.id, draft.id, 999_999):
        for response in (client.post(f"/portal/invoices/{invoice_id}/pay"),
                         client.post("/portal/pay", data={"invoice": [mine.id, invoice_id]}),
                         client.post(f"/portal/invoices/{invoice_id}/pay", headers=HX)):
            assert response.status_code == 404, invoice_id
    main = [re.search(r"<main.*</main>", client.post(path).text, re.S).group(0)
            for path in ("/portal/invoices/999999/pay", f"/portal/invoices/{theirs.id}/pay")]
    assert main[0] == main[1] and "Invoice not found." in main[0]  # exactly like a missing one
    assert nothing_started()


def test_it_refuses_invoices_in_two_currencies_and_keeps_the_selection(client: FlaskClient, world: World):
    usd = make_invoice(world.client_a, status="open")
    eur = make_invoice(world.client_a, status="open", currency="EUR")
    portal_login(client, world.client_a.contacts[0])
    response = client.post("/portal/pay", data={"invoice": [usd.id, eur.id]})
    assert response.status_code == 422
    assert "Choose invoices in one currency: you chose EUR and USD. Pay each currency separately." in response.text
    assert len(re.findall(r'form="pay-several"\s+data-amount="[^"]+" data-currency="\w+"\s+aria-label="[^"]+" checked',
                          response.text)) == 2  # both still ticked
    dialog = client.post("/portal/pay", data={"invoice": [usd.id, eur.id]}, headers=HX)
    assert dialog.status_code == 422 and "<html" not in dialog.text and "Choose invoices in one currency" in dialog.text
    assert nothing_started()


def test_it_refuses_an_invoice_paid_meanwhile_and_an_empty_selection(client: FlaskClient, world: World):
    a, b = two_open(world)
    portal_login(client, world.client_a.contacts[0])
    record_manual_payment(b.id, amount=b.total, method="cheque", paid_on=NOW.date(), reference="", actor=SYSTEM,
                          now=NOW)
    response = client.post("/portal/pay", data={"invoice": [a.id, b.id]})
    assert response.status_code == 422 and f"Invoice {b.number} is already paid." in response.text
    empty = client.post("/portal/pay", data={})
    assert empty.status_code == 422 and "Choose at least one invoice to pay." in empty.text
    junk = client.post("/portal/pay", data={"invoice": ["abc"]})
    assert junk.status_code == 400 and "Choose the invoices to pay from this list." in junk.text
    assert nothing_started()


def test_it_pays_several_invoices_in_the_sandbox_dialog(client: FlaskClient, world: World):
    """With JavaScript: the selection posts with htmx, the dialog loads the sandbox's form from its page, a
    declined card is shown in place, a good one sends the whole page to the return page."""
    a, b = two_open(world)
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    opened = client.post("/portal/pay", data={"invoice": [a.id, b.id]}, headers=HX)
    group = db.session.scalars(select(CheckoutGroup)).one()
    assert opened.status_code == 200 and "<html" not in opened.text
    form_path = f"/pay/sandbox/{group.session_id}"
    assert f'hx-get="{form_path}"' in opened.text and f'href="{form_path}"' in opened.text  # and as a plain link

    form = client.get(form_path, headers=HX)
    assert form.status_code == 200 and "<html" not in form.text and "Sandbox — no money moves" in form.text
    assert "$540.00" in form.text and f'hx-post="{form_path}"' in form.text
    assert f'value="{contact.email}"' in form.text  # the contact's email, prefilled
    declined = client.post(form_path, data={"card": "4000000000000002", "email": contact.email}, headers=HX)
    assert declined.status_code == 200 and "Your card was declined." in declined.text and "<html" not in declined.text
    assert [fresh(i).status for i in (a, b)] == ["open", "open"]

    paid = client.post(form_path, data={"card": "4242424242424242", "email": contact.email}, headers=HX)
    back = f"http://billing.test/portal/checkout/return?session_id={group.session_id}"
    assert paid.status_code == 200 and paid.headers["HX-Redirect"] == back
    page = client.get(local(back))
    assert "Payment received, thank you" in page.text and "$540.00 paid for\n    2 invoices" in page.text
    rows = re.findall(r'<tr data-invoice="([^"]+)">(.*?)</tr>', page.text, re.S)
    assert [number for number, _ in rows] == [fresh(a).number, fresh(b).number]
    assert all("badge-paid" in row and f"Client A contact 1 ({contact.email})" in row for _, row in rows)
    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"]
    payments = db.session.scalars(select(Payment).order_by(Payment.invoice_id)).all()
    assert [(p.amount, p.group_id, p.paid_by_contact_id) for p in payments] == [(27000, group.id, contact.id)] * 2
    assert sorted(r.to_addr for r in receipts()) == [contact.email] * 2  # one receipt per invoice
    assert "Pay now" not in client.get("/portal/pay").text
    assert_invariants()


def test_without_javascript_several_invoices_go_to_the_sandbox_page_and_come_back(client: FlaskClient,
                                                                                   world: World):
    a, b = two_open(world)
    portal_login(client, world.client_a.contacts[0])
    response = client.post("/portal/pay", data={"invoice": [a.id, b.id]})
    group = db.session.scalars(select(CheckoutGroup)).one()
    assert response.status_code == 303 and response.headers["Location"] == group.url
    page = client.get(local(group.url))
    assert "<html" in page.text and 'href="http://billing.test/portal/pay"' in page.text  # cancel: back here
    back = client.post(local(group.url), data={"card": "4242424242424242", "email": ""})
    assert back.status_code == 303
    assert "Payment received, thank you" in client.get(local(back.headers["Location"])).text
    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"]


def test_the_return_page_answers_404_for_another_companys_checkout(client: FlaskClient, world: World):
    a, b = two_open(world)
    portal_login(client, world.client_a.contacts[0])
    client.post("/portal/pay", data={"invoice": [a.id, b.id]})
    client.post(f"/portal/invoices/{a.id}/pay")
    sessions = [db.session.scalars(select(CheckoutGroup.session_id)).one(),
                db.session.scalars(select(CheckoutSession.session_id)).one()]
    stranger = client.application.test_client()
    portal_login(stranger, world.client_b.contacts[0])
    for session_id in (*sessions, "cs_sbx_unknown"):
        assert stranger.get(f"/portal/checkout/return?session_id={session_id}").status_code == 404
    assert client.get("/portal/checkout/return").headers["Location"].endswith("/portal/pay")
    assert client.get(f"/portal/checkout/return?session_id={sessions[0]}").status_code == 200  # theirs: fine
    assert "Your payment is not complete" in client.get(f"/portal/checkout/return?session_id={sessions[0]}").text


def test_staff_see_who_paid_on_the_invoice_page_and_in_the_export(client: FlaskClient, world: World):
    a, b = two_open(world)
    linked = make_invoice(world.client_a, status="open", now=real_now(), issue_date=real_now().date())
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    client.post("/portal/pay", data={"invoice": [a.id, b.id]})
    group = db.session.scalars(select(CheckoutGroup)).one()
    client.post(local(group.url), data={"card": "4242424242424242", "email": ""})
    anonymous = client.application.test_client()  # a pay link, opened without signing in
    anonymous.post(local(anonymous.post(pay_path(linked)).headers["Location"]),
                   data={"card": "4242424242424242", "email": "Payer@Elsewhere.test"})

    staff = client.application.test_client()
    login(staff, world.alice)
    page = staff.get(f"/admin/invoices/{a.id}").text
    assert f"Paid by Client A contact 1 ({contact.email})" in page
    assert "One payment of $540.00 for 2 invoices" in page and group.payment_intent_id in page
    assert "Paid by Payer@Elsewhere.test" in staff.get(f"/admin/invoices/{linked.id}").text
    rows = {r["Number"]: r for r in csv.DictReader(io.StringIO(staff.get("/admin/invoices/export.csv").text))}
    assert rows[fresh(a).number]["Paid by"] == f"Client A contact 1 ({contact.email})"
    assert rows[fresh(linked).number]["Paid by"] == "Payer@Elsewhere.test"
    assert db.session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "receipt")) == 3


def test_a_settles_later_payment_shows_processing_then_paid_on_the_return_page(client: FlaskClient, world: World):
    a, b = two_open(world)
    portal_login(client, world.client_a.contacts[0])
    client.post("/portal/pay", data={"invoice": [a.id, b.id]})
    group = db.session.scalars(select(CheckoutGroup)).one()
    back = local(client.post(local(group.url), data={"card": "4000000000000077", "email": ""}).headers["Location"])
    page = client.get(back)
    assert "Payment processing" in page.text and "Settle as paid" in page.text  # the sandbox's bank, for the demo
    assert [fresh(i).status for i in (a, b)] == ["processing", "processing"] and receipts() == []
    settled = client.post(f"/pay/sandbox/{group.session_id}/settle", data={"outcome": "succeeded", "next": back})
    assert settled.status_code == 303 and local(settled.headers["Location"]) == back
    assert "Payment received, thank you" in client.get(back).text
    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"] and len(receipts()) == 2
    assert_invariants()
