"""POST /pay/<token> (Pay now): a hosted checkout for the amount, reused on a double click."""

from __future__ import annotations

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, CheckoutSession, Client
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, make_client, make_invoice
from tests.pay.support import fresh, pay_path, payments_of, receipts, stripe_object


def sessions() -> list[CheckoutSession]:
    return list(db.session.scalars(select(CheckoutSession).order_by(CheckoutSession.id)))


def test_it_opens_a_checkout_for_the_amount_due_and_redirects_to_it(client, world):
    invoice = make_invoice(world.client_a, status="open")
    response = client.post(pay_path(invoice))
    assert response.status_code == 303
    row, = sessions()
    assert response.headers["Location"] == row.url == f"http://billing.test/pay/sandbox/{row.session_id}"
    assert (row.invoice_id, row.amount, row.currency, row.status, row.provider) == (
        invoice.id, 27000, "USD", "open", "sandbox")
    assert db.session.scalar(select(AuditEvent.details).where(AuditEvent.action == "checkout.started")) == {
        "session_id": row.session_id, "amount": 27000, "provider": "sandbox"}


def test_it_reuses_the_open_checkout_on_a_double_click(client, world):
    invoice = make_invoice(world.client_a, status="open")
    first = client.post(pay_path(invoice)).headers["Location"]
    second = client.post(pay_path(invoice)).headers["Location"]
    assert first == second and len(sessions()) == 1


def test_it_takes_a_chosen_amount_within_the_organizations_bounds(client, world):
    world.org_a.min_partial_amount = 5000
    db.session.commit()
    invoice = make_invoice(world.client_a, status="open")
    too_small = client.post(pay_path(invoice), data={"amount": "49.99"})
    too_big = client.post(pay_path(invoice), data={"amount": "270.01"})
    garbage = client.post(pay_path(invoice), data={"amount": "12abc"})
    assert (too_small.status_code, too_big.status_code, garbage.status_code) == (422, 422, 400)
    assert "Choose an amount between $50.00 and $270.00." in too_small.text
    assert "is not an amount" in garbage.text
    assert sessions() == []
    assert client.post(pay_path(invoice), data={"amount": "100"}).status_code == 303
    assert [s.amount for s in sessions()] == [10000]
    client.post(pay_path(invoice), data={"amount": "270.00"})
    assert [s.amount for s in sessions()] == [10000, 27000]


def test_it_refuses_a_partial_amount_when_the_organization_takes_full_payments(client, world):
    invoice = make_invoice(world.client_b, status="open")  # org B: full payments only, JPY
    response = client.post(pay_path(invoice), data={"amount": "100"})
    assert response.status_code == 422 and "Please pay the full amount due, ¥27,000." in response.text
    assert sessions() == []


def test_it_refuses_to_open_a_checkout_for_a_paid_invoice(client, world):
    invoice = make_invoice(world.client_a, status="open")
    record_manual_payment(invoice.id, amount=invoice.total, method="cash", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW)
    response = client.post(pay_path(invoice))
    assert response.status_code == 422 and "nothing left to pay" in response.text
    assert sessions() == []


def test_it_refuses_an_amount_cards_cannot_take_in_a_three_decimal_currency(client, world):
    kwd = make_client(world.org_b, "Gulf Co", currency="KWD")
    invoice = make_invoice(kwd, status="open")
    assert invoice.total == 27000  # 27.000 KWD: chargeable
    odd = make_invoice(kwd, status="open", discount_kind="amount", discount_value=5)  # 26.995 KWD
    response = client.post(pay_path(odd))
    assert response.status_code == 422 and "steps of KWD" in response.text
    assert sessions() == []
    assert client.post(pay_path(invoice)).status_code == 303


def test_it_opens_a_stripe_checkout_with_a_stored_customer(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open", contact_id=world.client_a.contacts[0].id)
    response = client.post(pay_path(invoice))
    row, = sessions()
    assert response.status_code == 303 and response.headers["Location"] == row.url
    assert row.url == f"{stripe_app.base_url}/_config/checkout/{row.session_id}" and row.provider == "stripe"
    remote = stripe_object(stripe_app, f"/v1/checkout/sessions/{row.session_id}")
    assert (remote["amount_total"], remote["currency"], remote["mode"]) == (27000, "usd", "payment")
    # No contact_id: anyone holding the link may pay it; who paid is the email typed at checkout.
    assert remote["metadata"] == {"invoice_id": str(invoice.id), "invoice_number": invoice.number,
                                  "invoice_public_id": invoice.public_id}
    assert remote["success_url"] == f"http://billing.test{pay_path(invoice)}/return?session_id={{CHECKOUT_SESSION_ID}}"
    assert remote["cancel_url"] == f"http://billing.test{pay_path(invoice)}"
    customer = db.session.get(Client, world.client_a.id).stripe_customer_id
    assert customer and remote["customer"] == customer
    assert stripe_object(stripe_app, f"/v1/customers/{customer}")["email"] == "c1@clienta.test"

    assert client.post(pay_path(invoice)).headers["Location"] == row.url  # a second tab
    other = make_invoice(world.client_a, status="open")
    client.post(pay_path(other))
    assert stripe_object(stripe_app, f"/v1/checkout/sessions/{sessions()[-1].session_id}")["customer"] == customer
    assert len(stripe_object(stripe_app, "/v1/customers")["data"]) == 1


def test_it_says_so_when_the_provider_is_down_and_writes_nothing(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    stripe_app.fault(path_prefix="/v1/", mode="error_500", count=10)
    response = client.post(pay_path(invoice))
    assert response.status_code == 422 and "could not be reached" in response.text
    assert sessions() == [] and fresh(invoice).status == "open"
    stored = select(func.count()).select_from(Client).where(Client.stripe_customer_id.is_not(None))
    assert db.session.scalar(stored) == 0


def test_it_records_a_paid_session_instead_of_sending_the_client_back_to_it(client, world, stripe_app):
    # The client paid, the webhook was lost and the tab closed before the return page; then Pay now again.
    invoice = make_invoice(world.client_a, status="open")
    first = client.post(pay_path(invoice)).headers["Location"]
    row, = sessions()
    assert stripe_app.pay(row.session_id) is not None and fresh(invoice).status == "open"
    again = client.post(pay_path(invoice))
    assert again.status_code == 303 and again.headers["Location"] != first
    assert again.headers["Location"] == f"http://billing.test{pay_path(invoice)}/return?session_id={row.session_id}"
    assert fresh(invoice).status == "paid" and [s.status for s in sessions()] == ["complete"]
    payment, = payments_of(invoice)
    assert (payment.status, payment.checkout_session_id, payment.amount) == ("succeeded", row.session_id, 27000)
    assert [r.dedupe_key for r in receipts()] == [f"receipt:{payment.id}"]
    confirmation = client.get(again.headers["Location"].removeprefix("http://billing.test"))
    assert "Payment received, thank you" in confirmation.text and len(payments_of(invoice)) == 1
    page = client.get(pay_path(invoice)).text
    assert "Pay now" not in page and payment.receipt_number in page


def test_it_opens_a_new_checkout_when_the_stored_one_expired_at_the_provider(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    first = client.post(pay_path(invoice)).headers["Location"]
    old, = sessions()
    stripe_app.request("POST", f"/v1/checkout/sessions/{old.session_id}/expire", data={}, auth=True)
    second = client.post(pay_path(invoice)).headers["Location"]
    assert second != first
    assert [(s.session_id == old.session_id, s.status) for s in sessions()] == [(True, "expired"), (False, "open")]
    assert stripe_object(stripe_app, f"/v1/checkout/sessions/{sessions()[1].session_id}")["status"] == "open"
