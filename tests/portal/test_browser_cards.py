"""A contact on a phone (390 px, Playwright + Debian chromium, the app under gunicorn with the sandbox): signs
in, saves a card on the sandbox's setup page, turns autopay on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AutopayConsent, PaymentMethod
from invoicing.services.portal.auth import issue_magic_link
from tests.pay.support import real_now, wait_until
from tests.portal.cards_support import fresh_client


def sign_in(page: Any, base_url: str, contact: Any) -> None:
    token = issue_magic_link(contact.id, now=real_now())
    page.goto(f"{base_url}/portal/login/{token}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/portal/")


def fits(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_a_contact_saves_a_card_in_the_sandbox_and_turns_autopay_on_from_a_phone(browser, live_server_factory,
                                                                                world):
    server = live_server_factory()  # no Stripe key: the sandbox
    contact = world.client_a.contacts[0]
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        sign_in(page, server.url, contact)
        page.get_by_role("navigation", name="Portal").get_by_role("link", name="Payment methods").click()
        page.wait_for_url(f"{server.url}/portal/payment-methods")
        page.get_by_text("No card saved yet.").wait_for()
        page.get_by_role("button", name="Add a card").click()
        page.wait_for_url(f"{server.url}/pay/sandbox/setup/cs_sbx_setup_*")
        assert page.get_by_text("Sandbox — no money moves").is_visible() and fits(page)
        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
        page.get_by_role("button", name="Save card").click()
        page.wait_for_url(f"{server.url}/portal/payment-methods")
        page.get_by_text("Card saved: Visa •••• 4242.").wait_for()
        assert page.locator(".saved-cards li").inner_text().startswith("Visa •••• 4242 expires 12/34 Default")
        assert fits(page)

        page.get_by_role("link", name="Set up autopay").click()
        page.wait_for_url(f"{server.url}/portal/autopay")
        page.get_by_label("Charge on the due date").check()
        page.get_by_role("button", name="Turn autopay on").click()
        page.get_by_text("Tick the box to agree to the terms").wait_for()  # no consent, no autopay
        assert db.session.scalars(select(AutopayConsent)).all() == []
        page.get_by_label("I agree to these terms").check()
        page.get_by_role("button", name="Turn autopay on").click()
        page.get_by_text("Autopay is on: charge on the due date.").wait_for()
        assert page.get_by_role("button", name="Turn autopay off").is_visible() and fits(page)
    finally:
        context.close()

    card = wait_until(lambda: db.session.scalars(select(PaymentMethod)).one_or_none(), what="the saved card")
    consent = db.session.scalars(select(AutopayConsent)).one()
    assert (card.client_id, card.last4, card.added_by_contact_id) == (world.client_a.id, "4242", contact.id)
    assert (consent.contact_id, consent.mode, consent.ip, consent.payment_method_id) == (
        contact.id, "due_date", "127.0.0.1", card.id)
    client = fresh_client(world.client_a)
    assert client.autopay_enabled and client.autopay_payment_method == card.provider_id
