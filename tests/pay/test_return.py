"""GET /pay/<token>/return: the client is back from the hosted page; the provider is asked and the payment
recorded through the same door as the webhook (rule 6), even when no webhook ever arrives."""

from __future__ import annotations

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import CheckoutSession
from tests.conftest import make_invoice
from tests.pay.support import assert_invariants, fresh, pay_path, payments_of, receipts


def checkout(client, invoice) -> str:
    client.post(pay_path(invoice))
    return db.session.scalars(select(CheckoutSession.session_id).where(CheckoutSession.invoice_id == invoice.id)
                              .order_by(CheckoutSession.id.desc())).first()


def test_it_records_a_stripe_payment_from_the_return_page_alone(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    session_id = checkout(client, invoice)
    success_url = stripe_app.pay(session_id, email="payer@clienta.test")
    assert success_url == f"http://billing.test{pay_path(invoice)}/return?session_id={session_id}"
    assert payments_of(invoice) == []  # no webhook reaches the in-process app

    page = client.get(success_url.removeprefix("http://billing.test"))
    assert page.status_code == 200 and "Payment received, thank you" in page.text and "$270.00" in page.text
    payment, = payments_of(invoice)
    assert (payment.status, payment.method, payment.amount, payment.checkout_session_id) == (
        "succeeded", "card", 27000, session_id)
    assert payment.payment_intent_id.startswith("pi_") and payment.receipt_number in page.text
    assert fresh(invoice).status == "paid"
    assert db.session.scalar(select(CheckoutSession.status)) == "complete"
    assert [r.dedupe_key for r in receipts()] == [f"receipt:{payment.id}"]
    # The method actually used, as Stripe's charge tells it: on the page and the receipt.
    assert (payment.method_type, payment.method_brand, payment.method_last4) == ("card", "visa", "4242")
    assert "Visa •••• 4242" in page.text and "Visa •••• 4242" in receipts()[0].text_body

    again = client.get(success_url.removeprefix("http://billing.test"))  # reload: nothing twice
    assert again.status_code == 200 and len(payments_of(invoice)) == 1 and len(receipts()) == 1
    assert_invariants()


def test_it_shows_that_nothing_was_taken_when_the_client_did_not_pay(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    session_id = checkout(client, invoice)
    page = client.get(pay_path(invoice, f"/return?session_id={session_id}"))
    assert page.status_code == 200 and "Your payment is not complete" in page.text
    assert payments_of(invoice) == [] and fresh(invoice).status == "open"


def test_it_answers_404_for_a_session_of_another_invoice(client, world, stripe_app):
    mine, other = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    session_id = checkout(client, other)
    stripe_app.pay(session_id)
    assert client.get(pay_path(mine, f"/return?session_id={session_id}")).status_code == 404
    assert client.get(pay_path(mine, "/return?session_id=cs_test_unknown")).status_code == 404
    assert payments_of(mine) == [] and payments_of(other) == []


def test_it_says_we_are_confirming_when_the_provider_is_unreachable_then_records_it(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    session_id = checkout(client, invoice)
    back = stripe_app.pay(session_id).removeprefix("http://billing.test")
    stripe_app.fault(path_prefix="/v1/checkout/sessions", method="GET", mode="error_500", count=3)
    page = client.get(back)
    assert page.status_code == 503 and "We are confirming your payment" in page.text
    assert payments_of(invoice) == []
    assert client.get(back).status_code == 200  # the provider is back
    assert [p.status for p in payments_of(invoice)] == ["succeeded"]


def test_it_shows_a_settles_later_payment_as_processing(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    session_id = checkout(client, invoice)
    page = client.get(stripe_app.pay(session_id, card="4000000000000077").removeprefix("http://billing.test"))
    assert "Payment processing" in page.text and "Settle as paid" not in page.text  # sandbox controls only
    assert [p.status for p in payments_of(invoice)] == ["processing"] and fresh(invoice).status == "processing"
    assert receipts() == []
    stripe_app.settle(session_id, "succeeded")
    client.get(pay_path(invoice, f"/return?session_id={session_id}"))
    assert [p.status for p in payments_of(invoice)] == ["succeeded"] and fresh(invoice).status == "paid"
    assert len(receipts()) == 1
    assert "Visa •••• 0077" in receipts()[0].text_body and "Visa •••• 0077" in page.text


def test_it_redirects_to_the_invoice_without_a_session_id(client, world):
    invoice = make_invoice(world.client_a, status="open")
    response = client.get(pay_path(invoice, "/return"))
    assert response.status_code == 303 and response.headers["Location"].endswith(pay_path(invoice))
