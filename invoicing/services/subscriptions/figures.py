"""Headline subscription figures per currency, for the Subscriptions page (never summed across currencies).

What is counted:
- MRR (monthly recurring revenue): every active or past-due subscription's price × seats, brought to one month
  (a yearly price counts 1/12 a month, every N months 1/N, every N years 1/(12N)), before tax, without setup
  fees or one-off proration invoices. Trialing, paused, canceled and ended subscriptions count nothing; a
  subscription set to cancel at period end counts until it ends; a downgrade waiting for the period end counts
  at the current price. Summed exactly (fractions), rounded half up once, to a whole minor unit.
- Active: status active (cancel at period end included). Trials: trialing. Past due: past_due. Paused: paused.
- Churn, last 30 days: subscriptions that stopped (status canceled or ended, stopped at `ended_at`, else
  `canceled_at`) in the 30 days before now, among those that were paying when the window began, ÷ those paying when
  the window began: created before it, trial over by then (no trial, or trial_end on or before its first day),
  not stopped before it. Pauses are not in the record of that moment, so a subscription paused then still counts.
  No subscription paying at the window's start: no rate ("—").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import and_, case, func, or_, select

from invoicing.extensions import db
from invoicing.models import PlanPrice, Subscription

CHURN_WINDOW = timedelta(days=30)
MRR_STATUSES = ("active", "past_due")
STOPPED = ("canceled", "ended")


@dataclass(frozen=True)
class CurrencyFigures:
    currency: str
    mrr: int  # minor units a month
    active: int
    trialing: int
    past_due: int
    paused: int
    churned: int  # stopped in the window, among `churn_base`
    churn_base: int  # paying when the window began

    @property
    def churn_rate(self) -> Decimal | None:
        """Percent, one decimal; None when nobody was paying at the window's start."""
        if not self.churn_base:
            return None
        return (Decimal(self.churned * 100) / self.churn_base).quantize(Decimal("0.1"))


def months_in(unit: str, count: int) -> int:
    return count * (12 if unit == "year" else 1)


def round_half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)).__floor__()) if value >= 0 else -round_half_up(-value)


def headline(organization_id: int, *, now: datetime) -> list[CurrencyFigures]:
    """The figures of every currency the organization has subscriptions in, by currency code: one pass over
    the organization's subscriptions, grouped by currency, status and interval, summed here exactly."""
    start = now - CHURN_WINDOW
    stopped_at = case((Subscription.status.in_(STOPPED),
                       func.coalesce(Subscription.ended_at, Subscription.canceled_at)), else_=None)
    paying_at_start = and_(Subscription.created_at < start,
                           or_(Subscription.trial_end.is_(None), Subscription.trial_end <= start.date()),
                           or_(stopped_at.is_(None), stopped_at >= start))
    churned = and_(paying_at_start, stopped_at >= start, stopped_at < now)
    rows = db.session.execute(
        select(Subscription.currency, Subscription.status, PlanPrice.interval_unit, PlanPrice.interval_count,
               func.count(), func.sum(PlanPrice.amount * Subscription.quantity),
               func.sum(case((paying_at_start, 1), else_=0)), func.sum(case((churned, 1), else_=0)))
        .join(PlanPrice, PlanPrice.id == Subscription.price_id)
        .where(Subscription.organization_id == organization_id)
        .group_by(Subscription.currency, Subscription.status, PlanPrice.interval_unit, PlanPrice.interval_count)
    ).all()
    mrr: dict[str, Fraction] = {}
    counts: dict[str, dict[str, int]] = {}
    for currency, status, unit, interval, n, total, base, gone in rows:
        mrr.setdefault(currency, Fraction(0))
        if status in MRR_STATUSES:
            mrr[currency] += Fraction(int(total), months_in(unit, interval))
        tally = counts.setdefault(currency, {})
        for key, value in ((status, n), ("base", base), ("churned", gone)):
            tally[key] = tally.get(key, 0) + int(value or 0)
    return [CurrencyFigures(currency=c, mrr=round_half_up(mrr[c]), active=n.get("active", 0),
                            trialing=n.get("trialing", 0), past_due=n.get("past_due", 0), paused=n.get("paused", 0),
                            churned=n["churned"], churn_base=n["base"])
            for c, n in sorted(counts.items())]
