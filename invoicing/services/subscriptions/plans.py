"""Plans and their prices, administered by staff: create, edit, archive, and moving subscribers to a new price.

A price that changes is never edited: the old PlanPrice is archived and a new one takes its place, so every
subscription keeps the price it signed up at until staff migrate it (`migrate_subscribers`: the engine's
change function with kind "migration", which audits each subscription and emails its client). An archived plan
takes no new subscribers; its subscribers keep billing. Amounts are minor units of the price's currency (the
admin form parses what staff type with invoicing/money.py, so JPY has no decimals and KWD three).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from invoicing.extensions import db
from invoicing.models import PLAN_INTERVAL_UNITS, Client, Organization, Plan, PlanPrice, Subscription
from invoicing.money import MAX_AMOUNT, MoneyError, check_currency, format_money
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic, begin_write
from invoicing.services.site import Site
from invoicing.services.subscriptions import changes

MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_TRIAL_DAYS = 365
MAX_INTERVAL = {"month": 36, "year": 5}  # every 36 months, or every 5 years, at most
MAX_PRICES = 12
MAX_TAX_MILLI = 100_000  # 100 %
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?")
RESERVED_SLUGS = frozenset({"new", "admin", "api", "static", "portal", "pay"})
LIVE = ("trialing", "active", "past_due", "paused")  # statuses that still bill, or will again


@dataclass(frozen=True)
class PriceData:
    """A price as staff want it: `id` names the current price it replaces (None: a new price); `remove` stops
    offering it (subscribers keep it)."""

    currency: str
    amount: int  # minor units per period, per seat when the plan is per seat
    interval_unit: str = "month"
    interval_count: int = 1
    setup_fee: int = 0  # minor units, once, on the first invoice
    id: int | None = None
    remove: bool = False


@dataclass(frozen=True)
class PlanData:
    name: str
    prices: tuple[PriceData, ...]
    description: str = ""
    slug: str = ""  # "" on create: made from the name
    public: bool = False
    trial_days: int = 0
    tax_rate_milli: int = 0  # percent x 1000
    per_seat: bool = False


class PlanInvalid(DomainError):
    """One message per field that is wrong (prices as "prices-<n>-<field>"); nothing was saved."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclass
class SavedPlan:
    plan: Plan
    replaced: list[tuple[PlanPrice, PlanPrice]] = field(default_factory=list)  # (old, new): subscribers stay on old


def describe_interval(unit: str, count: int) -> str:
    """"month", "year", "3 months"."""
    return unit if count == 1 else f"{count} {unit}s"


def tax_percent(milli: int) -> str:
    """8875 -> "8.875", 0 -> "0": the tax rate as staff type it."""
    return f"{(Decimal(milli) / 1000).normalize():f}"


def describe_price(price: PlanPrice, *, per_seat: bool = False) -> str:
    """"$49.00 per seat every month", "¥5,000 every 3 months (+ ¥1,000 setup)"."""
    text = format_money(price.amount, price.currency) + (" per seat" if per_seat else "")
    text += f" every {describe_interval(price.interval_unit, price.interval_count)}"
    if price.setup_fee:
        text += f" (+ {format_money(price.setup_fee, price.currency)} setup)"
    return text


# --- checks ----------------------------------------------------------------------------------------------


def slug_from(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "plan"


def _slug_taken(slug: str, plan_id: int | None) -> bool:
    query = select(Plan.id).where(Plan.slug == slug)
    if plan_id is not None:
        query = query.where(Plan.id != plan_id)
    return db.session.execute(query).first() is not None


def _free_slug(name: str) -> str:
    base = slug = slug_from(name)
    n = 1
    while slug in RESERVED_SLUGS or _slug_taken(slug, None):
        n += 1
        slug = f"{base}-{n}"
    return slug


def _check_plan(data: PlanData, plan_id: int | None) -> dict[str, str]:
    errors: dict[str, str] = {}
    name = data.name.strip()
    if not name:
        errors["name"] = "Give the plan a name, e.g. \"Maintenance, monthly\"."
    elif len(name) > MAX_NAME:
        errors["name"] = f"At most {MAX_NAME} characters."
    if len(data.description.strip()) > MAX_DESCRIPTION:
        errors["description"] = f"At most {MAX_DESCRIPTION:,} characters."
    slug = data.slug.strip().lower()
    if slug or plan_id is not None:
        if not SLUG.fullmatch(slug):
            errors["slug"] = ("Lowercase letters, digits and dashes (not first or last), at most 80: "
                              "it is the sign-up address /subscribe/<slug>.")
        elif slug in RESERVED_SLUGS:
            errors["slug"] = f"“{slug}” is reserved; choose another."
        elif _slug_taken(slug, plan_id):
            errors["slug"] = f"/subscribe/{slug} is taken; choose another."
    if not 0 <= data.trial_days <= MAX_TRIAL_DAYS:
        errors["trial_days"] = f"0 to {MAX_TRIAL_DAYS} days (0: no trial)."
    if not 0 <= data.tax_rate_milli <= MAX_TAX_MILLI:
        errors["tax_rate"] = "0 to 100 %, at most 3 decimals."
    return errors


def _check_price(price: PriceData, n: int) -> dict[str, str]:
    errors: dict[str, str] = {}
    try:
        check_currency(price.currency)
    except MoneyError as exc:
        errors[f"prices-{n}-currency"] = str(exc)
    if price.interval_unit not in PLAN_INTERVAL_UNITS:
        errors[f"prices-{n}-interval_unit"] = "Choose months or years."
    elif not 1 <= price.interval_count <= MAX_INTERVAL[price.interval_unit]:
        errors[f"prices-{n}-interval_count"] = f"Every 1 to {MAX_INTERVAL[price.interval_unit]} {price.interval_unit}s."
    if not 0 < price.amount <= MAX_AMOUNT:
        errors[f"prices-{n}-amount"] = "Each period must cost more than zero."
    if not 0 <= price.setup_fee <= MAX_AMOUNT:
        errors[f"prices-{n}-setup_fee"] = "The setup fee cannot be negative."
    return errors


def _key(price: PriceData | PlanPrice) -> tuple[str, str, int]:
    return price.currency.upper(), price.interval_unit, price.interval_count


def _check_prices(prices: tuple[PriceData, ...], current: dict[int, PlanPrice]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if len(prices) > MAX_PRICES:
        return {"prices": f"At most {MAX_PRICES} prices per plan."}
    seen: dict[tuple[str, str, int], int] = {}
    for n, price in enumerate(prices):
        if price.id is not None and price.id not in current:
            errors[f"prices-{n}-amount"] = "This price was replaced or removed meanwhile; reload the page."
            continue
        if price.remove:
            continue
        errors.update(_check_price(price, n))
        if _key(price) in seen:
            errors[f"prices-{n}-currency"] = (f"Price {seen[_key(price)] + 1} already bills {price.currency.upper()} "
                                              f"every {describe_interval(price.interval_unit, price.interval_count)}.")
        seen.setdefault(_key(price), n)
    if not errors and not seen:
        errors["prices"] = "Give the plan at least one price."
    return errors


def _changed(old: PlanPrice, new: PriceData) -> bool:
    return (_key(old), old.amount, old.setup_fee) != (_key(new), new.amount, new.setup_fee)


# --- reads -----------------------------------------------------------------------------------------------


def get_plan(plan_id: int, organization_id: int | None) -> Plan:
    """The plan with its prices; another organization's plan is NotFound (404)."""
    query = select(Plan).where(Plan.id == plan_id).options(selectinload(Plan.prices))
    if organization_id is not None:
        query = query.where(Plan.organization_id == organization_id)
    plan = db.session.execute(query).scalar_one_or_none()
    if plan is None:
        raise NotFound("Plan not found.")
    return plan


def current_prices(plan: Plan) -> list[PlanPrice]:
    return [p for p in plan.prices if p.archived_at is None]


def subscriber_counts(plan_id: int) -> dict[int, int]:
    """Subscriptions still billing (trialing, active, past due, paused) per price of the plan."""
    rows = db.session.execute(
        select(Subscription.price_id, func.count()).where(Subscription.plan_id == plan_id,
                                                          Subscription.status.in_(LIVE))
        .group_by(Subscription.price_id)).all()
    return {int(price_id): int(n) for price_id, n in rows}


def moving_counts(plan_id: int) -> dict[int, int]:
    """Per price: subscribers already scheduled to leave it at their period end (a migration or a plan change)."""
    rows = db.session.execute(
        select(Subscription.price_id, func.count()).where(Subscription.plan_id == plan_id,
                                                          Subscription.status.in_(LIVE),
                                                          Subscription.pending_price_id.is_not(None))
        .group_by(Subscription.price_id)).all()
    return {int(price_id): int(n) for price_id, n in rows}


def migration_targets(plan: Plan, old: PlanPrice) -> list[PlanPrice]:
    """The plan's current prices an archived price's subscribers can move to: same currency."""
    return [p for p in current_prices(plan) if p.currency == old.currency and p.id != old.id]


# --- writes ----------------------------------------------------------------------------------------------


def _organization(organization_id: int) -> Organization:
    organization = db.session.get(Organization, organization_id)
    if organization is None:
        raise NotFound("Organization not found.")
    return organization


def _summary(plan: Plan) -> dict[str, Any]:
    return {"name": plan.name, "slug": plan.slug, "public": plan.public, "trial_days": plan.trial_days,
            "tax_rate_milli": plan.tax_rate_milli, "per_seat": plan.per_seat,
            "prices": [{"id": p.id, "currency": p.currency, "amount": p.amount, "every": [p.interval_count,
                        p.interval_unit], "setup_fee": p.setup_fee} for p in current_prices(plan)]}


def _apply(plan: Plan, data: PlanData) -> None:
    plan.name = data.name.strip()
    plan.description = data.description.strip()
    plan.public = data.public
    plan.trial_days = data.trial_days
    plan.tax_rate_milli = data.tax_rate_milli
    plan.per_seat = data.per_seat


def _new_price(plan: Plan, price: PriceData, now: datetime) -> PlanPrice:
    row = PlanPrice(plan=plan, currency=price.currency.strip().upper(), amount=price.amount,
                    interval_unit=price.interval_unit, interval_count=price.interval_count,
                    setup_fee=price.setup_fee, created_at=now)
    db.session.add(row)
    return row


def create_plan(organization_id: int, data: PlanData, *, actor: Actor, now: datetime) -> Plan:
    with atomic():
        organization = _organization(organization_id)
        errors = {**_check_plan(data, None), **_check_prices(data.prices, {})}
        if errors:
            raise PlanInvalid(errors)
        plan = Plan(organization_id=organization.id, slug=data.slug.strip().lower() or _free_slug(data.name),
                    created_at=now, updated_at=now)
        _apply(plan, data)
        db.session.add(plan)
        for price in data.prices:
            if not price.remove:
                _new_price(plan, price, now)
        db.session.flush()
        record("plan.created", plan, actor=actor, now=now, details=_summary(plan))
    return plan


def _lock(plan_id: int, organization_id: int | None) -> Plan:
    begin_write()
    query = select(Plan).where(Plan.id == plan_id)
    if organization_id is not None:
        query = query.where(Plan.organization_id == organization_id)
    plan = db.session.execute(query.with_for_update().execution_options(populate_existing=True)).scalar_one_or_none()
    if plan is None:
        raise NotFound("Plan not found.")
    return plan


def update_plan(plan_id: int, organization_id: int | None, data: PlanData, *, actor: Actor,
                now: datetime) -> SavedPlan:
    """Save the plan's details; a price whose amount, setup fee, currency or interval changed is archived and a
    new price takes its place. Subscribers keep the old price until migrated (`migrate_subscribers`)."""
    with atomic():
        plan = _lock(plan_id, organization_id)
        current = {p.id: p for p in current_prices(plan)}
        errors = {**_check_plan(data, plan.id), **_check_prices(data.prices, current)}
        if errors:
            raise PlanInvalid(errors)
        before = _summary(plan)
        _apply(plan, data)
        plan.slug, plan.updated_at = data.slug.strip().lower(), now
        saved = SavedPlan(plan)
        for price in data.prices:
            old = current.get(price.id) if price.id is not None else None
            if old is not None and (price.remove or _changed(old, price)):
                old.archived_at = now
            if not price.remove and (old is None or _changed(old, price)):
                new = _new_price(plan, price, now)
                if old is not None:
                    saved.replaced.append((old, new))
        db.session.flush()
        record("plan.updated", plan, actor=actor, now=now, details={
            "before": before, "after": _summary(plan),
            "replaced": [{"old": old.id, "new": new.id} for old, new in saved.replaced]})
    return saved


def archive_plan(plan_id: int, organization_id: int | None, *, restore: bool = False, actor: Actor,
                 now: datetime) -> Plan:
    """Archived: no new subscribers (the sign-up page and the staff form refuse it); subscribers keep billing."""
    with atomic():
        plan = _lock(plan_id, organization_id)
        if restore and plan.archived_at is None:
            raise DomainError(f"“{plan.name}” is not archived.")
        if not restore and plan.archived_at is not None:
            raise DomainError(f"“{plan.name}” is already archived.")
        if restore and not current_prices(plan):
            raise DomainError("Give the plan a price before restoring it.")
        plan.archived_at, plan.updated_at = (None if restore else now), now
        record("plan.restored" if restore else "plan.archived", plan, actor=actor, now=now,
               details={"subscribers": sum(subscriber_counts(plan.id).values())})
    return plan


@dataclass
class MigrationReport:
    moved: int = 0
    already: int = 0  # scheduled by an earlier run
    failed: list[str] = field(default_factory=list)  # "client: why", one per subscription the engine refused

    @property
    def message(self) -> str:
        text = (f"{self.moved} subscriber(s) move to the new price at their period end; each client was emailed."
                if self.moved else "No subscriber was moved.")
        if self.already:
            text += f" {self.already} already moving."
        if self.failed:
            text += f" Not moved: {'; '.join(self.failed[:10])}" + (" …" if len(self.failed) > 10 else "")
        return text


def migrate_subscribers(plan_id: int, organization_id: int | None, *, from_price_id: int, to_price_id: int,
                        actor: Actor, now: datetime, site: Site) -> MigrationReport:
    """Move every subscriber still billing at an earlier price of the plan to one of its current prices, from
    their current period's end (no proration): the engine's `changes.migrate_price`, one transaction per
    subscription, each audited ("subscription.migrated") and its client emailed. A re-run moves only those not
    moved yet (request_key per subscription and price)."""
    plan = get_plan(plan_id, organization_id)
    old = next((p for p in plan.prices if p.id == from_price_id), None)
    if old is None:
        raise NotFound("Price not found.")
    if old.archived_at is None:
        raise DomainError("Subscribers are moved off an earlier price; this one is still offered.")
    if not any(p.id == to_price_id for p in migration_targets(plan, old)):
        raise DomainError(f"Choose one of the plan's current {old.currency} prices.")
    rows = db.session.execute(select(Subscription.id, Subscription.pending_price_id, Client.name).join(Client).where(
        Subscription.price_id == old.id, Subscription.status.in_(LIVE)).order_by(Subscription.id)).all()
    db.session.rollback()  # end the read: each move is its own transaction
    report = MigrationReport()
    for subscription_id, pending, client_name in rows:
        if pending == to_price_id:
            report.already += 1
            continue
        try:
            changes.migrate_price(subscription_id, plan.organization_id, price_id=to_price_id,
                                  request_key=f"migrate:{subscription_id}:{to_price_id}", actor=actor, now=now,
                                  site=site)
        except DomainError as exc:
            report.failed.append(f"{client_name}: {exc}")
        else:
            report.moved += 1
    return report
