"""The staff Subscriptions page's reads over many subscriptions: the headline figures, the list's first and a
deep page, a filtered page, the status counts.

    DATABASE_URL=sqlite:////tmp/subs_admin.db .venv/bin/python -m bench.subscriptions_admin_bench
    createdb -h 127.0.0.1 -U postgres subs_admin && \\
    DATABASE_URL=postgresql://postgres@127.0.0.1/subs_admin .venv/bin/python -m bench.subscriptions_admin_bench

Seeds (bulk inserts) one organization with three plans (USD monthly per seat, EUR yearly, JPY every 3 months)
and N subscriptions (default 100,000) spread over the six statuses, a fifth of them stopped in the last 60
days (churn), gathers planner statistics (ANALYZE), then times each read (best of 5, warm).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

STATUSES = ("active", "active", "active", "trialing", "past_due", "paused", "canceled", "ended")


def seed(app: Any, count: int) -> int:
    from sqlalchemy import insert, text

    from bench.list_bench import reset_schema
    from invoicing.extensions import db
    from invoicing.models import Client, Plan, PlanPrice, Subscription
    from invoicing.services.audit import Actor
    from invoicing.services.users import create_organization

    reset_schema(app)
    now = datetime.now(UTC)
    with app.app_context():
        org = create_organization("Bench admin", now=now, actor=Actor.system("bench"))
        db.session.execute(insert(Plan), [dict(id=i, organization_id=org.id, name=f"Plan {i}", description="",
                                               slug=f"bench-{i}", public=False, trial_days=0, tax_rate_milli=0,
                                               per_seat=i == 1, created_at=now, updated_at=now) for i in (1, 2, 3)])
        db.session.execute(insert(PlanPrice), [
            dict(id=1, plan_id=1, currency="USD", amount=1500, interval_unit="month", interval_count=1, setup_fee=0,
                 created_at=now),
            dict(id=2, plan_id=2, currency="EUR", amount=99000, interval_unit="year", interval_count=1, setup_fee=0,
                 created_at=now),
            dict(id=3, plan_id=3, currency="JPY", amount=30000, interval_unit="month", interval_count=3, setup_fee=0,
                 created_at=now)])
        db.session.execute(insert(Client), [dict(id=1, organization_id=org.id, name="Bench client", email="",
                                                 address="", currency="USD", tax_id="")])
        today = now.date()
        rows = []
        for n in range(count):
            status, price = STATUSES[n % len(STATUSES)], 1 + n % 3
            created = now - timedelta(days=30 + n % 400)
            stopped = now - timedelta(days=n % 60) if status in ("canceled", "ended") else None
            rows.append(dict(organization_id=org.id, client_id=1, plan_id=price, price_id=price, quantity=1 + n % 5,
                             currency=("USD", "EUR", "JPY")[price - 1], status=status, anchor_day=1,
                             current_period_start=today, current_period_end=today + timedelta(days=30),
                             trial_end=today + timedelta(days=5) if status == "trialing" else None,
                             cancel_at_period_end=False, cancel_reason="", canceled_at=stopped,
                             ended_at=stopped if status == "ended" else None, public_id=f"sub_bench_{n:08d}",
                             created_at=created, updated_at=created))
            if len(rows) == 10_000:
                db.session.execute(insert(Subscription), rows)
                rows = []
        if rows:
            db.session.execute(insert(Subscription), rows)
        db.session.commit()
        with db.engine.connect() as conn:  # planner statistics, as autovacuum would gather after a bulk load
            conn.execute(text("ANALYZE"))
            conn.commit()
        return int(org.id)


def best(fn: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    args = parser.parse_args()
    from invoicing import create_app
    from invoicing.extensions import db
    from invoicing.services.subscriptions import figures, queries

    app = create_app()
    org_id = seed(app, args.subscriptions)
    now = datetime.now(UTC)
    with app.app_context():
        first = queries.list_subscriptions(org_id, queries.SubscriptionFilters())
        deep_after = first.rows[0].id - args.subscriptions // 2
        reads: dict[str, Callable[[], Any]] = {
            "figures (MRR, counts, churn; 3 currencies)": lambda: figures.headline(org_id, now=now),
            "list, first page of 50": lambda: queries.list_subscriptions(org_id, queries.SubscriptionFilters()),
            "list, a page half-way down": lambda: queries.list_subscriptions(
                org_id, queries.SubscriptionFilters(), after=deep_after),
            "list, past_due in plan 2": lambda: queries.list_subscriptions(
                org_id, queries.SubscriptionFilters(status="past_due", plan_id=2)),
            "status counts": lambda: queries.status_counts(org_id),
        }
        print(f"{args.subscriptions:,} subscriptions on {db.engine.dialect.name}")
        for name, read in reads.items():
            read()
            db.session.rollback()
            print(f"  {name}: {best(read):.1f} ms")


if __name__ == "__main__":
    main()
