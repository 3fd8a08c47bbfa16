"""Transaction helpers shared by the services: one commit per service call, row locks for money."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Invoice
from invoicing.services import NotFound


def begin_write() -> None:
    """Make sure the session is in a write transaction; on SQLite that means BEGIN IMMEDIATE, now.

    A read transaction that is already open (a view loaded the invoice first) is ended so the write
    transaction starts from fresh data with the lock held; there is nothing pending in it to lose.
    """
    if db.session.get_bind().dialect.name != "sqlite":
        return
    if db.session().in_transaction():
        if db.session.connection().get_execution_options().get("sqlite_immediate"):
            return
        db.session.commit()
    db.session.connection(execution_options={"sqlite_immediate": True})


@contextmanager
def atomic() -> Iterator[None]:
    """Run the block in one write transaction: commit it all, or roll all of it back."""
    try:
        begin_write()
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def lock_invoice(invoice_id: int, organization_id: int | None = None) -> Invoice:
    """Load the invoice row FOR UPDATE (PostgreSQL) with fresh values.

    On SQLite, atomic() opened the transaction with BEGIN IMMEDIATE (extensions.configure_sqlite), which
    already holds the database's single write lock, so the missing FOR UPDATE is covered.
    """
    query = select(Invoice).where(Invoice.id == invoice_id).with_for_update()
    if organization_id is not None:
        query = query.where(Invoice.organization_id == organization_id)
    invoice = db.session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
    if invoice is None:
        raise NotFound("Invoice not found.")
    return invoice
