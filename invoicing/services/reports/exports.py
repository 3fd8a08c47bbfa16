"""Exports for the accountant: invoices, line items, payments, refunds and the aging report, as CSV or Excel.

- Streamed with constant memory: rows are read in keyset batches (by id) as plain rows, never all at once;
  CSV goes out chunk by chunk, and .xlsx is written by openpyxl's write-only workbook to a temporary file
  that is then streamed (a zip cannot be finished before its last row is known).
- Money is a decimal number in the row's currency with a Currency column (Excel: a numeric cell formatted
  with the currency's decimals: 0 for JPY, 3 for KWD); dates are dates; times are in the organization's time
  zone, which each time column's header names.
- Every text cell is neutralized against spreadsheet formula injection (a leading = + - @ tab or carriage
  return gets a ' in front), in both formats.
- Each export is audited (who, which report, which format, which filters) before the first byte leaves.
"""

from __future__ import annotations

import csv
import heapq
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from sqlalchemy import select, tuple_

from invoicing.extensions import db
from invoicing.models import AuditEvent, Client, Contact, Invoice, LineItem, Organization, Payment, Refund
from invoicing.money import from_minor, precision
from invoicing.services.audit import Actor
from invoicing.services.db import atomic
from invoicing.services.queries import unindexed
from invoicing.services.reports import aging
from invoicing.services.reports.cards import (
    CHANNELS,
    FINAL,
    channel,
    collected_by_date,
    collected_by_instant,
    refund_made,
)
from invoicing.services.reports.period import Period, ReportFilters

BATCH = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMATS = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def neutralize(value: str) -> str:
    """Spreadsheet formula injection (OWASP "CSV injection"): text that a spreadsheet would run as a formula
    starts with a ' and stays text. A client named "=HYPERLINK(...)" is shown, never followed."""
    return "'" + value if value[:1] in FORMULA_STARTS else value


@dataclass(frozen=True)
class Money:
    minor: int
    currency: str

    @property
    def decimal(self) -> Decimal:
        return from_minor(self.minor, self.currency)


Cell = str | int | Decimal | Money | date | datetime | None


@dataclass(frozen=True)
class Dataset:
    name: str
    label: str
    columns: tuple[str, ...]
    rows: Callable[[int, ReportFilters, Period], Iterator[tuple[Cell, ...]]]


# --- the rows --------------------------------------------------------------------------------------------


def _batches(query: Any, keys: tuple[Any, ...], position: Callable[[Any], tuple[Any, ...]]) -> Iterator[Any]:
    """Every row of `query` in batches, keyset-paginated in the order of the index its filter walks (`keys`,
    ending with a unique id): each batch is one index seek, whatever the number of rows before it; constant
    memory, no cursor held open between batches."""
    last: tuple[Any, ...] | None = None
    while True:
        page = query if last is None else query.where(tuple_(*keys) > tuple_(*last))
        rows = db.session.execute(page.order_by(*keys).limit(BATCH)).all()
        yield from rows
        if len(rows) < BATCH:
            return
        last = position(rows[-1])


def _local(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    return moment.astimezone(zone).replace(tzinfo=None) if moment else None


def _scope(model: Any, organization_id: int, filters: ReportFilters) -> list[Any]:
    clauses = [model.organization_id == organization_id]
    if filters.currency:
        clauses.append(model.currency == filters.currency)
    if filters.client_id is not None:
        clauses.append(Invoice.client_id == filters.client_id)
    return clauses


INVOICE_COLUMNS = ("Invoice id", "Number", "Status", "Client", "Client email", "Issue date", "Due date", "Currency",
                   "Subtotal", "Discount", "Tax", "Total", "Paid", "Amount due", "Sent at", "Viewed at", "Paid at",
                   "Voided at", "Project", "Void reason")


def invoice_rows(organization_id: int, filters: ReportFilters, period: Period) -> Iterator[tuple[Cell, ...]]:
    """Invoices issued in the period (finalized or void; drafts are not invoices yet)."""
    zone = ZoneInfo(period.tz)
    query = (select(Invoice.id, Invoice.number, Invoice.status, Client.name, Client.email, Invoice.issue_date,
                    Invoice.due_date, Invoice.currency, Invoice.subtotal, Invoice.discount_total, Invoice.tax_total,
                    Invoice.total, Invoice.amount_paid, Invoice.sent_at, Invoice.viewed_at, Invoice.paid_at,
                    Invoice.voided_at, Invoice.project_ref, Invoice.void_reason)
             .join(Client, Client.id == unindexed(Invoice.client_id))  # walk the invoices by date, not by client
             .where(*_scope(Invoice, organization_id, filters), Invoice.status.in_((*FINAL, "void")),
                    Invoice.issue_date >= period.start, Invoice.issue_date <= period.end))
    for r in _batches(query, (Invoice.issue_date, Invoice.id), lambda r: (r.issue_date, r.id)):
        cur = r.currency
        due = max(r.total - r.amount_paid, 0) if r.status in ("open", "processing") else 0
        yield (r.id, r.number, r.status, r.name, r.email, r.issue_date, r.due_date, cur, Money(r.subtotal, cur),
               Money(r.discount_total, cur), Money(r.tax_total, cur), Money(r.total, cur), Money(r.amount_paid, cur),
               Money(due, cur), _local(r.sent_at, zone), _local(r.viewed_at, zone), _local(r.paid_at, zone),
               _local(r.voided_at, zone), r.project_ref, r.void_reason)


LINE_COLUMNS = ("Line id", "Invoice id", "Number", "Client", "Issue date", "Currency", "Position", "Description",
                "Quantity", "Unit price", "Tax rate %", "Amount", "Discount", "Tax", "Line total")


def line_rows(organization_id: int, filters: ReportFilters, period: Period) -> Iterator[tuple[Cell, ...]]:
    invoices = (select(Invoice.id, Invoice.number, Client.name, Invoice.issue_date, Invoice.currency)
                .join(Client, Client.id == unindexed(Invoice.client_id))
                .where(*_scope(Invoice, organization_id, filters), Invoice.status.in_((*FINAL, "void")),
                       Invoice.issue_date >= period.start, Invoice.issue_date <= period.end))
    thousand = Decimal(1000)
    batch: list[Any] = []
    for invoice in [*_batches(invoices, (Invoice.issue_date, Invoice.id), lambda r: (r.issue_date, r.id)), None]:
        if invoice is not None:
            batch.append(invoice)
        if batch and (invoice is None or len(batch) == BATCH):  # the lines of a batch of invoices at once
            by_id = {i.id: i for i in batch}
            for r in db.session.execute(select(
                    LineItem.id, LineItem.invoice_id, LineItem.position, LineItem.description, LineItem.quantity_milli,
                    LineItem.unit_price, LineItem.tax_rate_milli, LineItem.amount, LineItem.discount, LineItem.tax)
                    .where(LineItem.invoice_id.in_(list(by_id))).order_by(LineItem.invoice_id, LineItem.position)):
                i, cur = by_id[r.invoice_id], by_id[r.invoice_id].currency
                yield (r.id, i.id, i.number, i.name, i.issue_date, cur, r.position + 1, r.description,
                       Decimal(r.quantity_milli) / thousand, Money(r.unit_price, cur),
                       Decimal(r.tax_rate_milli) / thousand, Money(r.amount, cur), Money(r.discount, cur),
                       Money(r.tax, cur), Money(r.amount - r.discount + r.tax, cur))
            batch = []


PAYMENT_COLUMNS = ("Payment id", "Receipt", "Invoice id", "Number", "Client", "Payer", "Payer email", "Method",
                   "Channel", "Status", "Currency", "Amount", "Refunded", "Net", "Paid on", "Succeeded at",
                   "Provider reference", "Reference")


def payment_rows(organization_id: int, filters: ReportFilters, period: Period) -> Iterator[tuple[Cell, ...]]:
    """Money received in the period (the Collected card's payments): who paid, how, the provider's id."""
    zone = ZoneInfo(period.tz)
    # Plain rows, no ORM objects (memory stays flat); Payment.method_label reads the same names off the row.
    query = (select(Payment.id, Payment.receipt_number, Payment.invoice_id, Payment.currency, Payment.amount,
                    Payment.amount_refunded, Payment.status, Payment.paid_on, Payment.succeeded_at, Payment.reference,
                    Payment.payment_intent_id, Payment.charge_id, Payment.checkout_session_id, Payment.method,
                    Payment.method_type, Payment.method_brand, Payment.method_last4, Payment.method_wallet,
                    Payment.method_bank, Invoice.number, Client.name.label("client"), Contact.name.label("payer"),
                    Contact.email.label("payer_email"), channel().label("channel"))
             .join(Invoice, Invoice.id == Payment.invoice_id).join(Client, Client.id == Invoice.client_id)
             .outerjoin(Contact, Contact.id == Payment.contact_id)
             .where(*_scope(Payment, organization_id, filters)))

    def rows(half: Any, keys: tuple[Any, ...], position: Callable[[Any], tuple[Any, ...]]) -> Iterator[Any]:
        for p in _batches(query.where(half), keys, position):
            cur, succeeded = p.currency, _local(p.succeeded_at, zone)
            day = p.paid_on or (succeeded.date() if succeeded else None)
            yield (day, p.id), (
                p.id, p.receipt_number, p.invoice_id, p.number, p.client, p.payer or p.client, p.payer_email,
                method_label(p), CHANNELS.get(p.channel, p.channel), p.status, cur, Money(p.amount, cur),
                Money(p.amount_refunded, cur), Money(p.amount - p.amount_refunded, cur), day, succeeded,
                p.payment_intent_id or p.charge_id or p.checkout_session_id or "", p.reference)

    by_date = rows(collected_by_date(period), (Payment.paid_on, Payment.id), lambda r: (r.paid_on, r.id))
    by_instant = rows(collected_by_instant(period), (Payment.succeeded_at, Payment.id),
                      lambda r: (r.succeeded_at, r.id))
    for _, row in heapq.merge(by_date, by_instant, key=lambda item: item[0]):  # in the order money came in
        yield row


def method_label(row: Any) -> str:
    """The model's own wording ("Visa •••• 4242", "Bank transfer"), read off a plain row of the same names."""
    return str(cast(property, Payment.method_label).fget(row))  # type: ignore[misc]


REFUND_COLUMNS = ("Refund id", "Payment id", "Invoice id", "Number", "Client", "Currency", "Amount", "Status",
                  "Made at", "Reason", "Provider reference", "Failure reason")


def refund_rows(organization_id: int, filters: ReportFilters, period: Period) -> Iterator[tuple[Cell, ...]]:
    """Refunds made in the period that went through (the Refunded card's)."""
    zone = ZoneInfo(period.tz)
    query = (select(Refund.id, Refund.payment_id, Refund.invoice_id, Invoice.number, Client.name, Refund.currency,
                    Refund.amount, Refund.status, Refund.created_at, Refund.reason, Refund.provider_refund_id,
                    Refund.failure_reason)
             .join(Invoice, Invoice.id == Refund.invoice_id).join(Client, Client.id == Invoice.client_id)
             .where(*_scope(Refund, organization_id, filters), refund_made(period)))
    for r in _batches(query, (Refund.created_at, Refund.id), lambda r: (r.created_at, r.id)):
        yield (r.id, r.payment_id, r.invoice_id, r.number, r.name, r.currency, Money(r.amount, r.currency),
               r.status, _local(r.created_at, zone), r.reason, r.provider_refund_id or "", r.failure_reason or "")


AGING_COLUMNS = ("Client id", "Client", "Currency", "Invoices", *aging.BUCKETS.values(), "Total")


def aging_rows(organization_id: int, filters: ReportFilters, period: Period) -> Iterator[tuple[Cell, ...]]:
    """The aging report as of today (one row per client and currency, then a total per currency)."""
    report = aging.compute(organization_id, today=period.today, currency=filters.currency,
                           client_id=filters.client_id, sort="name", descending=False)
    for row in [*report.rows, *report.totals.values()]:
        cur = row.currency
        yield (row.client_id or None, row.name, cur, row.count, *[Money(row.buckets[b], cur) for b in aging.BUCKETS],
               Money(row.total, cur))


DATASETS = {d.name: d for d in (
    Dataset("invoices", "Invoices", INVOICE_COLUMNS, invoice_rows),
    Dataset("lines", "Line items", LINE_COLUMNS, line_rows),
    Dataset("payments", "Payments", PAYMENT_COLUMNS, payment_rows),
    Dataset("refunds", "Refunds", REFUND_COLUMNS, refund_rows),
    Dataset("aging", "Aging", AGING_COLUMNS, aging_rows),
)}
TIME_COLUMNS = {"Sent at", "Viewed at", "Paid at", "Voided at", "Succeeded at", "Made at"}


def headers(dataset: Dataset, tz: str) -> list[str]:
    return [f"{c} ({tz})" if c in TIME_COLUMNS else c for c in dataset.columns]


# --- the two formats -------------------------------------------------------------------------------------


def _csv_value(value: Cell) -> str | int | Decimal:
    if value is None:
        return ""
    if isinstance(value, Money):
        return value.decimal
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return neutralize(value)
    return value


def write_csv(header: list[str], rows: Iterable[tuple[Cell, ...]], chunk: int = 500) -> Iterator[str]:
    """CSV text in chunks (header first), for a streamed response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([neutralize(h) for h in header])
    for n, row in enumerate(rows, 1):
        writer.writerow([_csv_value(v) for v in row])
        if n % chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


NUMBER_FORMATS = {0: "#,##0", 1: "#,##0.0", 2: "#,##0.00", 3: "#,##0.000", 4: "#,##0.0000"}


def write_xlsx(title: str, header: list[str], rows: Iterable[tuple[Cell, ...]],
               read_size: int = 64 * 1024) -> Iterator[bytes]:
    """An .xlsx file, written row by row by a write-only workbook (constant memory), then streamed."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    sheet.append([neutralize(h) for h in header])
    formats: dict[str, str] = {}

    def cell(value: Cell) -> Any:
        # Plain values where openpyxl's own typing is right (it formats dates itself; a neutralized string can
        # never start a formula, so it is written as text); a styled cell only where money needs its decimals.
        if isinstance(value, Money):
            c = WriteOnlyCell(sheet, value.decimal)
            fmt = formats.get(value.currency)
            if fmt is None:
                fmt = formats[value.currency] = NUMBER_FORMATS.get(precision(value.currency), "General")
            c.number_format = fmt
            return c
        if isinstance(value, str):
            return neutralize(value)
        return value

    for row in rows:
        sheet.append([cell(v) for v in row])
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        workbook.save(path)
        with open(path, "rb") as file:
            while block := file.read(read_size):
                yield block
    finally:
        os.unlink(path)


# --- the service the views call --------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    filename: str
    mimetype: str
    body: Iterator[str] | Iterator[bytes]


def record_export(organization_id: int | None, report: str, fmt: str, filters: dict[str, Any], *, actor: Actor,
                  now: datetime, rows: int | None = None) -> None:
    """The audit event of an export (also the invoice list's CSV): who, which report, format and filters."""
    details: dict[str, Any] = {"report": report, "format": fmt, "filters": filters}
    if rows is not None:
        details["rows"] = rows
    with atomic():
        db.session.add(AuditEvent(organization_id=organization_id, actor_type=actor.type, actor_id=actor.id,
                                  actor_label=actor.label, action="report.exported", object_type="organization",
                                  object_id=organization_id, details=details, created_at=now))


def export(organization: Organization, dataset_name: str, fmt: str, filters: ReportFilters, *, actor: Actor,
           now: datetime) -> Export:
    """Record who exported what (audit), then hand back the streamed file."""
    dataset, period = DATASETS[dataset_name], filters.period(organization.timezone, now)
    record_export(organization.id, dataset.name, fmt, filters.params(), actor=actor, now=now)
    header = headers(dataset, organization.timezone)
    rows = dataset.rows(organization.id, filters, period)
    name = f"{dataset.name}-{period.start.isoformat()}-to-{period.end.isoformat()}.{fmt}"
    body = write_xlsx(dataset.label, header, rows) if fmt == "xlsx" else write_csv(header, rows)
    return Export(name, FORMATS[fmt], body)
