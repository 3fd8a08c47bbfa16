"""The sandbox provider's hosted checkout (/pay/sandbox/<id>): test cards, the extra authentication step,
settles-later payments, and its signed events applied by the same inbox and door as Stripe's."""

from __future__ import annotations

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import CheckoutSession, OutboxEmail, PaymentAttempt, WebhookEvent
from tests.conftest import login, make_invoice
from tests.pay.support import assert_invariants, fresh, pay_path, payments_of, receipts


def start(client, invoice) -> str:
    """Pay now on the invoice page; returns the sandbox checkout path."""
    location = client.post(pay_path(invoice)).headers["Location"]
    return location.removeprefix("http://billing.test")


def inbox() -> list[tuple[str, str]]:
    return [(e.type, e.status) for e in db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))]


def test_it_shows_a_clearly_labelled_sandbox_page_with_the_test_cards(client, world):
    invoice = make_invoice(world.client_a, status="open")
    page = client.get(start(client, invoice))
    assert page.status_code == 200
    assert "Sandbox — no money moves" in page.text and "$270.00" in page.text
    for number in ("4242 4242 4242 4242", "4000 0000 0000 0002", "4000 0025 0000 3155", "4000 0000 0000 0077"):
        assert number in page.text
    assert f'href="http://billing.test{pay_path(invoice)}"' in page.text  # cancel goes back to the invoice


def test_it_takes_a_payment_with_the_success_card_through_the_inbox(client, world):
    invoice = make_invoice(world.client_a, status="open", contact_id=world.client_a.contacts[1].id)
    checkout = start(client, invoice)
    response = client.post(checkout, data={"card": "4242 4242 4242 4242", "email": "payer@clienta.test"})
    assert response.status_code == 303
    session_id = checkout.rsplit("/", 1)[1]
    assert response.headers["Location"] == f"http://billing.test{pay_path(invoice)}/return?session_id={session_id}"
    payment, = payments_of(invoice)
    assert (payment.status, payment.method, payment.amount, payment.checkout_session_id) == (
        "succeeded", "sandbox", 27000, session_id)
    assert payment.payment_intent_id.startswith("pi_sbx_") and payment.charge_id.startswith("ch_sbx_")
    # Who paid: a pay link names no contact (anyone holding it may pay); the email typed at checkout is kept.
    assert payment.paid_by_contact_id is None and payment.payer_email == "payer@clienta.test"
    assert fresh(invoice).status == "paid"
    assert inbox() == [("payment_intent.succeeded", "processed"), ("checkout.session.completed", "processed")]
    email, = receipts()
    assert (email.to_addr, email.dedupe_key) == ("c2@clienta.test", f"receipt:{payment.id}")
    assert payment.receipt_number in email.text_body and "$270.00" in email.text_body
    assert db.session.scalar(select(CheckoutSession.status)) == "complete"

    confirmation = client.get(response.headers["Location"].removeprefix("http://billing.test"))
    assert confirmation.status_code == 200 and "Payment received, thank you" in confirmation.text
    assert payment.receipt_number in confirmation.text
    assert "Visa •••• 4242 (sandbox, no money moved)" in confirmation.text and "Visa •••• 4242" in email.text_body
    assert len(payments_of(invoice)) == 1 and len(receipts()) == 1
    assert_invariants()


def test_it_keeps_the_invoice_open_when_the_card_is_declined(client, world):
    invoice = make_invoice(world.client_a, status="open")
    checkout = start(client, invoice)
    response = client.post(checkout, data={"card": "4000000000000002", "email": ""})
    assert response.status_code == 402 and "Your card was declined." in response.text
    failed, = payments_of(invoice)
    assert (failed.status, failed.failure_code) == ("failed", "card_declined")
    assert fresh(invoice).status == "open" and fresh(invoice).amount_paid == 0
    page = client.get(pay_path(invoice)).text
    assert "Your last payment attempt did not go through: Your card was declined." in page and "Pay now" in page
    assert client.post(checkout, data={"card": "4000000000009995"}).status_code == 402
    assert "insufficient funds" in client.get(checkout).text

    assert client.post(checkout, data={"card": "4242424242424242"}).status_code == 303  # same session, new card
    payment, = payments_of(invoice)
    assert payment.status == "succeeded" and fresh(invoice).status == "paid"
    assert_invariants()


def attempts(invoice) -> list[tuple[str | None, str | None]]:
    return [(a.failure_code, a.failure_message) for a in db.session.scalars(
        select(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice.id).order_by(PaymentAttempt.id))]


def test_it_shows_staff_every_declined_attempt_and_numbers_only_money_received(client, world):
    invoice = make_invoice(world.client_a, status="open")
    checkout = start(client, invoice)
    assert client.post(checkout, data={"card": "4000000000000002", "email": ""}).status_code == 402
    page = client.get(pay_path(invoice)).text
    assert "did not go through: Your card was declined. You can try again with another card." in page
    assert client.post(checkout, data={"card": "4000000000009995"}).status_code == 402  # same checkout, again
    failed, = payments_of(invoice)
    assert (failed.status, failed.receipt_number, failed.charge_id) == ("failed", None, None)
    assert attempts(invoice) == [("card_declined", "Your card was declined."),
                                 ("insufficient_funds", "Your card has insufficient funds.")]

    login(client, world.alice)
    admin = client.get(f"/admin/invoices/{invoice.id}").text
    assert "Attempt 1 did not go through: Your card was declined." in admin
    assert "Attempt 2 did not go through: Your card has insufficient funds." in admin
    timeline = admin.split("<h2>Timeline</h2>", 1)[1]
    assert "payment failed</span> $270.00 (sandbox): Your card was declined." in timeline
    assert "payment failed</span> $270.00 (sandbox): Your card has insufficient funds." in timeline

    assert client.post(checkout, data={"card": "4242424242424242"}).status_code == 303
    paid, = payments_of(invoice)
    assert (paid.status, paid.receipt_number) == ("succeeded", "R-000001")  # the organization's first receipt
    assert paid.charge_id.startswith("ch_sbx_") and len(attempts(invoice)) == 2
    assert paid.receipt_number in receipts()[0].subject
    assert_invariants()


def test_it_refuses_a_card_number_that_is_not_one(client, world):
    invoice = make_invoice(world.client_a, status="open")
    response = client.post(start(client, invoice), data={"card": "1234 5678"})
    assert response.status_code == 402 and "Your card number is incorrect." in response.text
    assert payments_of(invoice) == []


def test_it_asks_for_authentication_with_the_3ds_card(client, world):
    invoice = make_invoice(world.client_a, status="open")
    checkout = start(client, invoice)
    response = client.post(checkout, data={"card": "4000002500003155"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/authenticate")
    step = client.get(f"{checkout}/authenticate")
    assert "Confirm this payment" in step.text and "$270.00" in step.text
    assert payments_of(invoice) == []

    failed = client.post(f"{checkout}/authenticate", data={"decision": "fail"})
    assert failed.status_code == 303
    assert "We could not authenticate your payment." in client.get(checkout).text
    assert fresh(invoice).status == "open"

    client.post(checkout, data={"card": "4000002500003155"})
    done = client.post(f"{checkout}/authenticate", data={"decision": "approve"})
    assert "/return?session_id=" in done.headers["Location"]
    assert [p.status for p in payments_of(invoice)] == ["succeeded"] and fresh(invoice).status == "paid"
    assert_invariants()


def test_it_leaves_the_invoice_processing_until_the_bank_settles(client, world):
    invoice = make_invoice(world.client_a, status="open")
    checkout = start(client, invoice)
    back = client.post(checkout, data={"card": "4000000000000077"}).headers["Location"]
    assert fresh(invoice).status == "processing" and [p.status for p in payments_of(invoice)] == ["processing"]
    confirmation = client.get(back.removeprefix("http://billing.test"))
    assert "Payment processing" in confirmation.text and "Settle as paid" in confirmation.text
    assert "A payment of $270.00 is being processed" in client.get(pay_path(invoice)).text
    assert receipts() == []

    settle = client.post(f"{checkout}/settle", data={"outcome": "succeeded", "next": pay_path(invoice)})
    assert settle.status_code == 303 and settle.headers["Location"] == pay_path(invoice)
    assert fresh(invoice).status == "paid" and [p.status for p in payments_of(invoice)] == ["succeeded"]
    assert len(receipts()) == 1
    assert_invariants()


def test_it_emails_the_client_when_a_settles_later_payment_fails(client, world):
    invoice = make_invoice(world.client_a, status="open")
    checkout = start(client, invoice)
    client.post(checkout, data={"card": "4000000000000077"})
    client.post(f"{checkout}/settle", data={"outcome": "failed"})
    payment, = payments_of(invoice)
    assert payment.status == "failed" and fresh(invoice).status == "open"
    email, = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "payment_failed"))
    assert email.to_addr == "clienta@clients.test" and email.dedupe_key == f"payment_failed:{payment.id}"
    assert "did not go through" in email.subject and "/pay/" in email.text_body
    assert receipts() == []
    assert_invariants()


def test_it_has_no_sandbox_pages_when_stripe_is_configured(client, world, stripe_app):
    assert client.get("/pay/sandbox/cs_sbx_anything").status_code == 404
