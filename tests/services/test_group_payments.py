"""payments.apply_group_payment: one provider payment for several invoices, each credited its own share, in one
transaction, exactly once per (session, invoice), whoever hears of it first (webhook, return page, reconcile)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AttentionCase, AuditEvent, CheckoutGroup, CheckoutGroupItem, Invoice, Payment
from invoicing.services.db import atomic
from invoicing.services.payments import apply_group_payment, record_manual_payment
from tests.conftest import NOW, SYSTEM, make_client, make_invoice
from tests.pay.support import assert_invariants, fresh


def make_group(invoices: list[Invoice], *, session_id: str = "cs_group_1", contact_id: int | None = None,
               provider: str = "stripe") -> CheckoutGroup:
    """A group checkout for the invoices' amounts due, as start_group_checkout stores it."""
    first = invoices[0]
    with atomic():
        group = CheckoutGroup(
            ref=f"ref-{session_id}", organization_id=first.organization_id, client_id=first.client_id,
            contact_id=contact_id, provider=provider, ui_mode="hosted", session_id=session_id,
            amount=sum(i.amount_due for i in invoices), currency=first.currency, status="open", url="",
            created_at=NOW,
            items=[CheckoutGroupItem(invoice_id=i.id, amount=i.amount_due) for i in invoices])
        db.session.add(group)
    return group


def shares() -> list[tuple[int, int, str, str | None]]:
    db.session.rollback()
    return [(p.invoice_id, p.amount, p.status, p.idempotency_key)
            for p in db.session.scalars(select(Payment).order_by(Payment.invoice_id, Payment.id))]


def test_it_credits_each_invoice_its_own_share_once(world):
    contact = world.client_a.contacts[0]
    a = make_invoice(world.client_a, status="open")
    b = make_invoice(world.client_a, status="open", discount_kind="amount", discount_value=7000)
    assert b.amount_due == 19440  # a discount: each invoice is credited its own amount, not an even split
    group = make_group([a, b], contact_id=contact.id)
    results = apply_group_payment(group.id, session_id="cs_group_1", status="succeeded", actor=SYSTEM, now=NOW,
                                  payment_intent_id="pi_group", charge_id="ch_group", payer_email="ap@clienta.test")
    assert [r.created for r in results] == [True, True]
    assert shares() == [(a.id, 27000, "succeeded", f"cs_group_1:{a.id}"),
                        (b.id, 19440, "succeeded", f"cs_group_1:{b.id}")]
    for invoice in (a, b):
        assert (fresh(invoice).status, fresh(invoice).amount_due) == ("paid", 0)
    payments = db.session.scalars(select(Payment).order_by(Payment.id)).all()
    assert [p.receipt_number for p in payments] == ["R-000001", "R-000002"]  # one receipt number per invoice
    assert all(p.paid_by_contact_id == contact.id and p.group_id == group.id for p in payments)
    assert all(p.payer_email == "ap@clienta.test" and p.payment_intent_id is None for p in payments)
    assert all(p.provider_intent_id == "pi_group" for p in payments)  # the shared intent, kept on the group
    stored = db.session.get(CheckoutGroup, group.id)
    assert (stored.payment_intent_id, stored.charge_id) == ("pi_group", "ch_group")
    audit = db.session.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "payment.succeeded")).all()
    assert sorted(audit) == [a.id, b.id]

    again = apply_group_payment(group.id, session_id="cs_group_1", status="succeeded", actor=SYSTEM, now=NOW)
    late = apply_group_payment(group.id, session_id="cs_group_1", status="processing", actor=SYSTEM, now=NOW)
    assert [r.created for r in again + late] == [False] * 4
    assert [s[2] for s in shares()] == ["succeeded", "succeeded"]  # state only moves forward
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "payment.succeeded")) == 2
    assert_invariants()


def test_it_records_money_for_an_invoice_paid_meanwhile_and_flags_the_overpayment(world):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    group = make_group([a, b])
    record_manual_payment(b.id, amount=b.total, method="bank_transfer", paid_on=NOW.date(), reference="wire",
                          actor=SYSTEM, now=NOW)  # staff recorded a transfer before the card payment completed
    apply_group_payment(group.id, session_id="cs_group_1", status="succeeded", actor=SYSTEM, now=NOW)
    overpaid = db.session.scalars(select(Payment).where(Payment.group_id == group.id, Payment.overpayment)).all()
    assert [p.invoice_id for p in overpaid] == [b.id]
    assert (fresh(b).status, fresh(b).amount_paid, fresh(b).amount_overpaid) == ("paid", 54000, 27000)
    assert (fresh(a).status, fresh(a).amount_paid) == ("paid", 27000)
    case = db.session.scalars(select(AttentionCase)).one()
    assert (case.kind, case.invoice_id, case.amount, case.payment_id) == ("overpayment", b.id, 27000, overpaid[0].id)
    assert_invariants()


@contextmanager
def inserts_fail_for(invoice_id: int) -> Iterator[None]:
    """The database refuses one invoice's payment (a trigger): the group's transaction must take none."""
    if db.engine.dialect.name == "postgresql":
        statements = (f"CREATE OR REPLACE FUNCTION refuse_share() RETURNS trigger AS $$ BEGIN "
                      f"IF NEW.invoice_id = {invoice_id} THEN RAISE EXCEPTION 'injected fault'; END IF; "
                      "RETURN NEW; END $$ LANGUAGE plpgsql",
                      "CREATE TRIGGER refuse_share BEFORE INSERT ON payment FOR EACH ROW "
                      "EXECUTE FUNCTION refuse_share()")
        undo = ("DROP TRIGGER IF EXISTS refuse_share ON payment", "DROP FUNCTION IF EXISTS refuse_share()")
    else:
        statements = (f"CREATE TRIGGER refuse_share BEFORE INSERT ON payment WHEN NEW.invoice_id = {invoice_id} "
                      "BEGIN SELECT RAISE(ABORT, 'injected fault'); END",)
        undo = ("DROP TRIGGER IF EXISTS refuse_share",)
    db.session.rollback()
    with db.engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        db.session.rollback()
        with db.engine.begin() as conn:
            for statement in undo:
                conn.exec_driver_sql(statement)


def test_it_writes_no_share_when_one_cannot_be_recorded(world):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    group = make_group([a, b])
    with inserts_fail_for(b.id), pytest.raises(Exception, match="injected fault"):
        apply_group_payment(group.id, session_id="cs_group_1", status="succeeded", actor=SYSTEM, now=NOW,
                            payment_intent_id="pi_group")
    assert shares() == [] and fresh(a).status == "open" and fresh(a).amount_paid == 0
    assert db.session.get(CheckoutGroup, group.id).payment_intent_id is None
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action.like("payment.%"))) == 0
    apply_group_payment(group.id, session_id="cs_group_1", status="succeeded", actor=SYSTEM, now=NOW)  # the retry
    assert [s[2] for s in shares()] == ["succeeded", "succeeded"]
    assert_invariants()


def test_it_moves_a_settles_later_payment_forward_on_every_invoice(world):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    group = make_group([a, b])
    apply_group_payment(group.id, session_id="cs_group_1", status="processing", actor=SYSTEM, now=NOW,
                        observed_at=NOW)
    assert [fresh(i).status for i in (a, b)] == ["processing", "processing"]
    assert [p.receipt_number for p in db.session.scalars(select(Payment))] == [None, None]  # none until it clears
    apply_group_payment(group.id, session_id="cs_group_1", status="failed", actor=SYSTEM, now=NOW,
                        observed_at=NOW + timedelta(seconds=5), failure_code="account_closed",
                        failure_message="The bank account is closed.")
    assert [fresh(i).status for i in (a, b)] == ["open", "open"]
    assert [(s[2]) for s in shares()] == ["failed", "failed"]
    apply_group_payment(group.id, session_id="cs_group_1", status="processing", actor=SYSTEM, now=NOW,
                        observed_at=NOW + timedelta(seconds=1))  # an older event arriving late: stale
    assert [(s[2]) for s in shares()] == ["failed", "failed"]
    assert_invariants()


def test_it_refuses_a_share_in_another_currency_than_the_group(world):
    eur = make_client(world.org_a, "Euro Co", currency="EUR")
    usd, euro = make_invoice(world.client_a, status="open"), make_invoice(eur, status="open")
    group = make_group([usd, euro])  # start_group_checkout never makes one; the door refuses it anyway
    with pytest.raises(Exception, match="is in EUR, not USD"):
        apply_group_payment(group.id, session_id="cs_group_1", status="succeeded", actor=SYSTEM, now=NOW)
    assert shares() == []


def test_concurrent_callers_record_each_group_once_and_never_deadlock(app: Flask, world):
    """The webhook, the return page and reconcile at the same moment, for two groups sharing invoices chosen in
    two tabs (paid twice: money moved is kept, and the later shares flagged). The invoice rows are locked in id
    order whatever order they were chosen in, so the callers wait for each other instead of deadlocking."""
    a, b, c = (make_invoice(world.client_a, status="open") for _ in range(3))
    first = make_group([a, b, c], session_id="cs_first")
    second = make_group([c, b], session_id="cs_second")  # ticked in another order: its rows are stored c, b
    jobs = [(first.id, "cs_first"), (second.id, "cs_second")] * 6
    start, errors = threading.Barrier(len(jobs)), []

    def call(group_id: int, session_id: str) -> None:
        with app.app_context():
            try:
                start.wait(timeout=30)
                apply_group_payment(group_id, session_id=session_id, status="succeeded", actor=SYSTEM, now=NOW,
                                    payment_intent_id=f"pi_{session_id}")
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=call, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    db.session.rollback()
    keys = Counter(p.idempotency_key for p in db.session.scalars(select(Payment)))
    assert keys == Counter({f"cs_first:{a.id}": 1, f"cs_first:{b.id}": 1, f"cs_first:{c.id}": 1,
                            f"cs_second:{b.id}": 1, f"cs_second:{c.id}": 1})
    assert [fresh(i).amount_paid for i in (a, b, c)] == [27000, 54000, 54000]
    assert db.session.scalar(select(func.count()).select_from(AttentionCase)) == 2  # the later shares of b and c
    assert_invariants()
