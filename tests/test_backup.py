"""Backups you can restore: `flask backup`, the nightly job, `flask restore FILE --yes`, on both databases."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import URL, create_engine, func, insert, select, text
from sqlalchemy.orm import Session

from invoicing.backup import BackupError, backup_database, restore_database
from invoicing.extensions import db
from invoicing.jobs import run_job, start_scheduler, tick
from invoicing.models import AuditEvent, Invoice, JobRun, Organization, Payment
from invoicing.services.invoices import LineData
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, make_invoice

ROOT = Path(__file__).resolve().parents[1]
PADDING = 20_000  # audit rows (~10 MB) so the copy takes long enough for the writer to commit during it


@pytest.fixture
def backup_dir(app, tmp_path, monkeypatch) -> Path:
    path = tmp_path / "backups"
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def _pg_client_matches_server(is_postgres) -> None:
    """On PostgreSQL the backups need pg_dump/pg_restore of the server's major version: fail loudly, never skip."""
    if not is_postgres:
        return
    server = int(db.session.scalar(text("SHOW server_version_num"))) // 10000
    db.session.rollback()
    for program in ("pg_dump", "pg_restore"):
        path = shutil.which(program)
        assert path, f"{program} is missing: install postgresql-client-{server} (.ci/run installs postgresql-client)"
        version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
        found = re.search(r"\(PostgreSQL\) (\d+)", version)
        assert found and int(found.group(1)) == server, f"{program} is {version.strip()!r}; the server is {server}"


@pytest.fixture
def fresh_target(app, tmp_path, is_postgres) -> Iterator[URL]:
    """An empty database to restore a backup into (PostgreSQL: a new database, dropped afterwards)."""
    if not is_postgres:
        yield URL.create("sqlite", database=str(tmp_path / "restored.db"))
        return
    name = f"{db.engine.url.database}_restore"
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield db.engine.url.set(database=name)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def backups(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def suffix() -> str:
    return ".sqlite3" if db.engine.dialect.name == "sqlite" else ".dump"


def pay(invoice_id: int, amount: int) -> None:
    record_manual_payment(invoice_id, amount=amount, method="cash", paid_on=NOW.date(), reference="", actor=SYSTEM,
                          now=NOW)


def payment_amounts(invoice_id: int) -> list[int]:
    db.session.rollback()  # a fresh snapshot
    return sorted(db.session.execute(select(Payment.amount).where(Payment.invoice_id == invoice_id)).scalars())


def payment_ids(invoice_id: int) -> set[int]:
    db.session.rollback()
    return set(db.session.execute(select(Payment.id).where(Payment.invoice_id == invoice_id)).scalars())


def wait_for_payments(invoice_id: int, writer: subprocess.Popen, *, at_least: int) -> set[int]:
    deadline = time.monotonic() + 120
    while len(ids := payment_ids(invoice_id)) < at_least:
        assert writer.poll() is None, writer.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the writer recorded too few payments"
        time.sleep(0.05)
    return ids


def test_it_backs_up_a_consistent_copy_while_payments_are_being_recorded(app, world, runner, backup_dir,
                                                                        fresh_target, tmp_path):
    invoice_id = make_invoice(world.client_a, status="open", lines=(LineData("Retainer", Decimal(1), 10**9),)).id
    db.session.execute(insert(AuditEvent), [
        dict(actor_type="system", action="test.padding", object_type="invoice", object_id=invoice_id,
             details={"pad": "x" * 400}, created_at=NOW) for _ in range(PADDING)])
    db.session.commit()
    db.session.remove()
    if db.engine.dialect.name == "sqlite":  # start with an empty WAL, so the writer's rows are only in the WAL
        with closing(sqlite3.connect(db.engine.url.database)) as conn:
            assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.payment_writer", app.config["SQLALCHEMY_DATABASE_URI"], str(invoice_id),
         str(stop)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        committed = wait_for_payments(invoice_id, writer, at_least=20)  # every row committed before it began
        result = runner.invoke(args=["backup"])
        still_writing = writer.poll() is None
        after = payment_ids(invoice_id)
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err[-3000:]
    assert result.exit_code == 0, result.output
    [name] = backups(backup_dir)
    assert re.fullmatch(r"invoicing-\d{8}T\d{6}Z" + re.escape(suffix()), name)
    assert f"backup wrote {backup_dir / name}" in result.output
    assert still_writing and len(after) > len(committed)  # the writer kept committing around the backup
    assert len(payment_ids(invoice_id)) == json.loads(out)["recorded"]

    restore_database(fresh_target, backup_dir / name)
    engine = create_engine(fresh_target)
    try:
        with Session(engine) as copy:
            if engine.dialect.name == "sqlite":
                assert copy.scalars(text("PRAGMA integrity_check")).all() == ["ok"]
            copied = set(copy.scalars(select(Payment.id).where(Payment.invoice_id == invoice_id)))
            paid = copy.scalar(select(Invoice.amount_paid).where(Invoice.id == invoice_id))
            padding = copy.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "test.padding"))
    finally:
        engine.dispose()
    assert committed <= copied
    assert paid == len(copied)  # the balance matches the ledger in the copy: one snapshot, nothing torn
    assert padding == PADDING
    if db.engine.dialect.name == "sqlite":
        with sqlite3.connect(backup_dir / name) as backup:
            assert backup.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_it_restores_a_backup_with_flask_restore_yes(app, world, runner, backup_dir):
    invoice_id = make_invoice(world.client_a, status="open").id
    org_id = world.org_a.id
    pay(invoice_id, 5000)
    assert runner.invoke(args=["backup"]).exit_code == 0
    [name] = backups(backup_dir)
    pay(invoice_id, 1000)  # after the backup: this is what the restore undoes
    db.session.get(Organization, org_id).name = "Renamed"
    db.session.commit()
    db.session.remove()

    refused = runner.invoke(args=["restore", str(backup_dir / name)])
    assert refused.exit_code == 1 and "Stop the app" in refused.output and "--yes" in refused.output
    assert payment_amounts(invoice_id) == [1000, 5000]

    result = runner.invoke(args=["restore", str(backup_dir / name), "--yes"])
    assert result.exit_code == 0, result.output
    assert f"Restored {backup_dir / name}" in result.output and "flask db upgrade" in result.output
    assert payment_amounts(invoice_id) == [5000]
    assert db.session.get(Invoice, invoice_id).amount_paid == 5000
    assert db.session.get(Organization, org_id).name == "Org A"
    pay(invoice_id, 2000)  # the app works on the restored database
    assert payment_amounts(invoice_id) == [2000, 5000]


@pytest.mark.parametrize("damage", ["truncated", "not a backup"])
def test_it_refuses_a_damaged_backup_and_changes_nothing(app, world, runner, backup_dir, damage):
    invoice_id = make_invoice(world.client_a, status="open").id
    pay(invoice_id, 5000)
    assert runner.invoke(args=["backup"]).exit_code == 0
    [name] = backups(backup_dir)
    pay(invoice_id, 1000)
    good = (backup_dir / name).read_bytes()
    damaged = backup_dir / f"damaged{suffix()}"
    damaged.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"these are not the pages" * 500)
    db.session.remove()

    result = runner.invoke(args=["restore", str(damaged), "--yes"])
    assert result.exit_code == 1 and "nothing was changed" in result.output, result.output
    assert payment_amounts(invoice_id) == [1000, 5000]


def test_it_keeps_the_newest_backups_and_leaves_other_files_alone(app, world, runner, backup_dir, monkeypatch):
    monkeypatch.setitem(app.config, "BACKUP_KEEP", 3)
    backup_dir.mkdir()
    (backup_dir / "notes.txt").write_text("the operator's own file")
    for day in range(1, 5):
        run_job("backup", now=datetime(2026, 3, day, 1, tzinfo=UTC))
    assert backups(backup_dir) == [f"invoicing-2026030{day}T010000Z{suffix()}" for day in (2, 3, 4)] + ["notes.txt"]

    dry = runner.invoke(args=["billing", "backup", "--dry-run"])
    assert dry.exit_code == 0 and "and delete 1 older" in dry.output
    assert len(backups(backup_dir)) == 4  # a dry run writes and deletes nothing
    result = runner.invoke(args=["backup"])
    assert result.exit_code == 0 and "deleted 1 older" in result.output
    kept = backups(backup_dir)
    assert len(kept) == 4 and kept[0] == f"invoicing-20260303T010000Z{suffix()}" and kept[-1] == "notes.txt"


def test_it_says_why_a_backup_failed_and_records_it_on_the_job(app, world, runner, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "a-file" / "backups"))  # cannot be a folder
    result = runner.invoke(args=["backup"])
    assert result.exit_code == 1 and "Cannot write the backup into" in result.output, result.output
    db.session.rollback()
    lease = db.session.get(JobRun, "backup")
    assert lease.last_outcome == "failed" and "Cannot write the backup" in lease.last_error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_it_says_when_pg_dump_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without the PostgreSQL client
    with pytest.raises(BackupError, match=r"pg_dump is not installed: install the PostgreSQL client"):
        backup_database(URL.create("postgresql+psycopg", host="127.0.0.1", database="x"), tmp_path / "backups",
                        now=NOW, keep=1)
    assert list((tmp_path / "backups").iterdir()) == []


def test_it_backs_up_once_a_night_and_catches_up_after_downtime(app, world, backup_dir, time_machine):
    def tick_at(moment: datetime) -> list[str]:
        time_machine.move_to(moment, tick=False)
        tick(app, "backup")  # what the scheduler calls every 15 minutes in each worker
        return backups(backup_dir)

    first = f"invoicing-20260310T001500Z{suffix()}"
    assert tick_at(datetime(2026, 3, 10, 0, 15, tzinfo=UTC)) == [first]
    for hour in (0, 9, 23):
        assert tick_at(datetime(2026, 3, 10, hour, 30, tzinfo=UTC)) == [first]  # tonight's slot is done
    # Down for two nights: the first tick after the restart makes one backup, not one per missed night.
    caught_up = f"invoicing-20260313T094500Z{suffix()}"
    assert tick_at(datetime(2026, 3, 13, 9, 45, tzinfo=UTC)) == [first, caught_up]
    assert tick_at(datetime(2026, 3, 13, 10, 0, tzinfo=UTC)) == [first, caught_up]
    assert tick_at(datetime(2026, 3, 14, 0, 0, 5, tzinfo=UTC))[-1] == f"invoicing-20260314T000005Z{suffix()}"
    lease = db.session.get(JobRun, "backup")
    assert lease.last_slot == datetime(2026, 3, 14, tzinfo=UTC) and lease.last_error is None
    assert lease.last_outcome.startswith("backup wrote ")


def test_it_backs_up_once_when_several_workers_tick_in_the_same_night(app, world, backup_dir):
    outcomes: list[str | None] = []
    start = threading.Barrier(3)

    def worker(minute: int) -> None:
        with app.app_context():
            start.wait()
            outcomes.append(run_job("backup", now=datetime(2026, 3, 10, 2, minute, tzinfo=UTC)))
            db.session.remove()

    threads = [threading.Thread(target=worker, args=(minute,)) for minute in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes, key=str)[:2] == [None, None] and len(outcomes) == 3
    assert len(backups(backup_dir)) == 1


def test_it_schedules_the_nightly_backup_only_when_enabled(app, monkeypatch):
    for enabled in (True, False):
        monkeypatch.setitem(app.config, "BACKUP_ENABLED", enabled)
        scheduler = start_scheduler(app)
        try:
            job = scheduler.get_job("backup")  # type: ignore[attr-defined]
            assert scheduler.get_job("deliver-mail") is not None  # type: ignore[attr-defined]
        finally:
            scheduler.shutdown(wait=False)  # type: ignore[attr-defined]
        if enabled:
            assert job.trigger.interval == timedelta(minutes=15)  # checks often; the lease keeps it nightly
        else:
            assert job is None
