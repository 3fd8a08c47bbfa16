"""Plain factories for the staff subscription tests: plans through the plans service, and subscription rows in
a given state for the read side (list, figures) — the engine's own paths are exercised in test_admin_client_panel."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from invoicing.extensions import db
from invoicing.models import Client, Plan, PlanPrice, Subscription
from invoicing.services.db import atomic
from invoicing.services.subscriptions import plans
from tests.conftest import NOW, SYSTEM


def make_plan(org_id: int, name: str = "Support", *prices: plans.PriceData, **settings: Any) -> Plan:
    return plans.create_plan(org_id, plans.PlanData(name=name, prices=prices or (plans.PriceData("USD", 4900),),
                                                    **settings), actor=SYSTEM, now=NOW)


def price_of(plan: Plan, currency: str | None = None, unit: str | None = None) -> PlanPrice:
    return next(p for p in plan.prices if p.archived_at is None and currency in (None, p.currency)
                and unit in (None, p.interval_unit))


def subscription_row(client: Client, price: PlanPrice, *, status: str = "active", quantity: int = 1,
                     created: datetime = NOW - timedelta(days=90), stopped: datetime | None = None,
                     trial_end: date | None = None) -> Subscription:
    """A subscription in `status`, as the engine would have left it (for reads only)."""
    start = NOW.date() - timedelta(days=5)
    subscription = Subscription(
        organization_id=client.organization_id, client_id=client.id, plan_id=price.plan_id, price_id=price.id,
        quantity=quantity, currency=price.currency, status=status, anchor_day=start.day, current_period_start=start,
        current_period_end=start + timedelta(days=30), trial_end=trial_end, created_at=created, updated_at=created,
        canceled_at=stopped if status == "canceled" else None, ended_at=stopped if status == "ended" else None)
    with atomic():
        db.session.add(subscription)
    return subscription
