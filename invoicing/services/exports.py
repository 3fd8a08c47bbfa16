"""CSV export for the accountant: one row per invoice, amounts in major units so spreadsheets can sum them."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime

from invoicing.models import Invoice
from invoicing.money import format_plain

COLUMNS = (
    "Number", "Status", "Badges", "Client", "Client email", "Issue date", "Due date", "Currency", "Subtotal",
    "Discount", "Tax", "Total", "Paid", "Amount due", "Sent at", "Viewed at", "Paid at", "Project", "Void reason",
    "Invoice id",
)


def _cell(value: str) -> str:
    """Neutralize spreadsheet formulas (CSV injection): a client named "=HYPERLINK(...)" stays text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def invoice_row(invoice: Invoice, today: date) -> list[str]:
    cur = invoice.currency
    return [
        _cell(invoice.number or ""), invoice.status, " ".join(invoice.badges(today)[1:]), _cell(invoice.client.name),
        _cell(invoice.client.email), invoice.issue_date.isoformat(), invoice.due_date.isoformat(), cur,
        format_plain(invoice.subtotal, cur), format_plain(invoice.discount_total, cur),
        format_plain(invoice.tax_total, cur), format_plain(invoice.total, cur), format_plain(invoice.amount_paid, cur),
        format_plain(invoice.amount_due, cur), _when(invoice.sent_at), _when(invoice.viewed_at),
        _when(invoice.paid_at), _cell(invoice.project_ref), _cell(invoice.void_reason), str(invoice.id),
    ]


def invoices_csv(invoices: Iterable[Invoice], *, today: date) -> Iterator[str]:
    """The CSV text in chunks (header first), for a streamed response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for n, invoice in enumerate(invoices, 1):
        writer.writerow(invoice_row(invoice, today))
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
