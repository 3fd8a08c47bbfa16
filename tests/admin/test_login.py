from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, User
from tests.conftest import PASSWORD, login


def test_it_logs_in_staff_and_records_it(client, world):
    response = client.post("/admin/login", data={"email": "ALICE@a.test ", "password": PASSWORD})
    assert response.status_code == 303 and response.location == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert db.session.get(User, world.alice.id).last_login_at is not None
    assert db.session.execute(select(AuditEvent.action).where(AuditEvent.action == "user.logged_in")).scalar()


def test_it_refuses_a_wrong_password_with_a_message(client, world):
    response = client.post("/admin/login", data={"email": "alice@a.test", "password": "nope-nope-nope"})
    assert response.status_code == 400
    assert "Wrong email or password." in response.text
    assert client.get("/admin/").status_code == 302


def test_it_refuses_a_deactivated_user(client, world):
    world.alice.active = False
    db.session.commit()
    response = client.post("/admin/login", data={"email": "alice@a.test", "password": PASSWORD})
    assert response.status_code == 400


def test_it_rate_limits_login_attempts_per_email(client, world):
    for _ in range(5):
        assert client.post("/admin/login", data={"email": "alice@a.test", "password": "x"}).status_code == 400
    blocked = client.post("/admin/login", data={"email": "alice@a.test", "password": PASSWORD})
    assert blocked.status_code == 429
    assert "Too many attempts" in blocked.text
    assert client.get("/admin/").status_code == 302  # the right password did not get through either


def test_it_requires_a_csrf_token_on_forms(app, client, world):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = client.post("/admin/login", data={"email": "alice@a.test", "password": PASSWORD})
        assert response.status_code == 400
        page = client.get("/admin/login")
        assert 'name="csrf_token"' in page.text and "X-CSRFToken" in page.text
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert client.get("/admin/").status_code == 302


def test_it_redirects_only_to_local_pages_after_login(client, world):
    credentials = {"email": "alice@a.test", "password": PASSWORD}
    response = client.post("/admin/login?next=https://evil.test/x", data=credentials)
    assert response.location == "/admin/"
    client.post("/admin/logout")
    response = client.post("/admin/login?next=/admin/invoices", data={"email": "alice@a.test", "password": PASSWORD})
    assert response.location == "/admin/invoices"


def test_it_logs_out_on_post(client, world):
    login(client, world.alice)
    assert client.post("/admin/logout").status_code == 303
    assert client.get("/admin/").status_code == 302


def test_it_stores_passwords_with_a_modern_kdf(world):
    from invoicing.services.users import create_user
    from tests.conftest import NOW, SYSTEM

    user = create_user("kdf@a.test", PASSWORD, role="staff", organization=world.org_a, now=NOW, actor=SYSTEM)
    assert user.password_hash.startswith("scrypt:") and PASSWORD not in user.password_hash
