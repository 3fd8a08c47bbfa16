"""Every page a client or staff member sees, in a real browser at a desktop width (1280 px) and a phone width
(390 px): no horizontal page scroll (wide tables scroll inside their own box) and no serious or critical
accessibility violation found by axe-core (vendored, pinned: tests/vendor/axe-core-4.10.3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import current_app
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.jobs import load_jobs, run_job
from invoicing.models import WEBHOOK_EVENT_TYPES, Contact, Invoice, Payment
from invoicing.services.api.keys import create_key
from invoicing.services.api.webhooks import create_endpoint
from invoicing.services.billing import recurring
from invoicing.services.invoices import DraftData, LineData, create_draft, void_invoice
from invoicing.services.payments import record_manual_payment
from invoicing.services.portal.auth import issue_magic_link
from invoicing.services.refunds import refund_payment
from invoicing.services.sending import send_invoice
from invoicing.services.site import Site
from tests.conftest import PASSWORD, SYSTEM, World, make_invoice
from tests.pay.support import real_now, sandbox, token
from tests.portal.support import second_company
from tests.test_browser_portal_pay import sign_in

AXE = Path(__file__).parent / "vendor" / "axe-core-4.10.3" / "axe.min.js"
WIDTHS = {"desktop": 1280, "phone": 390}
LONG_WORD = "Platform-migration-" * 6  # an unbroken description: it must wrap, not widen the page


@dataclass
class Seeded:
    pay_url: str
    open_id: int
    paid_id: int
    draft_id: int
    client_id: int
    endpoint_id: int
    profile_id: int


def seed(world: World, base_url: str) -> Seeded:
    """An open invoice emailed with its pay link, a paid one partly refunded, a void one and a draft; an API key
    and a webhook endpoint that heard of all of it (its delivery log)."""
    now = real_now()
    create_key(world.org_a.id, name="CRM sync " + LONG_WORD[:80], scopes=["read", "write"], expires_at=None, live=False,
               actor=SYSTEM, now=now)
    endpoint = create_endpoint(world.org_a.id, url="https://127.0.0.1/hooks/" + LONG_WORD, description="CRM",
                               events=list(WEBHOOK_EVENT_TYPES), allow_private=True, actor=SYSTEM, now=now)
    client = world.client_a
    lines = tuple(LineData(f"{LONG_WORD} phase {n}", Decimal("12.5"), 1_234_567, Decimal("8.875")) for n in range(3))
    org = world.org_a
    draft = create_draft(org, DraftData(client_id=client.id, currency="USD", issue_date=now.date(),
                                        due_date=now.date() + timedelta(days=30), lines=lines,
                                        project_ref="PRJ-" + "X" * 100), actor=SYSTEM, now=now)
    sent = send_invoice(draft.id, actor=SYSTEM, now=now, base_url=base_url,
                        secret_key=current_app.config["SECRET_KEY"], default_sender="billing@org-a.test")
    paid = make_invoice(client, status="open", now=now, issue_date=now.date())
    payment = record_manual_payment(paid.id, amount=paid.total, method="bank_transfer", paid_on=now.date(),
                                    reference="BANK-1", actor=SYSTEM, now=now).payment
    refund_payment(paid.id, payment.id, amount=1000, reason="Goodwill", key="k1", actor=SYSTEM,
                   gateway=sandbox(), now=now)
    refunded = make_invoice(client, status="open", now=now, issue_date=now.date())
    payment = record_manual_payment(refunded.id, amount=refunded.total, method="cash", paid_on=now.date(),
                                    reference="", actor=SYSTEM, now=now).payment
    refund_payment(refunded.id, payment.id, amount=refunded.total, reason="Cancelled", key="k2", actor=SYSTEM,
                   gateway=sandbox(), now=now)
    void = make_invoice(client, status="open", now=now, issue_date=now.date())
    void_invoice(void.id, reason="Issued in error", actor=SYSTEM, now=now)
    two_lines = make_invoice(client, now=now, issue_date=now.date())
    profile = recurring.create_profile(org.id, recurring.ProfileData(
        client_id=client.id, title=f"{LONG_WORD} retainer", currency="USD", lines=lines, interval_unit="month",
        interval_count=1, start_date=now.date() + timedelta(days=1), end_date=now.date() + timedelta(days=400)),
        actor=SYSTEM, now=now)
    load_jobs()
    run_job("remind", now=now, force=True)  # the Scheduler page shows a run
    return Seeded(f"{base_url}/pay/{token(sent)}", sent.id, paid.id, two_lines.id, client.id, endpoint.id, profile.id)


def log_in(page: Any, base_url: str, world: World) -> None:
    page.goto(f"{base_url}/admin/login")
    page.get_by_label("Email").fill(world.alice.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/admin/")


def to_checkout(page: Any, seeded: Seeded, base_url: str) -> None:
    page.goto(seeded.pay_url)
    page.get_by_role("button", name="Pay now").click()
    page.wait_for_url(f"{base_url}/pay/sandbox/cs_sbx_*")


def portal_page(page: Any, base_url: str, path: str) -> None:
    """Sign in to the portal as client A's first contact (a magic link, then its button), then open `path`."""
    contact = db.session.execute(select(Contact).order_by(Contact.id)).scalars().first()
    page.goto(f"{base_url}/portal/login/{issue_magic_link(contact.id, now=real_now())}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/portal/**")
    page.goto(base_url + path)


def to_confirmation(page: Any, seeded: Seeded, base_url: str) -> None:
    to_checkout(page, seeded, base_url)
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_role("button", name="Pay", exact=True).click()
    page.get_by_text("Payment received, thank you").wait_for()


PUBLIC_PAGES = {
    "pay page": lambda page, s, url: page.goto(s.pay_url),
    "sandbox checkout": to_checkout,
    "confirmation": to_confirmation,
    "portal sign-in": lambda page, s, url: page.goto(f"{url}/portal/login"),
    "portal link sent": lambda page, s, url: (page.goto(f"{url}/portal/login"), page.locator("#link-email").fill(
        "c1@clienta.test"), page.get_by_role("button", name="Email me a sign-in link").click(),
        page.get_by_role("heading", name="Check your email").wait_for()),
    "staff login": lambda page, s, url: page.goto(f"{url}/admin/login"),
    "portal statement": lambda page, s, url: portal_page(page, url, "/portal/statement"),
}
ADMIN_PAGES = {
    "dashboard": lambda s: "/admin/",
    "invoice list": lambda s: "/admin/invoices",  # void and refunded badges, the selected tab's count
    "new invoice": lambda s: f"/admin/invoices/new?client={s.client_id}",
    "editor": lambda s: f"/admin/invoices/{s.draft_id}/edit",
    "invoice page": lambda s: f"/admin/invoices/{s.open_id}",
    "paid invoice page": lambda s: f"/admin/invoices/{s.paid_id}",
    "clients": lambda s: "/admin/clients",
    "client": lambda s: f"/admin/clients/{s.client_id}",
    "settings": lambda s: "/admin/settings",
    "client emails and PDF": lambda s: "/admin/settings/texts",
    "outbox": lambda s: "/admin/outbox",
    "payments inbox": lambda s: "/admin/webhooks",
    "users": lambda s: "/admin/users",
    "API keys": lambda s: "/admin/settings/api-keys",
    "webhooks": lambda s: "/admin/settings/webhooks",
    "webhook endpoint and its delivery log": lambda s: f"/admin/settings/webhooks/{s.endpoint_id}",
    "API reference": lambda s: "/admin/api",
    "reports": lambda s: "/admin/reports",
    "client statement": lambda s: f"/admin/clients/{s.client_id}/statement",
    "recurring profiles": lambda s: "/admin/recurring",
    "recurring profile": lambda s: f"/admin/recurring/{s.profile_id}",
    "new recurring profile": lambda s: f"/admin/recurring/new?client={s.client_id}",
    "edit recurring profile": lambda s: f"/admin/recurring/{s.profile_id}/edit",
    "scheduler": lambda s: "/admin/scheduler",
    "reminder settings": lambda s: "/admin/settings/reminders",
}




def _paid_public_id(s: Seeded) -> str:
    return db.session.get_one(Invoice, s.paid_id).public_id


def _paid_payment_id(s: Seeded) -> int:
    return db.session.execute(select(Payment.id).where(Payment.invoice_id == s.paid_id)).scalar_one()


PORTAL_INVOICE_PAGES = {
    "portal invoices": lambda s: "/portal/?tab=all",  # amounts due, tabs, badges of every status
    "portal invoice": lambda s: f"/portal/invoices/{_paid_public_id(s)}",  # lines, payment history with a refund
    "portal receipt": lambda s: f"/portal/payments/{_paid_payment_id(s)}/receipt",
    "company profile": lambda s: "/portal/company-profile",
}


@pytest.fixture
def sized_page(browser: Any, request: pytest.FixtureRequest) -> Any:
    # bypass_csp: axe is injected as a script of the test's own, which a strict CSP would rightly refuse.
    context = browser.new_context(viewport={"width": WIDTHS[request.param], "height": 800}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def assert_fits_and_accessible(page: Any) -> None:
    overflow = page.evaluate("""() => {
        const width = window.innerWidth;
        const wide = [...document.querySelectorAll('body *')].filter(el => {
            const box = el.getBoundingClientRect();
            if (box.right <= width + 0.5 || box.width === 0) return false;
            for (let p = el.parentElement; p; p = p.parentElement) {
                if (getComputedStyle(p).overflowX !== 'visible') return false;  // scrolls inside its own box
            }
            return true;
        });
        return {scroll: document.documentElement.scrollWidth, width,
                wide: wide.slice(0, 5).map(el => el.outerHTML.slice(0, 120))};
    }""")
    assert overflow["scroll"] <= overflow["width"], overflow
    unnamed = page.evaluate("[...document.querySelectorAll('nav')].filter(n => !n.getAttribute('aria-label')).length")
    assert unnamed == 0  # screen readers list landmarks by name
    page.add_script_tag(path=str(AXE))
    # Serious and critical ones, and "region": every text sits in a landmark (a screen reader's map of the page).
    violations = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical' || v.id === 'region')
        .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' :: '
                    + n.failureSummary.replace(/\\s+/g, ' ').slice(0, 200))}))""")
    assert violations == []


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
@pytest.mark.parametrize("name", list(PUBLIC_PAGES))
def test_it_fits_and_passes_axe_on_the_public_pages(sized_page, name, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")  # no Stripe key: the sandbox checkout; a login per test
    seeded = seed(world, server.url)
    PUBLIC_PAGES[name](sized_page, seeded, server.url)
    assert_fits_and_accessible(sized_page)


PORTAL_PAGES = {
    "portal sign-in button": None,  # the page a magic link opens, before its button is pressed
    "portal home": "/portal/",
    "portal account": "/portal/account",
    "portal company picker": "/portal/company",
}


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
@pytest.mark.parametrize("name", list(PORTAL_PAGES))
def test_it_fits_and_passes_axe_on_the_portal_pages(sized_page, name, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")  # a sign-in per test
    contact = world.client_a.contacts[0]
    second_company(world, contact, "Client with a rather long company name GmbH & Co. KG")  # the picker, the switch
    sized_page.goto(f"{server.url}/portal/login/{issue_magic_link(contact.id, now=real_now())}")
    path = PORTAL_PAGES[name]
    if path is not None:
        sized_page.get_by_role("button", name="Sign in").click()
        sized_page.wait_for_url(f"{server.url}/portal/company?next=/portal/")
        assert sized_page.goto(server.url + path).status == 200
    assert_fits_and_accessible(sized_page)


def to_portal_dialog(page: Any, seeded: Seeded, base_url: str) -> None:
    """Every open invoice ticked, paid together: the sandbox's form in the pay dialog."""
    for box in page.locator("input.pay-pick").all():
        box.check()
    page.get_by_role("button", name="Pay selected").click()
    page.get_by_role("dialog", name="Payment").get_by_label("Card number").wait_for()


def to_portal_paid(page: Any, seeded: Seeded, base_url: str) -> None:
    to_portal_dialog(page, seeded, base_url)
    dialog = page.get_by_role("dialog", name="Payment")
    dialog.get_by_label("Card number").fill("4242 4242 4242 4242")
    dialog.get_by_role("button", name="Pay", exact=True).click()
    page.get_by_text("Payment received, thank you").wait_for()


PORTAL_PAY_PAGES = {  # a signed-in contact of the seeded client, on the portal's pay page first
    "portal pay": lambda page, s, url: None,
    "portal pay dialog": to_portal_dialog,
    "portal payment received": to_portal_paid,
}


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
@pytest.mark.parametrize("name", list(PORTAL_PAY_PAGES))
def test_it_fits_and_passes_axe_on_the_portal_pay_pages(sized_page, name, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")  # the sandbox
    seeded = seed(world, server.url)
    sign_in(sized_page, server.url, world.client_a.contacts[0])
    PORTAL_PAY_PAGES[name](sized_page, seeded, server.url)
    assert_fits_and_accessible(sized_page)


SUPERADMIN_PAGES = {
    "organizations": lambda w: "/admin/organization",
    "organization": lambda w: f"/admin/organizations/{w.org_a.id}",
}


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
@pytest.mark.parametrize("name", list(SUPERADMIN_PAGES))
def test_it_fits_and_passes_axe_on_the_superadmin_pages(sized_page, name, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")  # a login per test
    sized_page.goto(f"{server.url}/admin/login")
    sized_page.get_by_label("Email").fill(world.root.email)
    sized_page.get_by_label("Password").fill(PASSWORD)
    sized_page.get_by_role("button", name="Log in").click()
    sized_page.wait_for_url(lambda url: not url.endswith("/admin/login"))  # signed in, wherever it lands
    response = sized_page.goto(server.url + SUPERADMIN_PAGES[name](world))
    assert response.status == 200
    assert_fits_and_accessible(sized_page)


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
@pytest.mark.parametrize("name", list(ADMIN_PAGES))
def test_it_fits_and_passes_axe_on_the_staff_pages(sized_page, name, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")  # a login per test
    seeded = seed(world, server.url)
    log_in(sized_page, server.url, world)
    response = sized_page.goto(server.url + ADMIN_PAGES[name](seeded))
    assert response.status == 200
    assert_fits_and_accessible(sized_page)


@pytest.mark.parametrize("sized_page", ["phone"], indirect=True)
def test_it_fits_and_passes_axe_showing_a_new_key_and_a_new_signing_secret(sized_page, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0", WEBHOOKS_ALLOW_PRIVATE="1")  # a login per test
    log_in(sized_page, server.url, world)
    sized_page.goto(f"{server.url}/admin/settings/api-keys")
    sized_page.get_by_label("Name (what uses it)").press_sequentially("Nightly export", delay=20)
    sized_page.get_by_label("Read and write").check()
    sized_page.get_by_role("button", name="Create key").click()
    sized_page.get_by_text("it is shown only this once").wait_for()
    assert_fits_and_accessible(sized_page)
    sized_page.goto(f"{server.url}/admin/settings/webhooks")
    sized_page.get_by_label("Endpoint URL").press_sequentially("http://127.0.0.1:9/" + "x" * 80, delay=5)
    sized_page.get_by_role("button", name="Add endpoint").click()
    sized_page.get_by_text("it is shown only this once").wait_for()
    assert_fits_and_accessible(sized_page)


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
@pytest.mark.parametrize("name", list(PORTAL_INVOICE_PAGES))
def test_it_fits_and_passes_axe_on_the_portal_invoice_pages(sized_page, name, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")
    seeded = seed(world, server.url)
    token = issue_magic_link(world.client_a.contacts[0].id, now=real_now())
    sized_page.goto(f"{server.url}/portal/login/{token}")
    sized_page.get_by_role("button", name="Sign in").click()
    sized_page.wait_for_url(f"{server.url}/portal/")
    response = sized_page.goto(server.url + PORTAL_INVOICE_PAGES[name](seeded))
    assert response.status == 200
    assert_fits_and_accessible(sized_page)


def test_it_offers_the_whole_staff_navigation_on_a_phone_without_javascript(browser, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")  # a login per test
    context = browser.new_context(viewport={"width": 390, "height": 800}, java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(page, server.url, world)
        nav = page.get_by_role("navigation", name="Main")
        for name, path in [("Invoices", "/admin/invoices"), ("Outbox", "/admin/outbox"),
                           ("Payments inbox", "/admin/webhooks"), ("Settings", "/admin/settings")]:
            if not nav.get_by_role("link", name=name).is_visible():
                nav.get_by_text("Menu").click()  # the <details> menu opens without JavaScript
            link = nav.get_by_role("link", name=name)
            box = link.bounding_box()
            assert box and 0 <= box["x"] and box["x"] + box["width"] <= 390, (name, box)
            link.click()
            page.wait_for_url(f"{server.url}{path}")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_it_names_each_line_button_after_its_own_line(page, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")  # a login per test
    seeded = seed(world, server.url)
    log_in(page, server.url, world)
    page.goto(f"{server.url}/admin/invoices/{seeded.draft_id}/edit")
    buttons = page.locator("button.linebtn")
    names = [(b.get_attribute("title"), b.get_attribute("aria-label")) for b in buttons.all()]
    assert names and all(title == label for title, label in names), names
    assert page.get_by_role("button", name="Move down line 1").count() == 1
    assert page.get_by_role("button", name="Remove line 2").count() == 1


# --- the portal's saved cards and autopay, and the staff's view of them ------------------------------------


def seed_cards(world: World) -> str:
    """Client A with two saved cards (the default one expires this month) and autopay on; returns the path of an
    open sandbox setup page."""
    from invoicing.gateways.base import SetupRequest
    from invoicing.services.portal import autopay, cards

    now, gateway, contact = real_now(), sandbox(), world.client_a.contacts[0]
    customer = cards.provider_customer(world.client_a.id, gateway=gateway, site=Site.from_config(current_app.config))

    def setup(key: str) -> str:
        return gateway.create_setup_checkout(SetupRequest(
            currency="USD", success_url="http://billing.test/portal/payment-methods/added?session_id="
            "{CHECKOUT_SESSION_ID}", cancel_url="http://billing.test/portal/payment-methods", idempotency_key=key,
            metadata={"client_id": str(world.client_a.id)}, customer_id=customer)).id

    for key, number, month, year in (("a", "4242424242424242", now.month, now.year),
                                     ("b", "5555555555554444", 4, 2031)):
        session_id = setup(key)
        gateway.save_card(session_id, number=number, exp_month=month, exp_year=year)
        cards.confirm_setup(world.client_a.id, contact.id, session_id, gateway=gateway, now=now)
    autopay.enable_autopay(world.client_a.id, contact.id, mode="due_date", text_version=autopay.CONSENT_VERSION,
                           ip="203.0.113.7", provider="sandbox", now=now)
    return f"/pay/sandbox/setup/{setup('open')}"


PORTAL_CARD_PAGES = {
    "portal payment methods": lambda setup: "/portal/payment-methods",
    "portal autopay": lambda setup: "/portal/autopay",
    "sandbox card setup": lambda setup: setup,
}


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
@pytest.mark.parametrize("name", list(PORTAL_CARD_PAGES))
def test_it_fits_and_passes_axe_on_the_portal_card_pages(sized_page, name, live_server_factory, world):
    from invoicing.services.portal.auth import issue_magic_link

    server = live_server_factory(RATELIMIT_ENABLED="0")
    setup_path = seed_cards(world)
    sized_page.goto(f"{server.url}/portal/login/{issue_magic_link(world.client_a.contacts[0].id, now=real_now())}")
    sized_page.get_by_role("button", name="Sign in").click()
    sized_page.wait_for_url(f"{server.url}/portal/")
    response = sized_page.goto(server.url + PORTAL_CARD_PAGES[name](setup_path))
    assert response.status == 200
    assert sized_page.get_by_text("Visa •••• 4242").count() or name == "sandbox card setup"
    assert_fits_and_accessible(sized_page)


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
def test_it_fits_and_passes_axe_on_the_client_page_with_autopay_on(sized_page, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")
    seed_cards(world)
    log_in(sized_page, server.url, world)
    response = sized_page.goto(f"{server.url}/admin/clients/{world.client_a.id}")
    assert response.status == 200 and sized_page.get_by_role("button", name="Turn autopay off").is_visible()
    assert_fits_and_accessible(sized_page)
