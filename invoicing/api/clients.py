"""/api/v1/clients and /api/v1/contacts: create, list, read, change (services/clients.py, as the admin does)."""

from __future__ import annotations

from typing import Any

from flask import Response, url_for

from invoicing.api import answer, bp
from invoicing.api import schemas as s
from invoicing.api.auth import actor, api_key, now
from invoicing.api.docs import errors, example
from invoicing.api.idempotency import idempotent
from invoicing.services import clients as svc
from invoicing.services.api import present
from invoicing.services.api import resources as res


def _org_id() -> int:
    return api_key().organization_id


def _page(page: res.Page, present_one: Any) -> Response:
    return answer({"object": "list", "data": [present_one(item) for item in page.items],
                   "has_more": page.next_cursor is not None, "next_cursor": page.next_cursor})


def _client(client_id: int) -> dict[str, Any]:
    """The client as it is after a change (read again: the service committed)."""
    return present.client_dict(res.load_client(_org_id(), client_id))


@bp.post("/clients")
@idempotent
@bp.arguments(s.ClientIn, example=example("create_client"))
@bp.response(201, s.ClientOut)
@errors(401, 403, 422)
def create_client(body: dict[str, Any]) -> Any:
    """Create a client, with its contacts if given."""
    organization = api_key().organization
    data = svc.ClientData(name=body["name"], email=body["email"], address=body["address"],
                          currency=body.get("currency") or organization.default_currency)
    contacts = [svc.ContactData(c["name"], c["email"], c["portal_access"]) for c in body["contacts"]]
    client = svc.create_client(organization, data, contacts=contacts, actor=actor(), now=now())
    body = _client(client.id)
    return answer(body, 201, {"Location": url_for("api.get_client", client_id=body["id"])})


@bp.get("/clients")
@bp.arguments(s.ClientQuery, location="query", unknown="raise")
@bp.response(200, s.ClientListOut)
@errors(401, 422)
def list_clients(query: dict[str, Any]) -> Any:
    """List clients by name (active ones, or archived ones with archived=true)."""
    return _page(res.list_clients(_org_id(), query), present.client_dict)


@bp.get("/clients/<client_id>")
@bp.response(200, s.ClientOut)
@errors(401, 404)
def get_client(client_id: str) -> Any:
    """Get a client with its contacts."""
    return answer(present.client_dict(res.get_client(_org_id(), client_id)))


@bp.patch("/clients/<client_id>")
@bp.arguments(s.ClientPatch, example={"email": "billing@acme.example"})
@bp.response(200, s.ClientOut)
@errors(401, 403, 404, 422)
def update_client(body: dict[str, Any], client_id: str) -> Any:
    """Change a client's name, billing email, address or currency."""
    client = res.get_client(_org_id(), client_id)
    data = svc.ClientData(name=body.get("name", client.name), email=body.get("email", client.email),
                          address=body.get("address", client.address), currency=body.get("currency", client.currency))
    svc.update_client(client.id, _org_id(), data, actor=actor(), now=now())
    return answer(_client(client.id))


@bp.post("/contacts")
@idempotent
@bp.arguments(s.ContactIn, example=example("create_contact"))
@bp.response(201, s.ContactOut)
@errors(401, 403, 422)
def create_contact(body: dict[str, Any]) -> Any:
    """Add a contact (a person who receives invoices, and may sign in to the portal) to a client."""
    client = res.client_field(_org_id(), body["client"])
    contact = svc.add_contact(client.id, _org_id(), svc.ContactData(body["name"], body["email"], body["portal_access"]),
                              actor=actor(), now=now())
    body = present.contact_dict(res.load_contact(_org_id(), contact.id))
    return answer(body, 201, {"Location": url_for("api.get_contact", contact_id=body["id"])})


@bp.get("/contacts")
@bp.arguments(s.ContactQuery, location="query", unknown="raise")
@bp.response(200, s.ContactListOut)
@errors(401, 422)
def list_contacts(query: dict[str, Any]) -> Any:
    """List contacts, newest first (of one client with client=cli_...)."""
    return _page(res.list_contacts(_org_id(), query), present.contact_dict)


@bp.get("/contacts/<contact_id>")
@bp.response(200, s.ContactOut)
@errors(401, 404)
def get_contact(contact_id: str) -> Any:
    """Get a contact."""
    return answer(present.contact_dict(res.get_contact(_org_id(), contact_id)))


@bp.patch("/contacts/<contact_id>")
@bp.arguments(s.ContactPatch, example={"portal_access": True})
@bp.response(200, s.ContactOut)
@errors(401, 403, 404, 422)
def update_contact(body: dict[str, Any], contact_id: str) -> Any:
    """Change a contact's name, email or portal access."""
    contact = res.get_contact(_org_id(), contact_id)
    data = svc.ContactData(body.get("name", contact.name), body.get("email", contact.email),
                           body.get("portal_access", contact.portal_access))
    svc.update_contact(contact.id, _org_id(), data, actor=actor(), now=now())
    return answer(present.contact_dict(res.load_contact(_org_id(), contact.id)))
