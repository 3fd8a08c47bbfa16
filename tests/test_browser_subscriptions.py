"""Subscriptions end to end in a browser (Playwright + Debian chromium, the app under gunicorn with the sandbox
gateway and a real SMTP server), on a desktop and on a 390 px phone: a visitor signs up on a public plan's page
and saves a card on the sandbox's setup page; the welcome email's link signs them in to the portal, where they
upgrade with a preview of the amounts and confirm, then cancel at the end of the period."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Client, PaymentMethod, Subscription, SubscriptionChange, SubscriptionSignup
from tests.conftest import World
from tests.pay.support import wait_until
from tests.subscriptions.signup_support import make_plan


@pytest.mark.parametrize("width", [1280, 390])
def test_a_visitor_signs_up_then_upgrades_and_cancels_in_the_portal(browser, live_server_factory, world: World, smtp,
                                                                    runner, width: int) -> None:
    starter = make_plan(world.org_a, "starter", name="Starter", prices=(("USD", 1000, "month", 1),))
    make_plan(world.org_a, "pro", name="Pro", prices=(("USD", 3000, "month", 1),), tax_rate_milli=10000)
    email = f"dana{width}@scully.test"
    server = live_server_factory(MAIL_SERVER=smtp.host, MAIL_PORT=str(smtp.port), MAIL_USE_TLS="0")
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)

    def fits() -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url

    try:
        page.goto(f"{server.url}/subscribe/starter")
        page.get_by_role("heading", name="Subscribe to Starter").wait_for()
        fits()
        page.get_by_label("Your name").fill("Dana Scully")
        page.get_by_label("Company (optional)").fill("Scully Consulting")
        page.get_by_label("Email").fill(email)
        page.get_by_label("I agree to these recurring charges").check()
        page.get_by_role("button", name="Continue to card details").click()

        page.get_by_text("Sandbox — no money moves").wait_for()
        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
        page.get_by_role("button", name="Save card").click()
        page.get_by_role("heading", name="You are subscribed").wait_for()
        assert "/subscribe/signup/" in page.url and "session_id" not in page.url
        assert page.locator("#signup-price").inner_text() == "$10.00 per month"
        fits()

        assert runner.invoke(args=["billing", "deliver-mail"]).exit_code == 0
        welcome = next(m for m in smtp.wait_for(1) if m["Subject"] == "You are subscribed to Starter")
        [link] = re.findall(r"https?://\S+/portal/login/[\w-]+\?next=/portal/subscriptions",
                            welcome.get_body(("plain",)).get_content())
        page.goto(link)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/portal/subscriptions")
        fits()

        page.get_by_role("link", name="Manage Starter").click()
        page.get_by_role("heading", name="Starter", level=1).wait_for()
        page.get_by_role("link", name="Change plan or seats").click()
        page.get_by_label("Pro: $30.00 per month").check()  # htmx fetches the preview on the change
        preview = page.locator("#change-preview")
        preview.get_by_role("heading", name="Upgrade: what you pay").wait_for()
        assert "Charged now to your card" in preview.inner_text()
        fits()
        preview.get_by_role("button", name="Confirm the change").click()
        page.get_by_text("Your subscription is now Pro ($30.00 per month).").wait_for()
        assert page.get_by_role("heading", level=1).inner_text() == "Pro"

        page.get_by_role("link", name="Cancel subscription").click()
        page.get_by_label("Why are you cancelling? (optional)").fill("Trying something else")
        page.get_by_role("button", name="Cancel at period end").click()
        page.get_by_text("Your subscription is cancelled: it ends on").wait_for()
        page.get_by_role("button", name="Resume subscription").wait_for()
        fits()
    finally:
        context.close()

    signup = wait_until(lambda: db.session.scalars(select(SubscriptionSignup)).one_or_none(), what="the sign-up")
    subscription = db.session.scalars(select(Subscription)).one()
    client = db.session.get(Client, signup.client_id)
    assert (client.name, client.email, client.autopay_enabled) == ("Scully Consulting", email, True)
    card = db.session.scalars(select(PaymentMethod)).one()
    assert (card.client_id, card.last4, client.autopay_payment_method) == (client.id, "4242", card.provider_id)
    assert (signup.status, signup.subscription_id, subscription.contact_id) == ("done", subscription.id,
                                                                               signup.contact_id)
    assert subscription.plan.name == "Pro" and subscription.cancel_at_period_end is True
    assert subscription.cancel_reason == "Trying something else"
    change = db.session.scalars(select(SubscriptionChange)).one()
    assert (change.kind, change.from_price_id, change.actor_type) == ("upgrade", starter.prices[0].id, "contact")
