"""Reports at scale: seed N invoices (and a payment for each paid one) over 10 years, then time the reports page
(server time, in process) and stream an export of every invoice (rows/s, peak RSS of a fresh process).

    DATABASE_URL=sqlite:////tmp/reports.db .venv/bin/python -m bench.reports_bench --invoices 1000000
    DATABASE_URL=postgresql://postgres@127.0.0.1/bench .venv/bin/python -m bench.reports_bench --invoices 1000000
    ... --keep          reuse the seeded database
    ... --export-only   (used by the run itself: the export, in a process of its own, for its peak RSS)

One organization (America/New_York), 1,000 clients, 80 % USD and 20 % EUR; 90 % of invoices paid (70 % of
those by hand with a "paid on" date, 30 % by card with a success instant, 5 % of them a week late, 2 % refunded
in part), 5 % open (half of them overdue), 3 % void, 2 % drafts. The default period (the last 12 months) holds
about a tenth of them.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Flask

EMAIL, PASSWORD = "bench@example.com", "bench-password"
BATCH = 20_000


def _app() -> Flask:
    from invoicing import create_app

    app = create_app()
    app.config.update(PASSWORD_HASH_METHOD="pbkdf2:sha256:1000", WTF_CSRF_ENABLED=False)  # the test client logs in
    return app


def reset_and_seed(app: Flask, invoices: int, now: datetime) -> None:
    from flask_migrate import upgrade
    from sqlalchemy import insert, text

    from invoicing.extensions import db
    from invoicing.models import Client, Invoice, Payment, Refund
    from invoicing.services.audit import Actor
    from invoicing.services.users import create_organization, create_user

    rng = random.Random(12)
    with app.app_context():
        with db.engine.begin() as conn:
            if db.engine.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            else:
                for table in ("alembic_version", *[t.name for t in reversed(db.metadata.sorted_tables)]):
                    conn.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
        upgrade(revision="heads")
        system = Actor.system("bench")
        org = create_organization("Bench Reports", now=now, actor=system, timezone="America/New_York",
                                  allow_partial_payments=True)
        create_user(EMAIL, PASSWORD, role="admin", organization=org, now=now, actor=system,
                    hash_method="pbkdf2:sha256:1000")
        org_id, today = org.id, now.date()
        db.session.execute(insert(Client), [dict(id=n, organization_id=org_id, name=f"Client {n:04d}",
                                                 email=f"ap{n}@c.test", currency="USD" if n % 5 else "EUR",
                                                 created_at=now) for n in range(1, 1001)])
        db.session.commit()
        span, payment_id, refund_id = 3650, 0, 0
        for start in range(1, invoices + 1, BATCH):
            rows: list[dict[str, Any]] = []
            pays: list[dict[str, Any]] = []
            refunds: list[dict[str, Any]] = []
            for n in range(start, min(start + BATCH, invoices + 1)):
                client = rng.randrange(1, 1001)
                issue = today - timedelta(days=int(span * (1 - n / invoices)))
                due, total = issue + timedelta(days=30), rng.randint(10, 5000) * 100
                roll, currency = rng.random(), "USD" if client % 5 else "EUR"
                status = "paid" if roll < 0.9 else "open" if roll < 0.95 else "void" if roll < 0.98 else "draft"
                if status == "open" and (today - issue).days > 45:
                    status = "open" if roll < 0.925 else "paid"  # older open invoices are the overdue ones
                paid_day = issue + timedelta(days=rng.randint(3, 29) if rng.random() > 0.05 else 37)
                if status == "paid" and paid_day > today:
                    status = "open"
                paid_at = datetime(paid_day.year, paid_day.month, paid_day.day, 15, tzinfo=UTC)
                row = dict(id=n, public_id=secrets.token_hex(16), organization_id=org_id, client_id=client,
                           number=None if status == "draft" else f"{issue.year}-{n:07d}", status=status,
                           currency=currency, issue_date=issue, due_date=due, subtotal=total, total=total,
                           amount_paid=total if status == "paid" else 0, paid_at=paid_at if status == "paid" else None,
                           finalized_at=None, created_at=now, updated_at=now)
                rows.append(row)
                if status == "paid":
                    payment_id += 1
                    manual = rng.random() < 0.7
                    pays.append(dict(id=payment_id, organization_id=org_id, invoice_id=n, amount=total,
                                     currency=currency, method="bank_transfer" if manual else "card",
                                     status="succeeded", amount_refunded=0, paid_on=paid_day if manual else None,
                                     succeeded_at=paid_at, payment_intent_id=None if manual else f"pi_{n}",
                                     created_at=paid_at))
                    if rng.random() < 0.02:
                        refund_id += 1
                        pays[-1].update(amount_refunded=total // 4, status="partially_refunded")
                        row["amount_paid"] = total - total // 4
                        row["status"], row["paid_at"] = "open", None
                        refunds.append(dict(id=refund_id, organization_id=org_id, invoice_id=n,
                                            payment_id=payment_id, amount=total // 4, currency=currency,
                                            status="succeeded", created_at=paid_at + timedelta(days=2)))
            db.session.execute(insert(Invoice), rows)
            if pays:
                db.session.execute(insert(Payment), pays)
            if refunds:
                db.session.execute(insert(Refund), refunds)
            db.session.commit()
            print(f"  seeded {min(start + BATCH - 1, invoices):,} invoices", flush=True)
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ANALYZE"))
        else:
            db.session.execute(text("ANALYZE"))
        db.session.commit()


def time_page(app: Flask, runs: int) -> dict[str, float]:
    """Server time of GET /admin/reports (default period) and of a filtered one, in process: p50 and max."""
    from invoicing.extensions import db
    from invoicing.models import Organization
    from invoicing.services.reports import figures
    from invoicing.services.reports.period import ReportFilters

    client = app.test_client()
    client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD})
    out: dict[str, float] = {}
    for label, path in (("page, last 12 months", "/admin/reports"),
                        ("page, this year, USD", "/admin/reports?period=year&currency=USD"),
                        ("HTMX filter (report block)", "/admin/reports?period=last_year")):
        headers = {"HX-Request": "true"} if "HTMX" in label else {}
        assert client.get(path, headers=headers).status_code == 200  # warm
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            response = client.get(path, headers=headers)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
        out[label] = statistics.median(times)
        print(f"  {label}: p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms", flush=True)
    with app.app_context():
        org = db.session.query(Organization).first()
        assert org is not None
        for label, filters in (("figures only, last 12 months", ReportFilters()),
                               ("figures only, all 10 years", ReportFilters("custom", date(2000, 1, 1),
                                                                            datetime.now(UTC).date()))):
            times = []
            for _ in range(max(3, runs // 4)):
                t = time.perf_counter()
                figures.compute(org.id, filters, tz=org.timezone, now=datetime.now(UTC))
                times.append((time.perf_counter() - t) * 1000)
                db.session.rollback()
            print(f"  {label}: p50 {statistics.median(times):.1f} ms", flush=True)
    return out


def export_only(dataset: str, fmt: str) -> None:
    """Stream every row of a dataset (all 10 years) to /dev/null; print rows/s and this process's peak RSS."""
    from invoicing.extensions import db
    from invoicing.models import Organization
    from invoicing.services.reports import exports
    from invoicing.services.reports.period import ReportFilters

    app = _app()
    with app.test_request_context(), app.app_context():
        org = db.session.query(Organization).first()
        assert org is not None
        filters = ReportFilters("custom", date(2000, 1, 1), datetime.now(UTC).date())
        period = filters.period(org.timezone, datetime.now(UTC))
        rows = sum(1 for _ in exports.DATASETS[dataset].rows(org.id, filters, period))
        t = time.perf_counter()
        done = exports.export(org, dataset, fmt, filters, actor=exports.Actor.system("bench"),
                              now=datetime.now(UTC))
        size = 0
        with open(os.devnull, "wb") as sink:
            for chunk in done.body:
                data = chunk.encode() if isinstance(chunk, str) else chunk
                size += len(data)
                sink.write(data)
        seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  export {dataset}.{fmt}: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s, "
          f"{size / 2**20:.0f} MiB, peak RSS {peak:.0f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--export-only", nargs=2, metavar=("DATASET", "FORMAT"))
    parser.add_argument("--exports", default="invoices:csv,invoices:xlsx,payments:csv")
    args = parser.parse_args()
    if args.export_only:
        export_only(*args.export_only)
        return
    app = _app()
    if not args.keep:
        t = time.perf_counter()
        reset_and_seed(app, args.invoices, datetime.now(UTC))
        print(f"seeded in {time.perf_counter() - t:.0f} s", flush=True)
    time_page(app, args.runs)
    for spec in filter(None, args.exports.split(",")):
        dataset, fmt = spec.split(":")
        subprocess.run([sys.executable, "-m", "bench.reports_bench", "--export-only", dataset, fmt], check=True)


if __name__ == "__main__":
    main()
