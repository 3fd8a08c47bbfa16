"""The superadmin's organizations: create, rename, public URL, archive and un-archive, the first admin; what
archiving does to staff, pay links and the scheduler; links on an organization's own host."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import current_app
from sqlalchemy import func, select

import invoicing.mail as mail
from invoicing.extensions import db
from invoicing.models import AuditEvent, Organization, OutboxEmail, User
from invoicing.services.site import Site
from tests.conftest import NOW, PASSWORD, login, make_invoice, make_org
from tests.test_pdf import pdf_text

ACME = "https://billing.acme.test"
NEW_PASSWORD = "my own long secret"


def org_named(name: str) -> Organization | None:
    db.session.rollback()
    return db.session.execute(select(Organization).where(Organization.name == name)).scalar_one_or_none()


def fresh(org: Organization) -> Organization:
    db.session.rollback()
    found = db.session.get(Organization, org.id)
    assert found is not None
    return found


def audit(org: Organization) -> list[tuple[str, Any]]:
    return [(e.action, e.details) for e in db.session.execute(
        select(AuditEvent).where(AuditEvent.object_type == "organization", AuditEvent.object_id == org.id)
        .order_by(AuditEvent.id)).scalars()]


def users_with_email(email: str) -> int:
    return db.session.execute(select(func.count()).select_from(User).where(User.email == email)).scalar_one()


def organization_count() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(Organization)).scalar_one()


def send(client, invoice_id: int, key: str) -> None:
    response = client.post(f"/admin/invoices/{invoice_id}/send", data={"send-to": "", "send-key": key})
    assert response.status_code == 303, response.text


def pay_path(text: str, host: str) -> str:
    [token] = re.findall(rf"{re.escape(host)}/pay/([A-Za-z0-9_.\-]+)", text)
    return f"/pay/{token}"


def test_it_lets_a_superadmin_create_rename_archive_and_unarchive_an_organization(client, world):
    login(client, world.root)

    created = client.post("/admin/organizations", data={"name": "  Acme  ", "public_url": "HTTPS://Billing.Acme.test/"})

    acme = org_named("Acme")
    assert acme is not None and acme.public_url == ACME and not acme.is_archived
    assert created.status_code == 303 and created.location == f"/admin/organizations/{acme.id}"
    page = client.get(created.location).text
    assert "Acme created" in page and ACME in page
    assert "Acme" in client.get("/admin/organization").text  # the superadmin's list

    renamed = client.post(f"/admin/organizations/{acme.id}", data={"name": "Acme Ltd", "public_url": ACME})
    assert renamed.status_code == 303 and fresh(acme).name == "Acme Ltd"

    archived = client.post(f"/admin/organizations/{acme.id}/archive", data={"archived": "1"}, follow_redirects=True)
    assert "Acme Ltd is archived" in archived.text and "Un-archive" in archived.text
    assert fresh(acme).archived_at is not None

    restored = client.post(f"/admin/organizations/{acme.id}/archive", data={"archived": "0"}, follow_redirects=True)
    assert "Acme Ltd is active again" in restored.text
    assert fresh(acme).archived_at is None and fresh(acme).public_url == ACME
    assert [action for action, _ in audit(acme)] == [
        "organization.created", "organization.updated", "organization.archived", "organization.unarchived"]
    assert audit(acme)[1][1] == {"changes": {"name": ["Acme", "Acme Ltd"]}}
    actors = db.session.execute(select(AuditEvent.actor_label).where(
        AuditEvent.object_type == "organization", AuditEvent.object_id == acme.id))
    assert set(actors.scalars()) == {"root@ops.test"}


def test_it_invites_the_first_admin_with_a_link_on_the_organizations_own_address(app, client, world, smtp):
    login(client, world.root)
    client.post("/admin/organizations", data={"name": "Acme", "public_url": ACME})
    acme = org_named("Acme")
    assert acme is not None

    response = client.post(f"/admin/organizations/{acme.id}/invite",
                           data={"invite-email": "Boss@Acme.test", "invite-name": "The Boss"})

    assert response.status_code == 303
    user = db.session.execute(select(User).where(User.email == "boss@acme.test")).scalar_one()
    assert (user.role, user.organization_id, user.is_invited) == ("admin", acme.id, True)
    [email] = db.session.execute(select(OutboxEmail)).scalars().all()
    assert (email.kind, email.to_addr, email.organization_id) == ("staff_invite", "boss@acme.test", acme.id)
    mail.deliver_due(now=datetime.now(UTC))
    [message] = smtp.wait_for(1)
    body = message.get_body(("plain",))
    assert body is not None
    [link] = re.findall(r"\S+/admin/invite/[A-Za-z0-9_.\-]+", body.get_content())
    assert link.startswith(f"{ACME}/admin/invite/") and "billing.test/" not in body.get_content()

    newcomer = app.test_client()  # the link opens on the organization's own host
    with app.app_context():
        path = link.removeprefix(ACME)
        assert newcomer.get(path, base_url=ACME).status_code == 200
        accepted = newcomer.post(path, base_url=ACME, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert accepted.status_code == 303
    db.session.rollback()
    assert not db.session.get(User, user.id).is_invited


@pytest.mark.parametrize("who", ["anonymous", "alice", "bob"])
def test_it_answers_404_to_everyone_but_a_superadmin(client, world, who):
    if who != "anonymous":
        login(client, getattr(world, who))
    org = world.org_b.id
    before = organization_count()

    answers = [
        client.post("/admin/organizations", data={"name": "Sneaky"}),
        client.get(f"/admin/organizations/{org}"),
        client.post(f"/admin/organizations/{org}", data={"name": "Renamed", "public_url": ACME}),
        client.post(f"/admin/organizations/{org}/archive", data={"archived": "1"}),
        client.post(f"/admin/organizations/{org}/invite", data={"invite-email": "x@x.test"}),
    ]

    assert [answer.status_code for answer in answers] == [404] * 5
    assert "We could not find anything at this address" in answers[1].text
    org_b = fresh(world.org_b)
    assert organization_count() == before and (org_b.name, org_b.public_url, org_b.archived_at) == ("Org B", None, None)
    assert users_with_email("x@x.test") == 0


def test_it_stops_an_archived_organizations_staff_and_pay_links_until_it_is_unarchived(app, client, world,
                                                                                       time_machine):
    time_machine.move_to(NOW, tick=True)  # the pay link is valid on the invoices' dates
    invoice = make_invoice(world.client_a, status="open")
    link = Site.from_config(current_app.config).pay_url(invoice).removeprefix("http://billing.test")
    alice = app.test_client()
    with app.app_context():  # each person's requests in a context of their own (Flask-Login caches on g)
        login(alice, world.alice)  # signed in before the archive
    login(client, world.root)

    client.post(f"/admin/organizations/{world.org_a.id}/archive", data={"archived": "1"})

    with app.app_context():
        assert alice.get("/admin/").status_code == 302  # her session ends with the archive
        refused = app.test_client().post("/admin/login", data={"email": "alice@a.test", "password": PASSWORD})
        assert refused.status_code == 403 and "Org A is archived: its staff can no longer log in" in refused.text
        wrong = app.test_client().post("/admin/login", data={"email": "alice@a.test", "password": "not her password"})
        assert wrong.status_code == 400 and "archived" not in wrong.text  # said only to the right password
        gone = app.test_client().get(link)
        assert gone.status_code == 410 and "Org A is no longer accepting payments" in gone.text
        assert app.test_client().post(link, data={"amount": "270.00"}).status_code == 410
    with app.app_context():
        login(app.test_client(), world.bob)  # another organization's staff are not affected

    client.post(f"/admin/organizations/{world.org_a.id}/archive", data={"archived": "0"})

    with app.app_context():
        login(app.test_client(), world.alice)
        assert app.test_client().get(link).status_code == 200


def test_it_holds_an_archived_organizations_emails_and_sends_them_once_unarchived(client, world, smtp):
    invoice_a = make_invoice(world.client_a, status="open")
    invoice_b = make_invoice(world.client_b, status="open")
    login(client, world.root)
    send(client, invoice_a.id, "a")
    send(client, invoice_b.id, "b")
    client.post(f"/admin/organizations/{world.org_a.id}/archive", data={"archived": "1"})

    report = mail.deliver_due(now=datetime.now(UTC))

    assert report.sent == 1 and [m["To"] for m in smtp.wait_for(1)] == ["clientb@clients.test"]
    db.session.rollback()
    statuses = dict(db.session.execute(select(OutboxEmail.organization_id, OutboxEmail.status)).all())
    assert statuses == {world.org_a.id: "queued", world.org_b.id: "sent"}

    client.post(f"/admin/organizations/{world.org_a.id}/archive", data={"archived": "0"})

    assert mail.deliver_due(now=datetime.now(UTC)).sent == 1
    assert [m["To"] for m in smtp.wait_for(2)][1] == "clienta@clients.test"


def test_it_sends_pay_links_on_the_organizations_own_host_and_answers_only_known_hosts(app, client, world, smtp,
                                                                                       time_machine):
    time_machine.move_to(NOW, tick=True)
    invoice = make_invoice(world.client_a)
    login(client, world.root)
    client.post(f"/admin/organizations/{world.org_a.id}", data={"name": "Org A", "public_url": ACME})
    send(client, invoice.id, "k")

    mail.deliver_due(now=datetime.now(UTC))
    [message] = smtp.wait_for(1)
    text = message.get_body(("plain",)).get_content()
    path = pay_path(text, ACME)
    assert "billing.test/pay/" not in text
    [attachment] = [part for part in message.iter_attachments() if part.get_content_type() == "application/pdf"]
    assert f"{ACME}{path}" in pdf_text(attachment.get_content()).replace("\n", "")
    assert f'value="{ACME}{path}"' in client.get(f"/admin/invoices/{invoice.id}").text  # the link staff copy

    visitor = app.test_client()
    page = visitor.get(path, base_url=ACME)
    assert page.status_code == 200 and "2026-0001" in page.text
    assert visitor.get(path, base_url="http://billing.test").status_code == 200  # BASE_URL still answers
    stranger = visitor.get(path, base_url="https://evil.test")
    assert stranger.status_code == 404 and "2026-0001" not in stranger.text
    assert "This server does not answer at this address" in stranger.text
    assert visitor.get("/admin/login", base_url="https://evil.test").status_code == 404
    assert visitor.get("/healthz", base_url="https://evil.test").status_code == 200  # container health checks


def test_it_accepts_http_public_urls_only_while_base_url_is_http(client, world, monkeypatch):
    login(client, world.root)
    assert client.post("/admin/organizations", data={"name": "Plain", "public_url": "http://plain.test:8080"}
                       ).status_code == 303
    assert org_named("Plain").public_url == "http://plain.test:8080"

    monkeypatch.setitem(current_app.config, "BASE_URL", "https://billing.test")
    response = client.post("/admin/organizations", data={"name": "Secure", "public_url": "http://secure.test"})

    assert response.status_code == 400 and "must be an absolute https:// address" in response.text
    assert org_named("Secure") is None


BAD_URLS = [
    ("billing.acme.test", "must be an absolute https:// (or http://) address"),
    ("ftp://billing.acme.test", "must be an absolute https:// (or http://) address"),
    ("https://billing.acme.test/pay", "without a path, query or fragment"),
    ("https://billing.acme.test?x=1", "without a path, query or fragment"),
    ("https://billing.acme.test#top", "without a path, query or fragment"),
    ("https://me@billing.acme.test", "is not a valid site address"),
    ("https://billing_acme.test", "is not a valid site address"),
    ("https://billing.acme.test:99999", "is not a valid site address"),
    ("http://billing.test", "the app&#39;s own address (BASE_URL)"),
    ("https://ORG-B.test", "Org B already uses https://org-b.test"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_it_refuses_a_bad_public_url_with_a_clear_message_and_saves_nothing(client, world, url, message):
    db.session.get(Organization, world.org_b.id).public_url = "https://org-b.test"
    db.session.commit()
    login(client, world.root)
    before = organization_count()

    created = client.post("/admin/organizations", data={"name": "Acme", "public_url": url})
    updated = client.post(f"/admin/organizations/{world.org_a.id}", data={"name": "Renamed", "public_url": url})

    assert created.status_code == 400 and message in created.text
    assert updated.status_code == 400 and message in updated.text
    assert organization_count() == before and org_named("Acme") is None
    org_a = fresh(world.org_a)
    assert (org_a.name, org_a.public_url) == ("Org A", None)
    assert [action for action, _ in audit(org_a)] == ["organization.created"]


def test_it_refuses_to_invite_into_an_archived_organization(client, world):
    acme = make_org("Acme")
    login(client, world.root)
    client.post(f"/admin/organizations/{acme.id}/archive", data={"archived": "1"})

    response = client.post(f"/admin/organizations/{acme.id}/invite", data={"invite-email": "boss@acme.test"})

    assert response.status_code == 400 and "Acme is archived: un-archive it before inviting anyone" in response.text
    assert db.session.execute(select(func.count()).select_from(OutboxEmail)).scalar() == 0
    assert users_with_email("boss@acme.test") == 0
