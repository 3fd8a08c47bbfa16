"""Transaction helpers shared by the services: one commit per service call, row locks for money."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

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


OUTER = "db.atomic"  # session.info: a block of atomic() is open (its follow-ups wait in the list)
LAST = "db.before_commit"  # work for the end of that transaction
NESTED = "db.nested"  # how many blocks inside it are open


@contextmanager
def atomic() -> Iterator[None]:
    """Run the block in one write transaction: commit it all, or roll all of it back.

    Inside another atomic block, the block is part of that one transaction (the webhook inbox stores, applies and
    queues an event in one); `before_commit` work runs at its end, `on_commit` work once it has committed."""
    info = db.session.info
    if OUTER in info:
        info[NESTED] = info.get(NESTED, 0) + 1
        try:
            yield
        finally:
            info[NESTED] -= 1
        return
    info[OUTER], info[LAST], info[NESTED] = [], [], 0
    try:
        begin_write()
        yield
        for work in info[LAST]:
            work()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    finally:
        later: list[Callable[[], object]] = info.pop(OUTER, [])
        info.pop(LAST, None)
        info.pop(NESTED, None)
    for work in later:  # only reached once committed
        work()


def inside_atomic() -> bool:
    """An atomic block is open: its writes are not committed yet (what must be durable first waits for it)."""
    return OUTER in db.session.info


def in_larger_transaction() -> bool:
    """This atomic block is part of another one's transaction (its caller's, e.g. the webhook inbox's)."""
    return bool(db.session.info.get(NESTED))


def before_commit(work: Callable[[], object]) -> None:
    """Run `work` at the end of the current atomic block's transaction, in the order given (at once outside of
    one): what takes a lock every transaction waits for (a receipt number) is taken last, so it is held only
    until the commit, and what shows it comes after."""
    if OUTER in db.session.info:
        db.session.info[LAST].append(work)
    else:
        work()


def on_commit(work: Callable[[], object]) -> None:
    """Run `work` after the current atomic block commits (at once outside of one): provider calls, which must
    never wait inside a transaction holding row locks."""
    if OUTER in db.session.info:
        db.session.info[OUTER].append(work)
    else:
        work()


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


def take_next(counter_model: Any, **key: Any) -> int:
    """Take the next number of a counter row (`last_seq`) under its row lock, creating it at 0 if missing; a
    rollback gives the number back, so there are no gaps."""
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(insert(counter_model).values(**key, last_seq=0).on_conflict_do_nothing())
    counter = db.session.execute(
        select(counter_model).filter_by(**key).with_for_update().execution_options(populate_existing=True)
    ).scalar_one()
    counter.last_seq += 1
    return int(counter.last_seq)
