"""What the API and the outgoing webhooks show of an object: plain dicts with public ids, money in minor units
beside its currency, dates as ISO 8601. One place, so a webhook's `data.object` is exactly what GET returns.

Imported by services/audit.py (through events.py): nothing here may import a service that records audit events."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from invoicing.extensions import db
from invoicing.models import Client, Contact, Invoice, Payment, Refund
from invoicing.services.site import Site
from invoicing.services.totals import AMOUNT, PERCENT

# The prefix of each kind of id ("inv_" + Invoice.public_id), like Stripe's: an id says what it names.
PREFIXES = {"invoice": "inv_", "client": "cli_", "contact": "con_", "payment": "pay_", "endpoint": "we_",
            "event": "evt_"}


def public(kind: str, public_id: str) -> str:
    return PREFIXES[kind] + public_id


def parse_id(kind: str, value: str | None) -> str | None:
    """The public_id inside an API id ("inv_3f2a..." -> "3f2a..."), or None when it cannot be one of `kind`."""
    prefix = PREFIXES[kind]
    if not value or not value.startswith(prefix):
        return None
    rest = value[len(prefix):]
    return rest if len(rest) == 32 and all(c in "0123456789abcdef" for c in rest) else None


def when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def discount(invoice: Invoice) -> dict[str, Any] | None:
    if invoice.discount_kind == PERCENT:
        return {"percent": str(Decimal(invoice.discount_value) / 100)}  # stored in hundredths of a percent
    if invoice.discount_kind == AMOUNT:
        return {"amount": invoice.discount_value}
    return None


def invoice_summary(invoice: Invoice, *, now: datetime) -> dict[str, Any]:
    """The invoice without its lines and money movements: what a list shows."""
    return {
        "id": public("invoice", invoice.public_id),
        "object": "invoice",
        "number": invoice.number,
        "status": invoice.status,
        # The stored status plus the derived ones (sent, viewed, partial, overdue, disputed, attention).
        "statuses": invoice.badges(now.astimezone(ZoneInfo(invoice.organization.timezone)).date()),
        "client": public("client", invoice.client.public_id),
        "contact": public("contact", invoice.contact.public_id) if invoice.contact_id and invoice.contact else None,
        "currency": invoice.currency,
        "issue_date": day(invoice.issue_date),
        "due_date": day(invoice.due_date),
        "subtotal": invoice.subtotal,
        "discount_total": invoice.discount_total,
        "tax_total": invoice.tax_total,
        "total": invoice.total,
        "amount_paid": invoice.amount_paid,
        "amount_due": invoice.amount_due,
        "project_ref": invoice.project_ref,
        "created_at": when(invoice.created_at),
        "finalized_at": when(invoice.finalized_at),
        "sent_at": when(invoice.sent_at),
        "viewed_at": when(invoice.viewed_at),
        "paid_at": when(invoice.paid_at),
        "voided_at": when(invoice.voided_at),
    }


def refund_dict(refund: Refund) -> dict[str, Any]:
    return {"object": "refund", "amount": refund.amount, "currency": refund.currency, "status": refund.status,
            "reason": refund.reason, "created_at": when(refund.created_at)}


def payment_dict(payment: Payment, *, invoice: Invoice | None = None) -> dict[str, Any]:
    invoice = invoice or payment.invoice
    return {
        "id": public("payment", payment.public_id),
        "object": "payment",
        "invoice": public("invoice", invoice.public_id),
        "client": public("client", invoice.client.public_id),
        "amount": payment.amount,
        "currency": payment.currency,
        "amount_refunded": payment.amount_refunded,
        "status": payment.status,
        "method": payment.method,
        "method_label": payment.method_label,
        "reference": payment.reference,
        "receipt_number": payment.receipt_number,
        "paid_on": day(payment.paid_on),
        "created_at": when(payment.created_at),
        "succeeded_at": when(payment.succeeded_at),
        "failure_code": payment.failure_code,
        "failure_message": payment.failure_message,
        "refunds": [refund_dict(r) for r in payment.refunds],
    }


def invoice_payments(invoice: Invoice) -> list[Payment]:
    """Its payments read now (under a service's lock the relationship loaded earlier may be stale)."""
    return list(db.session.execute(
        select(Payment).where(Payment.invoice_id == invoice.id).order_by(Payment.id)
        .options(selectinload(Payment.refunds)).execution_options(populate_existing=True)).scalars())


def invoice_dict(invoice: Invoice, *, now: datetime, site: Site | None = None) -> dict[str, Any]:
    """Everything about an invoice: lines, totals, payments with their refunds, and the pay link."""
    site = site or Site.from_config(current_app.config)
    payable = invoice.status in ("open", "processing", "paid")
    return {
        **invoice_summary(invoice, now=now),
        "lines": [{
            "description": line.description,
            "quantity": str(line.quantity),
            "unit_price": line.unit_price,
            "tax_rate": str(line.tax_rate),
            "amount": line.amount,
            "discount": line.discount,
            "tax": line.tax,
        } for line in invoice.lines],
        "discount": discount(invoice),
        "notes": invoice.notes,
        "void_reason": invoice.void_reason or None,
        "payments": [payment_dict(p, invoice=invoice) for p in invoice_payments(invoice)],
        "pay_url": site.pay_url(invoice) if payable else None,
    }


def contact_dict(contact: Contact, *, client: Client | None = None) -> dict[str, Any]:
    client = client or contact.client
    return {
        "id": public("contact", contact.public_id),
        "object": "contact",
        "client": public("client", client.public_id),
        "name": contact.name,
        "email": contact.email,
        "portal_access": contact.portal_access,
        "created_at": when(contact.created_at),
    }


def client_dict(client: Client) -> dict[str, Any]:
    return {
        "id": public("client", client.public_id),
        "object": "client",
        "name": client.name,
        "email": client.email,
        "address": client.address,
        "currency": client.currency,
        "archived": client.archived_at is not None,
        "created_at": when(client.created_at),
        "contacts": [contact_dict(c, client=client) for c in client.contacts],
    }
