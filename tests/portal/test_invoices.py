"""The portal's invoice list: tabs, search, keyset pages, amounts due per currency (never summed across
currencies); only the signed-in contact's company, never a draft."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from invoicing.models import Invoice
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, World, make_invoice, portal_login

HX = {"HX-Request": "true"}


@dataclass
class Seeded:
    overdue: Invoice  # USD, past due
    partial: Invoice  # USD, part paid, project "Website redesign"
    euro: Invoice  # EUR, open
    paid: Invoice
    void: Invoice
    draft: Invoice
    other: Invoice  # client B's


@pytest.fixture
def seeded(world: World, time_machine: Any) -> Seeded:
    time_machine.move_to(NOW)
    day = NOW.date()
    c = world.client_a
    overdue = make_invoice(c, status="open", issue_date=day - timedelta(days=40))  # 2026-0001, due 10 days ago
    partial = make_invoice(c, status="open", issue_date=day - timedelta(days=5), project_ref="Website redesign")
    record_manual_payment(partial.id, amount=5000, method="cash", paid_on=day, reference="", actor=SYSTEM, now=NOW)
    euro = make_invoice(c, status="open", currency="EUR", issue_date=day - timedelta(days=3))
    paid = make_invoice(c, status="open", issue_date=day - timedelta(days=20))
    record_manual_payment(paid.id, amount=paid.total, method="bank_transfer", paid_on=day, reference="", actor=SYSTEM,
                          now=NOW)
    void = make_invoice(c, status="open", issue_date=day - timedelta(days=30))
    void_invoice(void.id, reason="Issued in error", actor=SYSTEM, now=NOW)
    draft = make_invoice(c, issue_date=day, project_ref="Website secret draft")
    other = make_invoice(world.client_b, status="open", issue_date=day, project_ref="Website B")
    return Seeded(overdue, partial, euro, paid, void, draft, other)


def numbers(html: str) -> list[str]:
    """The invoice numbers the list shows, in order."""
    return re.findall(r'<a class="nowrap" href="/portal/invoices/[0-9a-f]{32}">([^<]+)</a>', html)


def signed_in(client: FlaskClient, world: World) -> FlaskClient:
    portal_login(client, world.client_a.contacts[0])
    return client


@pytest.mark.parametrize(("tab", "expected"), [
    (None, ["euro", "partial", "overdue"]),  # open is the default tab: what there is to pay
    ("open", ["euro", "partial", "overdue"]),
    ("overdue", ["overdue"]),
    ("paid", ["paid"]),
    ("all", ["euro", "partial", "paid", "void", "overdue"]),  # newest first; never the draft
])
def test_it_lists_each_tab_newest_first(client, world, seeded, tab, expected):
    signed_in(client, world)
    response = client.get("/portal/" + (f"?tab={tab}" if tab else ""))
    assert response.status_code == 200
    assert numbers(response.text) == [getattr(seeded, name).number for name in expected]
    # Client B's invoice (numbered in its own organization) and the draft are never listed.
    assert seeded.other.public_id not in response.text and seeded.draft.public_id not in response.text


def test_it_shows_badges_the_client_understands(client, world, seeded):
    signed_in(client, world)
    page = client.get("/portal/?tab=all").text
    row = {n: re.search(rf">{n}</a>.*?</tr>", page, re.S).group(0) for n in numbers(page)}  # type: ignore[union-attr]
    assert 'badge-overdue">overdue' in row[seeded.overdue.number]
    assert 'badge-partial">partial' in row[seeded.partial.number] and "$220.00" in row[seeded.partial.number]
    assert 'badge-paid">paid' in row[seeded.paid.number] and 'badge-void">void' in row[seeded.void.number]
    assert "badge-sent" not in page and "badge-attention" not in page  # staff-only badges stay in the admin


def test_it_totals_what_is_due_per_currency_and_never_across(client, world, seeded):
    signed_in(client, world)
    page = client.get("/portal/").text
    due = re.search(r'<section class="portal-due".*?</section>', page, re.S).group(0)  # type: ignore[union-attr]
    # USD: 270.00 overdue + 220.00 left on the partly paid one; EUR: 270.00; nothing summed across them.
    assert "Due in USD" in due and "$490.00" in due and "2 open" in due and "$270.00 overdue" in due
    assert "Due in EUR" in due and "€270.00" in due and "1 open" in due
    assert "760" not in due and "¥" not in due  # client B's yen invoice is not theirs


def test_it_says_nothing_is_due_when_all_is_paid(client, world, time_machine):
    time_machine.move_to(NOW)
    paid = make_invoice(world.client_a, status="open")
    record_manual_payment(paid.id, amount=paid.total, method="cash", paid_on=NOW.date(), reference="", actor=SYSTEM,
                          now=NOW)
    signed_in(client, world)
    page = client.get("/portal/").text
    assert "Nothing due" in page and "Nothing to pay right now." in page and 'href="/portal/?tab=all"' in page
    assert "Nothing overdue." in client.get("/portal/?tab=overdue").text


@pytest.mark.parametrize(("q", "expected"), [
    ("website", ["partial"]),  # project reference, any case
    ("-0001", ["overdue"]),  # part of a number
    ("2026-000", ["euro", "partial", "overdue"]),
    ("%", []),  # LIKE wildcards are plain characters
    ("secret", []),  # the draft stays invisible to a search
])
def test_it_searches_numbers_and_project_references(client, world, seeded, q, expected):
    signed_in(client, world)
    page = client.get("/portal/", query_string={"q": q}).text
    assert numbers(page) == [getattr(seeded, name).number for name in expected]
    if not expected:
        assert "No invoices match" in page


def test_it_searches_within_the_chosen_tab(client, world, seeded):
    signed_in(client, world)
    assert numbers(client.get("/portal/?tab=paid&q=2026").text) == [seeded.paid.number]
    assert numbers(client.get("/portal/?tab=paid&q=website").text) == []


def test_it_answers_a_tab_or_a_search_with_the_list_only(client, world, seeded):
    signed_in(client, world)
    response = client.get("/portal/?tab=all&q=2026", headers=HX)
    assert response.status_code == 200 and "<html" not in response.text and "portal-due" not in response.text
    assert 'aria-current="page">All<' in response.text
    assert '<input type="hidden" name="tab" value="all" form="invoice-search">' in response.text  # the search keeps it
    assert len(numbers(response.text)) == 5
    assert response.headers["Vary"].count("HX-Request") == 1


def test_it_works_without_javascript(client, world, seeded):
    signed_in(client, world)
    page = client.get("/portal/?tab=overdue&q=").text  # what the search form submits
    assert '<form id="invoice-search"' in page and 'method="get"' in page
    assert numbers(page) == [seeded.overdue.number]
    assert 'href="/portal/?tab=paid"' in page  # tabs are links


def test_it_pages_through_thousands_with_a_cursor(client, world, time_machine):
    time_machine.move_to(NOW)
    made = [make_invoice(world.client_a, status="open", issue_date=NOW.date() - timedelta(days=n // 3))
            for n in range(60)]  # three per day: the id breaks the tie
    expected = [i.number for i in sorted(made, key=lambda i: (i.issue_date, i.id), reverse=True)]
    signed_in(client, world)
    page = client.get("/portal/").text
    seen = numbers(page)
    assert len(seen) == 25 and "First page" not in page
    while (more := re.search(r'<a href="(/portal/\?after=[^"]+)" hx-get', page)) is not None:
        url = more.group(1).replace("&amp;", "&")
        fragment = client.get(url, headers=HX).text  # "Older invoices": rows only, appended in place
        assert "<nav" not in fragment and "<table" not in fragment and fragment.lstrip().startswith(("<tr", "\n<tr"))
        page = client.get(url).text  # the same without JavaScript: a whole page with a way back
        assert "First page" in page and numbers(page) == numbers(fragment)
        seen += numbers(page)
    assert seen == expected


def test_it_keeps_the_tab_and_search_while_paging(client, world, time_machine):
    time_machine.move_to(NOW)
    for n in range(30):
        make_invoice(world.client_a, status="open", issue_date=NOW.date() - timedelta(days=n),
                     project_ref="Alpha" if n % 2 else "Beta")
    signed_in(client, world)
    page = client.get("/portal/?q=alpha").text
    more = re.search(r'<a href="(/portal/\?after=[^"]+)" hx-get', page)
    assert more is None and len(numbers(page)) == 15  # 15 match: one page
    page = client.get("/portal/?tab=all").text
    url = re.search(r'<a href="(/portal/\?after=[^"]+)" hx-get', page).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert "tab=all" in url and len(numbers(client.get(url).text)) == 5


def test_a_tampered_cursor_starts_at_the_first_page(client, world, seeded):
    signed_in(client, world)
    assert numbers(client.get("/portal/?tab=all&after=bm90LWEtY3Vyc29y").text)[:1] == [seeded.euro.number]


def test_it_asks_who_you_are_first(client, world, seeded):
    response = client.get("/portal/?tab=all")
    assert response.status_code == 303 and "/portal/login" in response.location
