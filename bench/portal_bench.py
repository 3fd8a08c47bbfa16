"""The client portal's invoice list for a company with 5,000 invoices, as a ratio to a bare Flask "hello".

    DATABASE_URL=sqlite:////tmp/portal-bench.db .venv/bin/python -m bench.portal_bench
    createdb -h 127.0.0.1 -U postgres portal_bench && \
    DATABASE_URL=postgresql://postgres@127.0.0.1/portal_bench .venv/bin/python -m bench.portal_bench

The database is emptied and migrated, then seeded with 50,000 invoices of one organization over 500 clients,
every 10th of them (5,000 over five years) for the one whose contact signs in (`--keep` reuses a seeded
database). It serves the app and hello with the container's gunicorn settings (bench/list_bench.py does the
same for the admin list), signs the contact in over HTTP with a magic link, and runs `wrk -t2 -c16 -d10s
--latency` against hello and each portal page, then times 200 requests of each one by one.
Figures: req/s, p50, p99, ratio to hello, median server time.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import random
import re
import secrets
import time
import urllib.parse
import urllib.request
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Flask

from bench.list_bench import KINDS, ROOT, USER_AGENT, WORDS, _app, reset_schema, sequential, serve, wrk

BIG_CLIENT = 1  # the company whose contact signs in: every EVERY-th invoice is theirs
EVERY = 10
CONTACT_EMAIL = "ap@big-client.test"
KEYSTROKE = "/portal/?tab=all&q=2024-00"  # typing a number: the list block an htmx search swaps in
NO_MATCH = "/portal/?tab=all&q=nothing-like-this"  # the worst search: reads all 5,000 invoices of the company


def seed(app: Flask, *, invoices: int, clients: int, today: date) -> None:
    """Bulk inserts (no ORM objects), shaped like bench/list_bench.py's, with one company holding a tenth."""
    from sqlalchemy import insert, text

    from invoicing.extensions import db
    from invoicing.models import Client, Contact, Invoice, InvoiceCounter, LineItem
    from invoicing.services.audit import Actor
    from invoicing.services.users import create_organization

    rng = random.Random(42)
    now = datetime.now(UTC)
    with app.app_context():
        org = create_organization("Bench Studio", now=now, actor=Actor.system("bench"), timezone="America/New_York",
                                  allow_partial_payments=True)
        org_id = org.id
        client_rows = [dict(id=n, organization_id=org_id, name=f"{rng.choice(WORDS)} {rng.choice(KINDS)} {n:04d}",
                            email=f"ap{n}@client{n}.test", address="", currency="USD" if n % 10 else "EUR",
                            autopay_enabled=False, created_at=now) for n in range(1, clients + 1)]
        db.session.execute(insert(Client), client_rows)
        db.session.execute(insert(Contact), [
            dict(organization_id=org_id, client_id=c["id"], name=f"Contact {c['id']}",
                 email=CONTACT_EMAIL if c["id"] == BIG_CLIENT else f"c@client{c['id']}.test",
                 portal_access=c["id"] == BIG_CLIENT, created_at=now) for c in client_rows])
        seqs: dict[int, int] = {}
        batch: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        span = 5 * 365
        for n in range(1, invoices + 1):
            client = client_rows[BIG_CLIENT - 1] if n % EVERY == 0 else client_rows[rng.randrange(1, clients)]
            issue = today - timedelta(days=int(span * (1 - n / invoices)))
            due = issue + timedelta(days=30)
            age, roll = (today - issue).days, rng.random()
            if age < 60:
                status = "draft" if roll < 0.15 else "open" if roll < 0.6 else "void" if roll < 0.63 else "paid"
            else:
                status = "open" if roll < 0.02 else "void" if roll < 0.05 else "paid"
            # A few EUR invoices for the big company too: its amounts due come in two currencies.
            currency = "EUR" if client["id"] == BIG_CLIENT and n % 70 == 0 else client["currency"]
            qty, price = rng.randint(1, 20), rng.randint(50, 500) * 100
            total = qty * price
            row: dict[str, Any] = dict(
                id=n, public_id=secrets.token_hex(16), organization_id=org_id, client_id=client["id"], status=status,
                currency=currency, issue_date=issue, due_date=due, notes="", project_ref=f"Project {n % 37}",
                discount_value=0, subtotal=total, discount_total=0, tax_total=0, total=total, amount_paid=0,
                link_version=1, sent_count=0, view_count=0, void_reason="", created_at=now, updated_at=now,
                number=None, number_year=None, number_seq=None, sent_at=None, viewed_at=None, paid_at=None,
                voided_at=None, finalized_at=None, link_expires_on=None,
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
            for table in ("client", "contact", "invoice"):
                db.session.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
        db.session.commit()
        with db.engine.connect() as conn:
            vacuum = "VACUUM ANALYZE" if db.engine.dialect.name == "postgresql" else "ANALYZE"
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(vacuum))


def sign_in(url: str) -> str:
    """A magic link issued in process, opened and confirmed over HTTP like a browser; the Cookie header value."""
    from sqlalchemy import select

    from invoicing.extensions import db
    from invoicing.models import Contact
    from invoicing.services.portal.auth import issue_magic_link

    with _app().app_context():
        contact_id = db.session.execute(select(Contact.id).where(Contact.email == CONTACT_EMAIL)).scalar_one()
        token = issue_magic_link(contact_id, now=datetime.now(UTC))
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", USER_AGENT)]
    page = opener.open(f"{url}/portal/login/{token}").read().decode()
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page)
    body = urllib.parse.urlencode({"csrf_token": match.group(1) if match else ""}).encode()
    landed = opener.open(f"{url}/portal/login/{token}", data=body)
    if not landed.geturl().endswith("/portal/"):
        raise SystemExit(f"sign-in failed: landed on {landed.geturl()}")
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def deep_page(url: str, headers: dict[str, str], pages: int = 150) -> str:
    """The address of "Older invoices" after `pages` pages of the All tab (about 3,750 invoices down)."""
    path = "/portal/?tab=all"
    for _ in range(pages):
        request = urllib.request.Request(url + path, headers={**headers, "HX-Request": "true"})
        html = urllib.request.urlopen(request).read().decode()
        found = re.search(r'<a href="(/portal/\?after=[^"]+)" hx-get', html)
        if not found:
            break
        path = found.group(1).replace("&amp;", "&")
    return path


def invoice_path(url: str, headers: dict[str, str]) -> str:
    html = urllib.request.urlopen(urllib.request.Request(url + "/portal/", headers=headers)).read().decode()
    found = re.search(r'href="(/portal/invoices/[0-9a-f]{32})"', html)
    if not found:
        raise SystemExit("no invoice on the portal's first page")
    return found.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="reuse the seeded database as it is")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("set DATABASE_URL (sqlite:////tmp/portal-bench.db or postgresql://...)")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 32)
    os.environ.setdefault("BASE_URL", "http://127.0.0.1:5000")
    os.environ["RATELIMIT_ENABLED"] = "0"
    os.environ["SCHEDULER_ENABLED"] = "0"
    if not args.keep:
        app = _app()
        started = time.perf_counter()
        reset_schema(app)
        seed(app, invoices=args.invoices, clients=args.clients, today=datetime.now(UTC).date())
        print(f"seeded {args.invoices:,} invoices over {args.clients:,} clients ({args.invoices // EVERY:,} for the "
              f"signed-in company) in {time.perf_counter() - started:.1f} s")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    app_proc, app_url = serve("wsgi:app", env)
    hello_proc, hello_url = serve("bench.list_bench:hello", env)
    try:
        auth = {"User-Agent": USER_AGENT, "Cookie": sign_in(app_url)}
        hx = {**auth, "HX-Request": "true"}
        pages = {
            "hello": (hello_url + "/", {"User-Agent": USER_AGENT}),
            "list": (app_url + "/portal/", auth),
            "all tab": (app_url + "/portal/?tab=all", hx),
            "keystroke": (app_url + KEYSTROKE, hx),
            "no match": (app_url + NO_MATCH, hx),
            "page 150": (app_url + deep_page(app_url, auth), hx),
            "invoice": (app_url + invoice_path(app_url, auth), auth),
        }
        for url, headers in pages.values():  # warm up
            for _ in range(20):
                urllib.request.urlopen(urllib.request.Request(url, headers=headers)).read()
        results = {name: wrk(url, headers) for name, (url, headers) in pages.items()}
        medians = {name: sequential(url, headers) for name, (url, headers) in pages.items()}
    finally:
        for proc in (app_proc, hello_proc):
            proc.terminate()
            proc.wait()
    engine = os.environ["DATABASE_URL"].split(":", 1)[0]
    ceiling = results["hello"]["rps"]
    print(f"\n{engine}, portal of a company with {args.invoices // EVERY:,} invoices (of {args.invoices:,}), gunicorn "
          "(invoicing/gunicorn_conf.py), wrk -t2 -c16 -d10s")
    print(f"{'page':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'of hello':>9} {'median 1-by-1 ms':>17}")
    for name, r in results.items():
        print(f"{name:<10} {r['rps']:>8.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['rps'] / ceiling:>8.1%} "
              f"{medians[name]:>17.1f}")
    print("list = /portal/ (full page: open tab, 25 rows, amounts due per currency); all tab = the list block an "
          "htmx tab click swaps in;")
    print(f"keystroke = {KEYSTROKE}; no match = {NO_MATCH} (reads every invoice of the company);")
    print("page 150 = \"Older invoices\" 150 pages down (rows block); invoice = an invoice page with its history")


if __name__ == "__main__":
    main()
