"""CSRF on every portal sign-in form and on the staff portal actions: a POST without the token changes
nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Contact, OutboxEmail
from invoicing.services.portal.auth import issue_magic_link
from tests.conftest import World, login, portal_login
from tests.portal.support import second_company


def test_every_portal_form_needs_its_csrf_token(app, client, world: World) -> None:
    contact = world.client_a.contacts[0]
    other = second_company(world, contact)
    portal_login(client, contact)
    token = issue_magic_link(contact.id, now=datetime.now(UTC))
    stranger = app.test_client()
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        for page in ("/portal/account", "/portal/company"):
            assert 'name="csrf_token"' in client.get(page).text
        assert stranger.get("/portal/login").text.count('name="csrf_token"') == 2  # both ways of signing in
        assert 'name="csrf_token"' in stranger.get(f"/portal/login/{token}").text
        assert stranger.post("/portal/login", data={"email": contact.email}).status_code == 400
        assert stranger.post("/portal/login", data={"email": contact.email, "password": "x" * 12}).status_code == 400
        assert stranger.post(f"/portal/login/{token}").status_code == 400
        assert client.post("/portal/account", data={"new_password": "x" * 12, "confirm": "x" * 12}).status_code == 400
        assert client.post("/portal/company", data={"contact_id": other.id}).status_code == 400
        assert client.post("/portal/logout").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert stranger.get("/portal/").status_code == 303
    assert "<h1>Client A</h1>" in client.get("/portal/").text  # still signed in, still acting for Client A
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).password_hash is None
    assert db.session.execute(select(OutboxEmail)).first() is None
    assert stranger.post(f"/portal/login/{token}").status_code == 303  # the link was not used up


def test_staff_portal_actions_need_their_csrf_token(app, client, world: World) -> None:
    contact = world.client_a.contacts[0]
    login(client, world.alice)
    base = f"/admin/clients/{world.client_a.id}/contacts/{contact.id}"
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post(f"{base}/portal-invitation").status_code == 400
        assert client.post(f"{base}/revoke-portal").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).portal_access is True
    assert db.session.execute(select(OutboxEmail)).first() is None
