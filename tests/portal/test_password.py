"""Password sign-in: a contact chooses a password on the account page and signs in with it; wrong answers all
read the same and cost one hash check; changing it ends every other session of the person."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Contact
from invoicing.services.portal import auth
from tests.conftest import World, portal_login
from tests.portal.support import NEW_PASSWORD, choose_password, password_sign_in, second_company

WRONG = "Wrong email or password."


def test_it_signs_in_with_a_chosen_password(client, world: World) -> None:
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    page = client.get("/portal/account")
    assert page.status_code == 200 and "Choose a password" in page.text and "Current password" not in page.text
    assert choose_password(client) == 303
    db.session.expire_all()
    stored = db.session.get(Contact, contact.id).password_hash
    assert stored and NEW_PASSWORD not in stored
    assert client.get("/portal/").status_code == 200  # the session that changed it stays signed in

    client.post("/portal/logout")
    assert client.get("/portal/").status_code == 303
    response = password_sign_in(client, contact.email.upper())
    assert response.status_code == 303 and response.location == "/portal/"
    home = client.get("/portal/")
    assert home.status_code == 200 and "Client A" in home.text
    methods = db.session.execute(select(AuditEvent.details).where(AuditEvent.action == "contact.signed_in")
                                 .order_by(AuditEvent.id)).scalars().all()
    assert [m["method"] for m in methods] == ["magic_link", "password"]
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "contact.password_set")).scalar_one()


def test_it_answers_every_failure_the_same_with_one_hash_check(client, world: World, monkeypatch) -> None:
    contact, without_password = world.client_a.contacts
    portal_login(client, contact)
    choose_password(client)
    client.post("/portal/logout")
    checks: list[str] = []
    real = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda h, p: checks.append(h) or real(h, p))

    answers = []
    for email, password in [(contact.email, "not the password"), (without_password.email, NEW_PASSWORD),
                            ("nobody@nowhere.test", NEW_PASSWORD), (world.client_b.contacts[0].email, NEW_PASSWORD)]:
        checks.clear()
        response = password_sign_in(client, email, password)
        answers.append((response.status_code, WRONG in response.text, len(checks)))
        assert client.get("/portal/").status_code == 303
    assert answers == [(400, True, 1)] * 4
    # the page does not echo which of the cases it was
    bodies = {password_sign_in(client, e, "x" * 12).text.replace(e, "EMAIL")
              for e in ("nobody@nowhere.test", contact.email)}
    assert len(bodies) == 1


def test_it_rate_limits_per_email_for_passwords_and_links(client, world: World) -> None:
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    choose_password(client)
    client.post("/portal/logout")
    for _ in range(4):
        assert password_sign_in(client, contact.email, "wrong password!").status_code == 400
    assert client.post("/portal/login", data={"email": contact.email}).status_code == 200  # a link: the 5th
    blocked = password_sign_in(client, contact.email.upper())  # the right password, too late
    assert blocked.status_code == 429 and "Too many attempts" in blocked.text
    assert client.post("/portal/login", data={"email": contact.email}).status_code == 429
    assert client.get("/portal/").status_code == 303
    assert password_sign_in(client, "someone@else.test").status_code == 400  # another email is not blocked


def test_it_rate_limits_per_ip_across_sign_in_forms_and_links(app, world: World) -> None:
    contact = world.client_a.contacts[0]
    crowd = app.test_client()
    for n in range(30):
        assert crowd.post("/portal/login", data={"email": f"guess{n}@x.test", "password": "p" * 12}).status_code == 400
    assert crowd.post("/portal/login", data={"email": "guess99@x.test"}).status_code == 429
    token = auth.issue_magic_link(contact.id, now=datetime.now(UTC))
    assert crowd.post(f"/portal/login/{token}").status_code == 429  # the link's button counts too
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert elsewhere.post(f"/portal/login/{token}").status_code == 303


def test_changing_the_password_ends_every_other_session(app, client, world: World) -> None:
    contact = world.client_a.contacts[0]
    other_company = second_company(world, contact)
    laptop, phone, elsewhere = client, app.test_client(), app.test_client()
    portal_login(laptop, contact)
    portal_login(phone, contact)
    portal_login(elsewhere, other_company)
    assert choose_password(laptop) == 303
    assert laptop.get("/portal/").status_code == 200
    assert phone.get("/portal/").status_code == 303
    assert elsewhere.get("/portal/").status_code == 303  # the same person acting for the other company
    db.session.expire_all()
    rows = [db.session.get(Contact, contact.id), db.session.get(Contact, other_company.id)]
    assert rows[0].password_hash == rows[1].password_hash is not None  # one password per person per organization
    assert [r.session_version for r in rows] == [1, 1]
    assert len(db.session.execute(select(AuditEvent).where(AuditEvent.action == "contact.password_set"))
               .scalars().all()) == 2
    # and the password signs in as the person: the picker comes first
    laptop.post("/portal/logout")
    response = password_sign_in(laptop, contact.email)
    assert response.status_code == 303 and response.location.startswith("/portal/company")


def test_a_password_session_needs_the_current_password_to_change_it(client, world: World) -> None:
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    choose_password(client)
    client.post("/portal/logout")
    password_sign_in(client, contact.email)
    assert "Current password" in client.get("/portal/account").text
    refused = client.post("/portal/account", data={"current_password": "a wrong guess", "new_password": "x" * 12,
                                                   "confirm": "x" * 12})
    assert refused.status_code == 400 and "That is not your current password." in refused.text
    db.session.expire_all()
    version = db.session.get(Contact, contact.id).session_version
    assert choose_password(client, "x" * 12, current=NEW_PASSWORD) == 303
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).session_version == version + 1
    client.post("/portal/logout")
    assert password_sign_in(client, contact.email).status_code == 400
    assert password_sign_in(client, contact.email, "x" * 12).status_code == 303
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "contact.password_changed")).scalar_one()


def test_it_refuses_a_short_or_mistyped_password_and_writes_nothing(client, world: World) -> None:
    contact = world.client_a.contacts[0]
    portal_login(client, contact)
    short = client.post("/portal/account", data={"new_password": "short", "confirm": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.text
    mistyped = client.post("/portal/account", data={"new_password": "x" * 12, "confirm": "y" * 12})
    assert mistyped.status_code == 400 and "The two passwords differ." in mistyped.text
    db.session.expire_all()
    row = db.session.get(Contact, contact.id)
    assert (row.password_hash, row.session_version) == (None, 0)
    assert client.get("/portal/").status_code == 200


def test_the_account_page_needs_a_signed_in_contact(client, world: World) -> None:
    response = client.get("/portal/account")
    assert response.status_code == 303 and "/portal/login?next=/portal/account" in response.location
    assert client.post("/portal/account", data={"new_password": "x" * 12, "confirm": "x" * 12}).status_code == 303


def test_the_sign_in_page_offers_both_ways_and_says_what_is_missing(client, world: World) -> None:
    page = client.get("/portal/login")
    assert "Email me a sign-in link" in page.text and "Sign in with password" in page.text
    no_email = client.post("/portal/login", data={"email": ""})
    assert no_email.status_code == 400 and "This field is required." in no_email.text
    no_password = client.post("/portal/login", data={"email": "c1@clienta.test", "password": ""})
    assert no_password.status_code == 400 and "Enter your email and your password." in no_password.text
    assert client.get("/portal/").status_code == 303
