"""Admin invoice list and client pay page under load: seed 100,000 invoices over 1,000 clients, serve, measure.

    DATABASE_URL=sqlite:////tmp/bench.db .venv/bin/python -m bench.list_bench
    createdb -h 127.0.0.1 -U postgres bench && \
    DATABASE_URL=postgresql://postgres@127.0.0.1/bench .venv/bin/python -m bench.list_bench

The database is emptied and migrated first (`--keep` reuses a seeded one). In one run it serves the app and a
bare Flask "hello" (the ceiling) with the container's gunicorn settings (invoicing/gunicorn_conf.py), logs in
over HTTP to get a session cookie, and runs
`wrk -t2 -c16 -d10s --latency` against hello, the list, a filtered list, a search keystroke and a
pay page. Then it times 200 sequential requests of each page (the server time, without queueing).
Figures: req/s, p50, p99, ratio to hello.

`--growth` measures how the server time grows with the table instead: for 10,000, 100,000 and 1,000,000
invoices (over the same 1,000 clients) it seeds a database of its own (the URL with `_10k`, `_100k`, `_1m`
appended to the file or database name; created if missing; `--keep` reuses them) and times 200 sequential
requests of the list, the filtered list and the keystroke. Target (issue 14): 1 M within 1.5x of 10 k.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parents[1]
EMAIL, PASSWORD = "bench@example.com", "bench-password"
USER_AGENT = "list-bench/1"  # Flask-Login's strong session protection ties the cookie to it
WORDS = ("Acme Anchor Apex Atlas Beacon Birch Blue Cedar Cobalt Comet Coral Crest Delta Ember Falcon Fern Forge "
         "Granite Harbor Hawk Iris Juniper Keystone Lark Linden Maple Meridian Nimbus Nova Oak Onyx Orbit Pine "
         "Quartz Raven Ridge River Sage Summit Tidal Vertex Willow Zenith").split()
KINDS = "Studio Labs Foods Logistics Partners Consulting Media Works Systems Trading".split()
FILTERED = "/admin/invoices?status=overdue&q=Harbor"
KEYSTROKE = "/admin/invoices?q=Harbor%20Stu"  # what typing in the search box asks for: the rows fragment

# A bare Flask app: the ceiling for this server and machine (bench/README: report ratios to it).
hello = Flask("hello")
hello.add_url_rule("/", "hello", lambda: "Hello, World!")


def _app() -> Flask:
    from invoicing import create_app

    return create_app()


def reset_schema(app: Flask) -> None:
    from flask_migrate import upgrade
    from sqlalchemy import text

    from invoicing.extensions import db

    with app.app_context():
        with db.engine.begin() as conn:
            if db.engine.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            else:  # the search index (migration 0013) first: it is not in the models
                for table in ("client_search", "alembic_version",
                              *[t.name for t in reversed(db.metadata.sorted_tables)]):
                    conn.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
        upgrade(revision="heads")


def seed(app: Flask, *, invoices: int, clients: int, today: date) -> None:
    """Bulk inserts (no ORM objects): what a few years of a busy organization look like."""
    from sqlalchemy import insert, text

    from invoicing.extensions import db
    from invoicing.models import Client, Contact, Invoice, InvoiceCounter, LineItem
    from invoicing.services.audit import Actor
    from invoicing.services.users import create_organization, create_user

    rng = random.Random(42)
    now = datetime.now(UTC)
    with app.app_context():
        system = Actor.system("bench")
        org = create_organization("Bench Studio", now=now, actor=system, timezone="America/New_York",
                                  allow_partial_payments=True)
        create_user(EMAIL, PASSWORD, role="admin", organization=org, now=now, actor=system,
                    hash_method="pbkdf2:sha256:1000")
        org_id = org.id
        client_rows = []
        for n in range(1, clients + 1):
            name = f"{rng.choice(WORDS)} {rng.choice(KINDS)} {n:04d}"
            currency = "USD" if n % 10 else rng.choice(("EUR", "GBP", "JPY"))
            client_rows.append(dict(id=n, organization_id=org_id, name=name, email=f"ap{n}@client{n}.test",
                                    address="", currency=currency, autopay_enabled=False, created_at=now))
        db.session.execute(insert(Client), client_rows)
        db.session.execute(insert(Contact), [
            dict(organization_id=org_id, client_id=c["id"], name=f"Contact {c['id']}", email=f"c@client{c['id']}.test",
                 portal_access=False, created_at=now) for c in client_rows])
        seqs: dict[int, int] = {}
        batch: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        span = 5 * 365
        for n in range(1, invoices + 1):
            client = client_rows[rng.randrange(clients)]
            issue = today - timedelta(days=int(span * (1 - n / invoices)))  # ids grow with dates, like real life
            due = issue + timedelta(days=30)
            age = (today - issue).days
            roll = rng.random()
            if age < 60:
                status = "draft" if roll < 0.15 else "open" if roll < 0.6 else "void" if roll < 0.63 else "paid"
            else:
                status = "open" if roll < 0.02 else "void" if roll < 0.05 else "paid"
            qty, price = rng.randint(1, 20), rng.randint(50, 500) * 100
            total = qty * price
            row: dict[str, Any] = dict(
                id=n, public_id=secrets.token_hex(16), organization_id=org_id, client_id=client["id"],
                status=status, currency=client["currency"], issue_date=issue, due_date=due, notes="",
                project_ref="", discount_value=0, subtotal=total, discount_total=0, tax_total=0, total=total,
                amount_paid=0, link_version=1, sent_count=0, view_count=0, void_reason="", created_at=now,
                updated_at=now, number=None, number_year=None, number_seq=None, sent_at=None, viewed_at=None,
                paid_at=None, voided_at=None, finalized_at=None, link_expires_on=None,
            )
            if status != "draft":
                seq = seqs[issue.year] = seqs.get(issue.year, 0) + 1
                sent = datetime(issue.year, issue.month, issue.day, 15, tzinfo=UTC)
                row.update(number=f"{issue.year}-{seq:05d}", number_year=issue.year, number_seq=seq,
                           finalized_at=sent, sent_at=sent, sent_count=1, link_expires_on=due + timedelta(days=30))
                if status == "paid":
                    row.update(amount_paid=total, paid_at=sent + timedelta(days=rng.randint(1, 40)))
                elif status == "void":
                    row.update(voided_at=sent + timedelta(days=3), void_reason="Issued in error")
                elif rng.random() < 0.3:
                    row.update(viewed_at=sent + timedelta(days=1), view_count=1)
                    if rng.random() < 0.3:
                        row["amount_paid"] = total // 2
            batch.append(row)
            lines.append(dict(invoice_id=n, position=0, description="Consulting", quantity_milli=qty * 1000,
                              unit_price=price, tax_rate_milli=0, amount=total, discount=0, tax=0))
            if len(batch) == 5000:
                db.session.execute(insert(Invoice), batch)
                db.session.execute(insert(LineItem), lines)
                batch, lines = [], []
        if batch:
            db.session.execute(insert(Invoice), batch)
            db.session.execute(insert(LineItem), lines)
        db.session.execute(insert(InvoiceCounter), [
            dict(organization_id=org_id, year=y, last_seq=s) for y, s in seqs.items()])
        if db.engine.dialect.name == "postgresql":
            for table in ("client", "invoice"):
                db.session.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
        db.session.commit()
        with db.engine.connect() as conn:  # statistics, and PostgreSQL's visibility map (index-only scans)
            vacuum = "VACUUM ANALYZE" if db.engine.dialect.name == "postgresql" else "ANALYZE"
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(vacuum))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(target: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        # the container's server settings; only the access log (a line per request) is left out
        [sys.executable, "-m", "gunicorn", "-c", "python:invoicing.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
         "--access-logfile", "/dev/null", "--log-level", "warning", target],
        cwd=ROOT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(url + ("/healthz" if target == "wsgi:app" else "/"), timeout=2):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{target} did not start")


def pay_path(app: Flask) -> str:
    """The pay link of the newest open invoice that still has something due: what an emailed client opens."""
    from sqlalchemy import select

    from invoicing.extensions import db
    from invoicing.models import Invoice
    from invoicing.services.paylinks import token_for

    with app.app_context():
        invoice = db.session.execute(select(Invoice).where(Invoice.status == "open", Invoice.amount_paid == 0)
                                     .order_by(Invoice.id.desc()).limit(1)).scalar_one()
        return f"/pay/{token_for(invoice, app.config['SECRET_KEY'])}"


def login(url: str) -> str:
    """Log in like a browser (CSRF token from the form) and return the Cookie header value."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", USER_AGENT)]
    form = opener.open(f"{url}/admin/login").read().decode()
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form) or re.search(
        r'name="csrf_token" value="([^"]+)"', form)
    token = match.group(1) if match else ""
    body = urllib.parse.urlencode({"csrf_token": token, "email": EMAIL, "password": PASSWORD}).encode()
    page = opener.open(f"{url}/admin/login", data=body)
    if not page.geturl().rstrip("/").endswith("/admin"):
        raise SystemExit(f"login failed: landed on {page.geturl()}")
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def wrk(url: str, headers: dict[str, str]) -> dict[str, float]:
    cmd = ["wrk", "-t2", "-c16", "-d10s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors for {url}:\n{out}")

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"cannot read {label} from wrk:\n{out}")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": ms("50%"), "p99": ms("99%")}


def sequential(url: str, headers: dict[str, str], n: int = 200) -> float:
    """Median milliseconds of n requests one after another: the server's own time for the page (plus the
    loopback round trip, which the hello line shows)."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            response.read()
            if response.status != 200 or "/login" in response.geturl():
                raise SystemExit(f"{url} answered {response.status} at {response.geturl()}")
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


GROWTH = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}


def sized_url(url: str, suffix: str) -> str:
    """The database of one size: /tmp/bench.db -> /tmp/bench_1m.db; .../bench -> .../bench_1m (created)."""
    if url.startswith("sqlite"):
        stem, dot, ext = url.rpartition(".")
        return f"{stem}_{suffix}.{ext}" if dot and "/" not in ext else f"{url}_{suffix}"
    from sqlalchemy import create_engine, make_url, text

    server = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"{server.database}_{suffix}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def growth(args: argparse.Namespace) -> None:
    base = os.environ["DATABASE_URL"]
    medians: dict[str, dict[str, float]] = {}
    for suffix, invoices in GROWTH.items():
        os.environ["DATABASE_URL"] = sized_url(base, suffix)
        if not args.keep:
            app = _app()
            started = time.perf_counter()
            reset_schema(app)
            seed(app, invoices=invoices, clients=args.clients, today=datetime.now(UTC).date())
            print(f"seeded {invoices:,} invoices in {time.perf_counter() - started:.1f} s", flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        app_proc, app_url = serve("wsgi:app", env)
        try:
            auth = {"User-Agent": USER_AGENT, "Cookie": login(app_url)}
            pages = {"list": (app_url + "/admin/invoices", auth), "filtered": (app_url + FILTERED, auth),
                     "keystroke": (app_url + KEYSTROKE, {**auth, "HX-Request": "true"})}
            for url, headers in pages.values():
                for _ in range(20):
                    urllib.request.urlopen(urllib.request.Request(url, headers=headers)).read()
            medians[suffix] = {name: sequential(url, headers) for name, (url, headers) in pages.items()}
        finally:
            app_proc.terminate()
            app_proc.wait()
    print(f"\n{base.split(':', 1)[0]}, median server time of 200 requests one by one (ms), 1,000 clients")
    print(f"{'page':<10} " + " ".join(f"{s:>8}" for s in GROWTH) + f" {'1m/10k':>8}")
    for name in medians["10k"]:
        row = [medians[s][name] for s in GROWTH]
        print(f"{name:<10} " + " ".join(f"{v:>8.1f}" for v in row) + f" {row[-1] / row[0]:>7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--keep", action="store_true", help="reuse the seeded database as it is")
    parser.add_argument("--only", action="append", help="only these pages (hello always runs): list, filtered, "
                                                         "keystroke, pay")
    parser.add_argument("--growth", action="store_true", help="server time at 10 k, 100 k and 1 M invoices")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("set DATABASE_URL (sqlite:////tmp/bench.db or postgresql://postgres@127.0.0.1/bench)")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 32)
    os.environ.setdefault("BASE_URL", "http://127.0.0.1:5000")
    os.environ["RATELIMIT_ENABLED"] = "0"
    os.environ["SCHEDULER_ENABLED"] = "0"
    if args.growth:
        growth(args)
        return
    if not args.keep:
        app = _app()
        started = time.perf_counter()
        reset_schema(app)
        seed(app, invoices=args.invoices, clients=args.clients, today=datetime.now(UTC).date())
        print(f"seeded {args.invoices:,} invoices over {args.clients:,} clients in "
              f"{time.perf_counter() - started:.1f} s")
    pay = pay_path(_app())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    app_proc, app_url = serve("wsgi:app", env)
    hello_proc, hello_url = serve("bench.list_bench:hello", env)
    try:
        cookie = login(app_url)
        auth = {"User-Agent": USER_AGENT, "Cookie": cookie}
        pages = {
            "hello": (hello_url + "/", {"User-Agent": USER_AGENT}),
            "list": (app_url + "/admin/invoices", auth),
            "filtered": (app_url + FILTERED, auth),
            "keystroke": (app_url + KEYSTROKE, {**auth, "HX-Request": "true"}),
            "pay": (app_url + pay, {"User-Agent": USER_AGENT}),  # a client: no cookie, counts as a view
        }
        pages = {name: page for name, page in pages.items() if name == "hello" or not args.only or name in args.only}
        for url, headers in pages.values():  # warm up both workers
            for _ in range(20):
                urllib.request.urlopen(urllib.request.Request(url, headers=headers)).read()
        results = {name: wrk(url, headers) for name, (url, headers) in pages.items()}
        medians = {name: sequential(url, headers) for name, (url, headers) in pages.items()}
    finally:
        for proc in (app_proc, hello_proc):
            proc.terminate()
            proc.wait()
    if args.keep:  # say what the kept database holds, not the seeding default
        from sqlalchemy import func, select

        from invoicing.extensions import db
        from invoicing.models import Invoice

        with _app().app_context():
            args.invoices = db.session.scalar(select(func.count()).select_from(Invoice)) or 0
    engine = os.environ["DATABASE_URL"].split(":", 1)[0]
    ceiling = results["hello"]["rps"]
    print(f"\n{engine}, {args.invoices:,} invoices, gunicorn (invoicing/gunicorn_conf.py), wrk -t2 -c16 -d10s")
    print(f"{'page':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'of hello':>9} {'median 1-by-1 ms':>17}")
    for name, r in results.items():
        print(f"{name:<10} {r['rps']:>8.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['rps'] / ceiling:>8.1%} "
              f"{medians[name]:>17.1f}")
    print(f"list = /admin/invoices (full page: 50 rows, tab counts, pickers); filtered = {FILTERED};")
    print(f"keystroke = {KEYSTROKE} with HX-Request (the rows fragment the search box swaps in)")
    print("pay = /pay/<token> of an open invoice, opened by a client (each open is counted; rate limit off)")


if __name__ == "__main__":
    main()
