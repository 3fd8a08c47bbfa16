"""Transaction helpers shared by the services: one commit per service call, row locks for money."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, SessionTransaction

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
KEPT = "db.kept"  # rows this atomic block's transaction locked or made: held in memory until it ends


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
    info[OUTER], info[LAST], info[NESTED], info[KEPT] = [], [], 0, []
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
        info.pop(KEPT, None)
    for work in later:  # only reached once committed
        work()


def inside_atomic() -> bool:
    """An atomic block is open: its writes are not committed yet (what must be durable first waits for it)."""
    return OUTER in db.session.info


def keep(obj: Any) -> None:
    """Hold a row this transaction locked or wrote until the transaction ends. The session's identity map only
    holds unchanged objects weakly, so without this a step that drops its last reference (a handler returning)
    lets the next step (the receipt, the inbox's filing) load the same row again. Under the row's lock the kept
    copy is the current one."""
    kept = db.session.info.get(KEPT)
    if kept is not None:
        kept.append(obj)


def held(model: Any, ident: int) -> Any:
    """The row of this model and id that the current transaction kept (locked or wrote), or None: current
    as loaded, no need to read it again."""
    return next((obj for obj in db.session.info.get(KEPT, ()) if isinstance(obj, model) and obj.id == ident), None)


_PER_TRANSACTION: set[str] = set()


def transaction_cache(key: str) -> dict[Any, Any]:
    """A dict in session.info that lives as long as the current transaction (or savepoint): what one
    transaction reads again and again (an organization's webhook endpoints), read once."""
    _PER_TRANSACTION.add(key)
    cache: dict[Any, Any] = db.session.info.setdefault(key, {})
    return cache


def _transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None or transaction.nested:
        for key in _PER_TRANSACTION:
            session.info.pop(key, None)


def listen() -> None:
    """Register the session listener once per process (create_app calls it)."""
    if not event.contains(Session, "after_transaction_end", _transaction_end):
        event.listen(Session, "after_transaction_end", _transaction_end)


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
    keep(invoice)
    return invoice


def take_next(counter_model: Any, **key: Any) -> int:
    """Take the next number of a counter row (`last_seq`) under its row lock, creating it at 0 if missing; a
    rollback gives the number back, so there are no gaps. One statement once the row exists: the UPDATE takes
    the row's lock (PostgreSQL; SQLite's write lock is held already) and RETURNING reads the number it set."""
    step = (update(counter_model).filter_by(**key).values(last_seq=counter_model.last_seq + 1)
            .returning(counter_model.last_seq).execution_options(synchronize_session=False))
    taken = db.session.execute(step).scalar()
    if taken is None:  # the organization's (or year's) first number
        insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        db.session.execute(insert(counter_model).values(**key, last_seq=0).on_conflict_do_nothing())
        taken = db.session.execute(step).scalar_one()
    return int(taken)
