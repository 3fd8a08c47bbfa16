"""Client pages: search as you type, create, edit, archive, contacts, the client page; tenancy."""

import re
from datetime import date

import pytest
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Client, Contact
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, login, make_client, make_invoice


def names(html):
    return re.findall(r'href="/admin/clients/\d+">([^<]+)</a>', html)


def test_it_searches_clients_as_you_type_with_a_rows_fragment(client, world):
    make_client(world.org_a, "Acme Corp")
    make_client(world.org_a, "Zenith Labs")
    login(client, world.alice)
    page = client.get("/admin/clients").text
    assert names(page) == ["Acme Corp", "Client A", "Zenith Labs"] and "Client B" not in page
    fragment = client.get("/admin/clients?q=zen", headers={"HX-Request": "true"}).text
    assert names(fragment) == ["Zenith Labs"] and "<html" not in fragment
    assert names(client.get("/admin/clients?q=acmecorp@").text) == ["Acme Corp"]  # by email too


def test_it_pages_the_client_list(client, world):
    for n in range(55):
        make_client(world.org_a, f"Bulk {n:02d}", contacts=0)
    login(client, world.alice)
    first = client.get("/admin/clients").text
    more = re.search(r'href="(/admin/clients\?after=[^"]+)"', first).group(1)
    second = client.get(more, headers={"HX-Request": "true"}).text
    assert len(names(first)) == 50 and len(names(second)) == 6 and not set(names(first)) & set(names(second))


def test_it_creates_a_client(client, world):
    login(client, world.alice)
    response = client.post("/admin/clients/new", data={"name": "Initech", "email": "ap@initech.test",
                                                       "address": "1 Main St", "currency": "EUR"})
    created = db.session.execute(select(Client).where(Client.name == "Initech")).scalar_one()
    assert response.status_code == 303 and response.location.endswith(f"/admin/clients/{created.id}")
    assert (created.organization_id, created.currency, created.email) == (world.org_a.id, "EUR", "ap@initech.test")


def test_it_shows_errors_inline_and_creates_nothing(client, world):
    login(client, world.alice)
    response = client.post("/admin/clients/new", data={"name": "", "email": "nope", "currency": "USD"})
    assert response.status_code == 422 and "This field is required." in response.text
    assert "Invalid email address." in response.text
    assert db.session.execute(select(func.count()).select_from(Client)).scalar() == 2


def test_it_edits_and_archives_a_client(client, world):
    login(client, world.alice)
    client.post(f"/admin/clients/{world.client_a.id}/edit",
                data={"name": "Client A Ltd", "email": "", "address": "", "currency": "USD"})
    client.post(f"/admin/clients/{world.client_a.id}/archive")
    db.session.expire_all()
    archived = db.session.get(Client, world.client_a.id)
    assert archived.name == "Client A Ltd" and archived.archived_at is not None
    assert names(client.get("/admin/clients").text) == []
    assert names(client.get("/admin/clients?archived=1").text) == ["Client A Ltd"]
    client.post(f"/admin/clients/{world.client_a.id}/archive", data={"restore": "1"})
    db.session.expire_all()
    assert db.session.get(Client, world.client_a.id).archived_at is None


def test_it_manages_contacts(client, world):
    login(client, world.alice)
    added = client.post(f"/admin/clients/{world.client_a.id}/contacts",
                        data={"contact-name": "Dana", "contact-email": "dana@a.test",
                              "contact-portal_access": "y"})
    assert added.status_code == 303
    contact = db.session.execute(select(Contact).where(Contact.email == "dana@a.test")).scalar_one()
    assert contact.portal_access is True
    duplicate = client.post(f"/admin/clients/{world.client_a.id}/contacts", data={"contact-name": "D",
                                                                                    "contact-email": "dana@a.test"})
    assert duplicate.status_code == 422 and "already has a contact" in duplicate.text
    client.post(f"/admin/clients/{world.client_a.id}/contacts/{contact.id}", data={"name": "Dana S",
                                                                                  "email": "dana@a.test"})
    db.session.expire_all()
    assert (db.session.get(Contact, contact.id).name, db.session.get(Contact, contact.id).portal_access) == (
        "Dana S", False)
    client.post(f"/admin/clients/{world.client_a.id}/contacts/{contact.id}/remove")
    assert db.session.get(Contact, contact.id) is None
    actions = db.session.execute(select(AuditEvent.action).where(AuditEvent.object_type == "contact")
                                 .order_by(AuditEvent.id)).scalars().all()
    assert actions == ["contact.added", "contact.updated", "contact.portal_revoked", "contact.removed"]


def test_it_shows_the_client_page_with_balances_invoices_and_payments(client, world, time_machine):
    time_machine.move_to(NOW)
    overdue = make_invoice(world.client_a, status="open", issue_date=date(2026, 1, 1))
    make_invoice(world.client_a, status="open", currency="EUR")
    record_manual_payment(overdue.id, amount=7000, method="cheque", paid_on=NOW.date(), reference="CHQ 12",
                          actor=SYSTEM, now=NOW)
    login(client, world.alice)
    page = client.get(f"/admin/clients/{world.client_a.id}").text
    assert "Balance due (USD)" in page and "$200.00" in page and "$200.00 overdue" in page
    assert "Balance due (EUR)" in page and "€270.00" in page
    assert "CHQ 12" in page and "2026-0001" in page and "c1@clienta.test" in page
    assert f"/admin/invoices?client={world.client_a.id}" in page


def test_it_offers_client_options_for_pickers(client, world):
    make_client(world.org_a, "Acme Corp")
    login(client, world.alice)
    options = client.get(f"/admin/clients/options?client_search=acme&client_id={world.client_a.id}&blank=Any").text
    assert re.findall(r"<option[^>]*>([^<]+)</option>", options) == ["Any", "Client A", "Acme Corp"]
    assert "Client B" not in client.get("/admin/clients/options?client_search=client").text


@pytest.mark.parametrize(("method", "path", "data"), [
    ("get", "", None), ("get", "/edit", None), ("post", "/edit", {"name": "X", "currency": "USD"}),
    ("post", "/archive", {}), ("post", "/contacts", {"contact-name": "E", "contact-email": "e@x.test"}),
])
def test_it_answers_404_for_another_organizations_client(client, world, method, path, data):
    login(client, world.bob)
    response = getattr(client, method)(f"/admin/clients/{world.client_a.id}{path}", data=data)
    assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(Client, world.client_a.id).name == "Client A"
    assert db.session.get(Client, world.client_a.id).archived_at is None


def test_it_answers_404_for_another_organizations_contact(client, world):
    contact = world.client_a.contacts[0]
    login(client, world.bob)
    assert client.post(f"/admin/clients/{world.client_b.id}/contacts/{contact.id}/remove").status_code == 404
    assert client.post(f"/admin/clients/{world.client_a.id}/contacts/{contact.id}/remove").status_code == 404
    assert db.session.get(Contact, contact.id) is not None


def test_it_lets_a_superadmin_see_every_client(client, world):
    login(client, world.root)
    assert client.get(f"/admin/clients/{world.client_b.id}").status_code == 200
    assert {"Client A", "Client B"} <= set(names(client.get("/admin/clients").text))
