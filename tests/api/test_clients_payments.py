"""/api/v1/clients, /contacts and /payments: create, list, get, update; filters; 404 across organizations."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Client, Contact
from invoicing.services.payments import record_manual_payment
from tests.api.conftest import cid, iid, problem_fields
from tests.conftest import NOW, SYSTEM, make_client, make_invoice


def test_it_creates_a_client_with_contacts(api, world):
    response = api.post("/api/v1/clients", json={
        "name": "Acme Ltd", "email": "AP@Acme.example", "currency": "eur",
        "contacts": [{"name": "Ada", "email": "ada@acme.example", "portal_access": True}]})
    assert response.status_code == 201
    client = db.session.execute(select(Client).where(Client.name == "Acme Ltd")).scalar_one()
    assert response.json["id"] == cid(client) and response.headers["Location"] == f"/api/v1/clients/{cid(client)}"
    assert (client.email, client.currency, client.organization_id) == ("ap@acme.example", "EUR", world.org_a.id)
    assert [(c["name"], c["portal_access"]) for c in response.json["contacts"]] == [("Ada", True)]
    actors = db.session.execute(select(AuditEvent.actor_type).where(AuditEvent.action.in_(
        ("client.created", "contact.added")))).scalars().all()
    assert actors == ["api_key", "api_key"]


def test_it_takes_the_organizations_currency_by_default_and_refuses_bad_input(api, world):
    assert api.post("/api/v1/clients", json={"name": "Plain"}).json["currency"] == "USD"
    response = api.post("/api/v1/clients", json={"name": "", "currency": "EURO", "vip": True})
    assert response.status_code == 422 and set(problem_fields(response)) == {"name", "currency", "vip"}
    response = api.post("/api/v1/clients", json={"name": "Bad", "email": "not an email"})
    assert response.status_code == 422 and "not a valid email" in response.json["detail"]
    assert db.session.execute(select(Client).where(Client.name == "Bad")).first() is None


def test_it_lists_gets_and_updates_clients_of_its_organization_only(api, world):
    make_client(world.org_a, "Zulu Works")
    names = [c["name"] for c in api.get("/api/v1/clients").json["data"]]
    assert names == ["Client A", "Zulu Works"]
    assert [c["name"] for c in api.get("/api/v1/clients?q=zulu").json["data"]] == ["Zulu Works"]
    page = api.get("/api/v1/clients?limit=1").json
    assert page["has_more"] and [c["name"] for c in api.get(
        f"/api/v1/clients?limit=1&cursor={page['next_cursor']}").json["data"]] == ["Zulu Works"]
    got = api.get(f"/api/v1/clients/{cid(world.client_a)}").json
    assert len(got["contacts"]) == 2 and got["contacts"][0]["client"] == cid(world.client_a)
    response = api.patch(f"/api/v1/clients/{cid(world.client_a)}", json={"address": "1 Main St"})
    assert response.status_code == 200 and response.json["address"] == "1 Main St"
    assert response.json["name"] == "Client A"
    assert api.get(f"/api/v1/clients/{cid(world.client_b)}").status_code == 404
    assert api.patch(f"/api/v1/clients/{cid(world.client_b)}", json={"name": "Mine now"}).status_code == 404
    db.session.expire_all()
    assert world.client_b.name == "Client B"


def test_it_adds_lists_gets_and_updates_contacts(api, world):
    response = api.post("/api/v1/contacts", json={"client": cid(world.client_a), "name": "Grace",
                                                  "email": "grace@a.test"})
    assert response.status_code == 201 and response.json["portal_access"] is False
    contact_id = response.json["id"]
    again = api.post("/api/v1/contacts", json={"client": cid(world.client_a), "name": "G2", "email": "grace@a.test"})
    assert again.status_code == 422 and "already has a contact" in again.json["detail"]
    listed = api.get(f"/api/v1/contacts?client={cid(world.client_a)}").json["data"]
    assert [c["name"] for c in listed] == ["Grace", "Client A contact 2", "Client A contact 1"]
    response = api.patch(f"/api/v1/contacts/{contact_id}", json={"portal_access": True})
    assert response.status_code == 200 and response.json["portal_access"] is True
    contact = db.session.execute(select(Contact).where(Contact.email == "grace@a.test")).scalar_one()
    assert contact.portal_access and api.get(f"/api/v1/contacts/{contact_id}").json["name"] == "Grace"
    other = world.client_b.contacts[0]
    assert api.get(f"/api/v1/contacts/con_{other.public_id}").status_code == 404
    assert api.patch(f"/api/v1/contacts/con_{other.public_id}", json={"name": "x"}).status_code == 404
    response = api.post("/api/v1/contacts", json={"client": cid(world.client_b), "name": "X", "email": "x@b.test"})
    assert response.status_code == 422 and "client" in problem_fields(response)


def test_it_lists_and_gets_payments_with_filters(api, world, keys, time_machine):
    time_machine.move_to(NOW, tick=False)
    second = make_client(world.org_a, "Second")
    one = make_invoice(world.client_a, status="open")
    two = make_invoice(second, status="open")
    early = record_manual_payment(one.id, amount=100, method="cash", paid_on=NOW.date(), reference="C1",
                                  actor=SYSTEM, now=NOW - timedelta(days=3)).payment
    late = record_manual_payment(two.id, amount=200, method="cheque", paid_on=NOW.date(), reference="Q1",
                                 actor=SYSTEM, now=NOW).payment
    theirs = make_invoice(world.client_b, status="open")
    foreign = record_manual_payment(theirs.id, amount=theirs.total, method="cash", paid_on=NOW.date(), reference="",
                                    actor=SYSTEM, now=NOW).payment

    def ids(query: str = "") -> list[str]:
        response = api.get(f"/api/v1/payments?{query}")
        assert response.status_code == 200, response.json
        return [p["id"] for p in response.json["data"]]

    p_early, p_late = f"pay_{early.public_id}", f"pay_{late.public_id}"
    assert ids() == [p_late, p_early]
    assert ids("method=cash") == [p_early]
    assert ids(f"client={cid(second)}") == [p_late]
    assert ids(f"invoice={iid(one)}") == [p_early]
    assert ids("created_from=2026-03-08") == [p_late]
    assert ids("created_to=2026-03-07") == [p_early]
    assert ids("limit=1") == [p_late]
    body = api.get(f"/api/v1/payments/{p_late}").json
    assert (body["amount"], body["invoice"], body["reference"], body["client"]) == (200, iid(two), "Q1", cid(second))
    assert api.get(f"/api/v1/payments/pay_{foreign.public_id}").status_code == 404
    assert api.get("/api/v1/payments?method=bitcoin").status_code == 422
    assert api.as_key(keys.other).get("/api/v1/payments").json["data"][0]["id"] == f"pay_{foreign.public_id}"
