"""Run by tests/subscriptions/test_exactly_once.py in its own process: one scheduler instance.

At each tick it does what a worker's scheduler does (jobs.run_job for "subscriptions" then
"process-recurring-charges": the lease lets one process per slot do each) and then runs the renewal sweep and the
charge sweep directly as well, as a scheduler whose lease check raced, to prove that the work's own claims (row
locks, UNIQUE keys, the charge attempt rows) keep every invoice and every charge once.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from invoicing import create_app
from invoicing.extensions import db
from invoicing.gateways import get_gateway
from invoicing.gateways.base import Gateway
from invoicing.jobs import load_jobs, run_job
from invoicing.services.billing.charges import process_due
from invoicing.services.site import Site
from invoicing.services.subscriptions.lifecycle import renew_due


def run_ticks(ticks: list[datetime], *, site: Site, gateway: Gateway) -> dict[str, Any]:
    """Every tick: the two jobs through their leases, then both sweeps directly (inside an app context)."""
    errors: list[str] = []
    leases: dict[str, bool] = {}
    load_jobs()
    for tick in ticks:
        for job in ("subscriptions", "process-recurring-charges"):
            try:
                leases[f"{job}@{tick.isoformat()}"] = run_job(job, now=tick) is not None
            except Exception as exc:  # noqa: BLE001 - reported to the test
                errors.append(f"{job} {tick}: {exc.__class__.__name__}: {exc}")
            db.session.remove()
        try:
            errors += renew_due(now=tick, site=site).errors
            errors += process_due(now=tick, gateway=gateway, site=site).errors
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(f"direct {tick}: {exc.__class__.__name__}: {exc}")
        db.session.remove()
    return {"errors": errors, "leases": leases}


def main() -> None:
    url, ticks, stripe = sys.argv[1], [datetime.fromisoformat(t) for t in sys.argv[2].split(",")], json.loads(
        sys.argv[3])
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test-secret-key-" + "x" * 32, "TESTING": True,
                      "BASE_URL": "http://billing.test", "MAIL_SERVER": None, **stripe})
    with app.app_context():
        result = run_ticks(ticks, site=Site.from_config(app.config), gateway=get_gateway(app.config))
        db.engine.dispose()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
