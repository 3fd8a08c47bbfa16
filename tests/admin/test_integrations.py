"""Settings > API keys and Webhooks (admins only) and the API reference (all staff)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from invoicing.api.views import openapi_document
from invoicing.extensions import db
from invoicing.models import ApiKey, AuditEvent, WebhookDelivery, WebhookEndpoint
from invoicing.services.api import webhooks
from invoicing.services.api.keys import hash_key
from tests.conftest import NOW, SYSTEM, login, make_invoice, make_user

TOKEN = re.compile(r"inv_test_[A-Za-z0-9]{40}")


def test_it_shows_a_new_key_once_and_stores_only_its_hash(client, world):
    login(client, world.alice)
    response = client.post("/admin/settings/api-keys", data={"name": "CRM sync", "access": "write"})
    assert response.status_code == 201
    [token] = TOKEN.findall(response.text)
    key = db.session.execute(select(ApiKey)).scalar_one()
    assert key.key_hash == hash_key(token) and key.prefix == token[:13] and key.scopes == ["read", "write"]
    assert key.created_by_id == world.alice.id and key.organization_id == world.org_a.id
    assert "no-store" in response.headers["Cache-Control"]
    page = client.get("/admin/settings/api-keys").text
    assert TOKEN.search(page) is None and key.prefix in page and "CRM sync" in page and "never" in page
    assert client.get("/api/v1/invoices", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_it_creates_a_read_key_with_an_expiry(client, world):
    login(client, world.alice)
    response = client.post("/admin/settings/api-keys", data={"name": "Reports", "access": "read",
                                                             "expires_on": "2099-01-31"})
    assert response.status_code == 201
    key = db.session.execute(select(ApiKey)).scalar_one()
    assert key.scopes == ["read"] and key.expires_at.date().isoformat() == "2099-02-01"  # end of day, New York


def test_it_refuses_a_key_without_a_name(client, world):
    login(client, world.alice)
    assert client.post("/admin/settings/api-keys", data={"name": "", "access": "read"}).status_code == 422
    response = client.post("/admin/settings/api-keys", data={"name": "Old", "expires_on": "2020-01-01"})
    assert response.status_code == 422 and "must be in the future" in response.text
    assert db.session.execute(select(ApiKey)).first() is None


def test_it_revokes_a_key_at_once(client, world):
    login(client, world.alice)
    token = TOKEN.findall(client.post("/admin/settings/api-keys", data={"name": "x", "access": "read"}).text)[0]
    key = db.session.execute(select(ApiKey)).scalar_one()
    response = client.post(f"/admin/settings/api-keys/{key.id}/revoke")
    assert response.status_code == 303
    assert client.get("/api/v1/invoices", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert db.session.execute(select(AuditEvent.action).where(AuditEvent.object_type == "apikey")
                              .order_by(AuditEvent.id)).scalars().all() == ["api_key.created", "api_key.revoked"]


def test_it_keeps_keys_and_webhooks_to_admins_of_the_organization(client, world):
    login(client, world.alice)
    client.post("/admin/settings/api-keys", data={"name": "x", "access": "read"})
    key = db.session.execute(select(ApiKey)).scalar_one()
    carol = make_user(world.org_b, "carol@b.test", "admin")
    client.post("/admin/logout")
    login(client, carol)
    assert client.post(f"/admin/settings/api-keys/{key.id}/revoke").status_code == 404
    assert "x" not in client.get("/admin/settings/api-keys").text.split("<tbody>")[1].split("</tbody>")[0]
    client.post("/admin/logout")
    login(client, world.bob)  # staff
    for path in ("/admin/settings/api-keys", "/admin/settings/webhooks"):
        assert client.get(path).status_code == 403
    assert db.session.get(ApiKey, key.id).revoked_at is None


def test_it_registers_an_endpoint_and_shows_its_secret_once(client, world, app):
    login(client, world.alice)
    refused = client.post("/admin/settings/webhooks", data={"url": "http://127.0.0.1:9/hook", "events": [
        "invoice.paid"]})
    assert refused.status_code == 422 and "private, loopback or link-local" in refused.text
    assert db.session.execute(select(WebhookEndpoint)).first() is None
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    try:
        response = client.post("/admin/settings/webhooks", data={
            "url": "http://127.0.0.1:9/hook", "description": "CRM", "events": ["invoice.paid", "payment.refunded"]})
    finally:
        app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    assert response.status_code == 201
    endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
    secret = webhooks.secret_for(endpoint, app.config["SECRET_KEY"])
    assert secret in response.text and endpoint.events == ["invoice.paid", "payment.refunded"]
    assert secret not in client.get("/admin/settings/webhooks").text
    assert secret not in client.get(f"/admin/settings/webhooks/{endpoint.id}").text
    no_events = client.post("/admin/settings/webhooks", data={"url": "https://127.0.0.1/x"})
    assert no_events.status_code == 422 and "Choose at least one event" in no_events.text


def test_it_shows_the_delivery_log_and_resends_enables_rotates_and_deletes(client, world, app):
    endpoint = webhooks.create_endpoint(world.org_a.id, url="http://127.0.0.1:9/hook", description="",
                                        events=["invoice.created"], allow_private=True, actor=SYSTEM, now=NOW)
    make_invoice(world.client_a)
    [delivery] = db.session.execute(select(WebhookDelivery)).scalars().all()
    delivery.status, delivery.last_status_code, delivery.attempts = "failed", 502, 9
    db.session.commit()
    login(client, world.alice)
    page = client.get(f"/admin/settings/webhooks/{endpoint.id}").text
    assert "invoice.created" in page and "HTTP 502" in page and "failed" in page
    assert client.post(f"/admin/settings/webhooks/deliveries/{delivery.id}/resend").status_code == 303
    db.session.expire_all()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    old_secret = webhooks.secret_for(endpoint, app.config["SECRET_KEY"])
    rotated = client.post(f"/admin/settings/webhooks/{endpoint.id}/secret")
    db.session.expire_all()
    new_secret = webhooks.secret_for(endpoint, app.config["SECRET_KEY"])
    assert rotated.status_code == 200 and new_secret in rotated.text and new_secret != old_secret
    assert client.post(f"/admin/settings/webhooks/{endpoint.id}/enabled", data={"enabled": "0"}).status_code == 303
    db.session.expire_all()
    assert not endpoint.enabled
    assert client.post(f"/admin/settings/webhooks/{endpoint.id}/delete").status_code == 303
    assert db.session.execute(select(WebhookEndpoint)).first() is None
    assert db.session.execute(select(WebhookDelivery)).first() is None


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_it_documents_every_operation_with_a_curl_example(client, world, user):
    login(client, getattr(world, user))
    page = client.get("/admin/api")
    assert page.status_code == 200
    text = page.text
    for path, item in openapi_document()["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                assert f'id="{method}-' in text and f"<code>{path}</code>" in text
    assert text.count("curl ") >= 20 and "Authorization: Bearer $INVOICING_API_KEY" in text
    assert "Idempotency-Key" in text and "Invoicing-Signature" in text and "compare_digest" in text
    assert "cdn" not in text.lower() and "<script src=\"http" not in text
