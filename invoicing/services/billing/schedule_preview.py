"""Is the scheduler healthy, and what will it do next? The admin Scheduler page and the banner on every admin
page read this.

- Each job (jobs.JOBS) from its lease row (JobRun): last start, last success, how long the last run took, its
  outcome or error, and the next slot. A job "has not succeeded for twice its interval" (at least 5 minutes,
  so a mail batch that takes two minutes does not flash a banner) is `late`, or `failing` when its last run
  failed; both raise the banner. A job never run is `never` (a fresh install), and one switched off by its
  setting (e.g. BACKUP_ENABLED) is `off`: neither raises it.
- The next 24 hours: reminders to go, invoices to make, subscriptions to renew, cards to charge, from the
  same plans the jobs and their `--dry-run` follow (reminders.plan, recurring.plan, subscriptions'
  lifecycle.plan, autopay.charges_preview), scoped to one organization for its staff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import select

from invoicing import jobs
from invoicing.extensions import db
from invoicing.models import JobRun
from invoicing.services.billing import autopay, recurring, reminders
from invoicing.services.subscriptions.lifecycle import PlannedRenewal
from invoicing.services.subscriptions.lifecycle import plan as subscription_renewals

MIN_ALERT_AFTER = timedelta(minutes=5)
PREVIEW_HOURS = 24
PREVIEW_ROWS = 200  # rows shown per list; the count covers all


@dataclass(frozen=True)
class JobStatus:
    name: str
    description: str
    every_seconds: int
    enabled: bool
    state: str  # ok, error (last run failed, within its interval), late, failing, never, off
    last_started_at: datetime | None = None
    last_success_at: datetime | None = None
    duration_ms: int | None = None
    outcome: str = ""
    error: str | None = None
    next_run: datetime | None = None  # None: at the next tick (due now), or never (off)

    @property
    def alerting(self) -> bool:
        return self.state in ("late", "failing")

    @property
    def every(self) -> str:
        seconds = self.every_seconds
        if seconds % 86400 == 0:
            return "day" if seconds == 86400 else f"{seconds // 86400} days"
        if seconds % 3600 == 0:
            return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
        if seconds % 60 == 0:
            return "minute" if seconds == 60 else f"{seconds // 60} minutes"
        return f"{seconds} seconds"


def alert_after(every_seconds: int) -> timedelta:
    return max(timedelta(seconds=2 * every_seconds), MIN_ALERT_AFTER)


def _status(job: jobs.Job, lease: JobRun | None, *, now: datetime, enabled: bool) -> JobStatus:
    description = (job.run.__doc__ or "").strip().splitlines()[0] if job.run.__doc__ else ""
    if lease is None:
        return JobStatus(job.name, description, job.every_seconds, enabled, "never" if enabled else "off")
    slot = jobs.slot_of(now, job.every_seconds)
    done = lease.last_slot is not None and lease.last_slot >= slot
    since = lease.last_success_at or lease.last_started_at
    if not enabled:
        state = "off"
    elif since is not None and now - since > alert_after(job.every_seconds):
        state = "failing" if lease.last_error else "late"
    elif lease.last_error:
        state = "error"
    else:
        state = "ok"
    return JobStatus(job.name, description, job.every_seconds, enabled, state, lease.last_started_at,
                     lease.last_success_at, lease.last_duration_ms, lease.last_outcome or "", lease.last_error,
                     slot + timedelta(seconds=job.every_seconds) if enabled and done else None)


def job_statuses(*, now: datetime, config: Mapping[str, Any]) -> list[JobStatus]:
    leases = {lease.name: lease for lease in db.session.execute(select(JobRun)).scalars()}
    return [_status(job, leases.get(name), now=now, enabled=job.setting is None or bool(config.get(job.setting)))
            for name, job in sorted(jobs.load_jobs().items())]


def alerts(*, now: datetime, config: Mapping[str, Any]) -> list[JobStatus]:
    """The jobs that have not succeeded for twice their interval (the banner on every admin page)."""
    return [status for status in job_statuses(now=now, config=config) if status.alerting]


def cached_alerts(*, now: datetime, config: Mapping[str, Any], store: dict[str, Any],
                  seconds: float) -> list[JobStatus]:
    """`alerts`, kept in `store` (one per app and process) for `seconds`: the banner's question ("has a job not
    succeeded for twice its interval?", intervals of minutes to a day) does not need the leases read on every
    admin page. A run this process finishes drops the copy at once; a run in another process (the scheduler's,
    or another worker's) shows up within `seconds`. Moving the clock back (tests) also reads afresh."""
    at, runs, kept = store.get("at"), jobs.finished_runs(), store.get("alerts")
    if kept is not None and at is not None and store.get("runs") == runs and at <= now < at + timedelta(
            seconds=seconds):
        return list(kept)
    kept = alerts(now=now, config=config)
    store.update(at=now, runs=runs, alerts=kept)
    return list(kept)


@dataclass(frozen=True)
class Preview:
    now: datetime
    until: datetime
    reminders: list[reminders.PlannedReminder]
    reminder_count: int
    invoices: list[recurring.PlannedInvoice]
    invoice_count: int
    charges: list[autopay.PlannedCharge]
    renewals: list[PlannedRenewal] = field(default_factory=list)  # subscriptions (services/subscriptions)
    renewal_count: int = 0


def next_hours(*, now: datetime, organization_id: int | None, hours: int = PREVIEW_HOURS) -> Preview:
    """What the jobs will do from now to `hours` from now (work already due first), by the jobs' own plans."""
    until = now + timedelta(hours=hours)
    planned = (p for p in reminders.plan(now=now, until=until, organization_id=organization_id) if p.action == "send")
    shown_reminders = list(islice(planned, PREVIEW_ROWS))
    reminder_count = len(shown_reminders) + sum(1 for _ in planned)
    invoices = list(recurring.plan(now=now, until=until, organization_id=organization_id))
    charges = autopay.charges_preview(now=now, until=until, organization_id=organization_id)
    renewals = subscription_renewals(now=now, until=until, organization_id=organization_id)
    return Preview(now, until, sorted(shown_reminders, key=lambda p: (p.at, p.invoice_id)), reminder_count,
                   invoices[:PREVIEW_ROWS], len(invoices), charges, renewals[:PREVIEW_ROWS], len(renewals))
