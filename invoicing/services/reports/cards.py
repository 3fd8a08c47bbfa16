"""What each headline card counts, written once as SQL and used twice: by figures.py to add the card up, and
by the admin invoice list (`?card=...`) to show exactly the invoices behind it, so the two always agree.

Channels (how money came in), derived from what a payment records:
- manual:   staff recorded it (cash, bank transfer, cheque, other);
- autopay:  a saved card charged by the autopay job (its PaymentIntent is one of a ChargeAttempt's);
- portal:   paid by a signed-in portal contact (the payment records who paid: `contact_id`);
- pay link: every other provider payment (the emailed link, no contact known).
Since portal payments (issue 11), a pay-link checkout records no contact; pay-link payments recorded before
that, on an invoice addressed to a contact, carried that contact and count as portal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from invoicing.models import MANUAL_METHODS, ChargeAttempt, Invoice, Payment, Refund
from invoicing.services.reports.period import Period, offsets

FINAL = ("open", "processing", "paid")  # invoiced: finalized and not void (drafts and voids never count)
UNPAID = ("open", "processing")
COUNTED = ("succeeded", "partially_refunded", "refunded")  # money received (services/payments.COUNTED)

METHODS = {"card": "Card", "bank_debit": "Bank debit", "bank_transfer": "Bank transfer", "cash": "Cash",
           "cheque": "Cheque", "other": "Other"}
CHANNELS = {"pay_link": "Pay link", "portal": "Portal", "autopay": "Autopay", "manual": "Manual"}


@dataclass(frozen=True)
class Card:
    key: str
    label: str
    kind: str  # money (a sum), days (an average), rate (collected / invoiced), count
    help: str
    column: str  # what the invoice list shows per row for this card


CARDS = {c.key: c for c in (
    Card("invoiced", "Invoiced", "money", "Invoices issued in the period (not drafts, not void)", "Total"),
    Card("collected", "Collected", "money", "Money received in the period, before refunds", "Received"),
    Card("outstanding", "Outstanding now", "money", "What open invoices still ask for today", "Due now"),
    Card("overdue", "Overdue now", "money", "Open and past due in the organization's time zone", "Due now"),
    Card("refunded", "Refunded", "money", "Money returned to clients in the period", "Refunded"),
    Card("days_to_pay", "Average days to pay", "days", "Issue date to the day the invoice was paid in full, "
         "for invoices paid in the period", "Days"),
    Card("collection_rate", "Collection rate", "rate", "Of what was invoiced in the period, the share "
         "received so far", "Received"),
    Card("paid_late", "Paid late", "count", "Invoices paid in full in the period after their due date",
         "Days late"),
)}


# --- dates of instants, in the organization's zone -------------------------------------------------------


class local_date(FunctionElement[Any]):
    """The organization's calendar day of a UTC instant column, as a day number comparable across dialects
    (days since 1970-01-01). PostgreSQL converts with its zone data; SQLite adds the zone's offset, which
    `period.offsets` lists exactly over the instants the query can meet."""

    inherit_cache = False
    name = "local_date"
    type = Integer()

    def __init__(self, column: Any, tz: str, edges: list[tuple[Any, int]]):
        super().__init__(column)
        self.tz, self.edges = tz, edges


@compiles(local_date)
def _local_date_pg(element: local_date, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    tz = compiler.process(literal(element.tz), **kw)
    return f"(({column} AT TIME ZONE {tz})::date - DATE '1970-01-01')"


@compiles(local_date, "sqlite")
def _local_date_sqlite(element: local_date, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    last = literal(f"{element.edges[-1][1]:+d} seconds")
    shift = case(*[(element.clauses.clauses[0] < at, literal(f"{before:+d} seconds"))
                   for (_, before), (at, _) in zip(element.edges, element.edges[1:], strict=False)],
                 else_=last) if len(element.edges) > 1 else last
    return f"CAST(julianday(date({column}, {compiler.process(shift, **kw)})) - 2440587.5 AS INTEGER)"


class day_number(FunctionElement[Any]):
    """A DATE column as days since 1970-01-01."""

    inherit_cache = True
    name = "day_number"
    type = Integer()


@compiles(day_number)
def _day_number_pg(element: day_number, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} - DATE '1970-01-01')"


@compiles(day_number, "sqlite")
def _day_number_sqlite(element: day_number, compiler: Any, **kw: Any) -> str:
    return f"CAST(julianday({compiler.process(element.clauses, **kw)}) - 2440587.5 AS INTEGER)"


def paid_day(period: Period) -> Any:
    """The local day an invoice became paid (its paid_at), for invoices paid within the period."""
    return local_date(Invoice.paid_at, period.tz, offsets(period.tz, period.start_at, period.end_before))


# --- the sets each card counts ---------------------------------------------------------------------------


def issued(period: Period) -> Any:
    return and_(Invoice.status.in_(FINAL), Invoice.issue_date >= period.start, Invoice.issue_date <= period.end)


def collected_by_date(period: Period) -> Any:
    """Money received in the period, recorded by hand: by its "paid on" date."""
    return and_(Payment.paid_on >= period.start, Payment.paid_on <= period.end, Payment.status.in_(COUNTED))


def collected_by_instant(period: Period) -> Any:
    """Money received in the period through a provider: by the instant it succeeded (no "paid on" date)."""
    # coalesce(): keeps SQLite's planner on the success-instant range (it would otherwise seek "paid_on IS NULL"
    # and read every provider payment ever made); the test itself is the same.
    return and_(Payment.succeeded_at >= period.start_at, Payment.succeeded_at < period.end_before,
                func.coalesce(Payment.paid_on, Payment.paid_on).is_(None), Payment.status.in_(COUNTED))


def payment_collected(period: Period) -> Any:
    """Money received in the period (both ways). Aggregates run the two halves as a UNION ALL instead, so that
    each reads one index range (figures.collected)."""
    return or_(collected_by_date(period), collected_by_instant(period))


def refund_made(period: Period) -> Any:
    return and_(Refund.status == "succeeded", Refund.created_at >= period.start_at,
                Refund.created_at < period.end_before)


def paid_in(period: Period) -> Any:
    return and_(Invoice.status == "paid", Invoice.paid_at >= period.start_at, Invoice.paid_at < period.end_before)


def outstanding() -> Any:
    return Invoice.status.in_(UNPAID)


def overdue(today: Any) -> Any:
    """The invoice list's "overdue" tab (queries.status_clause): open and due before the local today."""
    return and_(Invoice.status == "open", Invoice.due_date < today)


def received_part() -> Any:
    """What an invoice has received, up to its total (an overpayment does not lift the collection rate)."""
    return case((Invoice.amount_paid < Invoice.total, Invoice.amount_paid), else_=Invoice.total)


def invoice_clause(key: str, period: Period) -> Any:
    """The invoices a card counts (the admin list's `?card=` filter)."""
    if key == "collected":
        return Invoice.id.in_(select(Payment.invoice_id).where(
            Payment.organization_id == Invoice.organization_id, payment_collected(period)).scalar_subquery())
    if key == "refunded":
        return Invoice.id.in_(select(Refund.invoice_id).where(
            Refund.organization_id == Invoice.organization_id, refund_made(period)).scalar_subquery())
    if key == "outstanding":
        return outstanding()
    if key == "overdue":
        return overdue(period.today)
    if key == "days_to_pay":
        return paid_in(period)
    if key == "paid_late":
        return and_(paid_in(period), paid_day(period) > day_number(Invoice.due_date))
    return issued(period)  # invoiced, collection_rate


def invoice_measure(key: str, period: Period) -> Any:
    """What one invoice adds to the card (shown per row in the list): the card is their sum (or average)."""
    if key == "collected":
        return select(func.coalesce(func.sum(Payment.amount), 0)).where(
            Payment.invoice_id == Invoice.id, payment_collected(period)).scalar_subquery()
    if key == "refunded":
        return select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.invoice_id == Invoice.id, refund_made(period)).scalar_subquery()
    if key in ("outstanding", "overdue"):
        return Invoice.total - Invoice.amount_paid
    if key == "days_to_pay":
        return paid_day(period) - day_number(Invoice.issue_date)
    if key == "paid_late":
        return paid_day(period) - day_number(Invoice.due_date)
    if key == "collection_rate":
        return received_part()
    return Invoice.total


# --- how money came in -----------------------------------------------------------------------------------


def method_group() -> Any:
    provider_debit = and_(Payment.method_type.is_not(None), Payment.method_type != "card")
    return case(
        (Payment.method.in_(MANUAL_METHODS), Payment.method),
        (provider_debit, literal("bank_debit")),
        else_=literal("card"))


def channel(autopay: bool = True) -> Any:
    """The channel of a payment; `autopay=False` when the organization has never charged a saved card (the
    test then costs nothing: no read of the PaymentIntent column, which the report indexes do not carry)."""
    whens = [(Payment.method.in_(MANUAL_METHODS), literal("manual"))]
    if autopay:
        whens.append((Payment.payment_intent_id.in_(select(ChargeAttempt.payment_intent_id).where(
            ChargeAttempt.payment_intent_id.is_not(None))), literal("autopay")))
    whens.append((Payment.contact_id.is_not(None), literal("portal")))
    return case(*whens, else_=literal("pay_link"))


def has_autopay(organization_id: int) -> Any:
    """Has this organization ever made an autopay attempt? (Driven from the attempts, which are few.)"""
    return select(ChargeAttempt.id).where(ChargeAttempt.invoice_id.in_(
        select(Invoice.id).where(Invoice.id == ChargeAttempt.invoice_id, Invoice.organization_id == organization_id)
    )).limit(1)


def cast_int(value: Any) -> Any:
    return cast(value, Integer)
