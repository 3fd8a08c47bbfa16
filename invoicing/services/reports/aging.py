"""Accounts receivable aging: what each client owes, by how long it has been past due.

Buckets by days past the due date, counted in the organization's days (`today` is its local date): current
(not yet due), 1-30, 31-60, 61-90 and over 90. Open and processing invoices count for what they still ask
(total - amount paid). One GROUP BY per client and currency; money is never added across currencies.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import case, func, select

from invoicing.extensions import db
from invoicing.models import Client, Invoice
from invoicing.services.queries import unindexed
from invoicing.services.reports.cards import UNPAID

BUCKETS = {"current": "Current", "d1_30": "1–30 days", "d31_60": "31–60 days", "d61_90": "61–90 days",
           "d90_plus": "Over 90 days"}
SORTS = ("name", "total", *BUCKETS)


@dataclass(frozen=True)
class AgingRow:
    client_id: int
    name: str
    currency: str
    count: int
    buckets: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.buckets.values())


@dataclass
class Aging:
    today: date
    rows: list[AgingRow]
    totals: dict[str, AgingRow] = field(default_factory=dict)  # per currency, client_id 0


def bucket_edges(today: date) -> list[tuple[str, date]]:
    """(bucket, earliest due date in it), newest first: due today or later is current."""
    return [("current", today), ("d1_30", today - timedelta(days=30)), ("d31_60", today - timedelta(days=60)),
            ("d61_90", today - timedelta(days=90))]


def compute(organization_id: int, *, today: date, currency: str | None = None, client_id: int | None = None,
            sort: str = "total", descending: bool = True) -> Aging:
    """Per client and currency, sorted by a column (client name, total, or a bucket), with totals."""
    amount = Invoice.total - Invoice.amount_paid
    edges = bucket_edges(today)
    columns = []
    for index, (name, since) in enumerate(edges):
        newer = edges[index - 1][1] if index else None
        cond = Invoice.due_date >= since if newer is None else (Invoice.due_date >= since) & (Invoice.due_date < newer)
        columns.append(func.sum(case((cond, amount), else_=0)).label(name))
    columns.append(func.sum(case((Invoice.due_date < edges[-1][1], amount), else_=0)).label("d90_plus"))
    query = (select(Invoice.client_id, Invoice.currency, func.count().label("n"), *columns)
             .where(Invoice.organization_id == organization_id, Invoice.status.in_(UNPAID),
                    Invoice.total > Invoice.amount_paid)
             .group_by(unindexed(Invoice.client_id), Invoice.currency))  # not by walking the client index
    if currency:
        query = query.where(Invoice.currency == currency)
    if client_id is not None:
        query = query.where(Invoice.client_id == client_id)
    grouped = query.subquery()
    total = functools.reduce(operator.add, [grouped.c[name] for name in BUCKETS])
    order = {"name": Client.name, "total": total, **{name: grouped.c[name] for name in BUCKETS}}.get(sort, total)
    rows = [AgingRow(client_id, name, cur, int(n), {b: int(values[i]) for i, b in enumerate(BUCKETS)})
            for client_id, name, cur, n, *values in db.session.execute(
                select(grouped.c.client_id, Client.name, grouped.c.currency, grouped.c.n,
                       *[grouped.c[name] for name in BUCKETS])
                .join(Client, Client.id == grouped.c.client_id)
                .order_by(order.desc() if descending else order.asc(), Client.name, grouped.c.currency))]
    totals: dict[str, AgingRow] = {}
    for row in rows:  # one row per client: a few thousand at most, never per invoice
        old = totals.get(row.currency)
        totals[row.currency] = AgingRow(0, "Total", row.currency, row.count + (old.count if old else 0),
                                        {b: row.buckets[b] + (old.buckets[b] if old else 0) for b in BUCKETS})
    return Aging(today, rows, dict(sorted(totals.items())))
