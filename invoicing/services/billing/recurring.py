"""Recurring invoices: job `recurring` (every 15 minutes) and `flask billing recurring [--dry-run]`.

A profile (RecurringProfile) invoices a client every N weeks, months, quarters or years from its start date,
until an optional end date or number of invoices. Each period's invoice is dated for its period (issued on the
period's first day, due after the profile's payment terms) and made at the organization's send hour (Settings
→ Reminders, default 09:00 local) on that day; it is then sent like any other invoice (numbered at
finalization, services/sending.send_locked) or left as a draft for staff to check and send.

Month ends are explicit: a period falls on the start date's day of the month, or on the last day of a shorter
month: started on Jan 31, monthly gives Feb 28 (29), Mar 31, Apr 30, May 31... (see `period_start`).

Exactly once: each period is one transaction that locks the profile row (FOR UPDATE SKIP LOCKED on PostgreSQL:
another scheduler busy with it is skipped; BEGIN IMMEDIATE on SQLite), re-checks the next period, makes the
invoice and a RecurringPeriod row, UNIQUE(profile, period start), and moves the profile on. Several schedulers
ticking at once, or a run after a week of downtime, make each missed period once, dated for its period.

Pausing stops new invoices; periods that start while paused are skipped, not invoiced on resume. Editing
changes future periods only (the invoices made keep their lines); a new interval counts from the next period.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from invoicing.extensions import db
from invoicing.jobs import register
from invoicing.models import (
    RECURRING_UNITS,
    AuditEvent,
    Client,
    Invoice,
    Organization,
    RecurringPeriod,
    RecurringProfile,
)
from invoicing.money import MoneyError, check_currency
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.billing.reminders import Policy
from invoicing.services.db import atomic, begin_write
from invoicing.services.invoices import DraftData, LineData, check_draft, local_today, new_draft
from invoicing.services.sending import send_locked
from invoicing.services.site import Site
from invoicing.services.totals import LineInput, compute_totals, limit_error

log = logging.getLogger(__name__)

ACTOR = Actor.system("recurring")
UNIT_LABELS = {"week": ("week", "weeks"), "month": ("month", "months"), "quarter": ("quarter", "quarters"),
               "year": ("year", "years")}
MONTHS = {"month": 1, "quarter": 3, "year": 12}
MAX_INTERVAL = 36  # every 36 months at most, and the like
MAX_CATCH_UP = 100  # periods of one profile made per run (a run after years of downtime continues next time)
MAX_TITLE = 200


# --- the calendar ----------------------------------------------------------------------------------------


def period_start(anchor: date, anchor_day: int, unit: str, count: int, k: int) -> date:
    """The start of the k-th period after `anchor`: weeks are 7 days; months, quarters and years fall on
    `anchor_day`, or on the last day of a month that is shorter (31 -> Feb 28 or 29 -> Mar 31)."""
    if unit == "week":
        return anchor + timedelta(weeks=count * k)
    months = anchor.year * 12 + anchor.month - 1 + MONTHS[unit] * count * k
    year, month = divmod(months, 12)
    return date(year, month + 1, min(anchor_day, calendar.monthrange(year, month + 1)[1]))


def profile_period(profile: RecurringProfile, index: int) -> date:
    return period_start(profile.anchor_date, profile.anchor_day, profile.interval_unit, profile.interval_count,
                        index - profile.anchor_index)


def describe_interval(unit: str, count: int, anchor_day: int | None = None) -> str:
    """"Every month on the 31st (the last day of shorter months)", "Every 2 weeks"."""
    one, many = UNIT_LABELS[unit]
    text = f"Every {one}" if count == 1 else f"Every {count} {many}"
    if unit != "week" and anchor_day is not None:
        text += f" on the {_ordinal(anchor_day)}"
        if anchor_day > 28:
            text += " (the last day of shorter months)"
    return text


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _end_reason(profile: RecurringProfile, period: date, made: int) -> str | None:
    if profile.max_invoices is not None and made >= profile.max_invoices:
        return f"all {profile.max_invoices} invoices made"
    if profile.end_date is not None and period > profile.end_date:
        return f"end date {profile.end_date.isoformat()} reached"
    return None


def line_data(profile: RecurringProfile) -> tuple[LineData, ...]:
    return tuple(LineData(line["description"], Decimal(line["quantity"]), int(line["unit_price"]),
                          Decimal(line["tax_rate"])) for line in profile.lines)


def profile_total(profile: RecurringProfile) -> int:
    """What each period's invoice comes to (services/totals.py, like any invoice)."""
    return compute_totals([LineInput(li.quantity, li.unit_price, li.tax_rate) for li in line_data(profile)]).total


# --- profiles: create, edit, pause, resume, end ----------------------------------------------------------


@dataclass(frozen=True)
class ProfileData:
    client_id: int
    title: str
    currency: str
    lines: tuple[LineData, ...]
    interval_unit: str
    interval_count: int
    start_date: date
    end_date: date | None = None
    max_invoices: int | None = None
    payment_terms_days: int = 30
    auto_send: bool = True
    autopay: bool = False
    notes: str = ""


class ProfileInvalid(DomainError):
    """One message per field that is wrong; nothing was saved."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _check(organization: Organization, data: ProfileData, *, today: date,
           profile: RecurringProfile | None = None) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not data.title.strip():
        errors["title"] = "Say what is invoiced, e.g. \"Hosting, monthly\"."
    elif len(data.title.strip()) > MAX_TITLE:
        errors["title"] = f"At most {MAX_TITLE} characters."
    if data.interval_unit not in RECURRING_UNITS:
        errors["interval_unit"] = "Choose weeks, months, quarters or years."
    if not 1 <= data.interval_count <= MAX_INTERVAL:
        errors["interval_count"] = f"Every 1 to {MAX_INTERVAL} periods."
    start_changed = profile is None or data.start_date != profile.start_date
    if start_changed and data.start_date < today:
        errors["start_date"] = f"The first period cannot start before today ({today.isoformat()})."
    if data.end_date is not None and data.end_date < data.start_date:
        errors["end_date"] = "The end date cannot be before the start date."
    if data.max_invoices is not None and not 1 <= data.max_invoices <= 10_000:
        errors["max_invoices"] = "Between 1 and 10,000 invoices, or leave it empty."
    if not 0 <= data.payment_terms_days <= 365:
        errors["payment_terms_days"] = "Payment terms must be between 0 and 365 days."
    if profile is not None and profile.invoices_made:
        if data.client_id != profile.client_id:
            errors["client_id"] = "The client cannot change once invoices were made: end this profile and start one."
        if start_changed:
            errors["start_date"] = "The start date cannot change once invoices were made."
        if data.currency.upper() != profile.currency:
            errors["currency"] = "The currency cannot change once invoices were made."
    try:
        check_currency(data.currency)
    except MoneyError as exc:
        errors["currency"] = str(exc)
        return errors
    draft = DraftData(client_id=data.client_id, currency=data.currency, issue_date=data.start_date,
                      due_date=data.start_date + timedelta(days=max(data.payment_terms_days, 0)), lines=data.lines,
                      notes=data.notes)
    try:
        check_draft(draft, organization)
    except DomainError as exc:
        errors["client_id" if "client" in str(exc).lower() else "lines"] = str(exc)
        return errors
    totals = compute_totals([LineInput(li.quantity, li.unit_price, li.tax_rate) for li in data.lines])
    if (message := limit_error(totals, data.currency)) is not None:
        errors["lines"] = message
    elif totals.total <= 0:
        errors["lines"] = "Each invoice must come to more than zero."
    return errors


def _lines_json(lines: tuple[LineData, ...]) -> list[dict[str, Any]]:
    return [{"description": li.description.strip(), "quantity": str(li.quantity), "unit_price": li.unit_price,
             "tax_rate": str(li.tax_rate)} for li in lines]


def _apply(profile: RecurringProfile, data: ProfileData) -> None:
    profile.client_id = data.client_id
    profile.title = data.title.strip()
    profile.currency = data.currency.upper()
    profile.lines = _lines_json(data.lines)
    profile.notes = data.notes.strip()
    profile.end_date = data.end_date
    profile.max_invoices = data.max_invoices
    profile.payment_terms_days = data.payment_terms_days
    profile.auto_send = data.auto_send
    profile.autopay = data.autopay


def _organization(organization_id: int) -> Organization:
    organization = db.session.get(Organization, organization_id)
    if organization is None:
        raise NotFound("Organization not found.")
    return organization


def create_profile(organization_id: int, data: ProfileData, *, actor: Actor, now: datetime) -> RecurringProfile:
    with atomic():
        organization = _organization(organization_id)
        errors = _check(organization, data, today=local_today(organization, now))
        if errors:
            raise ProfileInvalid(errors)
        profile = RecurringProfile(
            organization_id=organization.id, interval_unit=data.interval_unit, interval_count=data.interval_count,
            start_date=data.start_date, anchor_date=data.start_date, anchor_day=data.start_date.day,
            anchor_index=0, next_index=0, next_period_start=data.start_date, invoices_made=0, status="active",
            created_by_id=actor.id if actor.type == "user" else None, created_at=now, updated_at=now)
        _apply(profile, data)
        db.session.add(profile)
        db.session.flush()
        record("recurring.created", profile, actor=actor, now=now, details=_summary(profile))
    return profile


def _summary(profile: RecurringProfile) -> dict[str, Any]:
    return {"title": profile.title, "client_id": profile.client_id, "total": profile_total(profile),
            "currency": profile.currency, "every": describe_interval(profile.interval_unit, profile.interval_count),
            "start_date": profile.start_date.isoformat(), "auto_send": profile.auto_send}


def _lock(profile_id: int, organization_id: int | None, *, skip_locked: bool = False) -> RecurringProfile | None:
    begin_write()
    query = select(RecurringProfile).where(RecurringProfile.id == profile_id)
    if organization_id is not None:
        query = query.where(RecurringProfile.organization_id == organization_id)
    return db.session.execute(
        query.with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _locked(profile_id: int, organization_id: int | None) -> RecurringProfile:
    profile = _lock(profile_id, organization_id)
    if profile is None:
        raise NotFound("Recurring profile not found.")
    return profile


def update_profile(profile_id: int, organization_id: int | None, data: ProfileData, *, actor: Actor,
                   now: datetime) -> RecurringProfile:
    """Change what future periods invoice. A new interval counts from the next period; the start date and the
    client change only while no invoice was made."""
    with atomic():
        profile = _locked(profile_id, organization_id)
        if profile.status == "ended":
            raise DomainError("This profile has ended; start a new one.")
        organization = profile.organization
        errors = _check(organization, data, today=local_today(organization, now), profile=profile)
        if errors:
            raise ProfileInvalid(errors)
        before = _summary(profile)
        if data.start_date != profile.start_date:  # nothing made yet (_check): the schedule starts over
            profile.start_date = profile.anchor_date = data.start_date
            profile.anchor_day, profile.anchor_index, profile.next_index = data.start_date.day, 0, 0
        elif (data.interval_unit, data.interval_count) != (profile.interval_unit, profile.interval_count) \
                and profile.next_period_start is not None:
            profile.anchor_date, profile.anchor_index = profile.next_period_start, profile.next_index
        profile.interval_unit, profile.interval_count = data.interval_unit, data.interval_count
        _apply(profile, data)
        profile.next_period_start = profile_period(profile, profile.next_index)
        profile.updated_at = now
        record("recurring.updated", profile, actor=actor, now=now,
               details={"before": before, "after": _summary(profile)})
        _end_if_done(profile, now=now, actor=actor)
    return profile


def _end_if_done(profile: RecurringProfile, *, now: datetime, actor: Actor) -> None:
    if profile.next_period_start is None or profile.status == "ended":
        return
    reason = _end_reason(profile, profile.next_period_start, profile.invoices_made)
    if reason is not None:
        _end(profile, reason=reason, now=now, actor=actor)


def _end(profile: RecurringProfile, *, reason: str, now: datetime, actor: Actor) -> None:
    profile.status, profile.ended_at, profile.next_period_start = "ended", now, None
    record("recurring.ended", profile, actor=actor, now=now, details={"reason": reason})


def pause_profile(profile_id: int, organization_id: int | None, *, actor: Actor, now: datetime) -> RecurringProfile:
    with atomic():
        profile = _locked(profile_id, organization_id)
        if profile.status != "active":
            raise DomainError(f"This profile is {profile.status}; only an active profile can be paused.")
        profile.status, profile.paused_at = "paused", now
        record("recurring.paused", profile, actor=actor, now=now)
    return profile


def resume_profile(profile_id: int, organization_id: int | None, *, actor: Actor, now: datetime) -> RecurringProfile:
    """Active again from the next period to come: periods whose time came while paused are skipped."""
    with atomic():
        profile = _locked(profile_id, organization_id)
        if profile.status != "paused":
            raise DomainError(f"This profile is {profile.status}; only a paused profile can be resumed.")
        organization = profile.organization
        policy, zone = Policy.of(organization), ZoneInfo(organization.timezone)
        skipped: list[str] = []
        while (profile.next_period_start is not None and len(skipped) < 10_000
               and policy.moment(profile.next_period_start, zone) <= now):
            skipped.append(profile.next_period_start.isoformat())
            profile.next_index += 1
            profile.next_period_start = profile_period(profile, profile.next_index)
        profile.status, profile.paused_at, profile.updated_at = "active", None, now
        record("recurring.resumed", profile, actor=actor, now=now,
               details={"skipped": skipped[:50], "skipped_count": len(skipped),
                        "next": profile.next_period_start.isoformat() if profile.next_period_start else None})
        _end_if_done(profile, now=now, actor=actor)
    return profile


def end_profile(profile_id: int, organization_id: int | None, *, actor: Actor, now: datetime) -> RecurringProfile:
    """No more invoices from this profile (the ones it made stay as they are)."""
    with atomic():
        profile = _locked(profile_id, organization_id)
        if profile.status == "ended":
            raise DomainError("This profile has already ended.")
        _end(profile, reason="ended by staff", now=now, actor=actor)
    return profile


# --- making the invoices ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedInvoice:
    profile_id: int
    organization_id: int
    title: str
    client_name: str
    period_start: date
    at: datetime  # when it is made (in the past for work due now)
    amount: int
    currency: str
    auto_send: bool


def plan(*, now: datetime, until: datetime | None = None, organization_id: int | None = None) -> Iterator[
        PlannedInvoice]:
    """The invoices runs from `now` to `until` (default: now) would make: every period whose time has come by
    then, missed ones included (each once), within each profile's end."""
    until = until or now
    query = (select(RecurringProfile, Organization, Client.name)
             .join(Organization, Organization.id == RecurringProfile.organization_id)
             .join(Client, Client.id == RecurringProfile.client_id)
             .where(RecurringProfile.status == "active", Organization.archived_at.is_(None),
                    RecurringProfile.next_period_start <= (until + timedelta(days=1)).date())
             .order_by(RecurringProfile.next_period_start, RecurringProfile.id))
    if organization_id is not None:
        query = query.where(RecurringProfile.organization_id == organization_id)
    for profile, organization, client_name in db.session.execute(query).all():
        policy, zone = Policy.of(organization), ZoneInfo(organization.timezone)
        total = profile_total(profile)
        index, made = profile.next_index, profile.invoices_made
        for _ in range(MAX_CATCH_UP):
            period = profile_period(profile, index)
            at = policy.moment(period, zone)
            if at > until or _end_reason(profile, period, made) is not None:
                break
            yield PlannedInvoice(profile.id, organization.id, profile.title, client_name, period, at, total,
                                 profile.currency, profile.auto_send)
            index, made = index + 1, made + 1


@dataclass
class RecurringReport:
    made: int = 0
    sent: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"recurring: {self.made} invoice(s) made, {self.sent} of them sent, "
                f"{self.made - self.sent} left as drafts")
        return text + (f"; {len(self.errors)} error(s): " + "; ".join(self.errors[:5]) if self.errors else "")


def generate_due(*, now: datetime, site: Site, organization_id: int | None = None) -> RecurringReport:
    """Make every period's invoice that is due, one transaction per period."""
    report = RecurringReport()
    profile_ids = list(dict.fromkeys(p.profile_id for p in plan(now=now, organization_id=organization_id)))
    db.session.rollback()  # end the read before the writes
    for profile_id in profile_ids:
        for _ in range(MAX_CATCH_UP):
            try:
                made = make_next_invoice(profile_id, now=now, site=site)
            except DomainError as exc:
                db.session.rollback()
                report.errors.append(f"profile {profile_id}: {exc}")
                break
            if made is None:
                break
            report.made += 1
            report.sent += made.sent
    return report


@dataclass(frozen=True)
class Made:
    invoice_id: int
    period_start: date
    sent: bool


def make_next_invoice(profile_id: int, *, now: datetime, site: Site) -> Made | None:
    """Invoice the profile's next period if its time has come; None when there is nothing to do (not due, not
    active, or another scheduler holds the profile or made this period)."""
    try:
        with atomic():
            profile = _lock(profile_id, None, skip_locked=True)
            if profile is None or profile.status != "active" or profile.next_period_start is None:
                return None
            organization = profile.organization
            period = profile.next_period_start
            zone = ZoneInfo(organization.timezone)
            if organization.is_archived or Policy.of(organization).moment(period, zone) > now:
                return None
            if _end_reason(profile, period, profile.invoices_made) is not None:
                _end_if_done(profile, now=now, actor=ACTOR)
                return None
            if profile.client.archived_at is not None:
                profile.status, profile.paused_at = "paused", now
                record("recurring.paused", profile, actor=ACTOR, now=now, details={"reason": "the client is archived"})
                return None
            made = _invoice_period(profile, organization, period, now=now, site=site)
    except IntegrityError:  # another process made this very period a moment ago: it is done, once
        log.info("recurring profile %s: period already invoiced by another process", profile_id)
        return None
    return made


def _invoice_period(profile: RecurringProfile, organization: Organization, period: date, *, now: datetime,
                    site: Site) -> Made:
    data = DraftData(client_id=profile.client_id, currency=profile.currency, issue_date=period,
                     due_date=period + timedelta(days=profile.payment_terms_days), lines=line_data(profile),
                     notes=profile.notes)
    invoice = new_draft(organization, data, actor=ACTOR, now=now)
    db.session.add(RecurringPeriod(profile_id=profile.id, period_start=period, invoice_id=invoice.id, created_at=now))
    db.session.flush()  # UNIQUE(profile, period start): a second invoice of this period stops here
    record("invoice.generated", invoice, actor=ACTOR, now=now, details={
        "profile_id": profile.id, "title": profile.title, "period_start": period.isoformat()})
    sent = False
    if profile.auto_send:
        if invoice.client.email:
            send_locked(invoice, actor=ACTOR, now=now, config=site)
            sent = True
        else:
            record("invoice.not_sent", invoice, actor=ACTOR, now=now,
                   details={"reason": "the client has no billing email: left as a draft"})
    profile.invoices_made += 1
    profile.next_index += 1
    profile.next_period_start = profile_period(profile, profile.next_index)
    profile.updated_at = now
    record("recurring.invoiced", profile, actor=ACTOR, now=now, details={
        "invoice_id": invoice.id, "period_start": period.isoformat(), "sent": sent, "number": invoice.number})
    _end_if_done(profile, now=now, actor=ACTOR)
    return Made(invoice.id, period, sent)


@register("recurring", every_seconds=900)
def recurring_job(now: datetime, dry_run: bool) -> str:
    """Make the invoices of recurring profiles whose period has started (each period once)."""
    if dry_run:
        planned = list(plan(now=now))
        db.session.rollback()
        lines = [f"  {p.title} ({p.client_name}): period from {p.period_start.isoformat()}, "
                 f"{'sent' if p.auto_send else 'left as a draft'}" for p in planned[:50]]
        more = [f"  ... and {len(planned) - 50} more"] if len(planned) > 50 else []
        return "\n".join([f"recurring would make {len(planned)} invoice(s)", *lines, *more])
    return str(generate_due(now=now, site=Site.from_config(current_app.config)))


# --- read side -------------------------------------------------------------------------------------------


def list_profiles(organization_id: int | None, *, status: str | None = None) -> list[RecurringProfile]:
    query = select(RecurringProfile).order_by(RecurringProfile.status, RecurringProfile.next_period_start,
                                              RecurringProfile.id)
    if organization_id is not None:
        query = query.where(RecurringProfile.organization_id == organization_id)
    if status:
        query = query.where(RecurringProfile.status == status)
    return list(db.session.execute(query).scalars())


def get_profile(profile_id: int, organization_id: int | None) -> RecurringProfile:
    query = select(RecurringProfile).where(RecurringProfile.id == profile_id)
    if organization_id is not None:
        query = query.where(RecurringProfile.organization_id == organization_id)
    profile = db.session.execute(query).scalar_one_or_none()
    if profile is None:
        raise NotFound("Recurring profile not found.")
    return profile


def invoices_made(profile: RecurringProfile, limit: int = 100) -> list[tuple[date, Invoice]]:
    return [(period, invoice) for period, invoice in db.session.execute(
        select(RecurringPeriod.period_start, Invoice).join(Invoice, Invoice.id == RecurringPeriod.invoice_id)
        .where(RecurringPeriod.profile_id == profile.id).order_by(RecurringPeriod.period_start.desc()).limit(limit))]


def upcoming(profile: RecurringProfile, count: int = 4) -> list[date]:
    """The next periods to invoice (within the profile's end)."""
    if profile.status == "ended" or profile.next_period_start is None:
        return []
    dates = []
    for n in range(count):
        period = profile_period(profile, profile.next_index + n)
        if _end_reason(profile, period, profile.invoices_made + n) is not None:
            break
        dates.append(period)
    return dates


def profile_events(profile: RecurringProfile, limit: int = 50) -> list[AuditEvent]:
    """What happened to the profile (created, edited, paused, invoiced...), newest first."""
    return list(db.session.execute(
        select(AuditEvent).where(AuditEvent.object_type == "recurringprofile", AuditEvent.object_id == profile.id)
        .order_by(AuditEvent.id.desc()).limit(limit)).scalars())


def count_profiles(organization_id: int | None) -> dict[str, int]:
    query = select(RecurringProfile.status, func.count()).group_by(RecurringProfile.status)
    if organization_id is not None:
        query = query.where(RecurringProfile.organization_id == organization_id)
    return {status: int(n) for status, n in db.session.execute(query)}

