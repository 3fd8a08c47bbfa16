"""Who may use the API: bearer keys (401 without, revoked or expired; 403 for a read key writing), one
organization per key, no cookies or session, the rate limit per key with its headers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from invoicing.extensions import db, limiter
from invoicing.models import ApiKey, Invoice
from invoicing.services.api.keys import create_key, hash_key, revoke_key
from tests.api.conftest import cid
from tests.conftest import NOW, SYSTEM, login, make_invoice

WRITES = [("POST", "/api/v1/invoices"), ("POST", "/api/v1/clients"), ("POST", "/api/v1/contacts")]


def test_it_refuses_a_request_without_a_key(api):
    response = api.get("/api/v1/invoices", key=None)
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="invoicing"'
    assert "Authorization: Bearer" in response.json["detail"]


@pytest.mark.parametrize("token", ["inv_test_" + "x" * 40, "not-a-key", ""])
def test_it_refuses_a_wrong_key(api, token):
    response = api.get("/api/v1/invoices", headers={"Authorization": f"Bearer {token}"}, key=None)
    assert response.status_code == 401
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_it_refuses_a_revoked_key_at_once(api, keys, world):
    assert api.get("/api/v1/invoices").status_code == 200
    key = db.session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(keys.write))).scalar_one()
    revoke_key(key.id, world.org_a.id, actor=SYSTEM, now=NOW)
    assert api.get("/api/v1/invoices").status_code == 401


def test_it_refuses_an_expired_key(api, world, time_machine):
    time_machine.move_to(NOW, tick=False)
    token = create_key(world.org_a.id, name="short", scopes=["read"], expires_at=NOW + timedelta(hours=1), live=False,
                       actor=SYSTEM, now=NOW).token
    assert api.get("/api/v1/invoices", key=token).status_code == 200
    time_machine.move_to(NOW + timedelta(hours=1), tick=False)
    assert api.get("/api/v1/invoices", key=token).status_code == 401


def test_it_refuses_a_key_of_an_archived_organization(api, world):
    world.org_a.archived_at = NOW
    db.session.commit()
    assert api.get("/api/v1/invoices").status_code == 401


@pytest.mark.parametrize("method, path", WRITES)
def test_it_refuses_a_read_key_that_writes(api, keys, world, method, path):
    response = api.request(method, path, key=keys.read, json={"client": cid(world.client_a), "name": "x",
                                                              "email": "x@y.test", "lines": []})
    assert response.status_code == 403 and "can only read" in response.json["detail"]


def test_it_lets_a_read_key_read_and_not_change_a_draft(api, keys, world):
    draft = make_invoice(world.client_a)
    assert api.get(f"/api/v1/invoices/inv_{draft.public_id}", key=keys.read).status_code == 200
    assert api.delete(f"/api/v1/invoices/inv_{draft.public_id}", key=keys.read).status_code == 403
    assert db.session.get(Invoice, draft.id) is not None


def test_it_shows_a_key_only_its_organization(api, keys, world):
    make_invoice(world.client_a)
    make_invoice(world.client_b)
    mine = api.get("/api/v1/invoices").json["data"]
    theirs = api.get("/api/v1/invoices", key=keys.other).json["data"]
    assert [i["client"] for i in mine] == [cid(world.client_a)]
    assert [i["client"] for i in theirs] == [cid(world.client_b)]


def test_it_records_when_a_key_was_last_used(api, keys, time_machine):
    time_machine.move_to(NOW, tick=False)
    api.get("/api/v1/invoices")
    key = db.session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(keys.write))).scalar_one()
    assert key.last_used_at == NOW
    assert key.key_hash != keys.write and keys.write not in str(key.__dict__)  # only the hash is stored


def test_it_sets_no_cookie_and_ignores_an_admin_session(client, api, world):
    login(client, world.alice)  # a staff session cookie in this client: it must grant nothing on the API
    response = api.get("/api/v1/invoices", key=None)
    assert response.status_code == 401
    response = api.get("/api/v1/invoices")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers and "Cookie" not in response.headers.get("Vary", "")
    response = api.post("/api/v1/clients", json={"name": "No CSRF token needed"})
    assert response.status_code == 201 and "Set-Cookie" not in response.headers


def test_it_limits_requests_per_key_with_ratelimit_headers(api, keys, app):
    app.config["API_RATE_LIMIT"] = "3 per minute"
    limiter.reset()
    try:
        answers = [api.get("/api/v1/invoices") for _ in range(3)]
        assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
        assert answers[0].headers["RateLimit-Limit"] == "3" and 0 < int(answers[0].headers["RateLimit-Reset"]) <= 60
        refused = api.get("/api/v1/invoices")
        assert refused.status_code == 429 and refused.json["code"] == "rate_limited"
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert api.get("/api/v1/invoices", key=keys.other).status_code == 200  # another key has its own count
    finally:
        app.config["API_RATE_LIMIT"] = "300 per minute"
        limiter.reset()


def test_it_serves_the_openapi_document_without_a_key(api):
    response = api.get("/api/v1/openapi.json", key=None)
    assert response.status_code == 200 and response.json["openapi"] == "3.1.0"


def test_it_answers_unknown_addresses_and_methods_with_problems(api):
    missing = api.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    wrong = api.request("PUT", "/api/v1/invoices")
    assert wrong.status_code == 405 and wrong.mimetype == "application/problem+json"
