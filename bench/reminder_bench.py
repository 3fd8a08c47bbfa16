"""The reminder sweep over 100,000 open invoices: seed, then time the sweeps of one day.

    DATABASE_URL=sqlite:////tmp/remind.db .venv/bin/python -m bench.reminder_bench
    createdb -h 127.0.0.1 -U postgres remind && \\
    DATABASE_URL=postgresql://postgres@127.0.0.1/remind .venv/bin/python -m bench.reminder_bench

Seeds (bulk inserts) one organization in New York with 1,000 clients and N open invoices (default 100,000),
due from 60 days ago to 60 days ahead, each with the reminder steps before today done, as if the scheduler had
run every day. Then, each in a fresh process (peak memory is that process's own):

- `idle`: the sweep at 08:59 local time, when nothing is due: what a tick costs over N open invoices;
- `dry-run`: `flask billing remind --dry-run` at 09:00 (the plan, nothing written);
- `sweep`: the 09:00 sweep that queues today's steps (7 and 1 days before, 1, 7 and 14 after: about 5/121 of
  the invoices), each in its own transaction with the email rendered and queued in the outbox;
- `again`: the same sweep a second time (everything done: nothing is sent twice).

Figures: wall time, emails per second, peak RSS of the process (BENCH_TRACEMALLOC=1 adds the peak of Python's
own allocations, and slows the run down a lot).
`--catch-up` seeds no steps done instead (a first run after enabling reminders: one email per invoice with a
step due, about 56 % of them).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
ZONE = ZoneInfo("America/New_York")
OFFSETS = (-7, -1, 1, 7, 14)  # the default steps


def _app() -> Any:
    from invoicing import create_app

    return create_app()


def _today() -> date:
    return datetime.now(ZONE).date()


def seed(*, invoices: int, clients: int, catch_up: bool) -> None:
    from sqlalchemy import insert, text

    from bench.list_bench import reset_schema
    from invoicing.extensions import db
    from invoicing.models import Client, Invoice, InvoiceCounter, LineItem
    from invoicing.services.audit import Actor
    from invoicing.services.users import create_organization

    app = _app()
    reset_schema(app)
    rng = random.Random(7)
    today, now = _today(), datetime.now(UTC)
    with app.app_context():
        org = create_organization("Bench Reminders", now=now, actor=Actor.system("bench"),
                                  timezone="America/New_York")
        db.session.execute(insert(Client), [
            dict(id=n, organization_id=org.id, name=f"Client {n:04d}", email=f"ap{n}@client{n}.test", address="",
                 currency="USD", autopay_enabled=False, reminders_opt_out=False, created_at=now)
            for n in range(1, clients + 1)])
        batch: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        for n in range(1, invoices + 1):
            due = today + timedelta(days=rng.randint(-60, 60))
            opened = datetime(due.year, due.month, due.day, 15, tzinfo=UTC) - timedelta(days=30)
            done = [o for o in OFFSETS if due + timedelta(days=o) < today]  # the days before today: swept
            total = rng.randint(1, 50) * 1000
            batch.append(dict(
                id=n, public_id=secrets.token_hex(16), organization_id=org.id, client_id=rng.randint(1, clients),
                status="open", currency="USD", issue_date=opened.date(), due_date=due, notes="", project_ref="",
                discount_value=0, subtotal=total, discount_total=0, tax_total=0, total=total, amount_paid=0,
                link_version=1, sent_count=1, view_count=0, void_reason="", created_at=now, updated_at=now,
                number=f"{today.year}-{n:06d}", number_year=today.year, number_seq=n, sent_at=opened,
                finalized_at=opened, link_expires_on=due + timedelta(days=30),
                reminded_through=None if catch_up or not done else max(done)))
            lines.append(dict(invoice_id=n, position=0, description="Consulting", quantity_milli=1000,
                              unit_price=total, tax_rate_milli=0, amount=total, discount=0, tax=0))
            if len(batch) == 5000:
                db.session.execute(insert(Invoice), batch)
                db.session.execute(insert(LineItem), lines)
                batch, lines = [], []
        if batch:
            db.session.execute(insert(Invoice), batch)
            db.session.execute(insert(LineItem), lines)
        db.session.execute(insert(InvoiceCounter).values(organization_id=org.id, year=today.year, last_seq=invoices))
        if db.engine.dialect.name == "postgresql":
            for table in ("client", "invoice"):
                db.session.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
        db.session.commit()
        with db.engine.connect() as conn:
            vacuum = "VACUUM ANALYZE" if db.engine.dialect.name == "postgresql" else "ANALYZE"
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(vacuum))


def phase(name: str) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    from sqlalchemy import func, select

    from invoicing.extensions import db
    from invoicing.jobs import load_jobs
    from invoicing.models import OutboxEmail
    from invoicing.services.billing.reminders import remind_job, send_due_reminders
    from invoicing.services.site import Site

    app = _app()
    today = _today()
    nine = datetime(today.year, today.month, today.day, 9, tzinfo=ZONE).astimezone(UTC)
    at = nine - timedelta(minutes=1) if name == "idle" else nine
    with app.app_context():
        load_jobs()
        site = Site.from_config(app.config)
        db.session.execute(select(1))  # connect before timing
        db.session.rollback()
        before = db.session.scalar(select(func.count()).select_from(OutboxEmail))
        db.session.rollback()
        if os.environ.get("BENCH_TRACEMALLOC"):  # Python's own allocations, at the cost of a much slower run
            tracemalloc.start()
        started = time.perf_counter()
        if name == "dry-run":
            outcome = remind_job(at, True).splitlines()[0]
        else:
            outcome = str(send_due_reminders(now=at, site=site))
        seconds = time.perf_counter() - started
        traced_peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else 0
        tracemalloc.stop()
        sent = db.session.scalar(select(func.count()).select_from(OutboxEmail)) - before
        dupes = db.session.scalar(select(func.count()).select_from(
            select(OutboxEmail.dedupe_key).group_by(OutboxEmail.dedupe_key).having(func.count() > 1).subquery()))
    return {"phase": name, "seconds": round(seconds, 2), "emails": sent, "duplicates": dupes,
            "emails_per_second": round(sent / seconds, 1) if sent else 0, "outcome": outcome,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            **({"python_peak_mib": round(traced_peak / 2**20, 1)} if traced_peak else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--catch-up", action="store_true", help="no steps done yet: a first run")
    parser.add_argument("--keep", action="store_true", help="reuse the seeded database")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase)))
        return
    if not os.environ.get("DATABASE_URL"):
        sys.exit("Set DATABASE_URL (a scratch database: it is emptied).")
    os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 40)
    os.environ["SCHEDULER_ENABLED"] = "0"
    os.environ.pop("MAIL_SERVER", None)
    if not args.keep:
        started = time.perf_counter()
        seed(invoices=args.invoices, clients=args.clients, catch_up=args.catch_up)
        print(f"seeded {args.invoices:,} open invoices in {time.perf_counter() - started:.0f} s", flush=True)
    for name in ("idle", "dry-run", "sweep", "again"):
        done = subprocess.run([sys.executable, "-m", "bench.reminder_bench", "--phase", name], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        print(done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
