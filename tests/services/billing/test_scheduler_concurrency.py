"""Exactly once across processes: three scheduler instances ticking together over the same 200 invoices and 20
recurring profiles send each reminder step once and invoice each period once; over 200 autopay invoices they make
exactly 200 PaymentIntents at the Stripe test server (counted there). PostgreSQL with TEST_DATABASE_URL, else
SQLite; the SQLite two-thread cases are in test_recurring.py and below."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, ChargeAttempt, Invoice, InvoiceAutopay, OutboxEmail, Payment, RecurringPeriod
from invoicing.services.billing import recurring
from invoicing.services.invoices import LineData
from tests.conftest import SYSTEM
from tests.pay.support import site, stripe_env
from tests.services.billing.autopay_support import stripe_card
from tests.services.billing.helpers import open_invoice, utc

ROOT = Path(__file__).resolve().parents[3]
TICKS = [utc(2026, 3, 12, 14), utc(2026, 3, 15, 14), utc(2026, 3, 19, 14)]


def count(model, *where) -> int:  # noqa: ANN001
    return int(db.session.scalar(select(func.count()).select_from(model).where(*where)))


def run_schedulers(app, count_: int, extra: dict | None = None) -> list[dict]:  # noqa: ANN001
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    db.session.remove()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "tests.scheduler_worker", url, ",".join(t.isoformat() for t in TICKS)]
    args += [json.dumps(extra)] if extra else []

    def scheduler(_: int) -> dict:
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(count_) as pool:
        return list(pool.map(scheduler, range(count_)))


def test_three_schedulers_do_each_reminder_and_each_period_once(app, world):
    overdue = [open_invoice(world.client_a, due=date(2026, 3, 1), opened=utc(2026, 2, 1, 15)).id for _ in range(200)]
    profiles = [recurring.create_profile(world.org_a.id, recurring.ProfileData(
        client_id=world.client_a.id, title=f"Weekly {n}", currency="USD", lines=(LineData("Work", Decimal(1), 1000),),
        interval_unit="week", interval_count=1, start_date=date(2026, 3, 11), payment_terms_days=14),
        actor=SYSTEM, now=utc(2026, 3, 10, 15)).id for n in range(20)]
    org_id = world.org_a.id
    started = time.perf_counter()
    results = run_schedulers(app, 3)
    elapsed = time.perf_counter() - started

    assert [r["errors"] for r in results] == [[], [], []]
    for slot in results[0]["leases"]:  # the lease: one scheduler ran each job's slot
        assert sum(r["leases"][slot] for r in results) == 1, slot
    # Reminders: overdue_7 (caught up at the first tick) and overdue_14 for the 200; "due in 7 days" for the 20
    # invoices of March 11 made at the first tick. Each (invoice, step) once, in the outbox and on the timeline.
    reminders = db.session.execute(select(OutboxEmail.dedupe_key).where(OutboxEmail.kind == "reminder")).scalars()
    steps = Counter(key.rsplit(":", 1)[1] for key in reminders)
    assert steps == {"overdue_7": 200, "overdue_14": 200, "before_7": 20}
    assert count(AuditEvent, AuditEvent.action == "invoice.reminded") == 420
    assert set(db.session.execute(select(Invoice.reminded_through).where(Invoice.id.in_(overdue))).scalars()) == {14}
    # Recurring: the periods of March 11 and 18 of each profile, once each, numbered without gaps.
    assert count(RecurringPeriod) == 40
    for profile_id in profiles:
        periods = db.session.execute(select(RecurringPeriod.period_start).where(
            RecurringPeriod.profile_id == profile_id).order_by(RecurringPeriod.period_start)).scalars().all()
        assert periods == [date(2026, 3, 11), date(2026, 3, 18)]
    assert count(OutboxEmail, OutboxEmail.kind == "invoice") == 40
    numbers = db.session.execute(select(Invoice.number_seq).where(Invoice.organization_id == org_id))
    assert sorted(numbers.scalars()) == list(range(1, 241))
    print(f"\n{db.engine.dialect.name}: 3 schedulers x {len(TICKS)} ticks: {elapsed:.1f}s")


def autopay_invoices(world, stripe_app, n: int = 200) -> list[int]:  # noqa: ANN001
    stripe_card(stripe_app, world.client_a, now=utc(2026, 1, 15))
    return [open_invoice(world.client_a, due=date(2026, 3, 1), opened=utc(2026, 2, 1, 15)).id for _ in range(n)]


def assert_charged_once(stripe_app, invoices: list[int]) -> None:  # noqa: ANN001
    db.session.rollback()
    assert stripe_app.count("payment_intents") == len(invoices)  # counted at the provider: one charge each
    attempts = db.session.execute(select(ChargeAttempt)).scalars().all()
    assert len(attempts) == len(invoices) and {a.status for a in attempts} == {"succeeded"}
    assert sorted(a.invoice_id for a in attempts) == sorted(invoices)
    assert count(Payment, Payment.status == "succeeded") == len(invoices)
    assert set(db.session.execute(select(Invoice.status).where(Invoice.id.in_(invoices))).scalars()) == {"paid"}
    assert set(db.session.execute(select(InvoiceAutopay.status)).scalars()) == {"succeeded"}
    assert count(AuditEvent, AuditEvent.action == "autopay.succeeded") == len(invoices)


def test_three_schedulers_charge_each_autopay_invoice_once(app, world, stripe_app):
    invoices = autopay_invoices(world, stripe_app)
    started = time.perf_counter()
    results = run_schedulers(app, 3, stripe_env(stripe_app))
    elapsed = time.perf_counter() - started
    assert [r["errors"] for r in results] == [[], [], []]
    for slot in (s for s in results[0]["leases"] if s.startswith("process-recurring-charges")):
        assert sum(r["leases"][slot] for r in results) == 1, slot
    assert_charged_once(stripe_app, invoices)
    print(f"\n{db.engine.dialect.name}: 3 schedulers, 200 autopay invoices: {elapsed:.1f}s")


def test_two_threads_charge_each_autopay_invoice_once(app, world, stripe_app):
    from invoicing.gateways import current_gateway
    from invoicing.services.billing.charges import process_due

    invoices = autopay_invoices(world, stripe_app)
    start = threading.Barrier(2)  # each tick starts together on both (ticks are days apart: none overlaps)
    errors: list[str] = []

    def worker() -> None:
        with app.app_context():
            for tick in TICKS:
                start.wait()
                errors.extend(process_due(now=tick, gateway=current_gateway(), site=site()).errors)
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    assert_charged_once(stripe_app, invoices)
