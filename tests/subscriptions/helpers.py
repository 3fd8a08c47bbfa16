"""Shared helpers for the subscription tests: plans made as rows (plan administration is services/subscriptions
/plans.py's, another module), the engine's calls with the test site, and what it wrote."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import (
    AuditEvent,
    CreditEntry,
    Invoice,
    Organization,
    Plan,
    PlanPrice,
    Subscription,
    SubscriptionPeriod,
)
from invoicing.services.db import atomic
from invoicing.services.subscriptions import lifecycle
from tests.conftest import SYSTEM
from tests.services.billing.helpers import site


def make_plan(org: Organization, name: str = "Basic", *, prices: tuple[tuple[str, int, str, int], ...] = (
        ("USD", 1000, "month", 1),), trial_days: int = 0, tax_rate_milli: int = 0, per_seat: bool = False,
        setup_fee: int = 0, slug: str | None = None) -> Plan:
    """A plan with its prices: (currency, amount, interval unit, interval count)."""
    with atomic():
        plan = Plan(organization_id=org.id, name=name, description="", slug=slug or f"{org.slug}-{name.lower()}",
                    public=True, trial_days=trial_days, tax_rate_milli=tax_rate_milli, per_seat=per_seat)
        plan.prices = [PlanPrice(currency=c, amount=a, interval_unit=u, interval_count=n, setup_fee=setup_fee)
                       for c, a, u, n in prices]
        db.session.add(plan)
    return plan


def subscribe(client: Any, price: PlanPrice, *, now: datetime, **kwargs: Any) -> Subscription:
    return lifecycle.create_subscription(client.organization_id, client_id=client.id, price_id=price.id, actor=SYSTEM,
                                         now=now, site=site(), **kwargs)


def period_invoices(subscription: Subscription) -> list[Invoice]:
    db.session.expire_all()
    return list(db.session.execute(
        select(Invoice).join(SubscriptionPeriod, SubscriptionPeriod.invoice_id == Invoice.id)
        .where(SubscriptionPeriod.subscription_id == subscription.id).order_by(SubscriptionPeriod.period_start))
        .scalars())


def moves(subscription: Subscription) -> list[str]:
    return list(db.session.execute(select(AuditEvent.action).where(
        AuditEvent.object_type == "subscription", AuditEvent.object_id == subscription.id).order_by(AuditEvent.id))
        .scalars())


def credits(client: Any) -> list[tuple[str, int]]:
    return [(e.reason, e.amount) for e in db.session.execute(
        select(CreditEntry).where(CreditEntry.client_id == client.id).order_by(CreditEntry.id)).scalars()]


def fresh(subscription: Subscription) -> Subscription:
    db.session.expire_all()
    found = db.session.get(Subscription, subscription.id)
    assert found is not None
    return found
