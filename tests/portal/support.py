"""Helpers for the portal tests: links read from the outbox, a second company for the same person, passwords."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Contact, OutboxEmail
from tests.conftest import World, make_client

NEW_PASSWORD = "a long portal password"


def link_from_outbox(to: str, kind: str = "portal_sign_in") -> str:
    """The path of the sign-in link in the newest email to this address (which must be of this kind)."""
    email = db.session.execute(select(OutboxEmail).where(OutboxEmail.to_addr == to)
                               .order_by(OutboxEmail.id.desc())).scalars().first()
    assert email is not None and email.kind == kind, email and email.kind
    match = re.search(r"http://billing\.test(/portal/login/[\w-]+(?:\?next=[\w/%]+)?)", email.text_body)
    assert match, email.text_body
    return match.group(1)


def second_company(world: World, contact: Contact, name: str = "Client C") -> Contact:
    """Another client of the same organization where the same person (same email) has portal access."""
    other = make_client(world.org_a, name)
    row = other.contacts[0]
    row.email = contact.email
    db.session.commit()
    return row


def choose_password(client: FlaskClient, password: str = NEW_PASSWORD, current: str = "") -> int:
    """Set the password on the account page (signed in by a link a moment ago: no current password needed)."""
    response = client.post("/portal/account", data={"current_password": current, "new_password": password,
                                                    "confirm": password})
    return response.status_code


def password_sign_in(client: FlaskClient, email: str, password: str = NEW_PASSWORD, **kwargs: object):  # noqa: ANN201
    return client.post("/portal/login", data={"email": email, "password": password}, **kwargs)
