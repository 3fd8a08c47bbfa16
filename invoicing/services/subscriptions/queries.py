"""Read side of subscriptions for staff: the filtered list (keyset pages, newest first), the plans list, the
client page's panel and each subscription's history (its audit events). Every read is scoped to an
organization; another organization's plan or subscription is NotFound (404)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from invoicing.extensions import db
from invoicing.models import SUBSCRIPTION_STATUSES, AuditEvent, Plan, PlanPrice, Subscription
from invoicing.services import NotFound
from invoicing.services.subscriptions.plans import LIVE, current_prices, describe_price

PAGE_SIZE = 50
HISTORY_LIMIT = 50  # events shown per subscription on the client page


@dataclass(frozen=True)
class SubscriptionFilters:
    status: str | None = None
    plan_id: int | None = None
    currency: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.status or self.plan_id or self.currency)


@dataclass(frozen=True)
class SubscriptionPage:
    rows: list[Subscription]
    next_after: int | None  # the cursor of the next page: the last row's id (newest first)


def _loaded(query):  # noqa: ANN001, ANN202 - a Select of Subscription with what a row shows
    return query.options(joinedload(Subscription.client), joinedload(Subscription.plan),
                         joinedload(Subscription.price), joinedload(Subscription.pending_price))


def list_subscriptions(organization_id: int | None, filters: SubscriptionFilters, *, after: int | None = None,
                       limit: int = PAGE_SIZE) -> SubscriptionPage:
    """Newest first, `limit` a page; `after` is the previous page's `next_after` (a seek on id, so any page
    costs what the first does; ix_subscription_org_status serves the status filter)."""
    query = select(Subscription)
    if organization_id is not None:
        query = query.where(Subscription.organization_id == organization_id)
    if filters.status in SUBSCRIPTION_STATUSES:
        query = query.where(Subscription.status == filters.status)
    if filters.plan_id is not None:
        query = query.where(Subscription.plan_id == filters.plan_id)
    if filters.currency:
        query = query.where(Subscription.currency == filters.currency)
    if after is not None:
        query = query.where(Subscription.id < after)
    rows = list(db.session.execute(_loaded(query.order_by(Subscription.id.desc()).limit(limit + 1)))
                .unique().scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return SubscriptionPage(rows, rows[-1].id if more and rows else None)


def status_counts(organization_id: int | None) -> dict[str, int]:
    query = select(Subscription.status, func.count()).group_by(Subscription.status)
    if organization_id is not None:
        query = query.where(Subscription.organization_id == organization_id)
    return {status: int(n) for status, n in db.session.execute(query).all()}


def currencies(organization_id: int | None) -> list[str]:
    query = select(Subscription.currency).distinct().order_by(Subscription.currency)
    if organization_id is not None:
        query = query.where(Subscription.organization_id == organization_id)
    return list(db.session.execute(query).scalars())


def get_subscription(subscription_id: int, organization_id: int | None) -> Subscription:
    query = _loaded(select(Subscription).where(Subscription.id == subscription_id))
    if organization_id is not None:
        query = query.where(Subscription.organization_id == organization_id)
    subscription = db.session.execute(query).unique().scalar_one_or_none()
    if subscription is None:
        raise NotFound("Subscription not found.")
    return subscription


def client_subscriptions(client_id: int, organization_id: int) -> list[Subscription]:
    """The client's subscriptions: those still billing first, then the ended ones; newest first in each."""
    rows = db.session.execute(_loaded(select(Subscription).where(
        Subscription.client_id == client_id, Subscription.organization_id == organization_id)
        .order_by(Subscription.id.desc()))).unique().scalars()
    return sorted(rows, key=lambda s: s.status not in LIVE)


def history(subscription_ids: Iterable[int]) -> dict[int, list[AuditEvent]]:
    """Each subscription's audit events, newest first (ix_audit_object)."""
    ids = list(subscription_ids)
    out: dict[int, list[AuditEvent]] = {i: [] for i in ids}
    if not ids:
        return out
    events = db.session.execute(select(AuditEvent).where(
        AuditEvent.object_type == "subscription", AuditEvent.object_id.in_(ids))
        .order_by(AuditEvent.id.desc())).scalars()
    for event in events:
        if event.object_id is not None and len(out[event.object_id]) < HISTORY_LIMIT:
            out[event.object_id].append(event)
    return out


# --- plans -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRow:
    plan: Plan
    subscribers: int  # still billing: trialing, active, past due, paused


def list_plans(organization_id: int | None, *, archived: bool | None = False) -> list[PlanRow]:
    """Current plans (archived False), archived ones (True) or all (None), by name."""
    query = select(Plan).options(selectinload(Plan.prices)).order_by(Plan.name, Plan.id)
    if archived is not None:
        query = query.where(Plan.archived_at.is_not(None) if archived else Plan.archived_at.is_(None))
    if organization_id is not None:
        query = query.where(Plan.organization_id == organization_id)
    plans = list(db.session.execute(query).scalars())
    counts = dict(db.session.execute(
        select(Subscription.plan_id, func.count()).where(Subscription.plan_id.in_([p.id for p in plans]),
                                                         Subscription.status.in_(LIVE))
        .group_by(Subscription.plan_id)).all()) if plans else {}
    return [PlanRow(p, int(counts.get(p.id, 0))) for p in plans]


def price_choices(organization_id: int, *, currency: str | None = None,
                  prefer: str | None = None) -> list[tuple[int, str]]:
    """(price id, label) of every current price of the organization's open plans (only `currency`'s if given;
    `prefer`'s first), for "Subscribe this client" and plan changes: "Maintenance — $49.00 every month"."""
    plans = db.session.execute(select(Plan).options(selectinload(Plan.prices)).where(
        Plan.organization_id == organization_id, Plan.archived_at.is_(None)).order_by(Plan.name, Plan.id)).scalars()
    prices = [(plan, price) for plan in plans for price in current_prices(plan) if currency in (None, price.currency)]
    prices.sort(key=lambda row: row[1].currency != prefer)  # stable: plans stay in name order
    return [(price.id, f"{plan.name} — {describe_price(price, per_seat=plan.per_seat)}") for plan, price in prices]


def get_price(price_id: int, organization_id: int) -> PlanPrice:
    price = db.session.execute(select(PlanPrice).join(Plan).where(
        PlanPrice.id == price_id, Plan.organization_id == organization_id)).scalar_one_or_none()
    if price is None:
        raise NotFound("Price not found.")
    return price


def trial_days_left(subscription: Subscription, today: date) -> int | None:
    if subscription.status != "trialing" or subscription.trial_end is None:
        return None
    return max((subscription.trial_end - today).days, 0)
