"""The reports page in a real browser: the chart is drawn, a filter swaps the report over HTMX without a full
reload (and puts the filter in the address), and the page works with JavaScript off."""

from __future__ import annotations

from tests.conftest import PASSWORD
from tests.reports.dataset import build

PATH = "/admin/reports?period=custom&from=2026-01-01&to=2026-02-28"


def log_in(page, server, user):
    page.goto(f"{server.url}/admin/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/admin/")


def test_it_draws_the_chart_and_filters_without_a_reload(live_server_factory, page, world):
    build(world)
    server = live_server_factory(RATELIMIT_ENABLED="0")
    log_in(page, server, world.alice)
    page.goto(server.url + PATH)
    assert page.locator("svg.chart").count() == 3
    bar = page.locator("svg[data-chart=USD] rect.collected").nth(1)
    assert bar.bounding_box()["height"] > 20  # drawn, to scale
    assert bar.locator("title").text_content() == "Feb 2026: invoiced $900.00, collected $550.00"
    page.evaluate("window.stillTheSamePage = true")
    page.get_by_label("Currency").select_option("JPY")
    page.locator("#report svg[data-chart=JPY]").wait_for()
    page.locator("#report svg[data-chart=USD]").wait_for(state="detached")
    assert page.locator("#report svg.chart").count() == 1
    assert "currency=JPY" in page.url and "$1,180.00" not in page.locator("#report").inner_text()
    assert page.evaluate("window.stillTheSamePage") is True
    page.locator("#aging th a").first.click()  # the aging table sorts by client, also in place
    page.wait_for_url("**aging_sort=name**")
    assert page.evaluate("window.stillTheSamePage") is True


def test_it_works_without_javascript(live_server_factory, browser, world):
    build(world)
    server = live_server_factory(RATELIMIT_ENABLED="0")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(page, server, world.alice)
        page.goto(server.url + PATH)
        assert page.locator("svg.chart").count() == 3
        page.get_by_label("Currency").select_option("KWD")
        page.get_by_role("button", name="Apply").click()
        page.wait_for_url("**currency=KWD**")
        assert page.locator("svg.chart").count() == 1 and "1,234.567" in page.locator("#report").inner_text()
        page.locator("a[data-card=invoiced]").click()  # a card leads to its invoices
        page.wait_for_url("**card=invoiced**")
        assert page.locator("#card-summary").get_attribute("data-count") == "1"
    finally:
        context.close()
