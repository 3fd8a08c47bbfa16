"""Staff users (admins only) and the superadmin's organization switch."""

from __future__ import annotations

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, OutboxEmail, User
from tests.conftest import PASSWORD, login, make_invoice, make_user

NEW = {"email": "New.Person@A.test", "name": "New Person", "role": "staff"}


def user(user_id: int) -> User:
    db.session.rollback()
    return db.session.get_one(User, user_id)


def actions() -> list[str]:
    return list(db.session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def test_it_lists_only_the_organizations_users(client, world):
    make_user(world.org_a, "sam@a.test", "staff")
    login(client, world.alice)
    page = client.get("/admin/users").text
    assert "alice@a.test" in page and "sam@a.test" in page
    assert "bob@b.test" not in page and "root@ops.test" not in page


def test_it_invites_a_user_instead_of_setting_their_password(client, world):
    login(client, world.alice)
    response = client.post("/admin/users", data={**NEW, "password": "a long enough secret"})
    assert response.status_code == 303
    created = db.session.execute(select(User).where(User.email == "new.person@a.test")).scalar_one()
    assert (created.role, created.organization_id, created.name, created.active) == ("staff", world.org_a.id,
                                                                                     "New Person", True)
    assert created.is_invited  # a password in the form is ignored: they choose their own (tests/admin/test_invites)
    assert actions()[-1] == "user.invited"
    assert 'type="password"' not in client.get("/admin/users").text


def test_it_refuses_a_duplicate_email_a_superadmin_role_and_a_bad_email(client, world):
    login(client, world.alice)
    count = db.session.execute(select(func.count()).select_from(User)).scalar_one()
    duplicate = client.post("/admin/users", data={**NEW, "email": "BOB@b.test"})
    assert duplicate.status_code == 400 and "already exists" in duplicate.text
    existing = client.post("/admin/users", data={**NEW, "email": "alice@A.test"})
    assert existing.status_code == 400 and "already exists" in existing.text
    root = client.post("/admin/users", data={**NEW, "role": "superadmin"})
    assert root.status_code == 400 and "Not a valid choice" in root.text
    bad = client.post("/admin/users", data={**NEW, "email": "nobody"})
    assert bad.status_code == 400 and "not a valid email address" in bad.text
    assert db.session.execute(select(func.count()).select_from(User)).scalar_one() == count
    assert db.session.execute(select(func.count()).select_from(OutboxEmail)).scalar_one() == 0


def test_it_forbids_staff(client, world):
    sam = make_user(world.org_a, "sam@a.test", "staff")
    login(client, sam)
    assert client.get("/admin/users").status_code == 403
    assert client.post("/admin/users", data=NEW).status_code == 403
    assert client.post(f"/admin/users/{world.alice.id}/active", data={"active": "0"}).status_code == 403
    assert user(world.alice.id).active


def test_it_changes_a_role(client, world):
    sam = make_user(world.org_a, "sam@a.test", "staff")
    login(client, world.alice)
    assert client.post(f"/admin/users/{sam.id}/role", data={"role": "admin"}).status_code == 303
    assert user(sam.id).role == "admin"
    [event] = db.session.execute(select(AuditEvent).where(AuditEvent.action == "user.role_changed")).scalars()
    assert event.details == {"from": "staff", "to": "admin"}


def test_it_does_not_let_you_change_your_own_role(client, world):
    make_user(world.org_a, "second@a.test", "admin")
    login(client, world.alice)
    response = client.post(f"/admin/users/{world.alice.id}/role", data={"role": "staff"})
    assert response.status_code == 422 and "cannot change your own role" in response.text
    assert user(world.alice.id).role == "admin"


def test_it_keeps_one_active_admin(client, world):
    other = make_user(world.org_a, "second@a.test", "admin")
    login(client, world.root)
    client.post("/admin/organization", data={"organization_id": str(world.org_a.id)})
    assert client.post(f"/admin/users/{other.id}/active", data={"active": "0"}).status_code == 303
    response = client.post(f"/admin/users/{world.alice.id}/role", data={"role": "staff"})
    assert response.status_code == 422 and "at least one active admin" in response.text
    response = client.post(f"/admin/users/{world.alice.id}/active", data={"active": "0"})
    assert response.status_code == 422 and "at least one active admin" in response.text
    assert user(world.alice.id).role == "admin" and user(world.alice.id).active


def test_it_deactivates_a_user_who_is_signed_out_at_once_and_reactivates_them(client, world, app):
    sam = make_user(world.org_a, "sam@a.test", "staff")
    sams_browser = app.test_client()
    with app.app_context():  # a request of its own (tests share one app context, and Flask-Login caches on g)
        login(sams_browser, sam)
        assert sams_browser.get("/admin/").status_code == 200
    login(client, world.alice)

    assert client.post(f"/admin/users/{sam.id}/active", data={"active": "0"}).status_code == 303

    assert not user(sam.id).active
    with app.app_context():
        assert sams_browser.get("/admin/").status_code == 302  # the open session no longer works
    response = app.test_client().post("/admin/login", data={"email": sam.email, "password": PASSWORD})
    assert response.status_code == 400
    assert client.post(f"/admin/users/{sam.id}/active", data={"active": "1"}).status_code == 303
    assert user(sam.id).active
    assert actions()[-2:] == ["user.deactivated", "user.reactivated"]


def test_it_does_not_let_you_deactivate_yourself(client, world):
    login(client, world.alice)
    response = client.post(f"/admin/users/{world.alice.id}/active", data={"active": "0"})
    assert response.status_code == 422 and "cannot deactivate yourself" in response.text
    assert user(world.alice.id).active


def test_it_answers_404_for_another_organizations_user(client, world):
    login(client, world.alice)
    assert client.post(f"/admin/users/{world.bob.id}/active", data={"active": "0"}).status_code == 404
    assert client.post(f"/admin/users/{world.bob.id}/role", data={"role": "admin"}).status_code == 404
    assert client.post(f"/admin/users/{world.root.id}/active", data={"active": "0"}).status_code == 404
    assert user(world.bob.id).active and user(world.bob.id).role == "staff" and user(world.root.id).active


def test_it_lets_a_superadmin_switch_organization_and_back(client, world):
    make_invoice(world.client_a, status="open")
    make_invoice(world.client_b, status="open")
    login(client, world.root)
    everything = client.get("/admin/invoices").text
    assert "Client A" in everything and "Client B" in everything

    response = client.post("/admin/organization", data={"organization_id": str(world.org_b.id)})

    assert response.status_code == 303
    scoped = client.get("/admin/invoices").text
    assert "Client B" in scoped and "Client A" not in scoped and "Org B" in scoped
    assert "bob@b.test" in client.get("/admin/users").text and "alice@a.test" not in client.get("/admin/users").text
    client.post("/admin/organization", data={"organization_id": ""})
    assert "Client A" in client.get("/admin/invoices").text


def test_it_lets_only_a_superadmin_switch_organization(client, world):
    login(client, world.alice)
    assert client.get("/admin/organization").status_code == 403
    assert client.post("/admin/organization", data={"organization_id": str(world.org_b.id)}).status_code == 403
    assert "Client B" not in client.get("/admin/invoices").text


def test_it_refuses_to_switch_to_a_missing_organization(client, world):
    login(client, world.root)
    assert client.post("/admin/organization", data={"organization_id": "999999"}).status_code == 404


def test_it_lets_any_staff_user_change_their_own_password(client, world, app):
    sam = make_user(world.org_a, "sam@a.test", "staff")
    login(client, sam)
    assert client.get("/admin/password").status_code == 200
    response = client.post("/admin/password", data={"current_password": PASSWORD, "new_password": "brand new secret"})
    assert response.status_code == 303
    assert "user.password_changed" in actions()
    fresh = app.test_client()
    with app.app_context():
        assert fresh.post("/admin/login", data={"email": sam.email, "password": PASSWORD}).status_code == 400
        assert fresh.post("/admin/login", data={"email": sam.email, "password": "brand new secret"}).status_code == 303


def test_it_needs_the_current_password_and_a_long_new_one(client, world):
    login(client, world.alice)
    before = user(world.alice.id).password_hash
    wrong = client.post("/admin/password",
                        data={"current_password": "not it at all", "new_password": "brand new secret"})
    assert wrong.status_code == 400 and "not your current password" in wrong.text
    short = client.post("/admin/password", data={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.text
    assert user(world.alice.id).password_hash == before
