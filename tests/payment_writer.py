"""Run by test_backup in its own process: record 1-cent cash payments on one invoice until told to stop.

Each payment goes through the app's one door for money (services/payments.py), one transaction each, the
way staff would record them while a backup runs. Prints how many it recorded.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from invoicing import create_app
from invoicing.extensions import db
from invoicing.services.audit import Actor
from invoicing.services.payments import record_manual_payment

ACTOR = Actor.system("payment-writer")


def main() -> None:
    url, invoice_id, stop = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "w" * 40, "TESTING": True})
    now = datetime(2026, 3, 10, 16, tzinfo=UTC)
    recorded = 0
    with app.app_context():
        while not stop.exists():
            record_manual_payment(invoice_id, amount=1, method="cash", paid_on=now.date(),
                                  reference=f"writer {recorded}", actor=ACTOR, now=now)
            db.session.remove()
            recorded += 1
        db.engine.dispose()
    print(json.dumps({"recorded": recorded}))


if __name__ == "__main__":
    main()
