"""What a signed-in contact sees of their company's invoices: the list (tabs, search, keyset pages), the amounts
due per currency, an invoice with its payment history, and the receipts of money received.

Every function takes the contact's `client_id` and filters by it: another company's invoice or payment, a
draft and a missing one are all NotFound (the same 404). The list is keyset-paginated on (issue date, id) over
ix_invoice_client_issue_search, so page 200 of a company with 5,000 invoices costs what page 1 does; the ids of a
page come from an index alone (ix_invoice_client_status for the open, overdue and paid tabs and the amounts due;
ix_invoice_client_issue_search for "all" and a search, which reads the company's index entries newest first until
a page is full), then the 25 rows, as plain rows rather than ORM objects. Measured with bench/portal_bench.py.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, String, and_, bindparam, case, func, or_, select, true, tuple_
from sqlalchemy.orm import joinedload, selectinload

from invoicing.extensions import db
from invoicing.models import Contact, Invoice, Payment
from invoicing.services import NotFound
from invoicing.services.payments import COUNTED
from invoicing.services.queries import _escape_like, decode_cursor, encode_cursor, unindexed

TABS = ("open", "overdue", "paid", "all")
DEFAULT_TAB = "open"
PAGE_SIZE = 25
MAX_SEARCH = 100
# The badges a client sees: the admin's (Invoice.badges) without staff-only ones (emailed, viewed, attention).
CLIENT_BADGES = frozenset(("open", "processing", "paid", "void", "partial", "overdue", "disputed"))
UNPAID = ("open", "processing")
NOT_FOUND = "Invoice not found."


@dataclass(frozen=True)
class Filters:
    """What the list shows; `params()` is its query string (the address holds only what differs from default)."""

    tab: str = DEFAULT_TAB
    q: str = ""

    @classmethod
    def parse(cls, tab: str | None, q: str | None) -> Filters:
        return cls(tab=tab if tab in TABS else DEFAULT_TAB, q=(q or "").strip()[:MAX_SEARCH])

    def params(self, **changes: Any) -> dict[str, str]:
        f = replace(self, **changes)
        values = {"tab": f.tab if f.tab != DEFAULT_TAB else None, "q": f.q or None}
        return {k: v for k, v in values.items() if v}


class Row:
    """One line of the list, read as a plain row; badges and amount due are the model's own methods."""

    __slots__ = ("id", "public_id", "number", "status", "currency", "issue_date", "due_date", "total", "amount_paid",
                 "project_ref", "sent_at", "viewed_at", "disputed_at", "attention_since")

    id: int
    public_id: str
    number: str
    status: str
    currency: str
    issue_date: date
    due_date: date
    total: int
    amount_paid: int

    def __init__(self, *values: Any):
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)

    amount_due = Invoice.amount_due
    is_overdue = Invoice.is_overdue
    badges: Any = Invoice.badges

    def client_badges(self, today: date) -> list[str]:
        return client_badges(self, today)


ROW_COLUMNS = (Invoice.id, Invoice.public_id, Invoice.number, Invoice.status, Invoice.currency, Invoice.issue_date,
               Invoice.due_date, Invoice.total, Invoice.amount_paid, Invoice.project_ref, Invoice.sent_at,
               Invoice.viewed_at, Invoice.disputed_at, Invoice.attention_since)


def client_badges(invoice: Row | Invoice, today: date) -> list[str]:
    return [b for b in invoice.badges(today) if b in CLIENT_BADGES]


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    next_cursor: str | None
    filters: Filters


# The statements are built once and run with bound values: building them with the ORM on each request cost more
# than running them (bench/portal_bench.py).
TODAY = bindparam("today", type_=Date())


def _tab_clause(tab: str) -> Any:
    if tab == "open":
        return Invoice.status.in_(UNPAID)
    if tab == "overdue":
        return and_(Invoice.status == "open", Invoice.due_date < TODAY)
    if tab == "paid":
        return Invoice.status == "paid"
    return true()  # all: every invoice but drafts, which no tab shows


def _search_pattern(term: str) -> str:
    """The number or the project reference contains the term (a client types "0042" or "Website")."""
    return f"%{_escape_like(term)}%"


@functools.cache
def _list_statement(tab: str, search: bool, after: bool, limit: int) -> Any:
    """The ids first, then the rows shown: a tab's ids come from ix_invoice_client_status alone. The open tab (open
    and processing: two ranges of it) sorts its few ids; walking the company's invoices by date instead (SQLite's
    choice without the hint) would read every paid one before an old open one."""
    query = select(Invoice.id).where(Invoice.client_id == bindparam("client"), Invoice.status != "draft",
                                     _tab_clause(tab))
    if search:
        pattern = bindparam("pattern", type_=String())
        query = query.where(or_(Invoice.number.ilike(pattern, escape="\\"),
                                Invoice.project_ref.ilike(pattern, escape="\\")))
    if after:
        query = query.where(tuple_(Invoice.issue_date, Invoice.id) < tuple_(
            bindparam("after_date", type_=Date()), bindparam("after_id")))
    by_date = unindexed(Invoice.issue_date) if tab == "open" else Invoice.issue_date
    ids = query.order_by(by_date.desc(), Invoice.id.desc()).limit(limit)
    return select(*ROW_COLUMNS).where(Invoice.id.in_(ids)).order_by(Invoice.issue_date.desc(), Invoice.id.desc())


def _position(cursor: str | None) -> tuple[date, int] | None:
    after = decode_cursor(cursor)
    if after is None or not isinstance(after[0], str):
        return None
    try:
        return date.fromisoformat(after[0]), after[1]
    except ValueError:
        return None


def list_invoices(client_id: int, *, today: date, filters: Filters, cursor: str | None = None,
                  limit: int = PAGE_SIZE) -> Page:
    """One page of the client's invoices, newest first; never a draft. `today` is the organization's."""
    position = _position(cursor)
    values: dict[str, Any] = {"client": client_id}
    if filters.tab == "overdue":
        values["today"] = today
    if filters.q:
        values["pattern"] = _search_pattern(filters.q)
    if position is not None:
        values["after_date"], values["after_id"] = position
    statement = _list_statement(filters.tab, bool(filters.q), position is not None, limit + 1)
    found = [Row(*row) for row in db.session.execute(statement, values)]
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        next_cursor = encode_cursor(found[-1].issue_date, found[-1].id)
    return Page(found, next_cursor, filters)


@dataclass(frozen=True)
class Due:
    """What the client owes in one currency: open (incl. processing) and, of that, overdue. Never summed across
    currencies."""

    currency: str
    open_amount: int
    open_count: int
    overdue_amount: int
    overdue_count: int


def _due_statement() -> Any:
    overdue = and_(Invoice.status == "open", Invoice.due_date < TODAY)
    left = case((Invoice.total > Invoice.amount_paid, Invoice.total - Invoice.amount_paid), else_=0)
    return (select(Invoice.currency, func.sum(left), func.count(), func.sum(case((overdue, left), else_=0)),
                   func.sum(case((overdue, 1), else_=0)))
            .where(Invoice.client_id == bindparam("client"), Invoice.status.in_(UNPAID))
            .group_by(Invoice.currency).order_by(Invoice.currency))


DUE_STATEMENT = _due_statement()


def amounts_due(client_id: int, *, today: date) -> list[Due]:
    """Amounts due per currency, one statement over the client's unpaid invoices (ix_invoice_client_status)."""
    rows = db.session.execute(DUE_STATEMENT, {"client": client_id, "today": today})
    return [Due(currency, int(amount or 0), int(count), int(late or 0), int(late_count or 0))
            for currency, amount, count, late, late_count in rows]


# --- one invoice ------------------------------------------------------------------------------------------


def get_invoice(client_id: int, public_id: str) -> Invoice:
    """The client's invoice with its lines and payments; a draft or another company's is NotFound."""
    invoice = db.session.execute(
        select(Invoice).where(Invoice.public_id == public_id, Invoice.client_id == client_id,
                              Invoice.status != "draft")
        .options(joinedload(Invoice.organization), joinedload(Invoice.client), joinedload(Invoice.contact),
                 selectinload(Invoice.lines), selectinload(Invoice.payments).selectinload(Payment.refunds))
    ).scalar_one_or_none()
    if invoice is None:
        raise NotFound(NOT_FOUND)
    return invoice


@dataclass(frozen=True)
class HistoryEntry:
    """One line of an invoice's payment history: a payment (any status) or a refund of one."""

    kind: str  # payment, refund
    at: datetime
    day: date
    amount: int  # positive; a refund is shown as money going back
    currency: str
    method: str
    status: str
    payer: str  # the contact who paid, "—" when unknown (staff recorded it, a pay link opened without signing in)
    receipt_number: str | None
    payment_id: int
    note: str = ""


def payment_history(invoice: Invoice) -> list[HistoryEntry]:
    """Every payment (partial, processing, failed, refunded) and every refund, oldest first."""
    contact_ids = {p.contact_id for p in invoice.payments if p.contact_id}
    names: dict[int, str] = {}
    if contact_ids:
        names = {row.id: row.name for row in db.session.execute(select(Contact.id, Contact.name).where(
            Contact.id.in_(contact_ids), Contact.client_id == invoice.client_id))}
    entries = []
    for p in invoice.payments:
        at = p.succeeded_at or p.created_at
        # A payer email stored with the payment (pay link, not signed in) names them when no contact does.
        payer = names.get(p.contact_id or 0) or getattr(p, "payer_email", None) or "—"
        entries.append(HistoryEntry("payment", at, p.paid_on or at.date(), p.amount, p.currency, p.method_label,
                                    p.status, payer, p.receipt_number if p.status in COUNTED else None, p.id,
                                    note=(p.failure_message or "") if p.status == "failed" else ""))
        for r in p.refunds:
            entries.append(HistoryEntry("refund", r.created_at, r.created_at.date(), r.amount, r.currency,
                                        p.method_label, r.status, "—", None, p.id,
                                        note=f"of receipt {p.receipt_number}" if p.receipt_number else ""))
    return sorted(entries, key=lambda e: e.at)  # stable: a refund made at the same moment follows its payment


# --- receipts ---------------------------------------------------------------------------------------------


def get_receipt(client_id: int, payment_id: int) -> Payment:
    """A payment of the client that received money (it has a receipt number); anything else is NotFound."""
    payment = db.session.execute(
        select(Payment).join(Invoice, Invoice.id == Payment.invoice_id)
        .where(Payment.id == payment_id, Invoice.client_id == client_id, Payment.status.in_(COUNTED),
               Payment.receipt_number.is_not(None))
        .options(joinedload(Payment.invoice).joinedload(Invoice.organization),
                 joinedload(Payment.invoice).joinedload(Invoice.client), selectinload(Payment.refunds))
    ).scalar_one_or_none()
    if payment is None:
        raise NotFound("Receipt not found.")
    return payment
