"""The company picker: a person with portal access at several clients of one organization chooses which one to
act for (signing in as that company's contact row); the server checks it is the same person."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Contact
from invoicing.services.portal.auth import issue_magic_link
from tests.conftest import World, make_client, portal_login
from tests.portal.support import second_company


def _press_link_button(client, contact: Contact, query: str = ""):  # noqa: ANN001, ANN202
    return client.post(f"/portal/login/{issue_magic_link(contact.id, now=datetime.now(UTC))}{query}")


def _acting_for(client) -> str:  # noqa: ANN001
    response = client.get("/portal/")
    assert response.status_code == 200
    return response.text.split("<h1>", 1)[1].split("</h1>", 1)[0]


def test_a_person_of_two_companies_picks_one_and_switches(client, world: World) -> None:
    contact = world.client_a.contacts[0]
    other = second_company(world, contact)
    response = _press_link_button(client, contact, "?next=/portal/x")
    assert response.status_code == 303 and response.location == "/portal/company?next=/portal/x"
    picker = client.get("/portal/company")
    assert picker.status_code == 200 and "Client A" in picker.text and "Client C" in picker.text
    assert f'value="{other.id}"' in picker.text and f'value="{contact.id}"' in picker.text
    assert _acting_for(client) == "Client A"
    assert "Client A · switch" in client.get("/portal/").text  # the nav offers the switch on every page

    switched = client.post("/portal/company?next=/portal/account", data={"contact_id": other.id})
    assert switched.status_code == 303 and switched.location == "/portal/account"
    assert _acting_for(client) == "Client C"
    db.session.expire_all()
    assert db.session.get(Contact, other.id).last_login_at is not None
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "contact.switched_company")).scalar_one()
    assert (event.object_id, event.details["from_contact"], event.actor_id) == (other.id, contact.id, contact.id)

    client.post("/portal/company", data={"contact_id": contact.id})
    assert _acting_for(client) == "Client A"


def test_a_picker_post_for_another_person_or_organization_is_refused(client, world: World) -> None:
    contact, colleague = world.client_a.contacts
    second_company(world, contact)
    other_org = make_client(world.org_b, "Client D").contacts[0]
    other_org.email = contact.email  # the same email, another organization: another person for the portal
    no_access = make_client(world.org_a, "Client E").contacts[0]
    no_access.email, no_access.portal_access = contact.email, False
    db.session.commit()
    portal_login(client, contact)
    for target in (colleague.id, other_org.id, no_access.id, 999999):
        response = client.post("/portal/company", data={"contact_id": target})
        assert response.status_code == 404, target
        assert _acting_for(client) == "Client A"
    picker = client.get("/portal/company").text
    assert "Client D" not in picker and "Client E" not in picker and colleague.name not in picker
    assert client.post("/portal/company", data={"contact_id": "x"}).status_code == 400
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "contact.switched_company")).first() is None


def test_a_person_of_one_company_goes_straight_in(client, world: World) -> None:
    contact = world.client_a.contacts[0]
    response = _press_link_button(client, contact)
    assert response.status_code == 303 and response.location == "/portal/"
    assert "switch" not in client.get("/portal/").text
    assert client.get("/portal/company").status_code == 200  # lists just their company


def test_revoked_access_at_one_company_leaves_it_out_of_the_picker(client, world: World) -> None:
    contact = world.client_a.contacts[0]
    other = second_company(world, contact)
    portal_login(client, contact)
    other.portal_access = False
    db.session.commit()
    assert "Client C" not in client.get("/portal/company").text
    assert client.post("/portal/company", data={"contact_id": other.id}).status_code == 404
