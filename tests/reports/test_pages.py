"""The reports page, its cards' invoice lists (same count and sum), the dashboard's cards, permissions."""

from __future__ import annotations

import re

import pytest

from invoicing.models import AuditEvent
from invoicing.services.reports import figures
from invoicing.services.reports.cards import CARDS
from tests.conftest import NOW, login
from tests.reports.dataset import PERIOD, build

QUERY = "period=custom&from=2026-01-01&to=2026-02-28"


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)


def test_it_shows_cards_chart_methods_and_aging(client, world, frozen):
    build(world)
    login(client, world.alice)
    page = client.get(f"/admin/reports?{QUERY}")
    assert page.status_code == 200
    html = page.text
    assert "$1,180.00" in html and "¥17,345" in html and "KWD" in html and "1,234.567" in html
    assert html.count("<svg class=\"chart\"") == 3  # one chart per currency
    assert "Feb 2026: invoiced $900.00, collected $550.00" in html  # the bar's hover title
    assert "<th scope=\"row\">Jan 2026</th><td class=\"num\">$280.00</td><td class=\"num\">$130.00</td>" in html
    assert "Bank transfer" in html and "Autopay" in html and "Portal" in html
    assert "Client B" not in html and "999.99" not in html and "¥99,999" not in html  # org B's money


def test_it_answers_a_filter_change_from_htmx_with_the_report_only(client, world, frozen):
    build(world)
    login(client, world.alice)
    fragment = client.get(f"/admin/reports?{QUERY}&currency=JPY", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text and "id=\"report-filters\"" not in fragment.text
    assert "¥17,345" in fragment.text and "$1,180.00" not in fragment.text


def test_it_sorts_the_aging_table(client, world, frozen):
    build(world)
    login(client, world.alice)
    names = re.findall(r'title="Statement of ([^"]+)"',
                       client.get(f"/admin/reports?{QUERY}&aging_sort=name&aging_dir=asc").text)
    assert names == ["Client A", "Kaiju KK", "Kuwait Co"]
    names = re.findall(r'title="Statement of ([^"]+)"',
                       client.get(f"/admin/reports?{QUERY}&aging_sort=name&aging_dir=desc").text)
    assert names == ["Kuwait Co", "Kaiju KK", "Client A"]


def listed(html: str) -> tuple[int, int, list[str]]:
    parts = [int(x) for x in re.findall(r'data-part="(-?\d+)"', html)]
    numbers = re.findall(r'<td class="nowrap"><a href="/admin/invoices/\d+">([^<]+)</a>', html)
    return len(parts), sum(parts), numbers


@pytest.mark.parametrize("currency", ["USD", "JPY", "KWD"])
def test_each_card_links_to_a_list_of_exactly_its_invoices(client, world, frozen, currency):
    build(world)
    login(client, world.alice)
    report = figures.compute(world.org_a.id, PERIOD, tz=world.org_a.timezone, now=NOW).for_currency(currency)
    page = client.get(f"/admin/reports?{QUERY}").text
    for key in CARDS:
        href = re.search(rf'data-card="{key}" href="([^"]+currency={currency}[^"]*)"', page.replace("&amp;", "&"))
        assert href, key
        listing = client.get(href.group(1)).text
        count, total, numbers = listed(listing)
        card = report.cards[key]
        assert count == card.count == len(numbers), (key, count, card)
        if CARDS[key].kind in ("money", "days", "rate"):
            assert total == card.amount, (key, total, card)
        assert f'data-count="{card.count}"' in listing


def test_it_shows_this_months_cards_and_a_sparkline_on_the_dashboard(client, world, frozen):
    build(world)
    login(client, world.alice)
    html = client.get("/admin/").text
    assert "This month" in html and "Outstanding now (USD)" in html and "$1,290.00" in html  # outstanding now
    assert "Overdue (USD)" in html and "$590.00" in html
    assert "<polyline" in html and "Collected per month: Apr 2025" in html


def test_it_needs_an_organization_and_keeps_clients_to_their_own(client, world):
    build(world)
    login(client, world.root)
    assert client.get("/admin/reports").status_code == 403  # a superadmin switches to an organization first
    client.post("/admin/logout")
    login(client, world.bob)
    assert client.get(f"/admin/reports?client={world.client_a.id}").status_code == 404
    assert client.get("/admin/reports/export/payments.csv?client=" + str(world.client_a.id)).status_code == 404
    assert AuditEvent.query.filter_by(action="report.exported").count() == 0


def test_it_asks_for_a_login(client):
    assert client.get("/admin/reports").status_code in (302, 303)


def test_a_card_list_needs_an_organization_and_is_ignored_without_one(client, world, frozen):
    build(world)
    login(client, world.root)  # every organization: a card is one organization's, so the list shows them all
    page = client.get("/admin/invoices?card=collected&card_from=2026-01-01&card_to=2026-02-28")
    assert page.status_code == 200 and 'id="card-summary"' not in page.text
