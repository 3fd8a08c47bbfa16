"""The portal's invoice list in a real browser (the app under gunicorn, CSRF on): a tab click and a search swap
the list in place (htmx, the address follows), "Older invoices" appends the next page, and the same list works
with JavaScript off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from playwright.sync_api import expect

from invoicing.services.payments import record_manual_payment
from invoicing.services.portal.auth import issue_magic_link
from tests.conftest import SYSTEM, World, make_invoice
from tests.pay.support import real_now

ROWS = "#invoice-rows tr:not(.more)"


def seed(world: World) -> None:
    """30 open invoices (projects Alpha and Beta) and 4 paid ones (Beta) of client A; one open of client B."""
    now = real_now()
    for n in range(30):
        make_invoice(world.client_a, status="open", now=now, issue_date=now.date() - timedelta(days=n),
                     project_ref="Alpha" if n % 2 else "Beta")
    for n in range(4):
        paid = make_invoice(world.client_a, status="open", now=now, issue_date=now.date() - timedelta(days=40 + n),
                            project_ref="Beta paid")
        record_manual_payment(paid.id, amount=paid.total, method="cash", paid_on=now.date(), reference="",
                              actor=SYSTEM, now=now)
    make_invoice(world.client_b, status="open", now=now, project_ref="Beta of B")


def sign_in(page: Any, url: str, world: World) -> None:
    token = issue_magic_link(world.client_a.contacts[0].id, now=real_now())
    page.goto(f"{url}/portal/login/{token}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/portal/")


def test_tabs_search_and_paging_swap_the_list_in_place(live_server_factory, page, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")
    seed(world)
    sign_in(page, server.url, world)
    assert page.locator(ROWS).count() == 25
    page.evaluate("() => { window.notReloaded = true; }")  # gone if anything below reloads the whole page

    page.get_by_role("link", name="Older invoices").click()
    expect(page.locator(ROWS)).to_have_count(30)
    assert page.get_by_role("link", name="Older invoices").count() == 0

    page.get_by_role("link", name="Paid", exact=True).click()
    page.wait_for_url(f"{server.url}/portal/?tab=paid")
    expect(page.locator(ROWS)).to_have_count(4)
    assert page.get_by_role("link", name="Paid", exact=True).get_attribute("aria-current") == "page"

    page.get_by_role("link", name="All", exact=True).click()
    page.wait_for_url(f"{server.url}/portal/?tab=all")
    page.get_by_label("Search").press_sequentially("beta", delay=20)
    expect(page.locator(ROWS)).to_have_count(19)  # 15 open + 4 paid, not B's
    assert "tab=all" in page.url and "q=beta" in page.url
    assert page.get_by_text("Beta of B").count() == 0
    assert page.evaluate("() => window.notReloaded") is True
    assert page.get_by_label("Search").input_value() == "beta"  # the box keeps what was typed


def test_the_list_works_without_javascript(browser, live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="0")
    seed(world)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, server.url, world)
        page.get_by_role("link", name="Older invoices").click()
        page.wait_for_url(f"{server.url}/portal/?after=*")
        assert page.locator(ROWS).count() == 5 and page.get_by_role("link", name="First page").count() == 1
        page.get_by_role("link", name="Paid", exact=True).click()
        page.get_by_label("Search").fill("paid")
        page.get_by_role("button", name="Search").click()
        page.wait_for_url(lambda url: "q=paid" in url and "tab=paid" in url)
        assert page.locator(ROWS).count() == 4
    finally:
        context.close()
