"""Clients and their contacts: create, edit, archive; and the read side of the client pages.

Every change writes an AuditEvent in the same transaction. An archived client keeps its history but gets no
new invoices (services/invoices.py refuses them) and leaves the pickers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Select, case, delete, exists, func, select
from sqlalchemy.orm import joinedload, selectinload

from invoicing.extensions import db
from invoicing.models import (
    AutopayConsent,
    Client,
    Contact,
    Invoice,
    Organization,
    Payment,
    PaymentMethod,
    PortalLogin,
    Refund,
    User,
)
from invoicing.money import MoneyError, check_currency
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.portal.auth import end_sessions
from invoicing.services.queries import client_match, decode_cursor, encode_cursor, scoped
from invoicing.services.users import normalize_email

PAGE_SIZE = 50


@dataclass(frozen=True)
class ClientData:
    name: str
    email: str = ""  # billing email: where invoices go when no contact is chosen
    address: str = ""
    currency: str = "USD"
    tax_id: str = ""  # VAT number, EIN...: printed on its invoices


@dataclass(frozen=True)
class ContactData:
    name: str
    email: str
    portal_access: bool = False


def _clean_client(data: ClientData) -> dict[str, Any]:
    name = data.name.strip()
    if not name:
        raise DomainError("Give the client a name.")
    if len(name) > 200:
        raise DomainError("The name can have at most 200 characters.")
    try:
        currency = check_currency(data.currency)
    except MoneyError as exc:
        raise DomainError(str(exc)) from None
    email = normalize_email(data.email) if data.email.strip() else ""
    return {"name": name, "email": email, "address": data.address.strip(), "currency": currency,
            "tax_id": clean_tax_id(data.tax_id)}


MAX_TAX_ID = 64


def clean_tax_id(value: str) -> str:
    """A tax id as typed (trimmed, inner spaces kept: "DE 123 456 789"), at most MAX_TAX_ID characters."""
    tax_id = " ".join(value.split())
    if len(tax_id) > MAX_TAX_ID:
        raise DomainError(f"The tax id can have at most {MAX_TAX_ID} characters.")
    return tax_id


def _clean_contact(data: ContactData) -> dict[str, Any]:
    name = data.name.strip()
    if not name:
        raise DomainError("Give the contact a name.")
    if len(name) > 200:
        raise DomainError("The name can have at most 200 characters.")
    return {"name": name, "email": normalize_email(data.email), "portal_access": bool(data.portal_access)}


def _lock_client(client_id: int, organization_id: int) -> Client:
    client = db.session.execute(
        select(Client).where(Client.id == client_id, Client.organization_id == organization_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if client is None:
        raise NotFound("Client not found.")
    return client


def create_client(
    organization: Organization, data: ClientData, *, actor: Actor, now: datetime,
    contacts: Sequence[ContactData] = (),
) -> Client:
    values = _clean_client(data)
    cleaned = [_clean_contact(c) for c in contacts]
    if len({c["email"] for c in cleaned}) != len(cleaned):
        raise DomainError("Two contacts have the same email address.")
    with atomic():
        client = Client(organization_id=organization.id, created_at=now, **values)
        client.contacts = [Contact(organization_id=organization.id, created_at=now, **c) for c in cleaned]
        db.session.add(client)
        db.session.flush()
        record("client.created", client, actor=actor, now=now, details={"name": client.name})
        for contact in client.contacts:
            record("contact.added", contact, actor=actor, now=now, details={"email": contact.email})
    return client


def update_client(client_id: int, organization_id: int, data: ClientData, *, actor: Actor, now: datetime) -> Client:
    values = _clean_client(data)
    with atomic():
        client = _lock_client(client_id, organization_id)
        changed = {k: v for k, v in values.items() if getattr(client, k) != v}
        for key, value in changed.items():
            setattr(client, key, value)
        if changed:
            record("client.updated", client, actor=actor, now=now, details={"changed": sorted(changed)})
    return client


def archive_client(client_id: int, organization_id: int, *, actor: Actor, now: datetime) -> Client:
    """Hide the client from pickers and refuse new invoices; its invoices and payments stay as they are."""
    with atomic():
        client = _lock_client(client_id, organization_id)
        if client.archived_at is not None:
            raise DomainError(f"{client.name} is already archived.")
        client.archived_at = now
        record("client.archived", client, actor=actor, now=now)
    return client


def unarchive_client(client_id: int, organization_id: int, *, actor: Actor, now: datetime) -> Client:
    with atomic():
        client = _lock_client(client_id, organization_id)
        if client.archived_at is None:
            raise DomainError(f"{client.name} is not archived.")
        client.archived_at = None
        record("client.unarchived", client, actor=actor, now=now)
    return client


def _email_taken(client_id: int, email: str, except_contact: int | None = None) -> bool:
    query = select(Contact.id).where(Contact.client_id == client_id, Contact.email == email)
    if except_contact is not None:
        query = query.where(Contact.id != except_contact)
    return db.session.execute(query).first() is not None


def add_contact(client_id: int, organization_id: int, data: ContactData, *, actor: Actor, now: datetime) -> Contact:
    values = _clean_contact(data)
    with atomic():
        client = _lock_client(client_id, organization_id)
        if _email_taken(client.id, values["email"]):
            raise DomainError(f"{client.name} already has a contact with the email {values['email']}.")
        contact = Contact(organization_id=organization_id, client_id=client.id, created_at=now, **values)
        db.session.add(contact)
        db.session.flush()
        record("contact.added", contact, actor=actor, now=now, details={"email": contact.email})
    return contact


def _get_contact(contact_id: int, organization_id: int) -> Contact:
    contact = db.session.execute(
        select(Contact).where(Contact.id == contact_id, Contact.organization_id == organization_id)
    ).scalar_one_or_none()
    if contact is None:
        raise NotFound("Contact not found.")
    return contact


def update_contact(
    contact_id: int, organization_id: int, data: ContactData, *, actor: Actor, now: datetime
) -> Contact:
    values = _clean_contact(data)
    with atomic():
        contact = _get_contact(contact_id, organization_id)
        _lock_client(contact.client_id, organization_id)
        if _email_taken(contact.client_id, values["email"], except_contact=contact.id):
            raise DomainError(f"Another contact of this client has the email {values['email']}.")
        changed = {k: v for k, v in values.items() if getattr(contact, k) != v}
        for key, value in changed.items():
            setattr(contact, key, value)
        if changed:
            record("contact.updated", contact, actor=actor, now=now, details={"changed": sorted(changed)})
        _portal_changes(contact, changed, actor=actor, now=now)
    return contact


def _portal_changes(contact: Contact, changed: dict[str, Any], *, actor: Actor, now: datetime) -> None:
    """The portal box really opens and closes the portal: unticked ends the contact's live sessions, unused
    sign-in links and password, like "Revoke access"; a new email does the same (the password and sessions
    were the old address's)."""
    if changed.get("portal_access") is True:
        record("contact.portal_enabled", contact, actor=actor, now=now, details={"email": contact.email})
    elif changed.get("portal_access") is False:
        record("contact.portal_revoked", contact, actor=actor, now=now, details={"email": contact.email})
    if ("portal_access" in changed and not contact.portal_access) or "email" in changed:
        end_sessions(contact, now=now, forget_password=True)


def remove_contact(contact_id: int, organization_id: int, *, actor: Actor, now: datetime) -> None:
    """Delete a contact nobody's money or sent invoices refer to; drafts addressed to it fall back to the
    client's billing email. A contact on the record (sent invoices, payments, a card they saved or an autopay
    consent they gave) is kept: turn off its access."""
    with atomic():
        contact = _get_contact(contact_id, organization_id)
        _lock_client(contact.client_id, organization_id)
        on_record = db.session.execute(select(
            exists().where(Invoice.contact_id == contact.id, Invoice.status != "draft")
            | exists().where(Payment.contact_id == contact.id)
            | exists().where(AutopayConsent.contact_id == contact.id)  # the record of a mandate they gave
            | exists().where(PaymentMethod.added_by_contact_id == contact.id)
        )).scalar()
        if on_record:
            raise DomainError(
                f"{contact.name} is on sent invoices, payments, saved cards or autopay consents, so it stays on the "
                "record: turn off portal access instead."
            )
        for draft in db.session.execute(select(Invoice).where(Invoice.contact_id == contact.id)).scalars():
            draft.contact_id = None
        db.session.execute(delete(PortalLogin).where(PortalLogin.contact_id == contact.id))
        record("contact.removed", contact, actor=actor, now=now, details={"email": contact.email})
        db.session.delete(contact)


# --- read side -------------------------------------------------------------------------------------------


def get_client(user: User, client_id: int) -> Client:
    """The client if this user may see it; another tenant's client is NotFound, like a missing one."""
    client = db.session.execute(
        scoped(select(Client), Client, user).where(Client.id == client_id)
        .options(selectinload(Client.contacts), joinedload(Client.organization))
    ).scalar_one_or_none()
    if client is None:
        raise NotFound("Client not found.")
    return client


@dataclass(frozen=True)
class ClientPage:
    clients: list[Client]
    next_cursor: str | None


def _search(query: Any, q: str) -> Any:
    term = q.strip()
    if not term:
        return query
    return query.where(client_match(term))  # name or email contains it, through the search index


def search_clients(
    user: User, *, q: str = "", archived: bool = False, cursor: str | None = None, limit: int = PAGE_SIZE,
    with_contacts: bool = False,
) -> ClientPage:
    """Clients by name (keyset on name, id), matching name or email; active ones unless archived=True."""
    query = _search(scoped(select(Client), Client, user), q)
    if with_contacts:
        query = query.options(selectinload(Client.contacts))
    query = query.where(Client.archived_at.is_not(None) if archived else Client.archived_at.is_(None))
    after = decode_cursor(cursor)
    if after is not None and isinstance(after[0], str):
        name, ident = after
        query = query.where((Client.name > name) | ((Client.name == name) & (Client.id > ident)))
    rows = list(db.session.execute(query.order_by(Client.name, Client.id).limit(limit + 1)).scalars())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].name, rows[-1].id)
    return ClientPage(rows, next_cursor)


def client_choices(user: User, *, q: str = "", selected_id: int | None = None, limit: int = 30) -> list[Any]:
    """Active clients for a picker as (id, name, archived_at) rows: the selected one first, then the matches
    by name. Plain rows, not objects: a picker on every list page should cost next to nothing."""
    picker = cast("Select[Any]", select(Client.id, Client.name, Client.archived_at))
    query = _search(scoped(picker, Client, user), q).where(Client.archived_at.is_(None))
    found = list(db.session.execute(query.order_by(Client.name, Client.id).limit(limit)).all())
    if selected_id is not None and all(c.id != selected_id for c in found):
        selected = db.session.execute(scoped(picker, Client, user).where(Client.id == selected_id)).first()
        if selected is not None:
            found.insert(0, selected)
    return found


def client_currencies(user: User) -> list[str]:
    """Currencies the organization's clients are billed in (cheap: clients, not invoices)."""
    return list(db.session.execute(
        scoped(select(Client.currency).distinct(), Client, user).order_by(Client.currency)
    ).scalars())


@dataclass(frozen=True)
class Balance:
    currency: str
    due: int
    overdue: int
    open_invoices: int


@dataclass(frozen=True)
class ClientSummary:
    balances: list[Balance]
    invoices: list[Invoice]
    payments: list[Payment]
    refunds: list[Refund]


def client_summary(client: Client, *, today: date, limit: int = 20) -> ClientSummary:
    """Balance due per currency (open and processing invoices), latest invoices, payment history."""
    unpaid = Invoice.status.in_(("open", "processing"))
    balances = []
    for currency, due, overdue, count in db.session.execute(
        select(
            Invoice.currency,
            func.sum(Invoice.total - Invoice.amount_paid),
            func.sum(_overdue_amount(today)),
            func.count(),
        ).where(Invoice.client_id == client.id, unpaid).group_by(Invoice.currency).order_by(Invoice.currency)
    ):
        balances.append(Balance(currency, int(due or 0), int(overdue or 0), int(count)))
    invoices = list(db.session.execute(
        select(Invoice).where(Invoice.client_id == client.id)
        .order_by(Invoice.issue_date.desc(), Invoice.id.desc()).limit(limit)
    ).scalars())
    payments = list(db.session.execute(
        select(Payment).join(Invoice, Payment.invoice_id == Invoice.id)
        .where(Invoice.client_id == client.id)
        .options(joinedload(Payment.invoice))
        .order_by(Payment.id.desc()).limit(limit)
    ).scalars())
    refunds = list(db.session.execute(
        select(Refund).join(Invoice, Refund.invoice_id == Invoice.id)
        .where(Invoice.client_id == client.id).order_by(Refund.id.desc()).limit(limit)
    ).scalars())
    return ClientSummary(balances, invoices, payments, refunds)


def _overdue_amount(today: date) -> Any:
    return case(
        ((Invoice.status == "open") & (Invoice.due_date < today), Invoice.total - Invoice.amount_paid), else_=0
    )
