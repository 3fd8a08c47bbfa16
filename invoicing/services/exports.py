"""CSV export for the accountant: one row per invoice, amounts in major units so spreadsheets can sum them;
how each was paid and who paid it (a portal contact, or the email typed at a pay link's checkout)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from itertools import islice

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from invoicing.extensions import db
from invoicing.models import Invoice, Payment
from invoicing.money import format_plain
from invoicing.services.payments import COUNTED
from invoicing.services.reports.exports import neutralize

COLUMNS = (
    "Number", "Status", "Badges", "Client", "Client email", "Issue date", "Due date", "Currency", "Subtotal",
    "Discount", "Tax", "Total", "Paid", "Amount due", "Sent at", "Viewed at", "Paid at", "Project", "Void reason",
    "Invoice id", "Paid with", "Paid by",
)
BATCH = 500


def _cell(value: str) -> str:
    """Neutralize spreadsheet formulas (CSV injection): a client named "=HYPERLINK(...)" stays text."""
    return neutralize(value)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def paid_by_invoice(invoice_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """How and by whom each invoice was paid, from its money received, in one query: ("Visa •••• 4242; Bank
    transfer", "Ann Lee (ann@client.test); payer@example.com"), the payer being the portal contact who paid or
    the email typed at a pay link's checkout."""
    payments = db.session.execute(
        select(Payment).where(Payment.invoice_id.in_(list(invoice_ids)), Payment.status.in_(COUNTED))
        .options(joinedload(Payment.contact)).order_by(Payment.id)).scalars()
    methods: dict[int, list[str]] = {}
    payers: dict[int, list[str]] = {}
    for payment in payments:
        for seen, label in ((methods.setdefault(payment.invoice_id, []), payment.method_label),
                            (payers.setdefault(payment.invoice_id, []), payment.payer_label)):
            if label and label not in seen:
                seen.append(label)
    return {invoice_id: ("; ".join(names), "; ".join(payers[invoice_id])) for invoice_id, names in methods.items()}


def invoice_row(invoice: Invoice, today: date, paid_with: str = "", paid_by: str = "") -> list[str]:
    cur = invoice.currency
    return [
        _cell(invoice.number or ""), invoice.status, " ".join(invoice.badges(today)[1:]), _cell(invoice.client.name),
        _cell(invoice.client.email), invoice.issue_date.isoformat(), invoice.due_date.isoformat(), cur,
        format_plain(invoice.subtotal, cur), format_plain(invoice.discount_total, cur),
        format_plain(invoice.tax_total, cur), format_plain(invoice.total, cur), format_plain(invoice.amount_paid, cur),
        format_plain(invoice.amount_due, cur), _when(invoice.sent_at), _when(invoice.viewed_at),
        _when(invoice.paid_at), _cell(invoice.project_ref), _cell(invoice.void_reason), str(invoice.id),
        _cell(paid_with), _cell(paid_by),
    ]


def _chunks(items: Iterable[Invoice], size: int) -> Iterator[list[Invoice]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def invoices_csv(invoices: Iterable[Invoice], *, today: date) -> Iterator[str]:
    """The CSV text in chunks (header first), for a streamed response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for chunk in _chunks(invoices, BATCH):
        paid = paid_by_invoice(invoice.id for invoice in chunk)
        for invoice in chunk:
            writer.writerow(invoice_row(invoice, today, *paid.get(invoice.id, ("", ""))))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
