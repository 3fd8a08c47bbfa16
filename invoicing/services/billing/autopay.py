"""Hooks for autopay, which comes later (issue 10, part 2: `flask billing process-recurring-charges`).

Reminders must not chase an invoice whose autopay charge is still scheduled (a failed charge does get the
overdue notices), and the Scheduler page previews the cards to charge. Until autopay exists nothing is ever
scheduled, so these answer "no" and "none". Autopay replaces their bodies and keeps their signatures:

- `autopay_pending(invoice)`: checked under the invoice's row lock right before a reminder is queued (the
  authority);
- `autopay_pending_clause()`: the same rule as a SQL condition on `Invoice`, so the reminder sweep and its
  previews never even select such invoices (e.g. `exists()` of a scheduled charge for `Invoice.id`);
- `charges_preview(...)`: the charges due in a window, for the Scheduler page and `--dry-run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import false
from sqlalchemy.sql.elements import ColumnElement

from invoicing.models import Invoice


@dataclass(frozen=True)
class PlannedCharge:
    invoice_id: int
    organization_id: int
    number: str
    client_name: str
    at: datetime
    amount: int
    currency: str


def autopay_pending(invoice: Invoice) -> bool:
    """True while the invoice has an autopay charge scheduled or in flight: reminders wait for its outcome."""
    return False


def autopay_pending_clause() -> ColumnElement[bool]:
    """`autopay_pending` as a WHERE condition on Invoice (for sweeps over many invoices)."""
    return false()


def charges_preview(*, now: datetime, until: datetime, organization_id: int | None = None) -> list[PlannedCharge]:
    """Cards to charge between now and `until` (none until autopay exists)."""
    return []
