"""The admin invoice list's read model: each row's text formatted once, in Python, so the template's loop only
places ready strings (issue 14: per-row filters, calls and includes were most of the page's time).

What a row shows is the same as the invoice page's: Invoice.badges and Invoice.amount_due (InvoiceRow borrows
them), format_money, the `date` filter's format.

Every field is ready for HTML as it is: the template places the rows with autoescaping off (escaping 600
values a page was a fifth of its rendering). Text that comes from people (the number, the client's name) is
escaped here; the rest is numbers, dates, money formatted by Babel, and badges built from fixed names.
tests/admin/test_invoices.py holds a client name with markup to that."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date
from typing import Any

from markupsafe import Markup, escape

from invoicing.money import format_money

BADGE = Markup('<span class="badge badge-{0}">{1}</span> ')


@functools.lru_cache(maxsize=4096)
def format_date(value: date) -> str:
    """The `date` filter's format, memoized (a page shows 100 dates, mostly the same few)."""
    return value.strftime("%b %-d, %Y")


@functools.lru_cache(maxsize=512)
def badges_html(badges: tuple[str, ...]) -> Markup:
    """What admin/_badges.html renders for these badges (a few dozen combinations exist)."""
    return Markup("").join(BADGE.format(b, b.replace("_", " ")) for b in badges)


class ListRow:
    __slots__ = ("id", "label", "client", "issued", "due", "currency", "total", "due_now", "badges")

    def __init__(self, row: Any, today: date):  # a queries.InvoiceRow
        self.id = int(row.id)
        self.label = escape(row.number or f"Draft #{row.id}")
        self.client = escape(row.client_name)
        self.issued = format_date(row.issue_date)
        self.due = format_date(row.due_date)
        self.currency = row.currency
        self.total = format_money(row.total, row.currency)
        due = row.amount_due
        self.due_now = format_money(due, row.currency) if due else None
        self.badges = badges_html(tuple(row.badges(today, row.email)))


def list_rows(rows: Iterable[Any], today: date) -> list[ListRow]:
    """The page's InvoiceRows (queries.list_invoices(rows=True)), ready to place."""
    return [ListRow(row, today) for row in rows]
