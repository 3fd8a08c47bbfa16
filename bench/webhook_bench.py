"""Webhook inbox throughput: signed Stripe events, 30 % of them duplicates, posted to /webhooks/stripe of the
app under gunicorn, against a bare Flask POST route served the same way (the ceiling).

    DATABASE_URL=sqlite:////tmp/webhook_bench.db .venv/bin/python -m bench.webhook_bench
    createdb -h 127.0.0.1 -U postgres webhook_bench && \
    DATABASE_URL=postgresql://postgres@127.0.0.1/webhook_bench .venv/bin/python -m bench.webhook_bench

The database is emptied, migrated and seeded with one open invoice per unique event. Each event is a
`payment_intent.succeeded` for its invoice: verified (stripe.Webhook.construct_event), stored in the inbox,
applied through the money door (row lock, payment, balance, audit), then its receipt rendered and queued in
the outbox. A duplicate is verified and answered 200 from the inbox's unique key. The same client (N threads,
one connection per request) first posts the same bodies to the bare route, then to the inbox; both are served
with the container's gunicorn settings (invoicing/gunicorn_conf.py). Stripe's API (the inbox asks how each
payment was made) is a stub in this process that answers at once. Figures: deliveries/s, unique events
applied/s, p50, p99, and the ratio to the bare route. Afterwards it checks that every unique event made exactly
one payment.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from flask import Flask, request

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SECRET = "whsec_bench_only"
SECRET_KEY = "bench-secret-key-" + "x" * 32

# The ceiling: a bare Flask route that reads a POST body, like the webhook view does, and answers JSON.
bare = Flask("bare")
bare.add_url_rule("/webhooks/stripe", "hook", lambda: ({"received": len(request.get_data())}, 200), methods=["POST"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def setup_database(url: str, unique: int) -> list[dict[str, object]]:
    """Empty and migrate the database, seed one open invoice per unique event; return the events' objects."""
    os.environ.update(DATABASE_URL=url, SECRET_KEY=SECRET_KEY)
    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    from flask_migrate import upgrade
    from sqlalchemy import text

    from invoicing import create_app
    from invoicing.extensions import db
    from invoicing.models import Client, Invoice, Organization

    app = create_app()
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
        org = Organization(name="Bench Org", slug="bench", timezone="UTC", reminder_policy={})
        db.session.add(org)
        db.session.flush()
        client = Client(organization_id=org.id, name="Bench Client", email="ap@bench.test", currency="USD")
        db.session.add(client)
        db.session.flush()
        today = date.today()
        invoices = [Invoice(organization_id=org.id, client_id=client.id, number=f"B-{n:06d}", number_year=today.year,
                            number_seq=n, status="open", currency="USD", issue_date=today,
                            due_date=today + timedelta(days=30), subtotal=10000 + n, total=10000 + n,
                            link_expires_on=today + timedelta(days=60), finalized_at=datetime.now(UTC))
                    for n in range(1, unique + 1)]
        db.session.add_all(invoices)
        db.session.commit()
        objects = [{"id": f"pi_bench_{i.id}", "object": "payment_intent", "amount": i.total, "currency": "usd",
                    "status": "succeeded", "latest_charge": f"ch_bench_{i.id}",
                    "metadata": {"invoice_id": str(i.id), "invoice_number": i.number,
                                 "invoice_public_id": i.public_id}} for i in invoices]
        db.engine.dispose()
    return objects


class StripeStub:
    """Stripe's API as the inbox meets it after a payment: the PaymentIntent with its charge's card (how it was
    paid, for the receipt), answered at once. A real Stripe answers the same in 100-300 ms."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                intent = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                body = json.dumps({"id": intent, "object": "payment_intent", "status": "succeeded", "currency": "usd",
                                   "amount": 0, "metadata": {}, "latest_charge": {
                                       "id": intent.replace("pi_", "ch_"), "object": "charge",
                                       "payment_method_details": {"type": "card", "card": {
                                           "brand": "visa", "last4": "4242"}}}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def deliveries(objects: list[dict[str, object]], duplicates: float, seed: int = 7) -> list[bytes]:
    """Event bodies: every unique event once, plus duplicates (same id and body) making `duplicates` of all."""
    bodies = [json.dumps({"id": f"evt_bench_{n}", "object": "event", "type": "payment_intent.succeeded",
                          "created": int(time.time()), "livemode": False, "data": {"object": obj}}).encode()
              for n, obj in enumerate(objects)]
    rng = random.Random(seed)
    extra = round(len(bodies) * duplicates / (1 - duplicates))
    everything = bodies + [rng.choice(bodies) for _ in range(extra)]
    rng.shuffle(everything)
    return everything


def sign(raw: bytes) -> str:
    t = int(time.time())
    return f"t={t},v1=" + hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()


def serve(target: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(  # the container's server settings (invoicing/gunicorn_conf.py), no access log
        [sys.executable, "-m", "gunicorn", "-c", "python:invoicing.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
         "--access-logfile", "/dev/null", "--log-level", "warning", target], cwd=ROOT, env={**os.environ, **env})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{target} did not start")


def post(port: int, raw: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/webhooks/stripe", body=raw,
                     headers={"Content-Type": "application/json", "Stripe-Signature": sign(raw)})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def run(port: int, bodies: list[bytes], concurrency: int) -> dict[str, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda raw: post(port, raw), bodies))
    elapsed = time.perf_counter() - started
    statuses = {status for status, _ in results}
    if statuses != {200}:
        raise SystemExit(f"unexpected answers: {sorted(statuses)}")
    latencies = sorted(latency for _, latency in results)
    return {"seconds": elapsed, "per_second": len(bodies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def wrk_ceiling(port: int, raw: bytes, seconds: int = 10) -> str:
    """The project's usual ceiling measurement (wrk -t2 -c16) of the bare route, posting one event body."""
    if shutil.which("wrk") is None:
        return "wrk not installed (apt-get install wrk)"
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(raw.decode())}\n'
                      f'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Stripe-Signature"] = "{sign(raw)}"\n')
    try:
        out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script),
                              f"http://127.0.0.1:{port}/webhooks/stripe"], capture_output=True, text=True).stdout
    finally:
        script.unlink()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    return f"{float(rate.group(1)):.0f} req/s, p99 {p99.group(1) if p99 else '?'}" if rate else out[-300:]


def check(url: str, unique: int) -> str:
    from sqlalchemy import func, select

    from invoicing import create_app
    from invoicing.extensions import db
    from invoicing.models import OutboxEmail, Payment, WebhookEvent

    with create_app().app_context():
        payments = db.session.scalar(select(func.count()).select_from(Payment))
        distinct = db.session.scalar(select(func.count(func.distinct(Payment.payment_intent_id))))
        events = dict(db.session.execute(select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)).all())
        receipts = db.session.scalar(select(func.count()).select_from(OutboxEmail))
        db.engine.dispose()
    ok = payments == distinct == unique == events.get("processed") == receipts
    return f"{'OK' if ok else 'MISMATCH'}: {payments} payments, inbox {events}, {receipts} receipts queued"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unique", type=int, default=1400, help="unique events (one invoice each)")
    parser.add_argument("--duplicates", type=float, default=0.3, help="share of deliveries that are duplicates")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "sqlite:////tmp/webhook_bench.db")
    objects = setup_database(url, args.unique)
    bodies = deliveries(objects, args.duplicates)
    stripe = StripeStub()
    env = {"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "STRIPE_SECRET_KEY": "sk_test_bench",
           "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_API_BASE": stripe.url,  # how each payment was made
           "SCHEDULER_ENABLED": "0", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "RATELIMIT_ENABLED": "0"}
    bare_port, app_port = free_port(), free_port()
    servers = [serve("bench.webhook_bench:bare", bare_port, env), serve("wsgi:app", app_port, env)]
    try:
        run(bare_port, bodies[:200], args.concurrency)  # warm up
        ceiling = run(bare_port, bodies, args.concurrency)
        wrk = wrk_ceiling(bare_port, bodies[0])
        inbox = run(app_port, bodies, args.concurrency)
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        stripe.close()
    dialect = url.split(":", 1)[0].split("+")[0]
    print(f"webhook inbox bench on {dialect}: {len(bodies)} deliveries ({args.unique} unique events, "
          f"{len(bodies) - args.unique} duplicates), {args.concurrency} client threads, gunicorn "
          "(invoicing/gunicorn_conf.py)")
    print(f"  bare Flask POST   {ceiling['per_second']:7.0f} req/s   p50 {ceiling['p50_ms']:6.1f} ms   "
          f"p99 {ceiling['p99_ms']:6.1f} ms")
    print(f"  /webhooks/stripe  {inbox['per_second']:7.0f} deliveries/s   p50 {inbox['p50_ms']:6.1f} ms   "
          f"p99 {inbox['p99_ms']:6.1f} ms   ({inbox['per_second'] / ceiling['per_second']:.0%} of bare)")
    print(f"  unique events applied: {args.unique / inbox['seconds']:.0f}/s")
    print(f"  bare Flask POST with wrk -t2 -c16 (this client's limit aside): {wrk}")
    print("  " + check(url, args.unique))


if __name__ == "__main__":
    main()
