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

from invoicing.jobs import load_jobs, run_job
from invoicing.services.billing import recurring
from invoicing.services.invoices import DraftData, LineData, create_draft, void_invoice
from invoicing.services.payments import record_manual_payment
from invoicing.services.refunds import refund_payment
from invoicing.services.sending import send_invoice
from tests.conftest import PASSWORD, SYSTEM, World, make_invoice
from tests.pay.support import real_now, sandbox, token

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
    profile_id: int


def seed(world: World, base_url: str) -> Seeded:
    """An open invoice emailed with its pay link, a paid one partly refunded, a void one and a draft."""
    now = real_now()
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
    return Seeded(f"{base_url}/pay/{token(sent)}", sent.id, paid.id, two_lines.id, client.id, profile.id)


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


def to_confirmation(page: Any, seeded: Seeded, base_url: str) -> None:
    to_checkout(page, seeded, base_url)
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_role("button", name="Pay", exact=True).click()
    page.get_by_text("Payment received, thank you").wait_for()


PUBLIC_PAGES = {
    "pay page": lambda page, s, url: page.goto(s.pay_url),
    "sandbox checkout": to_checkout,
    "confirmation": to_confirmation,
    "portal": lambda page, s, url: page.goto(f"{url}/portal/"),  # a stub today: what exists of it
    "staff login": lambda page, s, url: page.goto(f"{url}/admin/login"),
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
    "recurring profiles": lambda s: "/admin/recurring",
    "recurring profile": lambda s: f"/admin/recurring/{s.profile_id}",
    "new recurring profile": lambda s: f"/admin/recurring/new?client={s.client_id}",
    "edit recurring profile": lambda s: f"/admin/recurring/{s.profile_id}/edit",
    "scheduler": lambda s: "/admin/scheduler",
    "reminder settings": lambda s: "/admin/settings/reminders",
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
