"""Inviting staff by email: the invitation, the emailed link, choosing a password, and everything refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from flask import current_app
from sqlalchemy import func, select

import invoicing.mail as mail
from invoicing.extensions import db
from invoicing.models import AuditEvent, OutboxEmail, User
from invoicing.services.audit import Actor
from invoicing.services.invites import invitation_token, invite_user
from invoicing.services.site import Site
from tests.conftest import NOW, PASSWORD, login, make_user

INVITE = {"email": "New.Person@A.test", "name": "New Person", "role": "staff"}
NEW_PASSWORD = "my own long secret"
LINK = re.compile(r"http://billing\.test/admin/invite/[A-Za-z0-9_.\-]+")


def invited() -> User:
    db.session.rollback()
    return db.session.execute(select(User).where(User.email == "new.person@a.test")).scalar_one()


def actions() -> list[str]:
    return list(db.session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def outbox() -> list[OutboxEmail]:
    db.session.rollback()
    return list(db.session.execute(select(OutboxEmail).order_by(OutboxEmail.id)).scalars())


def deliver(smtp, count: int) -> list[EmailMessage]:
    mail.deliver_due(now=datetime.now(UTC))
    return smtp.wait_for(count)


def link_in(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    [link] = LINK.findall(body.get_content())
    return link.removeprefix("http://billing.test")


def test_it_invites_by_email_and_the_link_sets_the_password_once(client, app, world, smtp, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)

    response = client.post("/admin/users", data=INVITE)

    assert response.status_code == 303
    user = invited()
    assert (user.role, user.organization_id, user.name, user.active, user.is_invited) == (
        "staff", world.org_a.id, "New Person", True, True)
    assert "user.invited" in actions()
    assert "invited" in client.get("/admin/users").text
    [message] = deliver(smtp, 1)
    assert smtp.envelopes[0].rcpt_tos == ["new.person@a.test"]
    assert "Org A" in message["Subject"] and "Org A" in message["From"]
    path = link_in(message)
    html = message.get_body(("html",))
    assert html is not None and path in html.get_content()

    newcomer = app.test_client()
    with app.app_context():  # a request of its own (Flask-Login caches the user on g)
        form = newcomer.get(path)
        assert form.status_code == 200 and "new.person@a.test" in form.text
        assert form.headers["Cache-Control"] == "no-store"
        assert invited().is_invited  # GET never acts: mail scanners open links
        accepted = newcomer.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert accepted.status_code == 303 and accepted.location == "/admin/"
        assert newcomer.get("/admin/").status_code == 200

    user = invited()
    assert not user.is_invited and user.last_login_at is not None
    assert actions()[-1] == "user.invitation_accepted"
    with app.app_context():
        again = app.test_client().post(path, data={"password": "someone else's", "confirm": "someone else's"})
        assert again.status_code == 410 and "no longer valid" in again.text
        assert app.test_client().get(path).status_code == 410
        fresh = app.test_client()
        assert fresh.post("/admin/login", data={"email": INVITE["email"], "password": NEW_PASSWORD}).status_code == 303
    assert invited().password_hash == user.password_hash
    assert len(smtp.messages) == 1


def test_it_refuses_to_log_in_before_the_invitation_is_accepted(client, app, world):
    login(client, world.alice)
    client.post("/admin/users", data=INVITE)
    stored = invited().password_hash

    for password in ("", stored, stored[1:], PASSWORD):
        response = app.test_client().post("/admin/login", data={"email": INVITE["email"], "password": password})
        assert response.status_code == 400
        if password:
            assert "Wrong email or password." in response.text
    user = invited()
    assert user.last_login_at is None and user.is_invited
    assert db.session.execute(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "user.logged_in", AuditEvent.object_id == user.id)).scalar_one() == 0


def test_it_sends_one_email_for_a_double_submitted_form(client, world, smtp, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)

    first = client.post("/admin/users", data=INVITE)
    second = client.post("/admin/users", data=INVITE)

    assert (first.status_code, second.status_code) == (303, 303)
    assert db.session.execute(select(func.count()).select_from(User).where(User.email == "new.person@a.test")
                              ).scalar_one() == 1
    assert actions().count("user.invited") == 1
    assert [e.kind for e in outbox()] == ["staff_invite"]
    deliver(smtp, 1)
    mail.deliver_due(now=datetime.now(UTC) + timedelta(hours=1))
    assert len(smtp.messages) == 1


def test_it_invites_again_with_the_new_role_once_the_first_invitation_went_stale(client, world, smtp, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)
    client.post("/admin/users", data=INVITE)
    old = link_in(deliver(smtp, 1)[0])

    time_machine.move_to(NOW + timedelta(days=8))  # the first link has expired; the admin invites again, as admin
    again = client.post("/admin/users", data={**INVITE, "role": "admin"})

    assert again.status_code == 303
    assert invited().role == "admin" and invited().is_invited
    assert actions().count("user.invited") == 1 and actions().count("user.invitation_resent") == 1
    new = link_in(deliver(smtp, 2)[1])
    assert new != old
    assert client.get(new).status_code == 200 and client.get(old).status_code == 410


def test_it_refuses_an_expired_link(client, app, world, smtp, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)
    client.post("/admin/users", data=INVITE)
    path = link_in(deliver(smtp, 1)[0])

    time_machine.move_to(NOW + timedelta(days=7, minutes=1))

    with app.app_context():
        page = app.test_client().get(path)
        assert page.status_code == 410 and "expired" in page.text
        post = app.test_client().post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert post.status_code == 410
    assert invited().is_invited


def test_it_answers_404_for_a_forged_or_truncated_link(app, world):
    alice_token = invitation_token(world.alice, secret_key="not-our-secret-" + "y" * 32, now=NOW)
    for path in (f"/admin/invite/{alice_token}", "/admin/invite/abc", f"/admin/invite/{alice_token[:-3]}"):
        response = app.test_client().get(path)
        assert response.status_code == 404 and "could not find this invitation" in response.text


def test_it_refuses_a_link_for_a_user_who_already_has_a_password(app, world):
    token = invitation_token(world.alice, secret_key=app.config["SECRET_KEY"], now=NOW)
    choose = {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    assert app.test_client().post(f"/admin/invite/{token}", data=choose).status_code == 410
    credentials = {"email": "alice@a.test", "password": PASSWORD}
    assert app.test_client().post("/admin/login", data=credentials).status_code == 303


def test_it_keeps_the_password_rules_and_the_link_on_a_bad_password(client, app, world, smtp, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)
    client.post("/admin/users", data=INVITE)
    path = link_in(deliver(smtp, 1)[0])

    with app.app_context():
        short = app.test_client().post(path, data={"password": "short", "confirm": "short"})
        assert short.status_code == 400 and "at least 10 characters" in short.text
        differ = app.test_client().post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "!"})
        assert differ.status_code == 400 and "passwords differ" in differ.text
        assert app.test_client().get(path).status_code == 200
    assert invited().is_invited and "user.invitation_accepted" not in actions()


def test_it_resends_with_a_new_link_and_the_old_one_stops_working(client, app, world, smtp, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)
    client.post("/admin/users", data=INVITE)
    old = link_in(deliver(smtp, 1)[0])
    user_id = invited().id
    assert "Resend invitation" in client.get("/admin/users").text

    time_machine.move_to(NOW + timedelta(days=6))
    response = client.post(f"/admin/users/{user_id}/invitation")

    assert response.status_code == 303
    assert actions()[-1] == "user.invitation_resent"
    new = link_in(deliver(smtp, 2)[1])
    assert new != old
    with app.app_context():
        assert app.test_client().get(old).status_code == 410
        time_machine.move_to(NOW + timedelta(days=12))  # 7 days from the resend, not from the first invitation
        accepted = app.test_client().post(new, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert accepted.status_code == 303
    assert not invited().is_invited
    assert client.post(f"/admin/users/{user_id}/invitation").status_code == 422  # accepted: nothing to resend
    assert len(outbox()) == 2


def test_it_forbids_staff_to_invite_or_resend(client, world):
    pending = _pending_invitation(world)
    sam = make_user(world.org_a, "sam@a.test", "staff")
    login(client, sam)

    assert client.post("/admin/users", data={**INVITE, "email": "other@a.test"}).status_code == 403
    assert client.post(f"/admin/users/{pending.id}/invitation").status_code == 403

    assert db.session.execute(select(User).where(User.email == "other@a.test")).scalar_one_or_none() is None
    assert len(outbox()) == 1


def test_it_hides_invitation_emails_from_staff_in_the_outbox(client, world):
    _pending_invitation(world)
    [email] = outbox()
    sam = make_user(world.org_a, "sam@a.test", "staff")
    login(client, sam)
    assert client.get(f"/admin/outbox/{email.id}").status_code == 404  # the link would make them whoever was invited
    client.post("/admin/logout")
    login(client, world.alice)
    assert client.get(f"/admin/outbox/{email.id}").status_code == 200


def test_it_answers_404_to_another_organizations_admin(client, world):
    pending = _pending_invitation(world)
    carol = make_user(world.org_b, "carol@b.test", "admin")
    login(client, carol)

    assert client.post(f"/admin/users/{pending.id}/invitation").status_code == 404
    assert "new.person@a.test" not in client.get("/admin/users").text
    assert client.post(f"/admin/users/{pending.id}/active", data={"active": "0"}).status_code == 404

    assert len(outbox()) == 1 and invited().active
    taken = client.post("/admin/users", data={**INVITE, "role": "admin"})  # no invitation into org A from org B
    assert taken.status_code == 400 and "already exists" in taken.text
    assert invited().organization_id == world.org_a.id and invited().role == "staff"


def test_it_lets_a_superadmin_invite_for_the_organization_they_act_in(client, world):
    login(client, world.root)
    client.post("/admin/organization", data={"organization_id": str(world.org_b.id)})

    assert client.post("/admin/users", data={**INVITE, "role": "admin"}).status_code == 303

    user = invited()
    assert (user.organization_id, user.role, user.is_invited) == (world.org_b.id, "admin", True)
    [email] = outbox()
    assert (email.organization_id, email.to_addr, email.kind) == (world.org_b.id, "new.person@a.test", "staff_invite")
    assert "Org B" in email.subject


def test_it_refuses_a_deactivated_users_link(client, app, world, smtp, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)
    client.post("/admin/users", data=INVITE)
    path = link_in(deliver(smtp, 1)[0])
    client.post(f"/admin/users/{invited().id}/active", data={"active": "0"})
    assert "Resend invitation" not in client.get("/admin/users").text

    with app.app_context():
        assert app.test_client().get(path).status_code == 410
    assert invited().is_invited


def test_it_rate_limits_the_invitation_page(app, world):
    browser = app.test_client()
    for _ in range(20):
        assert browser.get("/admin/invite/nope").status_code == 404
    assert browser.get("/admin/invite/nope").status_code == 429


def _pending_invitation(world) -> User:
    return invite_user(world.org_a.id, email=INVITE["email"], name="", role="staff", actor=Actor.user(world.alice),
                       site=Site.from_config(current_app.config), now=NOW)
