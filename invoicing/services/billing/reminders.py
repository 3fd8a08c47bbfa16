"""Automatic payment reminders: job `remind` (every 15 minutes) and `flask billing remind [--dry-run]`.

The policy is the organization's (`Organization.reminder_policy`, edited in Settings → Reminders): which steps
go (7 days and 1 day before the due date, on it, 1, 7 and 14 days after; each on or off) and the local hour
they go at (default 09:00). A step is due at that hour on its day in the organization's time zone, with that
day's own UTC offset (a step on the first day of summer time goes at 09:00 summer time).

- Only open invoices with money due get reminders: never drafts, paid, void or processing ones, nor those of
  an opted-out client, a paused invoice, an archived organization, or while autopay has a charge scheduled
  (`autopay.autopay_pending`; a failed charge does get the overdue notices).
- Each (invoice, step) goes once ever: the outbox dedupe key `reminder:{invoice}:{step}`, and
  `Invoice.reminded_through` records the steps done (sent or passed over) so a sweep selects only invoices
  that have a step to do.
- Catch-up after downtime sends only the latest step that applies; the earlier ones are passed over. A step
  whose time came before the invoice was opened is passed over too (an invoice sent three days before its due
  date gets "due tomorrow" next, not a reminder right after the invoice itself). A paused invoice or opted-out
  client gets, when reminders resume, the latest step that applies then.
- The email is the one reminder renderer (services/sending.queue_invoice_email, the "reminder" client text):
  its subject and text say "due in 7 days", "due tomorrow", "overdue by N days", with the pay link and the PDF.

`plan()` says what a sweep would do between now and a horizon: `--dry-run` (horizon now), the sweep itself
(it does what the plan says, re-checking each invoice under its row lock) and the Scheduler page's next 24
hours are the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import Date, and_, bindparam, or_, select

from invoicing.extensions import db
from invoicing.jobs import register
from invoicing.models import Client, Invoice, Organization
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.billing.autopay import autopay_pending, autopay_pending_clause
from invoicing.services.client_texts import due_phrase
from invoicing.services.db import atomic, lock_invoice
from invoicing.services.sending import remind_locked
from invoicing.services.site import Site

log = logging.getLogger(__name__)

ACTOR = Actor.system("reminders")
PAGE = 1000  # invoices read per query of a sweep


@dataclass(frozen=True)
class Step:
    key: str
    offset: int  # days from the due date
    label: str


STEPS = (
    Step("before_7", -7, "7 days before the due date"),
    Step("before_1", -1, "1 day before the due date"),
    Step("due", 0, "On the due date"),
    Step("overdue_1", 1, "1 day after the due date"),
    Step("overdue_7", 7, "7 days after the due date"),
    Step("overdue_14", 14, "14 days after the due date"),
)
STEP_KEYS = {step.key: step for step in STEPS}
DEFAULT_STEPS = ("before_7", "before_1", "overdue_1", "overdue_7", "overdue_14")
DEFAULT_SEND_HOUR = 9


@dataclass(frozen=True)
class Policy:
    """An organization's reminder steps (enabled ones, in date order) and its local send hour."""

    steps: tuple[Step, ...]
    send_hour: int = DEFAULT_SEND_HOUR

    @classmethod
    def of(cls, organization: Organization) -> Policy:
        """The stored policy; what is missing or malformed takes the default (an empty policy is the default)."""
        stored = organization.reminder_policy if isinstance(organization.reminder_policy, dict) else {}
        chosen = stored.get("steps")
        if isinstance(chosen, dict):
            enabled = {key for key, on in chosen.items() if on is True}
        else:
            enabled = set(DEFAULT_STEPS)
        hour = stored.get("send_hour", DEFAULT_SEND_HOUR)
        hour = hour if isinstance(hour, int) and not isinstance(hour, bool) and 0 <= hour <= 23 else DEFAULT_SEND_HOUR
        return cls(tuple(step for step in STEPS if step.key in enabled), hour)

    def to_json(self) -> dict[str, Any]:
        keys = {step.key for step in self.steps}
        return {"steps": {step.key: step.key in keys for step in STEPS}, "send_hour": self.send_hour}

    def moment(self, day: date, zone: ZoneInfo) -> datetime:
        """The send hour on `day` where the organization is, in UTC (with `day`'s own offset, not today's)."""
        return datetime.combine(day, time(self.send_hour), tzinfo=zone).astimezone(UTC)

    def last_day_reached(self, at: datetime, zone: ZoneInfo) -> date:
        """The latest local day whose send hour has come by `at`."""
        today = at.astimezone(zone).date()
        return today if self.moment(today, zone) <= at else today - timedelta(days=1)


# --- what a sweep does: the plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedReminder:
    invoice_id: int
    organization_id: int
    number: str
    client_name: str
    step: Step
    at: datetime  # when the step is due (in the past for work due now)
    due_date: date
    amount_due: int
    currency: str
    action: str  # "send", or "pass" (a step due before the invoice was opened: recorded as done, not sent)
    says: str  # what the email will say: "due in 7 days", "overdue by 3 days"

    def due_by(self, now: datetime) -> bool:
        return self.at <= now


def _organizations(organization_id: int | None) -> list[Organization]:
    query = select(Organization).where(Organization.archived_at.is_(None)).order_by(Organization.id)
    if organization_id is not None:
        query = query.where(Organization.id == organization_id)
    return list(db.session.execute(query).scalars())


@lru_cache(maxsize=64)
def _candidate_query(offsets: tuple[int, ...]) -> Any:
    """Open invoices of an organization with a step due that is not done yet, one page by id. Built once per
    set of steps (bound parameters: the organization, a cut-off date per step, the page), so an idle sweep
    over many organizations costs a cached query each."""
    step_due = [
        and_(Invoice.due_date <= bindparam(f"cut_{n}", type_=Date()),
             or_(Invoice.reminded_through.is_(None), Invoice.reminded_through < offset))
        for n, offset in enumerate(offsets)
    ]
    return (
        select(Invoice.id, Invoice.number, Invoice.due_date, Invoice.finalized_at, Invoice.reminded_through,
               Invoice.total, Invoice.amount_paid, Invoice.currency, Client.name)
        .join(Client, Client.id == Invoice.client_id)
        .where(Invoice.organization_id == bindparam("organization_id"), Invoice.status == "open",
               Invoice.due_date <= bindparam("cut_0", type_=Date()),  # the earliest step's cut: an index range
               Invoice.total > Invoice.amount_paid, Invoice.reminders_paused_at.is_(None),
               Client.reminders_opt_out.is_(False), ~autopay_pending_clause(), Invoice.id > bindparam("after_id"),
               or_(*step_due))
        .order_by(Invoice.id).limit(bindparam("page"))
    )


def _candidates(organization_id: int, policy: Policy, last_day: date, after_id: int, limit: int) -> list[Any]:
    """Invoices of the organization with a step due by `last_day` that is not done yet (one page, by id)."""
    offsets = tuple(step.offset for step in policy.steps)
    params: dict[str, Any] = {"organization_id": organization_id, "after_id": after_id, "page": limit}
    params.update({f"cut_{n}": last_day - timedelta(days=offset) for n, offset in enumerate(offsets)})
    return list(db.session.execute(_candidate_query(offsets), params).all())


def _due_steps(due_date: date, done: int | None, policy: Policy, zone: ZoneInfo) -> list[tuple[Step, datetime]]:
    """The policy's steps not done yet, with their moments, in order."""
    return [(step, policy.moment(due_date + timedelta(days=step.offset), zone))
            for step in policy.steps if done is None or step.offset > done]


def _decide(due_date: date, done: int | None, finalized_at: datetime | None, policy: Policy, zone: ZoneInfo,
            now: datetime) -> tuple[Step, datetime, str] | None:
    """The one step a sweep at `now` does for an invoice: the latest one due (catch-up), sent, or passed over
    when its time came before the invoice was opened. None when nothing is due."""
    passed = [(step, at) for step, at in _due_steps(due_date, done, policy, zone) if at <= now]
    if not passed:
        return None
    step, at = passed[-1]
    return step, at, "pass" if finalized_at is not None and at <= finalized_at else "send"


def plan(*, now: datetime, until: datetime | None = None, organization_id: int | None = None) -> Iterator[
        PlannedReminder]:
    """What sweeps from `now` to `until` (default: now) would do, invoice by invoice: the step due now (the
    latest, for catch-up), then each later step whose time comes before `until`."""
    until = until or now
    # Plain values only: the sweep commits between pages, which expires ORM objects.
    organizations = [(o.id, Policy.of(o), ZoneInfo(o.timezone)) for o in _organizations(organization_id)]
    for org_id, policy, zone in organizations:
        if not policy.steps:
            continue
        last_day = policy.last_day_reached(until, zone)
        after = 0
        while True:
            rows = _candidates(org_id, policy, last_day, after, PAGE)
            if not rows:
                break
            after = rows[-1].id
            for row in rows:
                yield from _planned(row, org_id, policy, zone, now, until)


def _planned(row: Any, organization_id: int, policy: Policy, zone: ZoneInfo, now: datetime,
             until: datetime) -> Iterator[PlannedReminder]:
    def item(step: Step, at: datetime, action: str) -> PlannedReminder:
        sent_on = max(at, now).astimezone(zone).date()  # work due now goes today
        return PlannedReminder(row.id, organization_id, row.number or f"#{row.id}", row.name, step, at,
                               row.due_date, row.total - row.amount_paid, row.currency, action,
                               due_phrase(row.due_date, sent_on))

    done = row.reminded_through
    decided = _decide(row.due_date, done, row.finalized_at, policy, zone, now)
    if decided is not None:
        step, at, action = decided
        yield item(step, at, action)
        done = step.offset
    for step, at in _due_steps(row.due_date, done, policy, zone):
        if now < at <= until:
            yield item(step, at, "send")


# --- the sweep -------------------------------------------------------------------------------------------


@dataclass
class RemindReport:
    sent: int = 0
    passed: int = 0
    skipped: int = 0  # no email address: recorded on the invoice, not sent
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"remind: {self.sent} reminder(s) queued, {self.passed} step(s) passed over"
        if self.skipped:
            text += f", {self.skipped} not sent (no email address)"
        return text + (f"; {len(self.errors)} error(s): " + "; ".join(self.errors[:5]) if self.errors else "")


def send_due_reminders(*, now: datetime, site: Site, organization_id: int | None = None) -> RemindReport:
    """Queue every reminder due now, each in its own transaction, re-checked under the invoice's row lock."""
    report = RemindReport()
    # The plan reads a page of invoices at a time, outside the write transactions (SQLite's lock is not held
    # while reading); each step is then re-decided under the invoice's row lock.
    for planned in _due_now(now, organization_id):
        try:
            outcome = remind_step(planned.invoice_id, now=now, site=site)
        except DomainError as exc:
            db.session.rollback()
            report.errors.append(f"{planned.number}: {exc}")
            continue
        report.sent += outcome == "sent"
        report.passed += outcome == "passed"
        report.skipped += outcome == "skipped"
    return report


def _due_now(now: datetime, organization_id: int | None) -> Iterator[PlannedReminder]:
    return (p for p in plan(now=now, organization_id=organization_id) if p.due_by(now))


def remind_step(invoice_id: int, *, now: datetime, site: Site) -> str | None:
    """Do the step due now for one invoice, if any: "sent", "passed" (over), "skipped" (no email address), or
    None when nothing is to be done any more (paid meanwhile, paused, another process did it)."""
    with atomic():
        invoice = lock_invoice(invoice_id)
        organization, client = invoice.organization, invoice.client
        if (invoice.status != "open" or invoice.amount_due <= 0 or invoice.reminders_paused_at is not None
                or client.reminders_opt_out or organization.is_archived or autopay_pending(invoice)):
            return None
        policy = Policy.of(organization)
        zone = ZoneInfo(organization.timezone)
        decided = _decide(invoice.due_date, invoice.reminded_through, invoice.finalized_at, policy, zone, now)
        if decided is None:
            return None
        step, _, action = decided
        invoice.reminded_through = step.offset
        if action == "pass":
            return "passed"
        today = now.astimezone(zone).date()
        when = due_phrase(invoice.due_date, today)
        if not ((invoice.contact.email if invoice.contact else "") or client.email):
            record("invoice.reminder_skipped", invoice, actor=ACTOR, now=now,
                   details={"step": step.key, "when": when, "reason": "no email address"})
            return "skipped"
        email = remind_locked(invoice, actor=ACTOR, now=now, config=site, details={
            "step": step.key, "when": when, "automatic": True}, dedupe_key=f"reminder:{invoice.id}:{step.key}")
        return "sent" if email is not None else None


@register("remind", every_seconds=900)
def remind_job(now: datetime, dry_run: bool) -> str:
    """Queue the automatic payment reminders that are due (each step of each invoice once)."""
    if dry_run:
        due = list(_due_now(now, None))
        db.session.rollback()
        sends = [p for p in due if p.action == "send"]
        lines = [f"  {p.number} ({p.client_name}): {p.step.label}, says \"{p.says}\"" for p in sends[:50]]
        more = [f"  ... and {len(sends) - 50} more"] if len(sends) > 50 else []
        return "\n".join([f"remind would queue {len(sends)} reminder(s) and pass over "
                          f"{len(due) - len(sends)} step(s)", *lines, *more])
    return str(send_due_reminders(now=now, site=Site.from_config(current_app.config)))


# --- what staff change -----------------------------------------------------------------------------------


class PolicyInvalid(DomainError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def update_policy(organization_id: int, *, steps: Iterable[str], send_hour: int, track_opens: bool, actor: Actor,
                  now: datetime) -> Organization:
    """Save the organization's reminder steps, send hour and open tracking (all or nothing)."""
    chosen = list(steps)
    errors: dict[str, str] = {}
    if set(chosen) - set(STEP_KEYS):
        errors["steps"] = "Unknown reminder step."
    if not 0 <= send_hour <= 23:
        errors["send_hour"] = "Choose an hour between 0 and 23."
    if errors:
        raise PolicyInvalid(errors)
    policy = Policy(tuple(step for step in STEPS if step.key in chosen), send_hour)
    with atomic():
        organization = db.session.execute(
            select(Organization).where(Organization.id == organization_id).with_for_update()
        ).scalar_one_or_none()
        if organization is None:
            raise NotFound("Organization not found.")
        before = Policy.of(organization)
        changed = before != policy or organization.track_email_opens != track_opens
        organization.reminder_policy = policy.to_json()
        organization.track_email_opens = track_opens
        if changed:
            record("organization.reminders_updated", organization, actor=actor, now=now, details={
                "steps": [step.key for step in policy.steps], "send_hour": send_hour, "track_opens": track_opens,
                "previous": {"steps": [step.key for step in before.steps], "send_hour": before.send_hour}})
    return organization


def set_invoice_paused(invoice_id: int, organization_id: int | None, paused: bool, *, actor: Actor,
                       now: datetime) -> Invoice:
    """Pause or resume the automatic reminders of one invoice (staff can still send one by hand)."""
    with atomic():
        invoice = lock_invoice(invoice_id, organization_id)
        if (invoice.reminders_paused_at is not None) == paused:
            return invoice
        invoice.reminders_paused_at = now if paused else None
        record("invoice.reminders_paused" if paused else "invoice.reminders_resumed", invoice, actor=actor, now=now)
    return invoice


def set_client_opt_out(client_id: int, organization_id: int | None, opted_out: bool, *, actor: Actor,
                       now: datetime) -> Client:
    """The client gets no automatic reminders (or gets them again)."""
    with atomic():
        query = select(Client).where(Client.id == client_id).with_for_update()
        if organization_id is not None:
            query = query.where(Client.organization_id == organization_id)
        client = db.session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
        if client is None:
            raise NotFound("Client not found.")
        if client.reminders_opt_out == opted_out:
            return client
        client.reminders_opt_out = opted_out
        record("client.reminders_opted_out" if opted_out else "client.reminders_opted_in", client, actor=actor,
               now=now)
    return client


@dataclass(frozen=True)
class InvoiceReminders:
    """What the invoice page says about automatic reminders."""

    state: str  # on, paused, opted_out, none (not open, nothing due, or no step left)
    next_step: Step | None = None
    next_at: datetime | None = None


def invoice_reminders(invoice: Invoice, *, now: datetime) -> InvoiceReminders:
    if invoice.status != "open" or invoice.amount_due <= 0:
        return InvoiceReminders("none")
    if invoice.reminders_paused_at is not None:
        return InvoiceReminders("paused")
    if invoice.client.reminders_opt_out:
        return InvoiceReminders("opted_out")
    policy = Policy.of(invoice.organization)
    zone = ZoneInfo(invoice.organization.timezone)
    decided = _decide(invoice.due_date, invoice.reminded_through, invoice.finalized_at, policy, zone, now)
    done = decided[0].offset if decided is not None else invoice.reminded_through
    if decided is not None and decided[2] == "send":
        return InvoiceReminders("on", decided[0], now)  # due now: the next sweep sends it
    upcoming = [(step, at) for step, at in _due_steps(invoice.due_date, done, policy, zone) if at > now]
    return InvoiceReminders("on", *upcoming[0]) if upcoming else InvoiceReminders("none")
