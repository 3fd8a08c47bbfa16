"""invoice.version: one number that changes whenever what a client sees of an invoice can (the pay page).

Bumped in the same transaction as the change, by session events, so no service has to remember it:
- a flush that changes an invoice row (anything but its view counter), or adds, changes or deletes one of its
  payments, refunds or lines: `UPDATE invoice SET version = version + 1` for those invoices;
- an ORM bulk UPDATE or DELETE of payments, refunds or lines (`update(Payment).where(...)`): the same, for the
  invoices of the rows it matches.
A bulk UPDATE of invoices themselves sets `updated_at` (its onupdate), which the pay page's key holds too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event, inspect, select, update
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from invoicing.models import Invoice, LineItem, Payment, Refund

# Changes of these invoice columns are not shown to the client: they leave the version alone.
UNSEEN = frozenset({"view_count", "viewed_at", "version", "updated_at"})
CHILDREN = (Payment, Refund, LineItem)
BUMPED = "pageversion.bumped"
_invoice: Table = Invoice.__table__  # type: ignore[assignment]


def _shown_change(invoice: Invoice) -> bool:
    state = inspect(invoice)
    return any(attr.key not in UNSEEN and attr.history.has_changes() for attr in state.attrs)


def _bump(session: Session, invoice_ids: Any) -> None:
    """Core UPDATE on the session's connection: no ORM event, and updated_at stays what it is."""
    session.connection().execute(
        update(_invoice).where(_invoice.c.id.in_(invoice_ids))
        .values(version=_invoice.c.version + 1, updated_at=_invoice.c.updated_at))


def _after_flush(session: Session, _context: UOWTransaction) -> None:
    """Once per invoice and transaction: readers only ever see committed states, so one step is enough."""
    ids: set[int] = set()
    for obj in session.dirty:
        if isinstance(obj, Invoice) and obj.id is not None and _shown_change(obj):
            ids.add(obj.id)
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, CHILDREN) and obj.invoice_id is not None:
            ids.add(obj.invoice_id)
    bumped: set[int] = session.info.setdefault(BUMPED, set())
    ids -= bumped
    if ids:
        _bump(session, sorted(ids))
        bumped.update(ids)


def _transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None or transaction.nested:  # not a flush's own inner step
        session.info.pop(BUMPED, None)  # committed or rolled back (a savepoint too): the next change bumps again


def _bulk(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is None or mapper.class_ not in CHILDREN:
        return
    model = mapper.class_
    where = state.statement.whereclause  # type: ignore[attr-defined]
    matched = select(model.invoice_id)
    _bump(state.session, matched if where is None else matched.where(where))


def listen() -> None:
    """Register the listeners once per process (create_app calls it)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "do_orm_execute", _bulk)
        event.listen(Session, "after_transaction_end", _transaction_end)
