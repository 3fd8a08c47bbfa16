from datetime import date, timedelta
from decimal import Decimal

import pytest

from invoicing.services import queries
from invoicing.services.invoices import LineData, void_invoice
from invoicing.services.payments import record_manual_payment
from invoicing.services.queries import STATUS_FILTERS, InvoiceFilters, iter_invoices, list_invoices, status_counts
from tests.conftest import NOW, SYSTEM, make_client, make_invoice


def numbers(page):
    return [i.number or f"draft{i.id}" for i in page.invoices]


@pytest.fixture
def spread(world):
    """Eight invoices of org A with distinct dates and totals, two drafts, one EUR, one of another client."""
    other = make_client(world.org_a, "Other Co", currency="EUR")
    made = []
    for n in range(6):
        made.append(make_invoice(
            world.client_a, status="open", issue_date=date(2026, 1, 1) + timedelta(days=7 * n),
            lines=(LineData("Work", Decimal(1), 10_000 * ((n * 5) % 6 + 1)),),
        ))
    made.append(make_invoice(world.client_a, issue_date=date(2026, 3, 1)))
    made.append(make_invoice(world.client_a, issue_date=date(2026, 1, 20)))
    made.append(make_invoice(other, status="open", currency="EUR", issue_date=date(2026, 2, 14)))
    make_invoice(world.client_b, status="open")  # org B: never listed for alice
    return made


def walk(user, filters, limit=3):
    """Every page in order, following the cursors."""
    seen, cursor = [], None
    while True:
        page = list_invoices(user, now=NOW, filters=filters, cursor=cursor, limit=limit, rows=True)
        seen += page.invoices
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def expected_order(invoices, sort):
    key = sort.lstrip("-")
    desc = sort.startswith("-")
    if key == "number":
        numbered = sorted((i for i in invoices if i.number), key=lambda i: (i.number, i.id), reverse=desc)
        drafts = sorted((i for i in invoices if not i.number), key=lambda i: i.id, reverse=desc)
        return [i.id for i in (drafts + numbered if desc else numbered + drafts)]
    return [i.id for i in sorted(invoices, key=lambda i: (getattr(i, key), i.id), reverse=desc)]


@pytest.mark.parametrize("sort", ["-issue_date", "issue_date", "due_date", "-due_date", "-total", "total",
                                  "-number", "number"])
def test_it_pages_through_every_sort_without_gaps_or_repeats(world, spread, sort):
    got = [i.id for i in walk(world.alice, InvoiceFilters(sort=sort))]
    assert got == expected_order(spread, sort)


@pytest.mark.parametrize("term", ["2026", "2026-0003", "client", "Other", "clienta@", "zzz", "2"])
@pytest.mark.parametrize("sort", ["-issue_date", "total", "number"])
def test_it_finds_the_same_invoices_whether_it_seeks_or_walks_the_list(world, spread, monkeypatch, term, sort):
    # Few matches: SQLite seeks by number or client and sorts them; many: it walks the sorted index.
    found = [i.id for i in walk(world.alice, InvoiceFilters(q=term, sort=sort), limit=2)]
    monkeypatch.setattr(queries, "SPARSE", 0)  # every search counts as "many"
    assert [i.id for i in walk(world.alice, InvoiceFilters(q=term, sort=sort), limit=2)] == found
    client_id = spread[0].client_id
    by_client = [i.id for i in walk(world.alice, InvoiceFilters(client_id=client_id, sort=sort), limit=3)]
    monkeypatch.setattr(queries, "SPARSE", 10_000)
    assert [i.id for i in walk(world.alice, InvoiceFilters(client_id=client_id, sort=sort), limit=3)] == by_client


def test_it_filters_by_client_currency_and_issue_date_range(world, spread):
    other_client = spread[-1].client_id
    assert [i.id for i in walk(world.alice, InvoiceFilters(client_id=other_client))] == [spread[-1].id]
    assert [i.currency for i in walk(world.alice, InvoiceFilters(currency="EUR"))] == ["EUR"]
    in_january = walk(world.alice, InvoiceFilters(date_from=date(2026, 1, 1), date_to=date(2026, 1, 31),
                                                  sort="issue_date"))
    assert [i.issue_date for i in in_january] == [date(2026, 1, d) for d in (1, 8, 15, 20, 22, 29)]


def test_it_searches_numbers_by_prefix_and_clients_by_name(world, spread):
    assert numbers(list_invoices(world.alice, now=NOW, filters=InvoiceFilters(q="2026-0003"))) == ["2026-0003"]
    assert len(walk(world.alice, InvoiceFilters(q="other co"))) == 1
    assert walk(world.alice, InvoiceFilters(q="%")) == []  # a wildcard is a literal


def test_it_combines_status_with_the_other_filters(world, spread):
    overdue = walk(world.alice, InvoiceFilters(status="overdue", sort="due_date"))
    assert [i.due_date < NOW.date() for i in overdue] == [True] * 6  # the EUR one is due on Mar 16
    assert len(walk(world.alice, InvoiceFilters(status="overdue", q="2026-0001"))) == 1
    assert len(walk(world.alice, InvoiceFilters(status="draft"))) == 2


def test_it_ignores_a_tampered_cursor(world, spread):
    page = list_invoices(world.alice, now=NOW, cursor="not-a-cursor!", limit=2)
    assert page.invoices == list_invoices(world.alice, now=NOW, limit=2).invoices


def test_it_counts_each_tab_with_one_bounded_query(world, spread):
    record_manual_payment(spread[0].id, amount=1000, method="cash", paid_on=NOW.date(), reference="", actor=SYSTEM,
                          now=NOW)
    void_invoice(spread[1].id, reason="dup", actor=SYSTEM, now=NOW)
    counts = status_counts(world.alice, now=NOW)
    assert counts == {"all": 9, "draft": 2, "open": 6, "processing": 0, "paid": 0, "void": 1, "sent": 0,
                      "viewed": 0, "partial": 1, "overdue": 5, "attention": 0}
    assert status_counts(world.alice, now=NOW, cap=3)["open"] == 4  # "3+": counting stops past the cap
    assert status_counts(world.root, now=NOW)["all"] == 10  # superadmin: every organization


def test_it_counts_each_tab_by_the_same_rules_as_the_tab_shows(world, spread):
    record_manual_payment(spread[0].id, amount=1000, method="cash", paid_on=NOW.date(), reference="", actor=SYSTEM,
                          now=NOW)
    for user in (world.alice, world.root):  # one prepared statement per organization; the ORM for superadmin
        counts = status_counts(user, now=NOW)
        shown = {tab: len(walk(user, InvoiceFilters(status=tab), limit=50)) for tab in STATUS_FILTERS}
        assert counts == {"all": len(walk(user, InvoiceFilters(), limit=50)), **shown}


def test_it_reads_list_rows_without_the_orm_but_with_the_models_rules(world, spread):
    rows = list_invoices(world.alice, now=NOW, rows=True, limit=50).invoices
    invoices = list_invoices(world.alice, now=NOW, limit=50).invoices
    assert [(r.id, r.number, r.client_name, r.amount_due, r.badges(NOW.date())) for r in rows] == [
        (i.id, i.number, i.client.name, i.amount_due, i.badges(NOW.date())) for i in invoices]


def test_it_exports_every_matching_invoice_across_pages(world, spread):
    assert [i.id for i in iter_invoices(world.alice, InvoiceFilters(), now=NOW, batch=2)] == expected_order(
        spread, "-issue_date")
