"""Portal sign-in by magic link: GET never signs in, one use, 15 minutes, sessions end when access does."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Contact, OutboxEmail, PortalLogin
from invoicing.services.db import atomic
from invoicing.services.portal.auth import issue_magic_link
from tests.conftest import World, portal_login


def _link_from_outbox(to: str) -> str:
    email = db.session.execute(select(OutboxEmail).where(OutboxEmail.to_addr == to)
                               .order_by(OutboxEmail.id.desc())).scalars().first()
    assert email is not None and email.kind == "portal_sign_in"
    match = re.search(r"http://billing\.test(/portal/login/[\w-]+)", email.text_body)
    assert match, email.text_body
    return match.group(1)


def test_magic_link_round_trip(client: FlaskClient, world: World) -> None:
    contact = world.client_a.contacts[0]
    response = client.post("/portal/login", data={"email": contact.email.upper()})
    assert response.status_code == 200 and "sign-in link is on its way" in response.text
    link = _link_from_outbox(contact.email)
    stored = db.session.execute(select(PortalLogin)).scalar_one()
    assert link.rsplit("/", 1)[1] not in stored.token_hash  # only the hash is stored

    page = client.get(link)  # what a mail scanner does: nothing happens
    assert page.status_code == 200 and "Sign in" in page.text
    assert client.get("/portal/").status_code == 303
    db.session.expire_all()
    assert db.session.get(PortalLogin, stored.id).used_at is None

    signed = client.post(link)
    assert signed.status_code == 303 and signed.location.endswith("/portal/")
    home = client.get("/portal/")
    assert home.status_code == 200 and "Client A" in home.text
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).last_login_at is not None
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "contact.signed_in")).scalar_one()

    other = client.application.test_client()
    again = other.post(link)  # single use
    assert again.status_code == 410 and "cannot be used" in again.text
    assert other.get("/portal/").status_code == 303


def test_unknown_email_gets_the_same_answer_and_no_mail(client: FlaskClient, world: World) -> None:
    response = client.post("/portal/login", data={"email": "nobody@nowhere.test"})
    assert response.status_code == 200 and "sign-in link is on its way" in response.text
    assert db.session.execute(select(OutboxEmail)).first() is None


def test_expired_link_is_refused(client: FlaskClient, world: World) -> None:
    contact = world.client_a.contacts[0]
    token = issue_magic_link(contact.id, now=datetime.now(UTC) - timedelta(minutes=16))
    assert client.get(f"/portal/login/{token}").status_code == 410
    assert client.post(f"/portal/login/{token}").status_code == 410
    assert client.get("/portal/").status_code == 303


def test_revoking_access_ends_the_live_session(client: FlaskClient, world: World) -> None:
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    assert client.get("/portal/").status_code == 200
    with atomic():
        row = db.session.get(Contact, contact.id)
        row.portal_access = False
    assert client.get("/portal/").status_code == 303


def test_a_new_session_version_ends_old_sessions(client: FlaskClient, world: World) -> None:
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    with atomic():
        db.session.get(Contact, contact.id).session_version += 1
    assert client.get("/portal/").status_code == 303


def test_staff_session_is_not_a_portal_session(client: FlaskClient, world: World) -> None:
    from tests.conftest import login

    login(client, world.alice)
    assert client.get("/portal/").status_code == 303
