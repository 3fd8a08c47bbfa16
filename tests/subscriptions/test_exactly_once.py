"""Exactly once: on PostgreSQL (TEST_DATABASE_URL), three scheduler processes ticking together over 500
subscriptions that renew at the same instant make 500 invoices and 500 charges at the Stripe test server; on
SQLite (one writer at a time), two scheduler threads over 100 subscriptions do the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.gateways import get_gateway
from invoicing.models import Invoice, OutboxEmail, Payment, Subscription, SubscriptionPeriod
from invoicing.services.db import atomic
from invoicing.services.site import Site
from tests.conftest import make_client
from tests.pay.support import stripe_env, stripe_gateway
from tests.services.billing.helpers import autopay_on, utc
from tests.subscriptions.helpers import make_plan
from tests.subscriptions.worker import run_ticks

ROOT = Path(__file__).resolve().parents[2]
# March 1, 2026: 09:00 in New York is 14:00 UTC. The second and third ticks find everything done.
TICKS = [utc(2026, 3, 1, 14, 0, 30), utc(2026, 3, 1, 14, 16), utc(2026, 3, 1, 14, 31)]


def count(model, *where) -> int:  # noqa: ANN001
    return int(db.session.scalar(select(func.count()).select_from(model).where(*where)))


def seed(world, stripe_app, n_subscriptions: int) -> None:  # noqa: ANN001
    """N clients, each with its own card at the Stripe test server and autopay on, each subscribed since
    February 1 (the period ends March 1)."""
    org = world.org_a
    plan = make_plan(org, "Hosting", prices=(("USD", 4900, "month", 1),), tax_rate_milli=8875)
    api = stripe_gateway(stripe_app)._client
    customer = api.v1.customers.create({"name": "Many"})
    subscriptions = []
    for n in range(n_subscriptions):
        client = make_client(org, f"Client {n:03d}")
        method = api.v1.payment_methods.create({"type": "card", "card": {
            "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
        api.v1.payment_methods.attach(method.id, {"customer": customer.id})
        autopay_on(client, provider="stripe", provider_id=method.id, customer_id=customer.id, now=utc(2026, 1, 20))
        subscriptions.append(Subscription(
            organization_id=org.id, client_id=client.id, plan_id=plan.id, price_id=plan.prices[0].id, quantity=1,
            currency="USD", status="active", anchor_day=1, current_period_start=date(2026, 2, 1),
            current_period_end=date(2026, 3, 1), cancel_reason="", created_at=utc(2026, 2, 1),
            updated_at=utc(2026, 2, 1)))
    with atomic():
        db.session.add_all(subscriptions)


def test_schedulers_make_each_invoice_and_each_charge_once(app, world, stripe_app, is_postgres):
    n = 500 if is_postgres else 100
    seed(world, stripe_app, n)
    assert stripe_app.count("payment_intents") == 0
    started = time.perf_counter()
    results = processes(app, stripe_app, 3) if is_postgres else threads(app, 2)
    elapsed = time.perf_counter() - started

    assert [r["errors"] for r in results] == [[]] * len(results)
    for slot in results[0]["leases"]:  # the lease: one scheduler ran each job's slot
        assert sum(r["leases"][slot] for r in results) == 1, slot
    assert count(SubscriptionPeriod) == n
    assert count(SubscriptionPeriod, SubscriptionPeriod.period_start == date(2026, 3, 1)) == n
    assert count(Invoice) == n and count(Invoice, Invoice.status == "paid", Invoice.total == 5335) == n
    assert sorted(db.session.execute(select(Invoice.number_seq)).scalars()) == list(range(1, n + 1))
    assert count(Payment) == n and count(Payment, Payment.status == "succeeded", Payment.amount == 5335) == n
    assert stripe_app.count("payment_intents") == n  # each charge once at the provider
    assert count(OutboxEmail, OutboxEmail.kind == "invoice") == n
    assert set(db.session.execute(select(Subscription.current_period_end)).scalars()) == {date(2026, 4, 1)}
    print(f"\n{db.engine.dialect.name}: {len(results)} schedulers x {len(TICKS)} ticks over {n} subscriptions: "
          f"{elapsed:.1f}s")


def processes(app, stripe_app, count_: int) -> list[dict]:  # noqa: ANN001
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    db.session.remove()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def scheduler(_: int) -> dict:
        done = subprocess.run([sys.executable, "-m", "tests.subscriptions.worker", url,
                               ",".join(t.isoformat() for t in TICKS), json.dumps(stripe_env(stripe_app))],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(count_) as pool:
        return list(pool.map(scheduler, range(count_)))


def threads(app, count_: int) -> list[dict]:  # noqa: ANN001
    db.session.remove()
    barrier = threading.Barrier(count_)

    def scheduler(_: int) -> dict:
        with app.app_context():
            barrier.wait()
            try:
                return run_ticks(TICKS, site=Site.from_config(app.config), gateway=get_gateway(app.config))
            finally:
                db.session.remove()

    with ThreadPoolExecutor(count_) as pool:
        return list(pool.map(scheduler, range(count_)))
