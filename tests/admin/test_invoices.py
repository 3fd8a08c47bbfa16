"""The invoice list: tabs with counts, filters in the URL, HTMX fragments, keyset paging, tenancy."""

import re
from datetime import timedelta

import pytest

from invoicing.services.invoices import void_invoice
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, login, make_client, make_invoice


@pytest.fixture
def invoices(world):
    overdue = make_invoice(world.client_a, status="open", issue_date=NOW.date() - timedelta(days=40))
    partial = make_invoice(world.client_a, status="open")
    record_manual_payment(partial.id, amount=1000, method="cash", paid_on=NOW.date(), reference="", actor=SYSTEM,
                          now=NOW)
    voided = make_invoice(world.client_a, status="open")
    void_invoice(voided.id, reason="dup", actor=SYSTEM, now=NOW)
    draft = make_invoice(world.client_a)
    other = make_invoice(world.client_b, status="open")
    return dict(overdue=overdue, partial=partial, voided=voided, draft=draft, other=other)


def row_numbers(html):
    return re.findall(r'href="/admin/invoices/\d+">([^<]+)</a>', html)


def test_it_lists_the_organizations_invoices_with_badges(client, world, invoices, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)
    page = client.get("/admin/invoices").text
    assert "2026-0001" in page and "2026-0003" in page and f"Draft #{invoices['draft'].id}" in page
    assert "Client B" not in page  # org B's invoice
    assert 'badge-overdue">overdue' in page and 'badge-partial">partial' in page and 'badge-void">void' in page
    assert "$260.00" in page  # amount due on the partly paid invoice


def test_it_shows_counts_in_the_status_tabs(client, world, invoices, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)
    page = client.get("/admin/invoices").text
    tabs = dict(re.findall(r'name="status" value="(\w*)"[^>]*> [^<]+ <span class="count">([\d,+]+)</span>', page))
    assert tabs == {"": "4", "draft": "1", "open": "2", "processing": "0", "paid": "0", "void": "1", "sent": "0",
                    "viewed": "0", "partial": "1", "overdue": "1", "attention": "0"}


@pytest.mark.parametrize(("status", "numbers"), [
    ("overdue", ["2026-0001"]), ("partial", ["2026-0002"]), ("void", ["2026-0003"]), ("draft", []),
])
def test_it_filters_by_stored_and_derived_status(client, world, invoices, time_machine, status, numbers):
    time_machine.move_to(NOW)
    login(client, world.alice)
    page = client.get(f"/admin/invoices?status={status}").text
    assert sorted(n for n in ("2026-0001", "2026-0002", "2026-0003") if n in page) == numbers


def test_it_filters_by_client_currency_dates_and_sorts_from_the_url(client, world, invoices):
    other = make_client(world.org_a, "Globex", currency="EUR")
    eur = make_invoice(other, status="open", issue_date=NOW.date() - timedelta(days=3))
    login(client, world.alice)
    assert row_numbers(client.get(f"/admin/invoices?client={other.id}").text) == [eur.number]
    assert row_numbers(client.get("/admin/invoices?currency=eur").text) == [eur.number]
    start = (NOW.date() - timedelta(days=41)).isoformat()
    end = (NOW.date() - timedelta(days=39)).isoformat()
    assert row_numbers(client.get(f"/admin/invoices?from={start}&to={end}").text) == ["2026-0001"]
    by_number = row_numbers(client.get("/admin/invoices?sort=number").text)
    assert by_number == ["2026-0001", "2026-0002", "2026-0003", "2026-0004", f"Draft #{invoices['draft'].id}"]


def test_it_answers_a_search_keystroke_with_the_rows_only(client, world, invoices):
    login(client, world.alice)
    response = client.get("/admin/invoices?q=2026-0002", headers={"HX-Request": "true"})
    assert row_numbers(response.text) == ["2026-0002"]
    assert "<html" not in response.text and 'class="count"' not in response.text  # no tabs, no counts
    assert "HX-Request" in response.headers["Vary"]
    assert "Export all matching as CSV" in response.text and "q=2026-0002" in response.text
    assert "2026-0001" in client.get("/admin/invoices?q=client a").text


def test_it_answers_boosted_navigation_and_history_restore_with_the_full_page(client, world, invoices):
    login(client, world.alice)
    boosted = client.get("/admin/invoices?status=void", headers={"HX-Request": "true", "HX-Boosted": "true"})
    restore = client.get("/admin/invoices?status=void",
                         headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    for response in (boosted, restore):
        assert "<html" in response.text and 'class="count"' in response.text
        assert 'value="void" checked' in response.text  # the filters in the URL drive the form


def test_it_pages_with_an_opaque_cursor_that_keeps_the_filters(client, world):
    for n in range(53):
        make_invoice(world.client_a, issue_date=NOW.date() - timedelta(days=n))
    login(client, world.alice)
    first = client.get("/admin/invoices?status=draft").text
    assert len(row_numbers(first)) == 50 and "Older invoices" in first
    more = re.search(r'href="(/admin/invoices\?after=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert "status=draft" in more
    second = client.get(more, headers={"HX-Request": "true"}).text
    assert len(row_numbers(second)) == 3 and "Older invoices" not in second
    assert not set(row_numbers(first)) & set(row_numbers(second))


def test_it_answers_404_for_another_organizations_invoice_or_client_filter(client, world, invoices):
    login(client, world.bob)
    assert client.get(f"/admin/invoices/{invoices['overdue'].id}").status_code == 404
    assert client.get(f"/admin/invoices?client={world.client_a.id}").status_code == 404
    assert client.get(f"/admin/invoices/{invoices['other'].id}").status_code == 200
    assert client.get("/admin/invoices/999999").status_code == 404


def test_it_lets_a_superadmin_see_every_organization(client, world, invoices):
    login(client, world.root)
    page = client.get("/admin/invoices").text
    assert "Client A" in page and "Client B" in page
    assert client.get(f"/admin/invoices/{invoices['other'].id}").status_code == 200
    assert client.get(f"/admin/invoices?client={world.client_a.id}").status_code == 200


def test_it_sends_anonymous_visitors_to_the_login(client, world):
    response = client.get("/admin/invoices")
    assert response.status_code == 302 and "/admin/login" in response.location


def test_it_shows_the_dashboard(client, world, invoices, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)
    page = client.get("/admin/").text
    assert "Overdue" in page and "2026-0001" in page


def test_it_redirects_a_filter_form_sent_with_empty_fields_to_the_set_filters_only(client, world, invoices):
    login(client, world.alice)
    response = client.get("/admin/invoices?status=&q=&client=&client_search=&currency=USD&from=&to=&sort=")
    assert (response.status_code, response.location) == (302, "/admin/invoices?currency=USD")
    assert client.get("/admin/invoices?q=&from=").location == "/admin/invoices"
    assert client.get("/admin/invoices?currency=USD").status_code == 200  # already clean


@pytest.mark.parametrize("fragment", [False, True])
def test_names_and_numbers_with_markup_are_shown_as_text(client, world, fragment, time_machine):
    """The list's rows are placed with autoescaping off (admin/listing.py escapes them): markup stays text."""
    time_machine.move_to(NOW)
    world.org_a.number_format = "<i>{seq}"
    evil = make_client(world.org_a, '<script>alert(1)</script> & "Co"')
    invoice = make_invoice(evil, status="open")
    assert invoice.number == "<i>1"
    login(client, world.alice)
    headers = {"HX-Request": "true"} if fragment else {}
    page = client.get("/admin/invoices?q=alert", headers=headers).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;Co&#34;" in page
    assert "&lt;i&gt;1" in page and 'aria-label="Select &lt;i&gt;1"' in page
    assert "<script>alert" not in page and "<i>1" not in page
