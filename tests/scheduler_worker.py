"""Run by tests/services/billing/test_scheduler_concurrency.py in its own process: one scheduler instance.

At each tick it does what a worker's scheduler does (jobs.run_job: the lease lets one process per slot do it)
and then runs the reminder sweep, the recurring generation and the autopay charges directly as well, as a second
scheduler whose lease check raced, to prove that the work's own claims (row locks, UNIQUE keys) keep everything
once. argv: database URL, ticks (ISO, comma-separated), and optionally a JSON object of extra app settings (the
Stripe test server's keys, for autopay).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

from invoicing import create_app
from invoicing.extensions import db
from invoicing.gateways import current_gateway
from invoicing.jobs import load_jobs, run_job
from invoicing.services.billing.charges import process_due
from invoicing.services.billing.recurring import generate_due
from invoicing.services.billing.reminders import send_due_reminders
from invoicing.services.site import Site


def main() -> None:
    url, ticks = sys.argv[1], [datetime.fromisoformat(t) for t in sys.argv[2].split(",")]
    extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test-secret-key-" + "x" * 32, "TESTING": True,
                      "BASE_URL": "http://billing.test", "MAIL_SERVER": None, **extra})
    errors: list[str] = []
    leases: dict[str, bool] = {}
    with app.app_context():
        load_jobs()
        site = Site.from_config(app.config)
        for tick in ticks:
            for job in ("remind", "recurring", "process-recurring-charges"):
                try:
                    leases[f"{job}@{tick.isoformat()}"] = run_job(job, now=tick) is not None
                except Exception as exc:  # noqa: BLE001 - reported to the test
                    errors.append(f"{job} {tick}: {exc.__class__.__name__}: {exc}")
                db.session.remove()
            try:
                errors += send_due_reminders(now=tick, site=site).errors
                errors += generate_due(now=tick, site=site).errors
                errors += process_due(now=tick, gateway=current_gateway(), site=site).errors
            except Exception as exc:  # noqa: BLE001 - reported to the test
                errors.append(f"direct {tick}: {exc.__class__.__name__}: {exc}")
            db.session.remove()
        db.engine.dispose()
    print(json.dumps({"errors": errors, "leases": leases}))


if __name__ == "__main__":
    main()
