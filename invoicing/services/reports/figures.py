"""Every figure of the reports page, the dashboard's cards and the API's statistics, computed here only.

Each figure is an aggregate the database computes over indexes (migration 0012_reports): a handful of
GROUP BY statements per page, whatever the number of invoices, and never a Python loop over invoice or payment
rows. Money is never added across currencies: every figure is per currency.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, literal, select, union_all

from invoicing.extensions import db
from invoicing.models import ChargeAttempt, Client, Invoice, Payment, Refund
from invoicing.services import queries
from invoicing.services.queries import InvoiceFilters
from invoicing.services.reports import aging
from invoicing.services.reports.cards import (
    CARDS,
    CHANNELS,
    METHODS,
    UNPAID,
    Card,
    channel,
    collected_by_date,
    collected_by_instant,
    day_number,
    has_autopay,
    issued,
    method_group,
    overdue,
    paid_day,
    paid_in,
    received_part,
    refund_made,
)
from invoicing.services.reports.period import Period, ReportFilters

TOP = 5


@dataclass(frozen=True)
class CardFigure:
    """One headline card of one currency: `count` invoices; `amount` their sum (money cards), the days
    (days_to_pay: average = amount / count), or what they received (collection_rate: of `base`)."""

    card: Card
    currency: str
    count: int
    amount: int
    base: int = 0

    @property
    def key(self) -> str:
        return self.card.key

    @property
    def average_days(self) -> Decimal | None:
        if not self.count:
            return None
        return (Decimal(self.amount) / self.count).quantize(Decimal("0.1"), ROUND_HALF_UP)

    @property
    def rate(self) -> Decimal | None:
        """Percent, one decimal; None when nothing was invoiced."""
        if not self.base:
            return None
        return (Decimal(self.amount) * 100 / self.base).quantize(Decimal("0.1"), ROUND_HALF_UP)


@dataclass(frozen=True)
class Month:
    first: date
    invoiced: int
    collected: int


@dataclass(frozen=True)
class Share:
    key: str
    label: str
    amount: int
    count: int
    percent: Decimal  # of the currency's collected money, one decimal


@dataclass(frozen=True)
class ClientFigure:
    client_id: int
    name: str
    currency: str
    amount: int


@dataclass
class CurrencyReport:
    currency: str
    cards: dict[str, CardFigure] = field(default_factory=dict)
    months: list[Month] = field(default_factory=list)
    methods: list[Share] = field(default_factory=list)
    channels: list[Share] = field(default_factory=list)
    top_collected: list[ClientFigure] = field(default_factory=list)
    top_outstanding: list[ClientFigure] = field(default_factory=list)


@dataclass
class Report:
    period: Period
    filters: ReportFilters
    currencies: list[CurrencyReport]
    aging: aging.Aging | None = None

    def for_currency(self, currency: str) -> CurrencyReport | None:
        return next((c for c in self.currencies if c.currency == currency), None)


# --- scoping ---------------------------------------------------------------------------------------------


def _invoice_scope(organization_id: int, filters: ReportFilters) -> list[Any]:
    clauses = [Invoice.organization_id == organization_id]
    if filters.currency:
        clauses.append(Invoice.currency == filters.currency)
    if filters.client_id is not None:
        clauses.append(Invoice.client_id == filters.client_id)
    return clauses


def _money_scope(model: Any, organization_id: int, filters: ReportFilters) -> list[Any]:
    """Payments or refunds of the organization, of the filtered currency and client."""
    clauses = [model.organization_id == organization_id]
    if filters.currency:
        clauses.append(model.currency == filters.currency)
    if filters.client_id is not None:
        clauses.append(model.invoice_id.in_(select(Invoice.id).where(
            Invoice.organization_id == organization_id, Invoice.client_id == filters.client_id)))
    return clauses


def _month_index(column: Any, edges: list[Any]) -> Any:
    """Which month of the period a value falls in (0 = the first), given the first day (or instant) of every
    month after the first; values are already inside the period."""
    if not edges:
        return literal(0)
    return case(*[(column < edge, index) for index, edge in enumerate(edges)], else_=len(edges))


def collected_payments(organization_id: int, filters: ReportFilters, period: Period, *, autopay: bool) -> Any:
    """Every payment received in the period (currency, invoice, amount, month, method, channel) as a UNION ALL
    of its two halves (by "paid on" date, by success instant), each one range of its own covering index."""
    scope = _money_scope(Payment, organization_id, filters)
    way = channel(autopay=autopay)
    columns = (Payment.currency, Payment.invoice_id, Payment.amount, method_group().label("method"),
               way.label("channel"))
    by_date = select(*columns, _month_index(Payment.paid_on, period.months[1:]).label("month")).where(
        *scope, collected_by_date(period))
    by_instant = select(*columns, _month_index(Payment.succeeded_at, period.month_starts_at()).label("month")).where(
        *scope, collected_by_instant(period))
    return union_all(by_date, by_instant).subquery()


# --- the report ------------------------------------------------------------------------------------------


def compute(organization_id: int, filters: ReportFilters, *, tz: str, now: datetime, with_aging: bool = True,
            aging_sort: str = "total", aging_descending: bool = True) -> Report:
    """The whole reports page (and GET /stats): cards, months, methods, channels, top clients, aging.

    Kept per process until the organization's ledger changes (`ledger_version`, one cheap statement) or for
    CACHE_SECONDS at most: a million invoices take a second or more to add up on SQLite, and a page asked for
    again (another filter and back, the dashboard, a reload) then costs milliseconds. Treat it as read-only."""
    key = ("report", filters, with_aging, aging_sort, aging_descending)
    return kept(organization_id, key, tz, now, lambda: _compute(
        organization_id, filters, tz=tz, now=now, with_aging=with_aging, aging_sort=aging_sort,
        aging_descending=aging_descending))


CACHE_SECONDS, CACHE_SIZE = 300, 64
_CACHE: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
_LOCK = threading.Lock()
T = TypeVar("T")


def kept(organization_id: int, key: tuple[Any, ...], tz: str, now: datetime, make: Callable[[], T]) -> T:
    """`make()`, or what it gave last time for the same organization, key and local day while the
    organization's ledger is unchanged (and for CACHE_SECONDS at most)."""
    full = (organization_id, *key, tz, now.astimezone(ZoneInfo(tz)).date(), ledger_version(organization_id))
    clock = time.monotonic()
    with _LOCK:
        hit = _CACHE.get(full)
        if hit is not None and hit[0] > clock:
            _CACHE.move_to_end(full)
            return cast(T, hit[1])
    value = make()
    with _LOCK:
        _CACHE[full] = (clock + CACHE_SECONDS, value)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value


def forget() -> None:
    """Drop every kept report (tests empty the tables between them, and SQLite then hands out ids again)."""
    with _LOCK:
        _CACHE.clear()


def ledger_version(organization_id: int) -> tuple[Any, ...]:
    """Changes whenever a figure can: an invoice changed (its updated_at: finalized, paid, refunded, voided...),
    a payment, refund or autopay attempt was added (anywhere: the newest id is one primary-key seek, where the
    newest of one organization would read all of its rows on PostgreSQL). Index seeks only."""
    return tuple(db.session.execute(select(
        select(func.max(Invoice.updated_at)).where(Invoice.organization_id == organization_id).scalar_subquery(),
        select(func.max(Payment.id)).scalar_subquery(),
        select(func.max(Refund.id)).scalar_subquery(),
        select(func.max(ChargeAttempt.id)).scalar_subquery(),
    )).one())


def _compute(organization_id: int, filters: ReportFilters, *, tz: str, now: datetime, with_aging: bool,
             aging_sort: str, aging_descending: bool) -> Report:
    period = filters.period(tz, now)
    by_currency: dict[str, CurrencyReport] = {}

    def of(currency: str) -> CurrencyReport:
        return by_currency.setdefault(currency, CurrencyReport(currency))

    months: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    invoice_scope = _invoice_scope(organization_id, filters)

    month = _month_index(Invoice.issue_date, period.months[1:])
    for currency, index, count, total, received in db.session.execute(
            select(Invoice.currency, month, func.count(), func.sum(Invoice.total), func.sum(received_part()))
            .where(*invoice_scope, issued(period)).group_by(Invoice.currency, month)):
        report = of(currency)
        _add(report, "invoiced", count, total)
        _add(report, "collection_rate", count, received, base=total)
        months[currency][index][0] += int(total)

    autopay = db.session.execute(has_autopay(organization_id)).first() is not None
    money = collected_payments(organization_id, filters, period, autopay=autopay)
    shares: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(lambda: {"methods": {}, "channels": {}})
    grouped = (money.c.currency, money.c.month, money.c.method, money.c.channel)
    for currency, index, method_key, channel_key, count, amount in db.session.execute(
            select(*grouped, func.count(), func.sum(money.c.amount)).group_by(*grouped)):
        months[currency][index][1] += int(amount)
        for kind, key in (("methods", method_key), ("channels", channel_key)):
            bucket = shares[currency][kind].setdefault(key, [0, 0])
            bucket[0] += int(amount)
            bucket[1] += int(count)
    for currency, count, amount in db.session.execute(
            select(money.c.currency, func.count(func.distinct(money.c.invoice_id)), func.sum(money.c.amount))
            .group_by(money.c.currency)):
        _add(of(currency), "collected", count, amount)

    for currency, count, amount in db.session.execute(
            select(Refund.currency, func.count(func.distinct(Refund.invoice_id)), func.sum(Refund.amount))
            .where(*_money_scope(Refund, organization_id, filters), refund_made(period)).group_by(Refund.currency)):
        _add(of(currency), "refunded", count, amount)

    is_overdue, due = overdue(period.today), Invoice.total - Invoice.amount_paid
    for currency, count, amount, late_count, late_amount in db.session.execute(
            select(Invoice.currency, func.count(), func.sum(due), func.sum(case((is_overdue, 1), else_=0)),
                   func.sum(case((is_overdue, due), else_=0)))
            .where(*invoice_scope, Invoice.status.in_(UNPAID)).group_by(Invoice.currency)):
        report = of(currency)
        _add(report, "outstanding", count, amount)
        _add(report, "overdue", late_count, late_amount)

    days, late = paid_day(period) - day_number(Invoice.issue_date), paid_day(period) > day_number(Invoice.due_date)
    for currency, count, total_days, late_count in db.session.execute(
            select(Invoice.currency, func.count(), func.sum(days), func.sum(case((late, 1), else_=0)))
            .where(*invoice_scope, paid_in(period)).group_by(Invoice.currency)):
        report = of(currency)
        _add(report, "days_to_pay", count, total_days)
        _add(report, "paid_late", late_count, late_count)

    tops = top_collected(organization_id, filters, period, autopay=autopay)
    for currency, report in by_currency.items():
        for key, card in CARDS.items():
            report.cards.setdefault(key, CardFigure(card, currency, 0, 0))
        report.months = [Month(first, *months[currency][i]) for i, first in enumerate(period.months)]
        collected = report.cards["collected"].amount
        report.methods = _shares(shares[currency]["methods"], METHODS, collected)
        report.channels = _shares(shares[currency]["channels"], CHANNELS, collected)
        report.top_collected = tops.get(currency, [])
    reports = sorted(by_currency.values(), key=lambda r: (-r.cards["invoiced"].amount, r.currency))
    result = Report(period, filters, reports)
    if with_aging:
        result.aging = aging.compute(organization_id, today=period.today, currency=filters.currency,
                                     client_id=filters.client_id, sort=aging_sort, descending=aging_descending)
        for report in reports:
            report.top_outstanding = [
                ClientFigure(row.client_id, row.name, row.currency, row.total)
                for row in sorted((r for r in result.aging.rows if r.currency == report.currency),
                                  key=lambda r: (-r.total, r.name))[:TOP]]  # one row per client
    return result


def _add(report: CurrencyReport, key: str, count: Any, amount: Any, base: Any = 0) -> None:
    old = report.cards.get(key)
    report.cards[key] = CardFigure(CARDS[key], report.currency, int(count or 0) + (old.count if old else 0),
                                   int(amount or 0) + (old.amount if old else 0),
                                   int(base or 0) + (old.base if old else 0))


def _shares(found: dict[str, list[int]], labels: dict[str, str], total: int) -> list[Share]:
    return [Share(key, labels[key], found[key][0], found[key][1],
                  (Decimal(found[key][0]) * 100 / total).quantize(Decimal("0.1"), ROUND_HALF_UP) if total else
                  Decimal(0))
            for key in labels if key in found]


def top_collected(organization_id: int, filters: ReportFilters, period: Period, *, autopay: bool,
                  limit: int = TOP) -> dict[str, list[ClientFigure]]:
    """The clients who paid the most in the period, per currency (one GROUP BY client and currency)."""
    money = collected_payments(organization_id, filters, period, autopay=autopay)
    amount = func.sum(money.c.amount).label("amount")
    rows = db.session.execute(
        select(money.c.currency, Invoice.client_id, amount).join(Invoice, Invoice.id == money.c.invoice_id)
        .group_by(money.c.currency, Invoice.client_id)).all()
    best: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for currency, client_id, total in rows:  # one row per client and currency, never per payment
        best[currency].append((-int(total), client_id))
    top = {currency: sorted(found)[:limit] for currency, found in best.items()}
    names = dict(db.session.execute(select(Client.id, Client.name).where(
        Client.id.in_({client_id for found in top.values() for _, client_id in found}))).all())
    return {currency: [ClientFigure(client_id, names[client_id], currency, -total) for total, client_id in found]
            for currency, found in top.items()}


# --- the dashboard ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    month: Report  # this month's cards
    trend: dict[str, list[Month]]  # the last 12 months per currency (the sparkline)


def dashboard(organization_id: int, *, tz: str, now: datetime) -> Dashboard:
    month = compute(organization_id, ReportFilters(preset="month"), tz=tz, now=now, with_aging=False)
    return Dashboard(month, collected_trend(organization_id, tz=tz, now=now))


def collected_trend(organization_id: int, *, tz: str, now: datetime) -> dict[str, list[Month]]:
    """Money collected per month over the last 12 months, per currency (the sparkline): one GROUP BY, kept."""
    return kept(organization_id, ("trend",), tz, now, lambda: _trend(organization_id, tz=tz, now=now))


def _trend(organization_id: int, *, tz: str, now: datetime) -> dict[str, list[Month]]:
    period = ReportFilters(preset="12m").period(tz, now)
    money = collected_payments(organization_id, ReportFilters(), period,
                               autopay=False)  # the channel plays no part here
    found: dict[str, dict[int, int]] = defaultdict(dict)
    for currency, index, amount in db.session.execute(
            select(money.c.currency, money.c.month, func.sum(money.c.amount)).group_by(money.c.currency,
                                                                                    money.c.month)):
        found[currency][index] = int(amount)
    return {currency: [Month(first, 0, by_month.get(i, 0)) for i, first in enumerate(period.months)]
            for currency, by_month in found.items()}


# --- the invoice list behind a card ----------------------------------------------------------------------


def card_total(user: Any, filters: InvoiceFilters, *, now: datetime) -> tuple[int, int] | None:
    """(count, sum of the card's measure) over the invoice list's own query (queries.filtered_query with the
    card's clause): what the card said. None when the list is not a card's."""
    measure = queries.card_measure(user, filters, now=now)
    if measure is None:
        return None
    query: Any = select(func.count(), func.coalesce(func.sum(measure), 0)).select_from(Invoice)
    count, total = db.session.execute(queries.filtered_query(user, filters, now=now, query=query)).one()
    return int(count), int(total)


def measures(user: Any, filters: InvoiceFilters, ids: list[int], *, now: datetime) -> dict[int, int]:
    """Each shown invoice's share of the card (the list's extra column)."""
    measure = queries.card_measure(user, filters, now=now)
    if measure is None or not ids:
        return {}
    return {invoice_id: int(value or 0) for invoice_id, value in db.session.execute(
        select(Invoice.id, measure).where(Invoice.id.in_(ids)))}


# --- for the API (GET /stats) ----------------------------------------------------------------------------


def _card_dict(figure: CardFigure) -> dict[str, Any]:
    found: dict[str, Any] = {"count": figure.count, "amount": figure.amount}
    if figure.card.kind == "days":
        found = {"count": figure.count, "total_days": figure.amount, "average_days":
                 str(figure.average_days) if figure.average_days is not None else None}
    elif figure.card.kind == "rate":
        found |= {"invoiced": figure.base, "rate_percent": str(figure.rate) if figure.rate is not None else None}
    elif figure.card.kind == "count":
        found = {"count": figure.count}
    return found


def as_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON values: money in minor units beside its currency, dates as ISO strings."""
    period = report.period
    return {
        "period": {"from": period.start.isoformat(), "to": period.end.isoformat(), "time_zone": period.tz,
                   "today": period.today.isoformat()},
        "currencies": [{
            "currency": r.currency,
            "cards": {key: _card_dict(f) for key, f in r.cards.items()},
            "months": [{"month": m.first.isoformat()[:7], "invoiced": m.invoiced, "collected": m.collected}
                       for m in r.months],
            "methods": [{"method": s.key, "amount": s.amount, "count": s.count, "percent": str(s.percent)}
                        for s in r.methods],
            "channels": [{"channel": s.key, "amount": s.amount, "count": s.count, "percent": str(s.percent)}
                         for s in r.channels],
            "top_collected": [{"client_id": c.client_id, "name": c.name, "amount": c.amount} for c in r.top_collected],
            "top_outstanding": [{"client_id": c.client_id, "name": c.name, "amount": c.amount}
                                for c in r.top_outstanding],
        } for r in report.currencies],
        "aging": [{"client_id": row.client_id, "name": row.name, "currency": row.currency, "invoices": row.count,
                   **row.buckets, "total": row.total} for row in (report.aging.rows if report.aging else [])],
    }
