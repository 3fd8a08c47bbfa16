"""Helpers for the saved-card and autopay tests: save a card the way a contact does (the hosted setup page of
the sandbox or of the Stripe test server, then the return page)."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Client, PaymentMethod

BASE = "http://billing.test"


def local(url: str) -> str:
    assert url.startswith(BASE), url
    return url.removeprefix(BASE)


def open_sandbox_setup(client: FlaskClient) -> str:
    """Press "Add a card": the path of the sandbox's setup page it redirects to."""
    response = client.post("/portal/payment-methods/add")
    assert response.status_code == 303, response.text
    path = local(response.headers["Location"])
    assert path.startswith("/pay/sandbox/setup/cs_sbx_setup_")
    return path


def save_in_sandbox(client: FlaskClient, number: str = "4242 4242 4242 4242", expiry: str = "12 / 34") -> str:
    """Add a card on the sandbox's setup page; returns the return page path (not visited yet)."""
    response = client.post(open_sandbox_setup(client), data={"card": number, "expiry": expiry})
    assert response.status_code == 303, response.text
    back = local(response.headers["Location"])
    assert back.startswith("/portal/payment-methods/added?session_id=cs_sbx_setup_")
    return back


def add_sandbox_card(client: FlaskClient, number: str = "4242 4242 4242 4242",
                     expiry: str = "12 / 34") -> PaymentMethod:
    back = client.get(save_in_sandbox(client, number, expiry))
    assert back.status_code == 303 and back.headers["Location"] == "/portal/payment-methods"
    return newest_card()


def save_at_stripe(client: FlaskClient, stripe_server: Any, card: str = "5555555555554444",
                   expiry: str = "04 / 31") -> str:
    """Add a card on the Stripe test server's setup-mode Checkout page; returns the return page path."""
    response = client.post("/portal/payment-methods/add")
    assert response.status_code == 303, response.text
    page = response.headers["Location"]
    assert page.startswith(f"{stripe_server.base_url}/_config/setup/cs_test_"), page
    status, headers, body = stripe_server.request("POST", page.removeprefix(stripe_server.base_url) + "/save",
                                                  data={"card": card, "expiry": expiry})
    assert status == 303, body
    return local(headers["Location"])


def cards_of(client: Client) -> list[PaymentMethod]:
    db.session.rollback()
    return list(db.session.scalars(select(PaymentMethod).where(PaymentMethod.client_id == client.id)
                                   .order_by(PaymentMethod.id)))


def newest_card() -> PaymentMethod:
    db.session.rollback()
    card = db.session.scalars(select(PaymentMethod).order_by(PaymentMethod.id.desc())).first()
    assert card is not None
    return card


def fresh_client(client: Client) -> Client:
    db.session.rollback()
    found = db.session.get(Client, client.id)
    assert found is not None
    return found


def audits(action: str) -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))
