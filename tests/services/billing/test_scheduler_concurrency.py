"""Exactly once across processes: three scheduler instances ticking together over the same 200 invoices and 20
recurring profiles send each reminder step once and invoice each period once (PostgreSQL with TEST_DATABASE_URL,
else SQLite; the SQLite two-thread case is in test_recurring.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Invoice, OutboxEmail, RecurringPeriod
from invoicing.services.billing import recurring
from invoicing.services.invoices import LineData
from tests.conftest import SYSTEM
from tests.services.billing.helpers import open_invoice, utc

ROOT = Path(__file__).resolve().parents[3]
TICKS = [utc(2026, 3, 12, 14), utc(2026, 3, 15, 14), utc(2026, 3, 19, 14)]


def count(model, *where) -> int:  # noqa: ANN001
    return int(db.session.scalar(select(func.count()).select_from(model).where(*where)))


def test_three_schedulers_do_each_reminder_and_each_period_once(app, world):
    overdue = [open_invoice(world.client_a, due=date(2026, 3, 1), opened=utc(2026, 2, 1, 15)).id for _ in range(200)]
    profiles = [recurring.create_profile(world.org_a.id, recurring.ProfileData(
        client_id=world.client_a.id, title=f"Weekly {n}", currency="USD", lines=(LineData("Work", Decimal(1), 1000),),
        interval_unit="week", interval_count=1, start_date=date(2026, 3, 11), payment_terms_days=14),
        actor=SYSTEM, now=utc(2026, 3, 10, 15)).id for n in range(20)]
    url, org_id = app.config["SQLALCHEMY_DATABASE_URI"], world.org_a.id
    db.session.remove()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()

    def scheduler(_: int) -> dict:
        done = subprocess.run([sys.executable, "-m", "tests.scheduler_worker", url,
                               ",".join(t.isoformat() for t in TICKS)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(scheduler, range(3)))
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
