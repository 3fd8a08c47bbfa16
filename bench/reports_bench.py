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
BATCH = 50_000


def _app() -> Flask:
    from invoicing import create_app

    app = create_app()
    app.config.update(PASSWORD_HASH_METHOD="pbkdf2:sha256:1000", WTF_CSRF_ENABLED=False)  # the test client logs in
    return app


def _insert(conn: Any, sqlite: bool, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" if sqlite else "%s" for _ in columns)
    conn.cursor().executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


INVOICE = ("id", "public_id", "organization_id", "client_id", "number", "status", "currency", "issue_date",
           "due_date", "notes", "project_ref", "discount_value", "subtotal", "discount_total", "tax_total", "total",
           "amount_paid", "link_version", "sent_count", "view_count", "paid_at", "void_reason", "created_at",
           "updated_at")
PAYMENT = ("id", "organization_id", "invoice_id", "amount", "currency", "method", "status", "amount_refunded",
           "paid_on", "succeeded_at", "payment_intent_id", "reference", "overpayment", "created_at")
REFUND = ("id", "organization_id", "invoice_id", "payment_id", "amount", "currency", "status", "reason",
          "created_at")


def reset_and_seed(app: Flask, invoices: int, now: datetime) -> None:
    """Bulk rows straight through the driver, with the secondary indexes dropped during the load and built
    again after it (minutes instead of an hour for a million invoices on this machine)."""
    from flask_migrate import upgrade
    from sqlalchemy import insert, text

    from invoicing.extensions import db
    from invoicing.models import Client
    from invoicing.services.audit import Actor
    from invoicing.services.users import create_organization, create_user

    rng = random.Random(12)
    with app.app_context():
        sqlite = db.engine.dialect.name == "sqlite"
        with db.engine.begin() as conn:
            if not sqlite:
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
        tables = ("invoice", "payment", "refund")
        with db.engine.begin() as conn:
            if sqlite:
                indexes = list(conn.execute(text(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                    "AND tbl_name IN ('invoice', 'payment', 'refund')")))
                for name, _ in indexes:
                    conn.execute(text(f'DROP INDEX "{name}"'))
            else:
                indexes = list(conn.execute(text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('invoice', 'payment', 'refund') "
                    "AND indexname NOT LIKE 'pk_%' AND indexname NOT LIKE 'uq_%'")))
                for name, _ in indexes:
                    conn.execute(text(f'DROP INDEX "{name}"'))

        def stamp(moment: datetime) -> Any:
            return moment.strftime("%Y-%m-%d %H:%M:%S.000000") if sqlite else moment

        def day(value: date) -> Any:
            return value.isoformat() if sqlite else value

        stamp_now = stamp(now)
        span, payment_id, refund_id = 3650, 0, 0
        raw = db.engine.raw_connection()
        try:
            for start in range(1, invoices + 1, BATCH):
                rows, pays, refunds = [], [], []
                for n in range(start, min(start + BATCH, invoices + 1)):
                    client = rng.randrange(1, 1001)
                    issue = today - timedelta(days=int(span * (1 - n / invoices)))
                    due, total = issue + timedelta(days=30), rng.randint(10, 5000) * 100
                    roll, currency = rng.random(), "USD" if client % 5 else "EUR"
                    status = "paid" if roll < 0.9 else "open" if roll < 0.95 else "void" if roll < 0.98 else "draft"
                    if status == "open" and (today - issue).days > 45 and roll > 0.925:
                        status = "paid"  # older open invoices: half of them paid after all, half overdue
                    paid_day = issue + timedelta(days=rng.randint(3, 29) if rng.random() > 0.05 else 37)
                    if status == "paid" and paid_day > today:
                        status = "open"
                    paid_at = datetime(paid_day.year, paid_day.month, paid_day.day, 15, tzinfo=UTC)
                    amount_paid, invoice_paid_at = (total, stamp(paid_at)) if status == "paid" else (0, None)
                    if status == "paid":
                        payment_id += 1
                        manual = rng.random() < 0.7
                        refunded = total // 4 if rng.random() < 0.02 else 0
                        pays.append((payment_id, org_id, n, total, currency, "bank_transfer" if manual else "card",
                                     "partially_refunded" if refunded else "succeeded", refunded,
                                     day(paid_day) if manual else None, stamp(paid_at),
                                     None if manual else f"pi_{n}", "", False, stamp(paid_at)))
                        if refunded:
                            refund_id += 1
                            refunds.append((refund_id, org_id, n, payment_id, refunded, currency, "succeeded", "",
                                            stamp(paid_at + timedelta(days=2))))
                            status, amount_paid, invoice_paid_at = "open", total - refunded, None
                    rows.append((n, secrets.token_hex(16), org_id, client,
                                 None if status == "draft" else f"{issue.year}-{n:07d}", status, currency, day(issue),
                                 day(due), "", "", 0, total, 0, 0, total, amount_paid, 1, 0, 0, invoice_paid_at, "",
                                 stamp_now, stamp_now))
                if sqlite:  # the app's connections run SQLite in autocommit mode (it issues BEGIN itself)
                    raw.cursor().execute("BEGIN")
                _insert(raw, sqlite, "invoice", INVOICE, rows)
                _insert(raw, sqlite, "payment", PAYMENT, pays)
                if refunds:
                    _insert(raw, sqlite, "refund", REFUND, refunds)
                raw.commit()
                if start % 200_000 == 1:
                    print(f"  seeded {min(start + BATCH - 1, invoices):,} invoices", flush=True)
        finally:
            raw.close()
        t = time.perf_counter()
        with db.engine.begin() as conn:
            for _, ddl in indexes:
                conn.execute(text(ddl))
            conn.execute(text("ANALYZE" if sqlite else "ANALYZE " + ", ".join(tables)))
        print(f"  indexes built in {time.perf_counter() - t:.0f} s", flush=True)


def time_page(app: Flask, runs: int) -> None:
    """Server time of GET /admin/reports, in process: cold (nothing kept: every figure added up again) and warm
    (the report kept since the ledger last changed, figures.compute), p50 and max."""
    from invoicing.services.reports import figures

    client = app.test_client()
    client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD})
    pages = (("last 12 months (the default)", "/admin/reports", {}),
             ("this year, USD", "/admin/reports?period=year&currency=USD", {}),
             ("HTMX filter: last year (report block)", "/admin/reports?period=last_year", {"HX-Request": "true"}),
             ("dashboard (this month's cards, sparkline)", "/admin/", {}),
             ("all 10 years", "/admin/reports?period=custom&from=2015-01-01&to=2030-01-01", {}))
    for label, path, headers in pages:
        for kind, n in (("cold", max(3, runs // 4)), ("warm", runs)):
            times, cpu = [], []
            for _ in range(n):
                if kind == "cold":
                    figures.forget()
                t, c = time.perf_counter(), time.process_time()
                response = client.get(path, headers=headers)
                times.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
                assert response.status_code == 200, response.status_code
            # CPU time of this process: SQLite's work included (it runs in process), PostgreSQL's not
            print(f"  {label}, {kind}: p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms, "
                  f"CPU p50 {statistics.median(cpu):.1f} ms", flush=True)


def export_only(dataset: str, fmt: str) -> None:
    """Stream every row of a dataset (all 10 years) to /dev/null, as the export view does; print rows/s (wall
    clock and CPU time: the machine is shared) and this process's peak RSS."""
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
        spec = exports.DATASETS[dataset]
        count = [0]

        def counted() -> Any:
            for row in spec.rows(org.id, filters, period):
                count[0] += 1
                yield row

        header = exports.headers(spec, org.timezone)
        body = exports.write_xlsx(spec.label, header, counted()) if fmt == "xlsx" else \
            exports.write_csv(header, counted())
        cpu = time.process_time()
        t, size = time.perf_counter(), 0
        with open(os.devnull, "wb") as sink:
            for chunk in body:
                data = chunk.encode() if isinstance(chunk, str) else chunk
                size += len(data)
                sink.write(data)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = count[0]
    print(f"  export {dataset}.{fmt}: {rows:,} rows in {seconds:.0f} s = {rows / seconds:,.0f} rows/s "
          f"({rows / cpu:,.0f} rows per CPU second), {size / 2**20:.0f} MiB, peak RSS {peak:.0f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--seed-only", action="store_true")
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
        if args.seed_only:
            return
    time_page(app, args.runs)
    for spec in filter(None, args.exports.split(",")):
        dataset, fmt = spec.split(":")
        subprocess.run([sys.executable, "-m", "bench.reports_bench", "--export-only", dataset, fmt], check=True)


if __name__ == "__main__":
    main()
