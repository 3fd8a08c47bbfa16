"""Run by tests/services/billing/test_scheduler_processes.py: one app process with the scheduler on, like a
gunicorn worker after importing wsgi.py (create_app, then jobs.start_scheduler), until it is terminated.

`python -m tests.scheduler_process DATABASE_URL SMTP_PORT LEDGER`. The delivery job gets 1-second slots
ticked every 0.5 s (SCHEDULER_INTERVALS) and sends through the tests' SMTP server. Each run of a slot this
process won (the lease let it through) appends "slot-epoch pid outcome" to LEDGER; prints "started PID" once
the scheduler runs.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from datetime import datetime

from invoicing import create_app
from invoicing.jobs import JOBS, load_jobs, slot_of, start_scheduler

JOB, SLOT_SECONDS, TICK_SECONDS = "deliver-mail", 1, 0.5


def main() -> None:
    url, smtp_port, ledger = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test-secret-key-" + "x" * 32, "TESTING": True,
                      "BASE_URL": "http://billing.test", "SCHEDULER_ENABLED": True,
                      "SCHEDULER_INTERVALS": {JOB: (SLOT_SECONDS, TICK_SECONDS)},
                      "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_port, "MAIL_USE_TLS": False,
                      "MAIL_USE_SSL": False, "MAIL_TIMEOUT": 5})
    job = load_jobs()[JOB]

    def recorded(now: datetime, dry_run: bool) -> str:
        outcome = job.run(now, dry_run)
        line = f"{int(slot_of(now, SLOT_SECONDS).timestamp())} {os.getpid()} {outcome}\n"
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # one write per line: never interleaved
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return outcome

    JOBS[JOB] = dataclasses.replace(job, run=recorded)
    scheduler = start_scheduler(app)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    print(f"started {os.getpid()}", flush=True)
    while not stop:
        signal.pause()
    scheduler.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
