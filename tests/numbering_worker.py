"""Run by test_numbering_concurrency in its own process: finalize the given invoices from several threads.

Every 7th invoice first fails after taking its number (the transaction rolls back), then is retried, to
prove that a failure hands the number back instead of leaving a gap.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from invoicing import create_app
from invoicing.extensions import db
from invoicing.services.audit import Actor
from invoicing.services.db import atomic, lock_invoice
from invoicing.services.invoices import finalize, finalize_invoice

ACTOR = Actor.system("numbering-test")


class Injected(Exception):
    pass


def main() -> None:
    url, ids = sys.argv[1], [int(i) for i in sys.argv[2].split(",")]
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "w" * 40, "TESTING": True})
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    errors: list[str] = []
    injected = 0

    def work(invoice_id: int) -> None:
        nonlocal injected
        with app.app_context():
            try:
                if invoice_id % 7 == 0:
                    try:
                        with atomic():
                            finalize(lock_invoice(invoice_id), actor=ACTOR, now=now, expiry_days=30)
                            raise Injected
                    except Injected:
                        injected += 1
                finalize_invoice(invoice_id, actor=ACTOR, now=now)
            except Exception as exc:  # noqa: BLE001 - counted and reported to the test
                errors.append(f"{invoice_id}: {exc.__class__.__name__}: {exc}")
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, ids))
    with app.app_context():
        db.engine.dispose()
    print(json.dumps({"errors": errors, "injected": injected}))


if __name__ == "__main__":
    main()
