"""What lifecycle.py and changes.py share: the row lock, the calendar of a subscription, status moves."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Organization, PlanPrice, Subscription
from invoicing.money import format_money
from invoicing.services import NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.billing.recurring import period_start
from invoicing.services.billing.reminders import Policy
from invoicing.services.db import begin_write
from invoicing.services.invoices import local_today

ACTOR = Actor.system("subscriptions")
LIVE = ("trialing", "active", "past_due")  # periods still renew (paused waits; canceled and ended are final)
FINAL = ("canceled", "ended")
MAX_SEATS = 10_000


def lock(subscription_id: int, organization_id: int | None, *, skip_locked: bool = False) -> Subscription | None:
    """The subscription row FOR UPDATE (SKIP LOCKED for the sweep) with fresh values; SQLite: BEGIN IMMEDIATE."""
    begin_write()
    query = select(Subscription).where(Subscription.id == subscription_id)
    if organization_id is not None:
        query = query.where(Subscription.organization_id == organization_id)
    return db.session.execute(
        query.with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def locked(subscription_id: int, organization_id: int | None) -> Subscription:
    subscription = lock(subscription_id, organization_id)
    if subscription is None:
        raise NotFound("Subscription not found.")
    return subscription


def today(organization: Organization, now: datetime) -> date:
    return local_today(organization, now)


def moment(organization: Organization, day: date) -> datetime:
    """When work dated `day` is done: the organization's send hour that day (as recurring invoices)."""
    return Policy.of(organization).moment(day, ZoneInfo(organization.timezone))


def period_end(start: date, anchor_day: int, price: PlanPrice) -> date:
    """The first day of the period after the one starting on `start` (months clamped as recurring profiles)."""
    return period_start(start, anchor_day, price.interval_unit, price.interval_count, 1)


def price_label(price: PlanPrice, quantity: int = 1) -> str:
    every = price.interval_unit if price.interval_count == 1 else f"{price.interval_count} {price.interval_unit}s"
    text = f"{price.plan.name}, {format_money(price.amount, price.currency)} per {every}"
    return text + (f" x {quantity} seats" if quantity > 1 else "")


def move(subscription: Subscription, status: str, *, actor: Actor, now: datetime, **details: Any) -> None:
    """A status move, audited ("subscription.<status>") in the caller's transaction."""
    before = subscription.status
    subscription.status = status
    subscription.updated_at = now
    if status == "past_due" and subscription.past_due_since is None:
        subscription.past_due_since = now
    if status != "past_due":
        subscription.past_due_since = None
    audit(subscription, status, actor=actor, now=now, **{"from": before, **details})


def audit(subscription: Subscription, action: str, *, actor: Actor, now: datetime, **details: Any) -> None:
    record(f"subscription.{action}", subscription, actor=actor, now=now, details=details)
