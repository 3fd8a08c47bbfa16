"""`flask demo` gives one client a portal contact and prints how to sign in as them."""

from __future__ import annotations

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Contact
from invoicing.services.demo import DEMO_PORTAL_EMAIL, DEMO_PORTAL_PASSWORD
from tests.portal.support import link_from_outbox, password_sign_in


def test_the_demo_prints_a_portal_contact_who_can_sign_in(runner, app, client) -> None:
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert f"http://billing.test/portal/login\n  email:    {DEMO_PORTAL_EMAIL}" in result.output
    assert DEMO_PORTAL_PASSWORD in result.output and "Outbox" in result.output
    portal = db.session.execute(select(Contact).where(Contact.portal_access.is_(True))).scalars().all()
    assert [(c.email, c.client.name) for c in portal] == [(DEMO_PORTAL_EMAIL, "Acme Corporation")]

    response = password_sign_in(client, DEMO_PORTAL_EMAIL, DEMO_PORTAL_PASSWORD)
    assert response.status_code == 303 and "Acme Corporation" in client.get("/portal/").text
    client.post("/portal/logout")
    client.post("/portal/login", data={"email": DEMO_PORTAL_EMAIL})
    assert client.post(link_from_outbox(DEMO_PORTAL_EMAIL)).status_code == 303
    assert "Acme Corporation" in client.get("/portal/").text
