"""The autopay sweep over 1,000 due invoices against the local Stripe test server (tests/stripe_server.py).

    DATABASE_URL=sqlite:////tmp/autopay.db .venv/bin/python -m bench.autopay_bench
    createdb -h 127.0.0.1 -U postgres autopay && \\
    DATABASE_URL=postgresql://postgres@127.0.0.1/autopay .venv/bin/python -m bench.autopay_bench

Starts its own Stripe test server, seeds (through the services) one organization with C clients, each with a
customer and a card at that server and autopay on, and N open invoices whose autopay charge is due. Then, each
in a fresh process (peak memory is that process's own):

- `dry-run`: `flask billing process-recurring-charges --dry-run` (the plan, nothing written);
- `sweep`: the job's sweep, charging all N (claim under the invoice lock, attempt row, PaymentIntent, payment
  through the money door, receipt queued, card details asked);
- `again`: the same sweep a second time (nothing due: no charge twice).

Figures: wall and CPU time, charges per second, peak RSS, and the sweep's overhead over the provider calls it
makes: the time spent inside the gateway's calls is measured in the sweep itself (a timing wrapper around the
gateway), and overhead = (sweep time - provider time) / provider time; `cpu_overhead_pct` is the sweep process's
own CPU time over the provider time (on a shared machine, wall time also counts waiting for a core). The test
server's own time per call grows with the objects it holds (localstripe), so the overhead, not the absolute rate,
is the figure to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_KEY, WEBHOOK_SECRET = "sk_test_localstripe_launcher", "whsec_bench_autopay"


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "stripe_server.py"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(ROOT / "tests"))
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("READY "):
        proc.kill()
        sys.exit(f"the Stripe test server did not start: {line!r}")
    return proc, line.split()[1]


def seed(*, invoices: int, clients: int) -> None:
    from bench.list_bench import reset_schema
    from invoicing import create_app
    from invoicing.extensions import db
    from invoicing.gateways import current_gateway
    from invoicing.models import Client, Contact, PaymentMethod
    from invoicing.services.audit import Actor
    from invoicing.services.db import atomic
    from invoicing.services.invoices import DraftData, LineData, create_draft, finalize_invoice
    from invoicing.services.portal.autopay import CONSENT_VERSION, enable_autopay
    from invoicing.services.users import create_organization

    app = create_app()
    reset_schema(app)
    now = datetime.now(UTC)
    issued = now - timedelta(days=31)
    actor = Actor.system("bench")
    with app.app_context():
        api = current_gateway()._client  # type: ignore[attr-defined]
        org = create_organization("Bench Autopay", now=issued, actor=actor, timezone="UTC")
        ids = []
        for n in range(clients):
            customer = api.v1.customers.create({"name": f"Client {n}"})
            card = api.v1.payment_methods.create({"type": "card", "card": {
                "number": "4242424242424242", "exp_month": 12, "exp_year": now.year + 3, "cvc": "123"}})
            api.v1.payment_methods.attach(card.id, {"customer": customer.id})
            with atomic():
                client = Client(organization_id=org.id, name=f"Client {n:03d}", email=f"ap{n}@client.test",
                                currency="USD", stripe_customer_id=customer.id, autopay_payment_method=card.id)
                client.contacts = [Contact(organization_id=org.id, name="Payer", email=f"payer{n}@client.test")]
                db.session.add(client)
                db.session.flush()
                db.session.add(PaymentMethod(organization_id=org.id, client_id=client.id, provider="stripe",
                                             provider_id=card.id, customer_id=customer.id, brand="visa",
                                             last4="4242", exp_month=12, exp_year=now.year + 3, created_at=issued))
            enable_autopay(client.id, client.contacts[0].id, mode="due_date", text_version=CONSENT_VERSION,
                           ip="192.0.2.1", provider="stripe", now=issued)
            ids.append(client.id)
        for n in range(invoices):
            data = DraftData(client_id=ids[n % clients], currency="USD", issue_date=issued.date(),
                             due_date=(now - timedelta(days=1)).date(),
                             lines=(LineData("Subscription", Decimal(1), 1000 + n, Decimal(0)),))
            finalize_invoice(create_draft(org, data, actor=actor, now=issued).id, actor=actor, now=issued)


class TimedGateway:
    """The app's gateway, with the time spent in each call added up."""

    def __init__(self, inner: Any):
        self._inner, self.seconds, self.calls = inner, 0.0, 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value) or name.startswith("_"):
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed


def phase(name: str) -> dict[str, Any]:
    from sqlalchemy import func, select

    from invoicing import create_app
    from invoicing.extensions import db
    from invoicing.gateways import current_gateway
    from invoicing.jobs import load_jobs
    from invoicing.models import ChargeAttempt, Payment
    from invoicing.services.billing.charges import charges_job, process_due
    from invoicing.services.site import Site

    app = create_app()
    now = datetime.now(UTC)
    with app.app_context():
        load_jobs()
        gateway = TimedGateway(current_gateway())
        db.session.execute(select(1))  # connect before timing
        db.session.rollback()
        run: Callable[[], str]
        if name == "dry-run":
            def run() -> str:
                return charges_job(now, True).splitlines()[0]
        else:
            def run() -> str:
                return str(process_due(now=now, gateway=gateway, site=Site.from_config(app.config)))  # type: ignore[arg-type]
        started, cpu = time.perf_counter(), time.process_time()
        outcome = run()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        charged = db.session.scalar(select(func.count()).select_from(ChargeAttempt).where(
            ChargeAttempt.status == "succeeded"))
        paid = db.session.scalar(select(func.count()).select_from(Payment))
    provider = gateway.seconds
    return {"phase": name, "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
            "charged_total": charged, "payments_total": paid, "provider_calls": gateway.calls,
            "provider_seconds": round(provider, 2),
            "overhead_pct": round(100 * (seconds - provider) / provider, 1) if provider else None,
            "cpu_overhead_pct": round(100 * cpu_seconds / provider, 1) if provider else None,
            "charges_per_second": round(charged / seconds, 1) if name == "sweep" and seconds else None,
            "outcome": outcome[:200],
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase)))
        return
    if not os.environ.get("DATABASE_URL"):
        sys.exit("Set DATABASE_URL (a scratch database: it is emptied).")
    server, base = start_server()
    os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 40)
    os.environ.update(SCHEDULER_ENABLED="0", STRIPE_SECRET_KEY=API_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                      STRIPE_API_BASE=base)
    os.environ.pop("MAIL_SERVER", None)
    try:
        started = time.perf_counter()
        seed(invoices=args.invoices, clients=args.clients)
        print(f"seeded {args.invoices:,} autopay invoices of {args.clients} clients in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        for name in ("dry-run", "sweep", "again"):
            done = subprocess.run([sys.executable, "-m", "bench.autopay_bench", "--phase", name], cwd=ROOT,
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode:
                sys.exit(done.stderr[-3000:])
            print(done.stdout.strip().splitlines()[-1], flush=True)
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
