"""Operators and staff can tell which money the app takes: a ribbon in the admin, details in /healthz."""

import pytest

from tests.conftest import login


@pytest.mark.parametrize("key, ribbon", [
    (None, "Test mode: the sandbox gateway, no money moves"),
    ("sk_test_123", "Test mode: Stripe test keys, no real money"),
    ("sk_live_123", None),
])
def test_it_shows_a_test_mode_ribbon_unless_keys_are_live(app, client, world, monkeypatch, key, ribbon):
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", key)
    login(client, world.alice)
    page = client.get("/admin/").text
    if ribbon:
        assert ribbon in page
    else:
        assert "Test mode" not in page
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json == {"status": "ok", "database": "ok", "mail": "outbox",
                           "payments": {None: "sandbox", "sk_test_123": "test", "sk_live_123": "live"}[key]}


def test_it_reports_smtp_mail_in_healthz(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    assert client.get("/healthz").json["mail"] == "smtp"
