"""A client's statement for a period, in one currency: the opening balance, every invoice, void, payment and
refund with a running balance, and the closing balance. The same statement is the staff page, the PDF, the
email attachment and the portal page.

Balance = what the client owes: an invoice adds its total (on its issue date), voiding it takes that back
(on the day it was voided), money received takes off (a manual payment on its "paid on" date, a provider
payment on the day it succeeded), a refund adds back (the day it was made). Days are the organization's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select

from invoicing.extensions import db
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import Client, Invoice, Organization, Payment, Refund
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.reports.cards import COUNTED, FINAL

KIND_ORDER = {"invoice": 0, "payment": 1, "refund": 2, "void": 3}


@dataclass(frozen=True)
class Line:
    day: date
    kind: str  # invoice, void, payment, refund
    invoice_id: int
    reference: str  # the invoice number
    description: str
    charge: int  # adds to what the client owes
    credit: int  # takes from it
    balance: int = 0


@dataclass(frozen=True)
class Statement:
    organization: Organization
    client: Client
    currency: str
    start: date
    end: date
    opening: int
    lines: list[Line]
    closing: int
    currencies: list[str]  # every currency the client was invoiced in (the page's picker)

    @property
    def charges(self) -> int:
        return sum(line.charge for line in self.lines)

    @property
    def credits(self) -> int:
        return sum(line.credit for line in self.lines)


def get_client(client_id: int, organization_id: int) -> Client:
    client = db.session.execute(select(Client).where(
        Client.id == client_id, Client.organization_id == organization_id)).scalar_one_or_none()
    if client is None:
        raise NotFound("Client not found.")
    return client


def currencies_of(client: Client) -> list[str]:
    found = db.session.execute(select(Invoice.currency).where(
        Invoice.client_id == client.id, Invoice.status != "draft").distinct()).scalars()
    return sorted({*found, client.currency})


def _local(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def _entries(client: Client, currency: str, end: date, zone: ZoneInfo) -> list[Line]:
    """Everything up to the period's end (one client's ledger: tens or hundreds of rows, not millions)."""
    invoices = db.session.execute(select(Invoice).where(
        Invoice.client_id == client.id, Invoice.currency == currency, Invoice.number.is_not(None),
        or_(Invoice.status.in_(FINAL), Invoice.status == "void"), Invoice.issue_date <= end)).scalars().all()
    lines = []
    for inv in invoices:
        lines.append(Line(inv.issue_date, "invoice", inv.id, inv.number or "", f"Invoice {inv.number}",
                          inv.total, 0))
        if inv.status == "void" and inv.voided_at is not None:
            lines.append(Line(_local(inv.voided_at, zone), "void", inv.id, inv.number or "",
                              f"Invoice {inv.number} voided", 0, inv.total))
    numbers = {inv.id: inv.number or "" for inv in invoices}
    payments = db.session.execute(select(Payment).join(Invoice, Invoice.id == Payment.invoice_id).where(
        Invoice.client_id == client.id, Payment.currency == currency, Payment.status.in_(COUNTED))).scalars().all()
    for p in payments:
        day = p.paid_on or _local(p.succeeded_at or p.created_at, zone)
        number = numbers.get(p.invoice_id) or _number(p.invoice_id)
        lines.append(Line(day, "payment", p.invoice_id, number, f"Payment, {p.method_label}"
                          + (f" ({p.reference})" if p.reference else ""), 0, p.amount))
    refunds = db.session.execute(select(Refund).join(Invoice, Invoice.id == Refund.invoice_id).where(
        Invoice.client_id == client.id, Refund.currency == currency, Refund.status == "succeeded")).scalars().all()
    for r in refunds:
        number = numbers.get(r.invoice_id) or _number(r.invoice_id)
        lines.append(Line(_local(r.created_at, zone), "refund", r.invoice_id, number, "Refund"
                          + (f": {r.reason}" if r.reason else ""), r.amount, 0))
    return sorted((line for line in lines if line.day <= end), key=lambda x: (x.day, KIND_ORDER[x.kind], x.invoice_id))


def _number(invoice_id: int) -> str:
    invoice = db.session.get(Invoice, invoice_id)
    return invoice.number or "" if invoice else ""


def build(client_id: int, organization_id: int, *, currency: str | None, start: date, end: date) -> Statement:
    """The statement of one client of this organization (another organization's client is NotFound)."""
    client = get_client(client_id, organization_id)
    org = client.organization
    currencies = currencies_of(client)
    currency = currency if currency in currencies else client.currency
    entries = _entries(client, currency, end, ZoneInfo(org.timezone))
    opening = sum(e.charge - e.credit for e in entries if e.day < start)
    balance, lines = opening, []
    for entry in entries:
        if entry.day >= start:
            balance += entry.charge - entry.credit
            lines.append(Line(**{**entry.__dict__, "balance": balance}))
    return Statement(org, client, currency, start, end, opening, lines, balance, currencies)


def filename_for(statement: Statement) -> str:
    return f"statement-{statement.client.id}-{statement.currency}-{statement.start}-{statement.end}.pdf"


def query_params(statement: Statement) -> dict[str, str]:
    """The query string that asks for this very statement again (its PDF link, the email form)."""
    return {"period": "custom", "from": statement.start.isoformat(), "to": statement.end.isoformat(),
            "currency": statement.currency}


def attachment_spec(statement: Statement) -> dict[str, Any]:
    return {"kind": "statement_pdf", "client_id": statement.client.id, "currency": statement.currency,
            "start": statement.start.isoformat(), "end": statement.end.isoformat()}


def from_spec(spec: dict[str, Any], organization_id: int | None) -> Statement:
    """Rebuild an emailed statement when the email is sent (the figures as of sending)."""
    client = db.session.get(Client, int(spec.get("client_id") or 0))
    if client is None or (organization_id is not None and client.organization_id != organization_id):
        raise NotFound("The client of this statement is gone.")
    return build(client.id, client.organization_id, currency=str(spec.get("currency") or ""),
                 start=date.fromisoformat(str(spec["start"])), end=date.fromisoformat(str(spec["end"])))


def email_statement(client_id: int, organization_id: int, *, currency: str | None, start: date, end: date,
                    to: str | None, actor: Actor, now: datetime, default_sender: str) -> str:
    """Queue the statement to the client's billing email (or `to`) with its PDF attached; audited."""
    with atomic():
        statement = build(client_id, organization_id, currency=currency, start=start, end=end)
        recipient = (to or statement.client.email or "").strip()
        if not recipient:
            raise DomainError(f"{statement.client.name} has no billing email: enter a recipient.")
        subject = f"Statement from {statement.organization.name}, {start:%b %-d, %Y} to {end:%b %-d, %Y}"
        text, html = render_email("statement", subject=subject, organization=statement.organization,
                                  statement=statement)
        from_addr, reply_to = sender_for(statement.organization, default_sender)
        enqueue(kind="statement", to=recipient, subject=subject, text_body=text, html_body=html,
                from_addr=from_addr, reply_to=reply_to, now=now, organization_id=organization_id,
                attachments=[attachment_spec(statement)])
        record("statement.emailed", statement.client, actor=actor, now=now, details={
            "to": recipient, "currency": statement.currency, "start": start.isoformat(), "end": end.isoformat(),
            "closing": statement.closing})
    return recipient
