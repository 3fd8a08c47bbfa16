"""The client's path in a real browser (Playwright + Debian chromium) against the app under gunicorn:
the emailed link, the hosted checkout (the Stripe test server's, or the sandbox's), the confirmation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import current_app

from invoicing.mail import deliver_due
from invoicing.services.sending import send_invoice
from tests.conftest import SYSTEM, make_invoice
from tests.pay.support import (
    assert_invariants,
    fresh,
    live_invoice,
    payments_of,
    real_now,
    receipts,
    token,
    wait_until,
)
from tests.pay.support import stripe_live as stripe_live  # noqa: F401  (fixture)


@pytest.fixture
def sandbox_live(live_server_factory: Any) -> Iterator[Any]:
    yield live_server_factory()  # no Stripe key: the sandbox gateway


def test_it_pays_the_emailed_link_by_card_and_emails_the_receipt(page, stripe_live, stripe_server, world,  # noqa: F811
                                                                 smtp):
    now = real_now()
    draft = make_invoice(world.client_a, now=now, issue_date=now.date())
    send_invoice(draft.id, actor=SYSTEM, now=now, base_url=stripe_live.url,
                 secret_key=current_app.config["SECRET_KEY"], default_sender="billing@org-a.test")
    assert deliver_due(now=now).sent == 1
    invoice_email, = smtp.wait_for(1)
    link = re.search(r"http://127\.0\.0\.1:\d+/pay/\S+", invoice_email.get_body(("plain",)).get_content()).group(0)

    page.goto(link)
    page.get_by_role("button", name="Pay now").click()
    page.wait_for_url(f"{stripe_server.base_url}/_config/checkout/*")
    assert page.locator("#amount").inner_text() == "270.00 USD"
    page.get_by_label("Email").fill("payer@clienta.test")
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_role("button", name="Pay", exact=True).click()
    page.wait_for_url(re.compile(re.escape(link) + r"/return\?session_id=cs_"))
    page.get_by_text("Payment received, thank you").wait_for()
    payment, = payments_of(draft)
    assert page.locator("#receipt-number").inner_text() == payment.receipt_number
    assert fresh(draft).status == "paid" and payment.method == "card"

    wait_until(lambda: receipts(), what="the receipt in the outbox")
    assert deliver_due(now=real_now()).sent == 1
    receipt = smtp.wait_for(2)[1]
    assert receipt["To"] == "clienta@clients.test" and payment.receipt_number in receipt["Subject"]
    page.goto(link)
    page.get_by_text("Paid, thank you").wait_for()
    assert page.get_by_role("button", name="Pay now").count() == 0
    assert_invariants()


def test_it_shows_a_declined_card_clearly_and_leaves_the_invoice_open(page, stripe_live, stripe_server,  # noqa: F811
                                                                      world):
    invoice = live_invoice(world.client_a)
    link = f"{stripe_live.url}/pay/{token(invoice)}"
    page.goto(link)
    page.get_by_role("button", name="Pay now").click()
    page.get_by_label("Card number").fill("4000000000000002")
    page.get_by_role("button", name="Pay", exact=True).click()
    assert page.get_by_role("alert").inner_text() == "Your card was declined."
    wait_until(lambda: payments_of(invoice), what="the failed attempt")
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url(link)
    page.get_by_text("Your last payment attempt did not go through: Your card was declined.").wait_for()
    assert page.get_by_role("button", name="Pay now").is_visible()
    assert fresh(invoice).status == "open" and [p.status for p in payments_of(invoice)] == ["failed"]
    assert_invariants()


def test_it_pays_through_the_sandbox_with_its_authentication_step(page, sandbox_live, world):
    invoice = live_invoice(world.client_a)
    link = f"{sandbox_live.url}/pay/{token(invoice)}"
    page.goto(link)
    page.get_by_role("button", name="Pay now").click()
    page.wait_for_url(f"{sandbox_live.url}/pay/sandbox/cs_sbx_*")
    page.get_by_text("Sandbox — no money moves").wait_for()
    page.get_by_label("Card number").fill("4000 0025 0000 3155")
    page.get_by_role("button", name="Pay", exact=True).click()
    page.get_by_text("Confirm this payment").wait_for()
    page.get_by_role("button", name="Complete authentication").click()
    page.get_by_text("Payment received, thank you").wait_for()
    assert "Visa •••• 3155 (sandbox, no money moved)" in page.content()
    payment, = payments_of(invoice)
    assert (payment.method, payment.status, fresh(invoice).status) == ("sandbox", "succeeded", "paid")
    assert len(receipts()) == 1
    assert_invariants()
