"""A contact keeps their company's billing email, address and tax id up to date; the name stays staff's. Each
change is audited with the contact as actor and the organization's admins are emailed what changed."""

from __future__ import annotations

from sqlalchemy import select

from invoicing import pdf
from invoicing.extensions import db
from invoicing.models import AuditEvent, Client, OutboxEmail
from tests.conftest import World, login, make_invoice, make_user, portal_login

FORM = {"email": "Accounts@Client-A.test", "address": "1 Main St\nSpringfield", "tax_id": "  DE 123  456 789 "}


def client_row(world: World) -> Client:
    db.session.expire_all()
    row = db.session.get(Client, world.client_a.id)
    assert row is not None
    return row


def test_it_shows_the_profile_with_the_name_read_only(client, world):
    portal_login(client, world.client_a.contacts[0])
    page = client.get("/portal/company-profile").text
    assert "Client A" in page and 'name="name"' not in page
    assert 'value="clienta@clients.test"' in page and 'name="tax_id"' in page


def test_it_saves_audits_and_tells_the_admins(client, world):
    make_user(world.org_a, "second-admin@a.test", "admin")
    make_user(world.org_a, "staffer@a.test", "staff")  # staff are not admins: no email
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    response = client.post("/portal/company-profile", data={**FORM, "name": "Renamed Ltd"})
    assert response.status_code == 303 and response.location.endswith("/portal/company-profile")
    assert "Saved; Org A has been told." in client.get(response.location).text

    row = client_row(world)
    assert (row.name, row.email, row.address, row.tax_id) == (
        "Client A", "accounts@client-a.test", "1 Main St\nSpringfield", "DE 123 456 789")
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "client.profile_updated")).scalar_one()
    assert (event.actor_type, event.actor_id, event.object_id) == ("contact", contact.id, row.id)
    assert event.details["changed"] == ["address", "email", "tax_id"]
    assert event.details["before"]["email"] == "clienta@clients.test"
    assert event.details["after"]["tax_id"] == "DE 123 456 789"

    emails = db.session.execute(select(OutboxEmail).where(OutboxEmail.kind == "client_profile_changed")
                                .order_by(OutboxEmail.to_addr)).scalars().all()
    assert [e.to_addr for e in emails] == ["alice@a.test", "second-admin@a.test"]
    assert emails[0].organization_id == world.org_a.id
    assert "Client A" in emails[0].subject
    body = emails[0].text_body
    assert "Billing email: accounts@client-a.test" in body and "was: clienta@clients.test" in body
    assert "Tax id: DE 123 456 789" in body and contact.email in body
    assert f"http://billing.test/admin/clients/{row.id}" in body


def test_a_bad_email_changes_nothing(client, world):
    portal_login(client, world.client_a.contacts[0])
    response = client.post("/portal/company-profile", data={**FORM, "email": "not an email"})
    assert response.status_code == 422 and "not a valid email address" in response.text
    assert client_row(world).email == "clienta@clients.test" and client_row(world).tax_id == ""
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "client.profile_updated")).first() is None
    assert db.session.execute(select(OutboxEmail)).first() is None


def test_an_empty_email_or_a_long_tax_id_is_refused(client, world):
    portal_login(client, world.client_a.contacts[0])
    assert client.post("/portal/company-profile", data={**FORM, "email": ""}).status_code == 422
    assert client.post("/portal/company-profile", data={**FORM, "tax_id": "X" * 65}).status_code == 422
    assert client_row(world).tax_id == "" and db.session.execute(select(OutboxEmail)).first() is None


def test_saving_without_a_change_writes_nothing(client, world):
    portal_login(client, world.client_a.contacts[0])
    response = client.post("/portal/company-profile", data={"email": "clienta@clients.test", "address": "",
                                                             "tax_id": ""})
    assert response.status_code == 303 and "Nothing changed." in client.get(response.location).text
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "client.profile_updated")).first() is None
    assert db.session.execute(select(OutboxEmail)).first() is None


def test_a_contact_edits_only_their_own_company(client, world):
    portal_login(client, world.client_b.contacts[0])
    assert client.post("/portal/company-profile", data=FORM).status_code == 303
    db.session.expire_all()
    assert db.session.get(Client, world.client_b.id).tax_id == "DE 123 456 789"
    assert client_row(world).tax_id == ""
    to = db.session.execute(select(OutboxEmail.to_addr)).scalars().all()
    assert to == []  # org B has no admin (bob is staff) and no reply-to address: nobody to tell, nothing queued


def test_staff_see_and_edit_the_tax_id_and_the_pdf_prints_it(client, world):
    portal_login(client, world.client_a.contacts[0])
    client.post("/portal/company-profile", data=FORM)
    staff = client.application.test_client()
    login(staff, world.alice)
    page = staff.get(f"/admin/clients/{world.client_a.id}").text
    assert "Tax id" in page and "DE 123 456 789" in page
    form = staff.get(f"/admin/clients/{world.client_a.id}/edit").text
    assert 'name="tax_id"' in form and 'value="DE 123 456 789"' in form
    staff.post(f"/admin/clients/{world.client_a.id}/edit", data={"name": "Client A", "email": "a@client-a.test",
                                                                 "address": "", "tax_id": "FR 99", "currency": "USD"})
    assert client_row(world).tax_id == "FR 99"
    invoice = make_invoice(client_row(world), status="open")
    assert "Tax id: FR 99" in pdf.render_html(invoice, None)
