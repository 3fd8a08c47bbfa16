"""Staff open and close the portal for a contact: the contact form's box, an emailed invitation (a sign-in link
valid 7 days), revocation that ends live sessions; the client page shows access and last sign-in; the outbox
shows emails holding live sign-in links to admins only. All of it audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Contact, OutboxEmail, PortalLogin
from invoicing.services.portal.auth import issue_magic_link
from tests.conftest import World, login, make_user, portal_login
from tests.portal.support import choose_password, link_from_outbox, password_sign_in


def _actions(contact_id: int) -> list[str]:
    return list(db.session.execute(select(AuditEvent.action).where(
        AuditEvent.object_type == "contact", AuditEvent.object_id == contact_id).order_by(AuditEvent.id)).scalars())


def _edit(client, world: World, contact: Contact, **values: str):  # noqa: ANN001, ANN202
    data = {"name": contact.name, "email": contact.email, **values}
    return client.post(f"/admin/clients/{world.client_a.id}/contacts/{contact.id}", data=data)


def test_the_portal_box_really_opens_and_closes_the_portal(app, client, world: World) -> None:
    contact = world.client_a.contacts[0]
    login(client, world.alice)
    assert _edit(client, world, contact).status_code == 303  # box unticked
    visitor = app.test_client()
    visitor.post("/portal/login", data={"email": contact.email})
    assert db.session.execute(select(OutboxEmail)).first() is None  # no access: no link

    assert _edit(client, world, contact, portal_access="y").status_code == 303
    visitor.post("/portal/login", data={"email": contact.email})
    assert visitor.post(link_from_outbox(contact.email)).status_code == 303
    assert visitor.get("/portal/").status_code == 200
    choose_password(visitor)

    assert _edit(client, world, contact).status_code == 303  # unticked again: the live session ends
    assert visitor.get("/portal/").status_code == 303
    db.session.expire_all()
    row = db.session.get(Contact, contact.id)
    assert (row.portal_access, row.password_hash) == (False, None)
    assert _edit(client, world, contact, portal_access="y").status_code == 303
    assert visitor.get("/portal/").status_code == 303  # ticking it again does not revive the old session
    assert password_sign_in(visitor, contact.email).status_code == 400  # nor the password
    assert _actions(contact.id) == ["contact.updated", "contact.portal_revoked", "contact.updated",
                                    "contact.portal_enabled", "contact.signed_in", "contact.password_set",
                                    "contact.updated",
                                    "contact.portal_revoked", "contact.updated", "contact.portal_enabled"]


def test_a_new_email_ends_the_sessions_and_drops_the_password(app, client, world: World) -> None:
    contact = world.client_a.contacts[0]
    visitor = app.test_client()
    portal_login(visitor, contact)
    choose_password(visitor)
    login(client, world.alice)
    assert _edit(client, world, contact, email="new.person@clienta.test", portal_access="y").status_code == 303
    assert visitor.get("/portal/").status_code == 303
    assert password_sign_in(visitor, "new.person@clienta.test").status_code == 400


def test_an_invitation_emails_a_link_valid_seven_days_that_signs_in(app, client, world: World) -> None:
    contact = world.client_a.contacts[0]
    contact.portal_access = False
    db.session.commit()
    login(client, world.alice)
    before = datetime.now(UTC)
    response = client.post(f"/admin/clients/{world.client_a.id}/contacts/{contact.id}/portal-invitation")
    assert response.status_code == 303
    page = client.get(response.location)
    assert f"Portal invitation emailed to {contact.email}" in page.text and "7 days" in page.text
    email = db.session.execute(select(OutboxEmail)).scalar_one()
    assert (email.kind, email.to_addr, email.organization_id) == ("portal_invitation", contact.email, world.org_a.id)
    assert "Org A" in email.subject and "Client A" in email.text_body and "7 days" in email.text_body
    login_row = db.session.execute(select(PortalLogin)).scalar_one()
    assert timedelta(days=7) <= login_row.expires_at - before < timedelta(days=7, minutes=1)
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).portal_access is True  # inviting turns access on

    link = link_from_outbox(contact.email, kind="portal_invitation")
    visitor = app.test_client()
    assert visitor.get(link).status_code == 200 and visitor.get("/portal/").status_code == 303  # GET alone: no
    signed = visitor.post(link)
    assert signed.status_code == 303 and signed.location == "/portal/account"  # to choose a password
    assert "Choose a password" in visitor.get("/portal/account").text
    assert _actions(contact.id) == ["contact.portal_enabled", "contact.portal_invited", "contact.signed_in"]


def test_staff_of_another_organization_cannot_invite_or_revoke(client, world: World) -> None:
    contact = world.client_a.contacts[0]
    login(client, world.bob)
    base = f"/admin/clients/{world.client_a.id}/contacts/{contact.id}"
    assert client.post(f"{base}/portal-invitation").status_code == 404
    assert client.post(f"{base}/revoke-portal").status_code == 404
    assert db.session.execute(select(OutboxEmail)).first() is None
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).portal_access is True


def test_revoking_access_ends_the_live_session_links_and_password(app, client, world: World) -> None:
    contact = world.client_a.contacts[0]
    visitor = app.test_client()
    portal_login(visitor, contact)
    choose_password(visitor)
    pending = issue_magic_link(contact.id, now=datetime.now(UTC))
    login(client, world.alice)
    response = client.post(f"/admin/clients/{world.client_a.id}/contacts/{contact.id}/revoke-portal")
    assert response.status_code == 303
    assert "can no longer use the portal" in client.get(response.location).text
    assert visitor.get("/portal/").status_code == 303
    db.session.expire_all()
    row = db.session.get(Contact, contact.id)
    assert (row.portal_access, row.session_version, row.password_hash) == (False, 2, None)
    assert _actions(contact.id)[-1] == "contact.portal_revoked"
    # access given back: the old link and password still do not work
    row.portal_access = True
    db.session.commit()
    assert visitor.post(f"/portal/login/{pending}").status_code == 410
    assert password_sign_in(visitor, contact.email).status_code == 400
    again = client.post(f"/admin/clients/{world.client_a.id}/contacts/{world.client_a.contacts[1].id}/revoke-portal")
    assert again.status_code == 303
    twice = client.post(f"/admin/clients/{world.client_a.id}/contacts/{world.client_a.contacts[1].id}/revoke-portal")
    assert twice.status_code == 422 and "has no portal access" in twice.text


def test_the_client_page_shows_access_and_last_sign_in(app, client, world: World) -> None:
    first, second = world.client_a.contacts
    portal_login(app.test_client(), first)
    second.portal_access = False
    db.session.commit()
    login(client, world.alice)
    page = client.get(f"/admin/clients/{world.client_a.id}").text
    items = {item.split("&lt;", 1)[0].strip(): item for item in page.split('<li class="contact">')[1:]}
    assert "Portal access · last sign-in" in items[first.name] and "Revoke access" in items[first.name]
    assert "No portal access" in items[second.name] and "Revoke access" not in items[second.name]
    assert "Email portal invitation" in items[second.name]


def test_only_admins_read_emails_with_live_sign_in_links(app, client, world: World) -> None:
    contact = world.client_a.contacts[0]
    app.test_client().post("/portal/login", data={"email": contact.email})
    login(client, world.alice)
    client.post(f"/admin/clients/{world.client_a.id}/contacts/{contact.id}/portal-invitation")
    emails = db.session.execute(select(OutboxEmail).order_by(OutboxEmail.id)).scalars().all()
    assert [e.kind for e in emails] == ["portal_sign_in", "portal_invitation"]
    for email in emails:
        assert client.get(f"/admin/outbox/{email.id}").status_code == 200
    staff = app.test_client()
    login(staff, make_user(world.org_a, "sam@a.test", "staff"))
    for email in emails:
        assert staff.get(f"/admin/outbox/{email.id}").status_code == 404
    assert "Sign in to Org A" in staff.get("/admin/outbox").text  # listed, not readable


def test_a_contact_who_signed_in_can_still_be_removed(client, world: World) -> None:
    contact = world.client_a.contacts[0]
    portal_login(client.application.test_client(), contact)
    issue_magic_link(contact.id, now=datetime.now(UTC))
    login(client, world.alice)
    response = client.post(f"/admin/clients/{world.client_a.id}/contacts/{contact.id}/remove")
    assert response.status_code == 303
    assert db.session.get(Contact, contact.id) is None
    assert db.session.execute(select(PortalLogin)).first() is None
