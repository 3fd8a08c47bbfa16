from datetime import date

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Client, Contact, Invoice
from invoicing.services import DomainError, NotFound
from invoicing.services.clients import (
    ClientData,
    ContactData,
    add_contact,
    archive_client,
    client_choices,
    client_summary,
    create_client,
    get_client,
    remove_contact,
    search_clients,
    unarchive_client,
    update_client,
    update_contact,
)
from invoicing.services.invoices import create_draft
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, draft_data, make_client, make_invoice


def audit(action):
    return db.session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars().all()


def test_it_creates_a_client_with_contacts_and_audit_events(world):
    client = create_client(world.org_a, ClientData(" Initech ", "AP@Initech.test", "1 Main St", "eur"), actor=SYSTEM,
                           now=NOW, contacts=[ContactData("Bill", "bill@initech.test", True)])
    db.session.expire_all()
    client = db.session.get(Client, client.id)
    assert (client.name, client.email, client.currency, client.organization_id) == (
        "Initech", "ap@initech.test", "EUR", world.org_a.id)
    assert [(c.name, c.email, c.portal_access) for c in client.contacts] == [("Bill", "bill@initech.test", True)]
    assert len(audit("client.created")) == 1 and len(audit("contact.added")) == 1


@pytest.mark.parametrize(("data", "message"), [
    (ClientData(" "), "name"),
    (ClientData("X", email="not-an-email"), "not a valid email"),
    (ClientData("X", currency="XYZ"), "ISO 4217"),
])
def test_it_refuses_bad_client_data_without_writing(world, data, message):
    with pytest.raises(DomainError, match=message):
        create_client(world.org_a, data, actor=SYSTEM, now=NOW)
    assert db.session.execute(select(Client).where(Client.name == "X")).first() is None


def test_it_updates_only_what_changed_and_says_so(world):
    update_client(world.client_a.id, world.org_a.id, ClientData("Client A", "new@clienta.test", "", "USD"),
                  actor=SYSTEM, now=NOW)
    [event] = audit("client.updated")
    assert event.details == {"changed": ["email"]}
    update_client(world.client_a.id, world.org_a.id, ClientData("Client A", "new@clienta.test", "", "USD"),
                  actor=SYSTEM, now=NOW)
    assert len(audit("client.updated")) == 1


def test_it_will_not_touch_another_organizations_client(world):
    with pytest.raises(NotFound):
        update_client(world.client_b.id, world.org_a.id, ClientData("Hijacked"), actor=SYSTEM, now=NOW)
    with pytest.raises(NotFound):
        archive_client(world.client_b.id, world.org_a.id, actor=SYSTEM, now=NOW)
    with pytest.raises(NotFound):
        add_contact(world.client_b.id, world.org_a.id, ContactData("Eve", "eve@x.test"), actor=SYSTEM, now=NOW)
    with pytest.raises(NotFound):
        get_client(world.alice, world.client_b.id)
    assert get_client(world.root, world.client_b.id).id == world.client_b.id
    assert db.session.get(Client, world.client_b.id).name == "Client B"


def test_it_archives_and_unarchives_and_archived_clients_get_no_new_invoices(world):
    archive_client(world.client_a.id, world.org_a.id, actor=SYSTEM, now=NOW)
    assert db.session.get(Client, world.client_a.id).archived_at == NOW
    assert world.client_a.id not in [c.id for c in client_choices(world.alice)]
    assert [c.id for c in search_clients(world.alice, archived=True).clients] == [world.client_a.id]
    with pytest.raises(DomainError, match="archived"):
        create_draft(world.org_a, draft_data(world.client_a), actor=SYSTEM, now=NOW)
    with pytest.raises(DomainError, match="already archived"):
        archive_client(world.client_a.id, world.org_a.id, actor=SYSTEM, now=NOW)
    unarchive_client(world.client_a.id, world.org_a.id, actor=SYSTEM, now=NOW)
    assert db.session.get(Client, world.client_a.id).archived_at is None
    assert [e.action for e in audit("client.archived") + audit("client.unarchived")] == [
        "client.archived", "client.unarchived"]


def test_it_manages_contacts_with_unique_emails_per_client(world):
    contact = add_contact(world.client_a.id, world.org_a.id, ContactData("Dana", "dana@a.test"), actor=SYSTEM, now=NOW)
    with pytest.raises(DomainError, match="already has a contact"):
        add_contact(world.client_a.id, world.org_a.id, ContactData("Dup", "DANA@a.test"), actor=SYSTEM, now=NOW)
    update_contact(contact.id, world.org_a.id, ContactData("Dana S", "dana@a.test", True), actor=SYSTEM, now=NOW)
    with pytest.raises(DomainError, match="Another contact"):
        update_contact(contact.id, world.org_a.id, ContactData("Dana S", world.client_a.contacts[0].email),
                       actor=SYSTEM, now=NOW)
    db.session.expire_all()
    assert (db.session.get(Contact, contact.id).name, db.session.get(Contact, contact.id).portal_access) == (
        "Dana S", True)
    remove_contact(contact.id, world.org_a.id, actor=SYSTEM, now=NOW)
    assert db.session.get(Contact, contact.id) is None
    assert [len(audit(a)) for a in ("contact.added", "contact.updated", "contact.removed")] == [1, 1, 1]


def test_it_keeps_a_contact_that_is_on_the_record(world):
    contact = world.client_a.contacts[0]
    draft = make_invoice(world.client_a, contact_id=contact.id)
    other = world.client_a.contacts[1]
    make_invoice(world.client_a, status="open", contact_id=other.id)
    remove_contact(contact.id, world.org_a.id, actor=SYSTEM, now=NOW)  # only on a draft: removed
    assert db.session.get(Invoice, draft.id).contact_id is None
    with pytest.raises(DomainError, match="stays on the record"):
        remove_contact(other.id, world.org_a.id, actor=SYSTEM, now=NOW)
    assert db.session.get(Contact, other.id) is not None


def test_it_searches_by_name_or_email_with_keyset_pages(world):
    for n in range(5):
        make_client(world.org_a, f"Zeta {n}", contacts=0)
    first = search_clients(world.alice, q="zeta", limit=3)
    second = search_clients(world.alice, q="zeta", limit=3, cursor=first.next_cursor)
    assert [c.name for c in first.clients + second.clients] == [f"Zeta {n}" for n in range(5)]
    assert second.next_cursor is None
    assert [c.name for c in search_clients(world.alice, q="clienta@").clients] == ["Client A"]
    assert search_clients(world.alice, q="100%").clients == []  # LIKE wildcards are taken literally
    assert [c.name for c in search_clients(world.bob).clients] == ["Client B"]


def test_it_sums_the_balance_due_per_currency_and_lists_payments(world):
    usd = make_invoice(world.client_a, status="open", issue_date=date(2026, 1, 1))  # overdue, 270.00
    make_invoice(world.client_a, status="open", currency="EUR")  # 270.00 EUR, not due yet
    make_invoice(world.client_a)  # a draft: not owed
    record_manual_payment(usd.id, amount=7000, method="cheque", paid_on=NOW.date(), reference="CHQ 12",
                          actor=SYSTEM, now=NOW)
    summary = client_summary(world.client_a, today=NOW.date())
    assert [(b.currency, b.due, b.overdue, b.open_invoices) for b in summary.balances] == [
        ("EUR", 27000, 0, 1), ("USD", 20000, 20000, 1)]
    assert len(summary.invoices) == 3
    assert [(p.amount, p.reference, p.invoice.number) for p in summary.payments] == [(7000, "CHQ 12", "2026-0001")]
