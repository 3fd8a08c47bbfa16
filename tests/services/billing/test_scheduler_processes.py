"""The scheduler itself across real processes: two app processes each run `jobs.start_scheduler` (APScheduler
ticking for real, the JobRun lease deciding) against the tests' database (PostgreSQL with TEST_DATABASE_URL,
else a SQLite file). Each slot of the mail delivery job runs in exactly one process, each queued email reaches
the SMTP server once, and when the process doing the work is killed the other one does the next slots.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from invoicing import mail
from invoicing.extensions import db
from invoicing.models import JobRun, OutboxEmail
from invoicing.services.db import atomic
from tests.conftest import make_org
from tests.smtp_fixture import SMTPServer

ROOT = Path(__file__).resolve().parents[3]


def wait_until(what: str, ready: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Ledger:
    """The slots the processes ran: (slot epoch second, pid, outcome), appended by tests/scheduler_process.py."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def runs(self) -> list[tuple[int, int, str]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [(int(slot), int(pid), outcome) for slot, pid, outcome in (line.split(" ", 2) for line in lines)]

    def sent(self) -> int:
        return sum(int(outcome.split()[1]) for _, _, outcome in self.runs())  # "deliver-mail: N sent, ..."


@pytest.fixture
def start_process(app, tmp_path) -> Iterator[Callable[[Path, int], subprocess.Popen[bytes]]]:  # noqa: ANN001
    """start_process(ledger, smtp_port) -> a running tests/scheduler_process.py, its output in tmp_path; killed
    after the test if it still runs."""
    started: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(ledger: Path, smtp_port: int) -> subprocess.Popen[bytes]:
        log = tmp_path / f"process{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.scheduler_process", app.config["SQLALCHEMY_DATABASE_URI"],
                 str(smtp_port), str(ledger)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        process.log = log  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def output(process: subprocess.Popen[bytes]) -> str:
    return process.log.read_text(errors="replace")  # type: ignore[attr-defined]


def queue(org_id: int, subject: str) -> int:
    with atomic():
        email = mail.enqueue(kind="invoice", to="client@clients.test", subject=subject, text_body="t", html_body="h",
                             from_addr="billing@localhost", now=datetime.now(UTC), organization_id=org_id)
        assert email is not None
    email_id = email.id
    db.session.remove()  # no transaction left open: SQLite's writers must not wait for the test
    return email_id


def status(email_id: int) -> str:
    value = db.session.scalar(select(OutboxEmail.status).where(OutboxEmail.id == email_id))
    db.session.remove()
    return str(value)


def test_two_scheduler_processes_run_each_slot_once_and_the_survivor_takes_over(app, smtp: SMTPServer, tmp_path,
                                                                                 start_process):
    org_id = make_org().id
    first = queue(org_id, "Before start")
    ledger = Ledger(tmp_path / "ledger.txt")
    processes = [start_process(ledger.path, smtp.port) for _ in range(2)]
    for process in processes:  # each has called start_scheduler
        wait_until(f"process {process.pid} to start its scheduler",  # importing the app: slow on a loaded box
                   lambda p=process: f"started {p.pid}" in output(p) or p.poll() is not None, timeout=90)
        assert process.poll() is None, output(process)

    # Both tick: the email queued before they started goes once, and so does one queued while they run.
    smtp.wait_for(1, timeout=30)
    wait_until("slots run with both processes ticking", lambda: len(ledger.runs()) >= 4)
    second = queue(org_id, "While both run")
    wait_until("the second email sent", lambda: status(second) == "sent" and ledger.sent() == 2)

    # Kill the process that ran the latest slot (its run written down), while it ticks; the other carries on.
    latest_pid = ledger.runs()[-1][1]
    victim = next(p for p in processes if p.pid == latest_pid)
    survivor = next(p for p in processes if p.pid != latest_pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    killed_at = time.time()
    third = queue(org_id, "After the kill")
    wait_until("the third email sent", lambda: status(third) == "sent")
    wait_until("three more slots after the kill", lambda: sum(s > killed_at for s, _, _ in ledger.runs()) >= 3)
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=15) == 0, output(survivor)

    runs = ledger.runs()
    slots = Counter(slot for slot, _, _ in runs)
    assert [slot for slot, n in slots.items() if n > 1] == []  # the lease: never two runs of one slot
    assert {pid for _, pid, _ in runs} <= {victim.pid, survivor.pid}
    after_kill = [(slot, pid) for slot, pid, _ in runs if slot > killed_at]
    assert len(after_kill) >= 3 and {pid for _, pid in after_kill} == {survivor.pid}
    # The work itself: every email reached the SMTP server once, and each run counted what it sent.
    assert sorted(message["Subject"] for message in smtp.messages) == ["After the kill", "Before start",
                                                                       "While both run"]
    assert ledger.sent() == 3, runs
    emails = db.session.execute(select(OutboxEmail).where(OutboxEmail.id.in_((first, second, third)))).scalars()
    assert {(email.status, email.attempts) for email in emails} == {("sent", 1)}
    # The lease row: the survivor's last slot, a success, no error.
    lease = db.session.get_one(JobRun, "deliver-mail")
    assert lease.last_slot is not None and lease.last_error is None and lease.last_success_at is not None
    last_slot = lease.last_slot if lease.last_slot.tzinfo else lease.last_slot.replace(tzinfo=UTC)
    assert int(last_slot.timestamp()) == max(slots)
