"""The API's read side and the translation of its input into the services' plain values.

Everything is scoped to the API key's organization: another organization's id is NotFound (404) in a path and
"no such ..." (422, on the field) in a body or filter, exactly like an id that never existed. The invoice list
reuses the admin list's query (services/queries.py), with a stand-in for the staff user it scopes by.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from invoicing.extensions import db
from invoicing.models import Client, Contact, Invoice, Organization, Payment, User
from invoicing.services import DomainError, NotFound, queries
from invoicing.services.api.present import parse_id, public
from invoicing.services.clients import search_clients
from invoicing.services.invoices import DraftData, LineData, local_today
from invoicing.services.queries import InvoiceFilters, decode_cursor, encode_cursor
from invoicing.services.totals import AMOUNT, PERCENT


class FieldError(DomainError):
    """A value in the request that names nothing (a client of another organization) or breaks a rule of its own."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Conflict(DomainError):
    """The object's state does not allow this (an invoice that is no longer a draft): 409."""


@dataclass(frozen=True)
class KeyScope:
    """An API key's tenancy in the shape services/queries.py scopes staff by (org_scope reads these two)."""

    organization_id: int
    is_superadmin: bool = False


def as_user(organization_id: int) -> User:
    return cast("User", KeyScope(organization_id))


def request_key(api_key_id: int, idempotency_key: str | None) -> str | None:
    """A short, per-key form of the client's Idempotency-Key for the services' own once-only keys."""
    if not idempotency_key:
        return None
    return "api" + hashlib.sha256(f"{api_key_id}:{idempotency_key}".encode()).hexdigest()[:40]


# --- lookups by public id ---------------------------------------------------------------------------------


def _invoice(organization_id: int, clause: Any) -> Invoice:
    invoice = db.session.execute(
        select(Invoice).where(clause, Invoice.organization_id == organization_id)
        .options(joinedload(Invoice.client), joinedload(Invoice.organization), joinedload(Invoice.contact),
                 selectinload(Invoice.lines)).execution_options(populate_existing=True)).scalar_one_or_none()
    if invoice is None:
        raise NotFound("No such invoice.")
    return invoice


def get_invoice(organization_id: int, api_id: str) -> Invoice:
    public_id = parse_id("invoice", api_id)
    if public_id is None:
        raise NotFound("No such invoice.")
    return _invoice(organization_id, Invoice.public_id == public_id)


def load_invoice(organization_id: int, invoice_id: int) -> Invoice:
    return _invoice(organization_id, Invoice.id == invoice_id)


def require_draft(invoice: Invoice, action: str) -> None:
    if invoice.status != "draft":
        raise Conflict(f"Invoice {invoice.number} is {invoice.status}: only drafts can be {action}.")


def require_status(invoice: Invoice, allowed: tuple[str, ...], action: str) -> None:
    if invoice.status not in allowed:
        label = invoice.number or "This draft"
        raise Conflict(f"Invoice {label} is {invoice.status} and cannot be {action}.")


def _one_client(organization_id: int, clause: Any) -> Client | None:
    return db.session.execute(select(Client).where(clause, Client.organization_id == organization_id)
                              .options(selectinload(Client.contacts))
                              .execution_options(populate_existing=True)).scalar_one_or_none()


def _client(organization_id: int, api_id: str | None) -> Client | None:
    public_id = parse_id("client", api_id)
    return None if public_id is None else _one_client(organization_id, Client.public_id == public_id)


def load_client(organization_id: int, client_id: int) -> Client:
    client = _one_client(organization_id, Client.id == client_id)
    if client is None:
        raise NotFound("No such client.")
    return client


def get_client(organization_id: int, api_id: str) -> Client:
    client = _client(organization_id, api_id)
    if client is None:
        raise NotFound("No such client.")
    return client


def client_field(organization_id: int, api_id: str, field: str = "client") -> Client:
    client = _client(organization_id, api_id)
    if client is None:
        raise FieldError(field, f"No such client: {api_id}.")
    return client


def _one_contact(organization_id: int, clause: Any) -> Contact | None:
    return db.session.execute(select(Contact).where(clause, Contact.organization_id == organization_id)
                              .options(joinedload(Contact.client))
                              .execution_options(populate_existing=True)).scalar_one_or_none()


def _contact(organization_id: int, api_id: str | None) -> Contact | None:
    public_id = parse_id("contact", api_id)
    return None if public_id is None else _one_contact(organization_id, Contact.public_id == public_id)


def load_contact(organization_id: int, contact_id: int) -> Contact:
    contact = _one_contact(organization_id, Contact.id == contact_id)
    if contact is None:
        raise NotFound("No such contact.")
    return contact


def get_contact(organization_id: int, api_id: str) -> Contact:
    contact = _contact(organization_id, api_id)
    if contact is None:
        raise NotFound("No such contact.")
    return contact


def get_payment(organization_id: int, api_id: str) -> Payment:
    public_id = parse_id("payment", api_id)
    payment = None if public_id is None else db.session.execute(
        select(Payment).where(Payment.public_id == public_id, Payment.organization_id == organization_id)
        .options(joinedload(Payment.invoice).joinedload(Invoice.client), selectinload(Payment.refunds))
    ).scalar_one_or_none()
    if payment is None:
        raise NotFound("No such payment.")
    return payment


# --- invoice input ------------------------------------------------------------------------------------------


def _discount(value: dict[str, Any] | None) -> tuple[str | None, int]:
    if not value:
        return None, 0
    if value.get("percent") is not None:
        percent = Decimal(value["percent"])
        if percent * 100 != int(percent * 100):
            raise FieldError("discount.percent", "A percent discount takes at most 2 decimals.")
        return PERCENT, int(percent * 100)
    return AMOUNT, int(value["amount"])


def draft_data(organization: Organization, body: dict[str, Any], *, now: datetime,
               current: Invoice | None = None) -> DraftData:
    """The services' DraftData from a POST body, or from a PATCH body laid over the current draft."""
    base = _as_draft(current) if current is not None else None
    if "client" in body:
        client = client_field(organization.id, body["client"])
    elif base is not None:
        client = db.session.get_one(Client, base.client_id)
    else:
        raise FieldError("client", "Missing data for required field.")
    values: dict[str, Any] = {}
    if base is None or "client" in body:
        values["client_id"] = client.id
        values["contact_id"] = None
    if body.get("contact") is not None:
        contact = _contact(organization.id, body["contact"])
        if contact is None or contact.client_id != client.id:
            raise FieldError("contact", f"No such contact of this client: {body['contact']}.")
        values["contact_id"] = contact.id
    elif "contact" in body:
        values["contact_id"] = None
    if "currency" in body:
        values["currency"] = body["currency"].upper()
    elif base is None:
        values["currency"] = client.currency
    if "lines" in body:
        values["lines"] = tuple(LineData(line["description"], line["quantity"], line["unit_price"], line["tax_rate"])
                                for line in body["lines"])
    if "discount" in body:
        values["discount_kind"], values["discount_value"] = _discount(body["discount"])
    for name in ("notes", "project_ref"):
        if name in body:
            values[name] = body[name] or ""
    issue = body.get("issue_date") or (base.issue_date if base else local_today(organization, now))
    values["issue_date"] = issue
    if body.get("due_date"):
        values["due_date"] = body["due_date"]
    elif base is None or "issue_date" in body:
        values["due_date"] = issue + timedelta(days=organization.payment_terms_days)
    if base is None:
        return DraftData(**{"lines": (), **values})
    return replace(base, **values)


def _as_draft(invoice: Invoice) -> DraftData:
    return DraftData(
        client_id=invoice.client_id, contact_id=invoice.contact_id, currency=invoice.currency,
        issue_date=invoice.issue_date, due_date=invoice.due_date,
        lines=tuple(LineData(li.description, li.quantity, li.unit_price, li.tax_rate) for li in invoice.lines),
        discount_kind=invoice.discount_kind, discount_value=invoice.discount_value, notes=invoice.notes,
        project_ref=invoice.project_ref)


# --- lists ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def list_invoices(organization_id: int, query: dict[str, Any], *, now: datetime) -> Page:
    client_id = None
    if query.get("client"):
        client_id = client_field(organization_id, query["client"]).id
    filters = InvoiceFilters(
        status=query.get("status"), q=query.get("q") or "", client_id=client_id,
        currency=(query.get("currency") or "").upper() or None, date_from=query.get("issued_from"),
        date_to=query.get("issued_to"), due_from=query.get("due_from"), due_to=query.get("due_to"),
        sort=query.get("sort") or queries.DEFAULT_SORT)
    page = queries.list_invoices(as_user(organization_id), now=now, filters=filters, cursor=query.get("cursor"),
                                 limit=query["limit"], full=True)
    return Page(page.invoices, page.next_cursor)


def _after(cursor: str | None) -> int | None:
    decoded = decode_cursor(cursor)
    return decoded[1] if decoded is not None else None


def _page(rows: list[Any], limit: int) -> Page:
    if len(rows) > limit:
        return Page(rows[:limit], encode_cursor(None, rows[limit - 1].id))
    return Page(rows, None)


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC)


def list_payments(organization: Organization, query: dict[str, Any]) -> Page:
    """Newest first (keyset on id, so new payments never shift a page being read); dates are the day the payment
    was recorded, in the organization's time zone."""
    stmt = (select(Payment).join(Invoice, Invoice.id == Payment.invoice_id)
            .where(Payment.organization_id == organization.id)
            .options(joinedload(Payment.invoice).joinedload(Invoice.client), selectinload(Payment.refunds)))
    if query.get("client"):
        stmt = stmt.where(Invoice.client_id == client_field(organization.id, query["client"]).id)
    if query.get("invoice"):
        public_id = parse_id("invoice", query["invoice"])
        stmt = stmt.where(Invoice.public_id == (public_id or ""))
    if query.get("method"):
        stmt = stmt.where(Payment.method == query["method"])
    if query.get("status"):
        stmt = stmt.where(Payment.status == query["status"])
    zone = ZoneInfo(organization.timezone)
    if query.get("created_from"):
        stmt = stmt.where(Payment.created_at >= _day_start(query["created_from"], zone))
    if query.get("created_to"):
        stmt = stmt.where(Payment.created_at < _day_start(query["created_to"] + timedelta(days=1), zone))
    after = _after(query.get("cursor"))
    if after is not None:
        stmt = stmt.where(Payment.id < after)
    limit = query["limit"]
    return _page(list(db.session.execute(stmt.order_by(Payment.id.desc()).limit(limit + 1)).unique().scalars()),
                 limit)


def list_clients(organization_id: int, query: dict[str, Any]) -> Page:
    page = search_clients(as_user(organization_id), q=query.get("q") or "", archived=bool(query.get("archived")),
                          cursor=query.get("cursor"), limit=query["limit"], with_contacts=True)
    return Page(page.clients, page.next_cursor)


def list_contacts(organization_id: int, query: dict[str, Any]) -> Page:
    stmt = (select(Contact).where(Contact.organization_id == organization_id)
            .options(joinedload(Contact.client)))
    if query.get("client"):
        stmt = stmt.where(Contact.client_id == client_field(organization_id, query["client"]).id)
    after = _after(query.get("cursor"))
    if after is not None:
        stmt = stmt.where(Contact.id < after)
    limit = query["limit"]
    return _page(list(db.session.execute(stmt.order_by(Contact.id.desc()).limit(limit + 1)).scalars()), limit)


def stats(organization: Organization, query: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """GET /stats: the reports service's figures for the organization, client ids as API ids."""
    from invoicing.services.reports import figures
    from invoicing.services.reports.period import ReportFilters

    client = client_field(organization.id, query["client"]) if query.get("client") else None
    custom = query["period"] == "custom"
    if custom and not (query.get("date_from") and query.get("date_to")):
        raise FieldError("from", "A custom period needs `from` and `to`.")
    if custom and query["date_from"] > query["date_to"]:
        raise FieldError("to", "`to` is before `from`.")
    filters = ReportFilters(preset=query["period"], date_from=query.get("date_from") if custom else None,
                            date_to=query.get("date_to") if custom else None,
                            currency=(query.get("currency") or "").upper() or None,
                            client_id=client.id if client else None)
    found = figures.as_dict(figures.compute(organization.id, filters, tz=organization.timezone, now=now))
    ids = {row["client_id"] for c in found["currencies"] for key in ("top_collected", "top_outstanding")
           for row in c[key]} | {row["client_id"] for row in found["aging"]}
    public_ids = dict(db.session.execute(select(Client.id, Client.public_id).where(
        Client.organization_id == organization.id, Client.id.in_(ids))).all()) if ids else {}
    for row in [*found["aging"], *(r for c in found["currencies"] for k in ("top_collected", "top_outstanding")
                                   for r in c[k])]:
        row["client"] = public("client", public_ids[row.pop("client_id")])
    return {"object": "stats", **found}
