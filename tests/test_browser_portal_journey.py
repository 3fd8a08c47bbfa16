"""The client portal end to end, as a client lives it, on a phone (390 px, Playwright + Debian chromium, the app
under gunicorn with the sandbox gateway and a real SMTP server): ask for a sign-in link, read it from the email,
sign in, see only this company's invoices, pay two at once in the dialog, see both paid with yourself as payer,
download a PDF, save a card, turn autopay on."""

from __future__ import annotations

import re

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AutopayConsent, PaymentMethod
from tests.conftest import World, make_client
from tests.pay.support import fresh, live_invoice, payments_of, wait_until


def test_a_client_signs_in_pays_two_invoices_downloads_a_pdf_and_sets_up_autopay(browser, live_server_factory,
                                                                                  world: World, smtp, runner) -> None:
    contact = world.client_a.contacts[0]
    a, b = live_invoice(world.client_a), live_invoice(world.client_a)
    others = live_invoice(make_client(world.org_a, "Client C"))  # same supplier, another company
    server = live_server_factory(MAIL_SERVER=smtp.host, MAIL_PORT=str(smtp.port), MAIL_USE_TLS="0")
    context = browser.new_context(viewport={"width": 390, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{server.url}/portal/login")
        page.locator("#link-email").fill(contact.email)
        page.get_by_role("button", name="Email me a sign-in link").click()
        page.get_by_role("heading", name="Check your email").wait_for()
        assert runner.invoke(args=["billing", "deliver-mail"]).exit_code == 0
        [message] = smtp.wait_for(1)
        [link] = re.findall(r"https?://\S+/portal/login/[\w-]+", message.get_body(("plain",)).get_content())
        page.goto(link)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/portal/")

        listed = page.locator("#invoice-rows").inner_text()
        assert fresh(a).number in listed and fresh(b).number in listed and fresh(others).number not in listed
        for invoice in (a, b):
            page.get_by_label(f"Select invoice {fresh(invoice).number},").check()
        page.get_by_role("button", name="Pay selected").click()
        dialog = page.get_by_role("dialog", name="Payment")
        dialog.get_by_text("Sandbox — no money moves").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        dialog.get_by_label("Card number").press_sequentially("4242424242424242", delay=5)
        dialog.get_by_role("button", name="Pay", exact=True).click()
        page.wait_for_url(re.compile(re.escape(f"{server.url}/portal/checkout/return?session_id=")))
        page.get_by_text("Payment received, thank you").wait_for()
        assert page.locator(".payer").all_inner_texts() == [f"{contact.name} ({contact.email})"] * 2

        page.goto(f"{server.url}/portal/invoices/{fresh(a).public_id}")
        assert page.get_by_role("heading", level=1).inner_text().lower().endswith("paid")
        with page.expect_download() as download:
            page.evaluate("document.querySelector('a[href$=\"/pdf\"]').setAttribute('download', '')")
            page.get_by_role("link", name="Download PDF").click()
        with open(download.value.path(), "rb") as pdf:
            assert pdf.read(5) == b"%PDF-"

        page.get_by_role("navigation", name="Portal").get_by_role("link", name="Payment methods").click()
        page.get_by_role("button", name="Add a card").click()
        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
        page.get_by_role("button", name="Save card").click()
        page.get_by_text("Card saved: Visa •••• 4242.").wait_for()
        page.get_by_role("link", name="Set up autopay").click()
        page.get_by_label("Charge on the due date").check()
        page.get_by_label("I agree to these terms").check()
        page.get_by_role("button", name="Turn autopay on").click()
        page.get_by_text("Autopay is on: charge on the due date.").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()

    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"] and fresh(others).status == "open"
    assert [p.paid_by_contact_id for i in (a, b) for p in payments_of(i) if p.status == "succeeded"] == [
        contact.id, contact.id]
    card = wait_until(lambda: db.session.scalars(select(PaymentMethod)).one_or_none(), what="the saved card")
    consent = db.session.scalars(select(AutopayConsent)).one()
    assert (card.client_id, consent.contact_id, consent.mode) == (world.client_a.id, contact.id, "due_date")
