"""The invoice search (services/queries.py: client_match, search_clause) over the search index of migration 0013:
what it finds, what it never finds, and that the index follows every write. Same tests on SQLite (FTS5) and
PostgreSQL (pg_trgm)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import delete, select, text

from invoicing.extensions import db
from invoicing.models import Client, Invoice
from invoicing.services import queries
from invoicing.services.clients import ClientData, update_client
from invoicing.services.invoices import finalize_invoice
from invoicing.services.queries import InvoiceFilters, list_invoices
from tests.conftest import NOW, SYSTEM, make_client, make_invoice, make_org, make_user


def found(user, q, **filters):
    """Every invoice the admin list shows for this search, in order, following the cursors."""
    seen, cursor = [], None
    while True:
        page = list_invoices(user, now=NOW, filters=InvoiceFilters(q=q, **filters), cursor=cursor, limit=2, rows=True)
        seen += [row.id for row in page.invoices]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def ids(*invoices):
    return sorted(i.id for i in invoices)


@pytest.fixture
def shop(world):
    """Org A's clients with awkward names, one invoice each (open, numbered), and look-alikes in org B."""
    names = ["Harbor Studio", "Harbor Labs", "100% Cotton_Co", "1000 Cottons", "Bay Studio"]
    clients = {n: make_client(world.org_a, n) for n in names}
    invoices = {n: make_invoice(c, status="open", issue_date=date(2026, 2, 1) + timedelta(days=i))
                for i, (n, c) in enumerate(clients.items())}
    for n in names:  # the same names in another organization: never found by alice
        make_invoice(make_client(world.org_b, n, currency="JPY"), status="open", currency="JPY")
    return invoices


@pytest.mark.parametrize("term", ["Harbor", "harbor", "HARBOR", "arbo", "Harbor Stu", "harbor s"])
def test_it_finds_clients_by_any_part_of_their_name_in_any_case(world, shop, term):
    expected = [i for n, i in shop.items() if term.lower() in n.lower()]
    assert sorted(found(world.alice, term)) == ids(*expected)
    assert expected


def test_it_finds_clients_by_their_email(world, shop):
    assert found(world.alice, "baystudio@clients") == [shop["Bay Studio"].id]


@pytest.mark.parametrize("term,names", [
    ("%", ["100% Cotton_Co"]), ("_", ["100% Cotton_Co"]), ("0% C", ["100% Cotton_Co"]),
    ("n_C", ["100% Cotton_Co"]), ("0%", ["100% Cotton_Co"]), ("Cotton", ["100% Cotton_Co", "1000 Cottons"]),
    ('"', []), ("o\\", []), ("100 %", []),
])
def test_percent_underscore_and_quotes_are_plain_characters(world, shop, term, names):
    assert sorted(found(world.alice, term)) == ids(*[shop[n] for n in names])


def test_it_finds_invoices_by_the_start_of_their_number(world, shop):
    number = shop["Bay Studio"].number
    assert number and number.startswith("2026-")
    assert found(world.alice, number) == [shop["Bay Studio"].id]
    assert sorted(found(world.alice, "2026-")) == ids(*shop.values())
    assert found(world.alice, number[1:]) == []  # the start of the number, not any part


def test_letters_in_numbers_match_in_any_case(world):
    org = make_org("Lettered", number_format="INV-{seq:03d}")
    user = make_user(org, "inv@l.test")
    invoice = make_invoice(make_client(org, "Someone"), status="open")
    assert invoice.number == "INV-001"
    assert found(user, "inv-00") == found(user, "INV-001") == [invoice.id]


def test_another_organizations_invoices_are_never_found(world, shop):
    bob_sees = found(world.bob, "Harbor")
    assert len(bob_sees) == 2
    assert not set(bob_sees) & {i.id for i in shop.values()}
    org_b_numbers = db.session.execute(select(Invoice.number).where(Invoice.organization_id == world.org_b.id)
                                       ).scalars().all()
    assert all(found(world.alice, n) == [shop[name].id for name in shop if shop[name].number == n]
               for n in org_b_numbers)


def test_the_index_follows_new_clients_renames_and_email_changes(world, shop):
    newcomer = make_client(world.org_a, "Lighthouse Works")
    invoice = make_invoice(newcomer, status="open")
    assert found(world.alice, "lighthouse") == [invoice.id]
    update_client(newcomer.id, world.org_a.id, ClientData(name="Beacon Partners", email="ap@beacon.test"),
                  actor=SYSTEM, now=NOW)
    assert found(world.alice, "lighthouse") == []
    assert found(world.alice, "beacon part") == [invoice.id]
    assert found(world.alice, "ap@beacon") == [invoice.id]
    update_client(newcomer.id, world.org_a.id, ClientData(name="Beacon Partners", email="billing@tower.test"),
                  actor=SYSTEM, now=NOW)
    assert found(world.alice, "ap@beacon") == []
    assert found(world.alice, "@tower.test") == [invoice.id]


def test_the_index_follows_numbers_given_at_finalization(world, shop):
    draft = make_invoice(world.client_a)
    assert draft.number is None
    invoice = finalize_invoice(draft.id, actor=SYSTEM, now=NOW)
    assert invoice.number and found(world.alice, invoice.number) == [invoice.id]


def test_a_deleted_client_leaves_the_index(world):
    gone = make_client(world.org_a, "Ephemeral Gmbh", contacts=0)
    assert db.session.execute(select(Client.id).where(queries.client_match("ephemeral"))).scalars().all() == [gone.id]
    db.session.execute(delete(Client).where(Client.id == gone.id))
    db.session.commit()
    assert db.session.execute(select(Client.id).where(queries.client_match("ephemeral"))).scalars().all() == []
    if db.engine.dialect.name == "sqlite":  # the FTS5 table itself holds nothing of it either
        rows = db.session.execute(text("SELECT count(*) FROM client_search WHERE client_search MATCH '\"ephemeral\"'"))
        assert rows.scalar_one() == 0


@pytest.mark.parametrize("sort", ["-issue_date", "issue_date"])
@pytest.mark.parametrize("status", [None, "open", "overdue", "draft"])
def test_a_search_of_a_few_clients_pages_in_the_lists_order(world, sort, status):
    """Several matching clients with interleaved dates: the client-by-client reading merges them in order,
    pages without gaps or repeats, and applies the status tabs."""
    made = []
    for c in range(3):
        client = make_client(world.org_a, f"Meridian {c}")
        for n in range(4):
            made.append(make_invoice(client, status="open" if n % 2 else "draft",
                                     issue_date=date(2026, 1, 1) + timedelta(days=3 * n + c),
                                     due_date=date(2026, 1, 1) + timedelta(days=3 * n + c + 30)))
    make_invoice(make_client(world.org_a, "Elsewhere"), status="open")
    wanted = [i for i in made if status is None or i.status == status or (
        status == "overdue" and i.status == "open" and i.due_date < date(2026, 3, 10))]  # NOW in New York
    expected = [i.id for i in sorted(wanted, key=lambda i: (i.issue_date, i.id), reverse=sort.startswith("-"))]
    assert found(world.alice, "meridian", sort=sort, status=status) == expected
    assert expected or status == "overdue"


def test_the_search_index_exists_on_this_database(app):
    if db.engine.dialect.name == "sqlite":
        names = set(db.session.execute(text("SELECT name FROM sqlite_master")).scalars())
        assert {"client_search", "client_search_insert", "client_search_update", "client_search_delete"} <= names
    else:
        names = set(db.session.execute(text("SELECT indexname FROM pg_indexes")).scalars())
        assert {"ix_search_client_name", "ix_search_client_email", "ix_search_invoice_number"} <= names


def test_a_superadmin_across_organizations_finds_every_organizations_invoices(world, shop):
    """Not one organization: the list is built the general way, and still finds by client and by number."""
    harbors = db.session.execute(select(Invoice.id).join(Client, Client.id == Invoice.client_id).where(
        Client.name.like("Harbor%"))).scalars().all()
    assert len(harbors) == 4
    assert sorted(found(world.root, "harbor")) == sorted(harbors)
    number = shop["Bay Studio"].number
    by_number = found(world.root, number)
    assert shop["Bay Studio"].id in by_number
    assert {db.session.get(Invoice, i).number for i in by_number} == {number}
