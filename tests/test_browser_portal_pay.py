"""Paying in the portal in a real browser (Playwright + Debian chromium) against the app under gunicorn: a
signed-in contact ticks two invoices and pays them in place, in the sandbox's dialog (desktop and phone
width); with Stripe (the test server) when Stripe.js cannot load, the dialog falls back to the hosted Checkout.
No Content-Security-Policy violation and no console error along the way."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import CheckoutGroup
from invoicing.services.portal.auth import issue_magic_link
from tests.pay.support import (
    WEBHOOK_SECRET,
    assert_invariants,
    fresh,
    live_invoice,
    payments_of,
    real_now,
    receipts,
    stripe_env,
    stripe_object,
    wait_until,
)
from tests.test_browser_csp import faults, violations, watch

WIDTHS = {"desktop": 1280, "phone": 390}


def sign_in(page: Any, base_url: str, contact: Any, then: str = "/portal/pay") -> None:
    """The contact opens an emailed sign-in link and presses its button (the GET alone signs nobody in)."""
    token = issue_magic_link(contact.id, now=real_now())
    page.goto(f"{base_url}/portal/login/{token}?next={then}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}{then}")


def tick(page: Any, *invoices: Any) -> None:
    for invoice in invoices:
        page.get_by_label(f"Select invoice {fresh(invoice).number},").check()


@pytest.fixture
def sized_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": WIDTHS[request.param], "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
def test_a_contact_pays_two_invoices_in_the_sandbox_dialog(sized_page, live_server_factory, world):
    page, server = sized_page, live_server_factory()  # no Stripe key: the sandbox
    a, b = live_invoice(world.client_a), live_invoice(world.client_a)
    contact = world.client_a.contacts[0]
    errors = watch(page)
    sign_in(page, server.url, contact)
    tick(page, a, b)
    page.get_by_text("2 selected: $540.00").wait_for()
    page.get_by_role("button", name="Pay selected").click()

    dialog = page.get_by_role("dialog", name="Payment")
    dialog.get_by_text("Sandbox — no money moves").wait_for()
    assert page.url == f"{server.url}/portal/pay"  # in place: still the portal page
    box = dialog.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    assert dialog.get_by_label("Email").input_value() == contact.email
    dialog.get_by_label("Card number").press_sequentially("4000000000000002", delay=5)
    dialog.get_by_role("button", name="Pay", exact=True).click()
    dialog.get_by_text("Your card was declined.").wait_for()  # shown in place, the dialog stays open
    dialog.get_by_label("Card number").fill("4242 4242 4242 4242")
    dialog.get_by_role("button", name="Pay", exact=True).click()

    page.wait_for_url(re.compile(re.escape(f"{server.url}/portal/checkout/return?session_id=cs_sbx_")))
    page.get_by_text("Payment received, thank you").wait_for()
    for invoice in (a, b):
        row = page.locator(f'tr[data-invoice="{fresh(invoice).number}"]')
        assert row.locator(".badge").inner_text().lower() == "paid"
        assert row.locator(".payer").inner_text() == f"{contact.name} ({contact.email})"
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"]
    assert [p.paid_by_contact_id for i in (a, b) for p in payments_of(i) if p.status == "succeeded"] == [
        contact.id, contact.id]
    assert faults(errors) == [] and violations(page) == []
    wait_until(lambda: len(receipts()) == 2, what="one receipt per invoice")
    assert_invariants()


@pytest.fixture
def stripe_embedded(live_server_factory: Any, stripe_server: Any) -> Iterator[Any]:
    """The app under gunicorn with Stripe keys (and a publishable key: the embedded form) for the test server."""
    stripe_server.reset()
    live = live_server_factory(**stripe_env(stripe_server), STRIPE_PUBLISHABLE_KEY="pk_test_portal")
    stripe_server.register_webhook(f"{live.url}/webhooks/stripe", WEBHOOK_SECRET, id="portal-embedded")
    yield live
    stripe_server.unregister_webhooks("portal-embedded")
    stripe_server.reset()


def test_without_stripe_js_the_dialog_falls_back_to_the_hosted_checkout(page, stripe_embedded, stripe_server,
                                                                        world):
    a, b = live_invoice(world.client_a), live_invoice(world.client_a)
    contact = world.client_a.contacts[1]
    errors = watch(page)
    page.route("https://js.stripe.com/**", lambda route: route.abort())  # Stripe.js cannot load
    sign_in(page, stripe_embedded.url, contact)
    tick(page, a, b)
    page.get_by_role("button", name="Pay selected").click()
    page.wait_for_url(f"{stripe_server.base_url}/_config/checkout/cs_*")  # the hosted Checkout, for both
    assert page.locator("#amount").inner_text() == "540.00 USD"
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_role("button", name="Pay", exact=True).click()
    page.wait_for_url(re.compile(re.escape(f"{stripe_embedded.url}/portal/checkout/return?session_id=cs_")))
    page.get_by_text("Payment received, thank you").wait_for()
    assert page.locator(".payer").all_inner_texts() == [f"{contact.name} ({contact.email})"] * 2
    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"]
    # The embedded session made first is closed once the invoices are paid: nobody pays them twice.
    groups = wait_until(lambda: found if len(found := db.session.scalars(select(CheckoutGroup).order_by(
        CheckoutGroup.id)).all()) == 2 and found[0].status == "expired" else None, what="the embedded one expired")
    assert [(g.ui_mode, g.status) for g in groups] == [("embedded", "expired"), ("hosted", "complete")]
    assert stripe_object(stripe_server, f"/v1/checkout/sessions/{groups[0].session_id}")["status"] == "expired"
    wait_until(lambda: len(receipts()) == 2, what="one receipt per invoice")
    assert faults(errors) == ["error: Failed to load resource: net::ERR_FAILED"]  # the blocked Stripe.js, only
    assert_invariants()
