"""Renewing 10,000 subscriptions in one sweep: seed, then time the sweep of their renewal day.

    DATABASE_URL=sqlite:////tmp/subs.db .venv/bin/python -m bench.subscriptions_bench
    createdb -h 127.0.0.1 -U postgres subs && \\
    DATABASE_URL=postgresql://postgres@127.0.0.1/subs .venv/bin/python -m bench.subscriptions_bench

Seeds (bulk inserts) one organization in New York, two plans (one per seat, with a tax rate), N clients
(default 10,000) each with one active subscription whose period ends today, a tenth of them with credit to
apply, and each subscription's previous period already invoiced (so no setup fee). Then, each in a fresh
process (peak memory is that process's own):

- `idle`: the sweep at 08:59 local time, when nothing is due yet: what a tick costs;
- `dry-run`: `flask billing subscriptions --dry-run` at 09:00 (the plan, nothing written);
- `sweep`: the 09:00 sweep: each subscription locked, its period invoiced (lines, credit applied, numbered,
  the invoice email rendered with its pay link and queued in the outbox, autopay asked), one transaction each;
- `again`: the same sweep a second time (everything done: nothing is invoiced twice).

Figures: wall time, invoices per second, peak RSS of the process (BENCH_TRACEMALLOC=1 adds the peak of
Python's own allocations, and slows the run down a lot).
"""

from __future__ import annotations

import argparse
import json
import os
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


def _app() -> Any:
    from invoicing import create_app

    return create_app()


def _today() -> date:
    return datetime.now(ZONE).date()


def seed(*, subscriptions: int) -> None:
    from sqlalchemy import insert, text

    from bench.list_bench import reset_schema
    from invoicing.extensions import db
    from invoicing.models import (
        Client,
        CreditEntry,
        Invoice,
        InvoiceCounter,
        Plan,
        PlanPrice,
        Subscription,
        SubscriptionPeriod,
    )
    from invoicing.services.audit import Actor
    from invoicing.services.users import create_organization

    app = _app()
    reset_schema(app)
    today, now = _today(), datetime.now(UTC)
    start = today - timedelta(days=30)  # a 30-day-ish previous period: anchor on today's day
    with app.app_context():
        org = create_organization("Bench Subscriptions", now=now, actor=Actor.system("bench"),
                                  timezone="America/New_York")
        db.session.execute(insert(Plan), [
            dict(id=1, organization_id=org.id, name="Hosting", description="", slug="bench-hosting", public=True,
                 trial_days=0, tax_rate_milli=8875, per_seat=False, created_at=now, updated_at=now),
            dict(id=2, organization_id=org.id, name="Seats", description="", slug="bench-seats", public=True,
                 trial_days=0, tax_rate_milli=0, per_seat=True, created_at=now, updated_at=now)])
        db.session.execute(insert(PlanPrice), [
            dict(id=1, plan_id=1, currency="USD", amount=4900, interval_unit="month", interval_count=1,
                 setup_fee=10000, created_at=now),
            dict(id=2, plan_id=2, currency="USD", amount=1200, interval_unit="month", interval_count=1,
                 setup_fee=0, created_at=now)])
        for first in range(1, subscriptions + 1, 5000):
            ids = range(first, min(first + 5000, subscriptions + 1))
            db.session.execute(insert(Client), [
                dict(id=n, organization_id=org.id, name=f"Client {n:05d}", email=f"ap{n}@client{n}.test", address="",
                     currency="USD", autopay_enabled=False, reminders_opt_out=False, created_at=now) for n in ids])
            db.session.execute(insert(Invoice), [  # the previous period's invoice, paid
                dict(id=n, public_id=secrets.token_hex(16), organization_id=org.id, client_id=n, status="paid",
                     currency="USD", issue_date=start, due_date=start, notes="", project_ref="", discount_value=0,
                     subtotal=4900, discount_total=0, tax_total=0, total=4900, amount_paid=4900, link_version=1,
                     sent_count=1, view_count=0, void_reason="", created_at=now, updated_at=now,
                     number=f"{today.year}-{n:06d}", number_year=today.year, number_seq=n, sent_at=now,
                     finalized_at=now, paid_at=now) for n in ids])
            db.session.execute(insert(Subscription), [
                dict(id=n, public_id=secrets.token_hex(16), organization_id=org.id, client_id=n,
                     plan_id=1 + n % 2, price_id=1 + n % 2, quantity=1 + (n % 2) * (n % 7), currency="USD",
                     status="active", anchor_day=today.day, current_period_start=start, current_period_end=today,
                     cancel_at_period_end=False, cancel_reason="", created_at=now, updated_at=now) for n in ids])
            db.session.execute(insert(SubscriptionPeriod), [
                dict(subscription_id=n, period_start=start, period_end=today, invoice_id=n, created_at=now)
                for n in ids])
            db.session.execute(insert(CreditEntry), [
                dict(organization_id=org.id, client_id=n, currency="USD", amount=1500, reason="proration",
                     description="bench", subscription_id=n, created_at=now) for n in ids if n % 10 == 0])
        db.session.execute(insert(InvoiceCounter).values(organization_id=org.id, year=today.year,
                                                         last_seq=subscriptions))
        if db.engine.dialect.name == "postgresql":
            for table in ("client", "invoice", "subscription", "plan", "plan_price"):
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
    from invoicing.models import OutboxEmail, SubscriptionPeriod
    from invoicing.services.site import Site
    from invoicing.services.subscriptions.lifecycle import renew_due, subscriptions_job

    app = _app()
    today = _today()
    nine = datetime(today.year, today.month, today.day, 9, tzinfo=ZONE).astimezone(UTC)
    at = nine - timedelta(minutes=1) if name == "idle" else nine
    with app.app_context():
        load_jobs()
        site = Site.from_config(app.config)
        db.session.execute(select(1))  # connect before timing
        before = db.session.scalar(select(func.count()).select_from(SubscriptionPeriod))
        db.session.rollback()
        if os.environ.get("BENCH_TRACEMALLOC"):
            tracemalloc.start()
        started = time.perf_counter()
        if name == "dry-run":
            outcome = subscriptions_job(at, True).splitlines()[0]
        else:
            outcome = str(renew_due(now=at, site=site))
        seconds = time.perf_counter() - started
        traced_peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else 0
        tracemalloc.stop()
        made = db.session.scalar(select(func.count()).select_from(SubscriptionPeriod)) - before
        emails = db.session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "invoice"))
    return {"phase": name, "seconds": round(seconds, 2), "invoices": made, "invoice_emails_total": emails,
            "invoices_per_second": round(made / seconds, 1) if made else 0, "outcome": outcome,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            **({"python_peak_mib": round(traced_peak / 2**20, 1)} if traced_peak else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=10_000)
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
        seed(subscriptions=args.subscriptions)
        print(f"seeded {args.subscriptions:,} subscriptions in {time.perf_counter() - started:.0f} s", flush=True)
    for name in ("idle", "dry-run", "sweep", "again"):
        done = subprocess.run([sys.executable, "-m", "bench.subscriptions_bench", "--phase", name], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        print(done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
