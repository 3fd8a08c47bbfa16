"""Scheduler ticks and the lease that makes each job slot run exactly once across workers (DESIGN rule 3).

APScheduler only ticks; the truth is the JobRun row. A tick reads the job's lease row FOR UPDATE SKIP LOCKED
(SQLite: the transaction already holds the write lock), skips a slot already done, and records the slot in
the same transaction as the job's bookkeeping. Work that talks to the network claims its own rows first.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from invoicing.extensions import db
from invoicing.models import JobRun
from invoicing.services.db import atomic, begin_write

log = logging.getLogger(__name__)
_COUNT = re.compile(r"\b[1-9]\d*\b")  # a non-zero number in a job's outcome: it did something


@dataclass(frozen=True)
class Job:
    name: str
    every_seconds: int  # the slot: the job runs once per slot across every worker
    run: Callable[[datetime, bool], str]  # (now, dry_run) -> outcome summary
    # How often the scheduler checks: shorter than a long slot (a day), so a slot missed while the app was
    # down is caught up soon after it starts. None: once per slot.
    tick_seconds: int | None = None
    setting: str | None = None  # a boolean config key that must be on for the scheduler to run the job


JOBS: dict[str, Job] = {}
_finished_runs = [0]  # runs this process recorded: a cache of the jobs' health (the admin banner) is stale past it


def finished_runs() -> int:
    return _finished_runs[0]

# Modules that register jobs with @register; imported by load_jobs() (scheduler start and the CLI).
JOB_MODULES: tuple[str, ...] = ("invoicing.mail", "invoicing.services.reconcile", "invoicing.backup",
                                "invoicing.services.api.webhooks", "invoicing.services.api.events",
                                "invoicing.services.api.idempotency",
                                "invoicing.services.billing.reminders", "invoicing.services.billing.recurring",
                                "invoicing.services.billing.charges", "invoicing.services.subscriptions.lifecycle")


def load_jobs() -> dict[str, Job]:
    for module in JOB_MODULES:
        importlib.import_module(module)
    return JOBS


JobFn = Callable[[datetime, bool], str]


def register(name: str, every_seconds: int, *, tick_seconds: int | None = None,
             setting: str | None = None) -> Callable[[JobFn], JobFn]:
    def decorator(fn: JobFn) -> JobFn:
        JOBS[name] = Job(name, every_seconds, fn, tick_seconds, setting)
        return fn

    return decorator


def slot_of(now: datetime, every_seconds: int) -> datetime:
    stamp = int(now.timestamp())
    return datetime.fromtimestamp(stamp - stamp % every_seconds, UTC)


def claim_slot(name: str, *, now: datetime, every_seconds: int) -> bool:
    """Take this slot of the job for this process, or return False if another took it (or it is done)."""
    slot = slot_of(now, every_seconds)
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    try:
        begin_write()
        db.session.execute(insert(JobRun).values(name=name, last_outcome="").on_conflict_do_nothing())
        lease = db.session.execute(
            select(JobRun).where(JobRun.name == name).with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if lease is None or (lease.last_slot is not None and lease.last_slot >= slot):
            db.session.rollback()
            return False
        lease.last_slot = slot
        lease.last_started_at = now
        db.session.commit()
        return True
    except Exception:
        db.session.rollback()
        raise


def finish(name: str, *, now: datetime, outcome: str, error: str | None = None, duration_ms: int | None = None) -> None:
    with atomic():
        lease = db.session.get(JobRun, name)
        if lease is None:
            return
        lease.last_outcome = outcome[:2000]
        lease.last_error = error
        lease.last_duration_ms = duration_ms
        if error is None:
            lease.last_success_at = now
    _finished_runs[0] += 1


def run_job(name: str, *, now: datetime, dry_run: bool = False, force: bool = False,
            every_seconds: int | None = None) -> str | None:
    """Run one job's current slot if no other process has; None when the slot was already taken.

    `force` (the CLI without --dry-run) still records the run but does not skip a slot already done:
    work rows carry their own claims, so running early is safe. `every_seconds` replaces the job's slot
    length (SCHEDULER_INTERVALS).
    """
    job = JOBS[name]
    every_seconds = every_seconds or job.every_seconds
    if dry_run:
        return job.run(now, True)
    if not claim_slot(name, now=now, every_seconds=1 if force else every_seconds):
        return None
    started = time.monotonic()
    try:
        outcome = job.run(now, False)
    except Exception as exc:  # a failing job is recorded and retried next slot; the scheduler lives on
        db.session.rollback()
        log.exception("job %s failed", name)
        finish(name, now=now, outcome="failed", error=f"{exc.__class__.__name__}: {exc}",
               duration_ms=round((time.monotonic() - started) * 1000))
        raise
    finish(name, now=now, outcome=outcome, duration_ms=round((time.monotonic() - started) * 1000))
    # One line per scheduled run that did something (an outcome counts what it did); idle runs at DEBUG.
    level = logging.INFO if _COUNT.search(outcome) and not force else logging.DEBUG
    log.log(level, "job %s slot %s: %s", name, slot_of(now, every_seconds).isoformat(), outcome)
    return outcome


def tick(app: Flask, name: str, every_seconds: int | None = None) -> None:
    with app.app_context():
        try:
            run_job(name, now=datetime.now(UTC), every_seconds=every_seconds)
        except Exception:  # noqa: BLE001 - already logged and recorded on the lease row
            pass
        finally:
            db.session.remove()


def start_scheduler(app: Flask) -> object:
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    jobs = [job for job in load_jobs().values() if job.setting is None or app.config[job.setting]]
    # Tests only (never read from the environment): {job name: (slot seconds, tick seconds)} in place of the
    # job's own, so real processes can go through many slots in seconds.
    intervals: dict[str, tuple[int, float]] = app.config.get("SCHEDULER_INTERVALS") or {}
    for job in jobs:
        every, seconds = intervals.get(job.name, (job.every_seconds, job.tick_seconds or job.every_seconds))
        scheduler.add_job(tick, "interval", seconds=seconds, args=(app, job.name, every), id=job.name,
                          misfire_grace_time=max(1, round(seconds)))
    scheduler.start()
    log.info("scheduler started with jobs: %s", ", ".join(job.name for job in jobs) or "none")
    return scheduler
