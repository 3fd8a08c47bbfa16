"""Plan and seat changes, from the portal or by staff, previewed before they are confirmed.

- An upgrade (costs more per month than now, or the same) or more seats takes effect now, prorated on whole
  days of the organization's time zone (proration.py): credit for the unused part of the current period at the
  old price, charge for the rest at the new price. Above zero, the difference is invoiced at once (both lines
  on the invoice, the credit as a negative line) and charged by autopay; below zero it is kept as the client's
  credit (CreditEntry "proration") and applied to the next invoice. A change of interval (monthly to yearly)
  starts a new period today, charged whole, less the credit.
- A downgrade or fewer seats takes effect at the period's end (pending_price_id / pending_quantity, a
  `scheduled` SubscriptionChange); a later change replaces it; choosing the current plan again drops it.
- During a trial nothing was paid: the change applies now with no proration.

One SubscriptionChange per request (`request_key`: a resubmitted form returns the first one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from invoicing.extensions import db
from invoicing.models import (
    CreditEntry,
    Invoice,
    InvoiceAutopay,
    PlanPrice,
    Subscription,
    SubscriptionChange,
    SubscriptionPeriod,
)
from invoicing.money import format_money
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor
from invoicing.services.db import atomic
from invoicing.services.invoices import LineData
from invoicing.services.site import Site
from invoicing.services.subscriptions import billing, notices
from invoicing.services.subscriptions.core import FINAL, audit, locked, period_end, price_label, today
from invoicing.services.subscriptions.lifecycle import _drop_pending, check_quantity
from invoicing.services.subscriptions.proration import Proration, card_step, compare_cost, months, prorate
from invoicing.services.totals import LineInput, compute_totals

__all__ = ["ChangePreview", "cancel_pending_change", "change_subscription", "credit_balance", "migrate_price",
           "preview_change"]

credit_balance = billing.credit_balance


@dataclass(frozen=True)
class ChangePreview:
    """What the client sees before confirming. lines: (description, signed minor units), credit lines negative,
    then the tax when there is any; credit and charge before tax; net = the proration invoice's total (tax
    included): > 0 invoiced now, < 0 kept as credit (-net, before tax: `kept`), 0 nothing to pay now."""

    kind: str  # upgrade | downgrade | quantity
    takes_effect: str  # "now" | "period_end"
    effective_on: date
    lines: tuple[tuple[str, int], ...]
    credit: int
    charge: int
    net: int
    currency: str
    kept: int = 0  # credit kept for the next invoice (before tax)


@dataclass(frozen=True)
class _Plan:
    price: PlanPrice
    quantity: int
    kind: str
    now: bool
    effective_on: date
    proration: Proration | None  # None: nothing to prorate (a trial, or at period end)
    new_period_end: date | None  # the interval changes: a new period [today, new_period_end)
    lines: tuple[LineData, ...]


def _target_price(subscription: Subscription, price_id: int) -> PlanPrice:
    price = db.session.get(PlanPrice, price_id)
    if price is None or price.plan.organization_id != subscription.organization_id:
        raise NotFound("Price not found.")
    if price.id != subscription.price_id:
        if price.archived_at is not None or price.plan.archived_at is not None:
            raise DomainError(f"{price.plan.name} at this price is no longer offered: choose another.")
        if price.currency != subscription.currency:
            raise DomainError(f"This subscription is billed in {subscription.currency}: choose a price in "
                              f"{subscription.currency}.")
    return price


def _plan(subscription: Subscription, price_id: int, quantity: int, local: date) -> _Plan:
    if subscription.status not in ("trialing", "active"):
        why = {"past_due": "pay the open invoice first", "paused": "it is paused"}.get(subscription.status,
                                                                                        f"it is {subscription.status}")
        raise DomainError(f"This subscription cannot change now: {why}.")
    if subscription.cancel_at_period_end:
        raise DomainError("This subscription is set to cancel: keep it first, then change it.")
    price = _target_price(subscription, price_id)
    check_quantity(price.plan, quantity)
    old = subscription.price
    if (price.id, quantity) == (old.id, subscription.quantity):
        raise DomainError("That is the current plan." if subscription.pending_price_id is None
                          and subscription.pending_quantity is None else
                          "That is the current plan: cancel the scheduled change instead.")
    cost = compare_cost((old.amount, subscription.quantity, months(old.interval_unit, old.interval_count)),
                        (price.amount, quantity, months(price.interval_unit, price.interval_count)))
    kind = "quantity" if price.id == old.id else ("downgrade" if cost < 0 else "upgrade")
    start, end = subscription.current_period_start, subscription.current_period_end
    if subscription.status == "trialing":
        return _Plan(price, quantity, kind, True, local, None, None, ())
    if cost < 0:
        return _Plan(price, quantity, kind, False, end, None, None, ())
    interval_changes = (price.interval_unit, price.interval_count) != (old.interval_unit, old.interval_count)
    new_end = period_end(local, local.day, price) if interval_changes else None
    proration = prorate(old_amount=old.amount, old_quantity=subscription.quantity, new_amount=price.amount,
                        new_quantity=quantity, start=start, end=end, today=local, new_period_end=new_end,
                        step=card_step(price.currency))
    last = (new_end or end) - timedelta(days=1)
    lines = []
    if proration.credit:
        lines.append(LineData(f"Unused time on {price_label(old, subscription.quantity)} "
                              f"({proration.days_left} of {proration.period_days} days)", Decimal(1),
                              -proration.credit, billing.tax_rate(old)))
    if proration.charge:
        days = f"{proration.days_left} of {proration.period_days} days" if new_end is None else "a new period"
        lines.append(LineData(f"{price_label(price, quantity)}: {local.isoformat()} to {last.isoformat()} ({days})",
                              Decimal(1), proration.charge, billing.tax_rate(price)))
    return _Plan(price, quantity, kind, True, local, proration, new_end, tuple(lines))


def _totals(lines: tuple[LineData, ...]) -> tuple[int, int]:
    """(tax, total) of the proration lines."""
    totals = compute_totals([LineInput(li.quantity, li.unit_price, li.tax_rate) for li in lines])
    return totals.tax, totals.total


def _preview(subscription: Subscription, planned: _Plan) -> ChangePreview:
    tax, net = _totals(planned.lines)
    lines = tuple((li.description, li.unit_price) for li in planned.lines)
    if tax:
        lines += (("Tax", tax),)
    proration = planned.proration
    return ChangePreview(planned.kind, "now" if planned.now else "period_end", planned.effective_on, lines,
                         proration.credit if proration else 0, proration.charge if proration else 0, net,
                         subscription.currency, kept=max(0, -proration.net) if proration else 0)


def preview_change(subscription_id: int, organization_id: int | None, *, price_id: int, quantity: int,
                   now: datetime) -> ChangePreview:
    subscription = db.session.get(Subscription, subscription_id)
    if subscription is None or (organization_id is not None and subscription.organization_id != organization_id):
        raise NotFound("Subscription not found.")
    return _preview(subscription, _plan(subscription, price_id, quantity, today(subscription.organization, now)))


def change_subscription(subscription_id: int, organization_id: int | None, *, price_id: int, quantity: int,
                        request_key: str | None, actor: Actor, now: datetime, site: Site) -> SubscriptionChange:
    """Apply a change as previewed (upgrade now with proration, downgrade at period end). The same request_key
    twice returns the first change."""
    if request_key is not None and (done := _by_key(request_key, subscription_id)) is not None:
        return done
    try:
        with atomic():
            subscription = locked(subscription_id, organization_id)
            change = _apply(subscription, price_id, quantity, request_key=request_key, actor=actor, now=now, site=site)
    except IntegrityError:
        if request_key is not None and (done := _by_key(request_key, subscription_id)) is not None:
            return done
        raise
    if change.invoice_id is not None:
        _charge_now(change.invoice_id, now=now, site=site)
    return change


def _charge_now(invoice_id: int, *, now: datetime, site: Site) -> None:
    """An upgrade's difference is charged at once (committed first: autopay writes its attempt before the call),
    whatever the consent's timing; a decline follows autopay's ladder, an unknown outcome its reconciliation."""
    from invoicing.gateways import current_gateway
    from invoicing.services.billing.charges import charge_invoice

    with atomic():
        state = db.session.get(InvoiceAutopay, invoice_id, populate_existing=True)
        if state is None or state.status != "scheduled":
            return  # not on autopay: the invoice went out with its pay link
        state.next_charge_at = now
    charge_invoice(invoice_id, now=now, gateway=current_gateway(), site=site)


def _by_key(request_key: str, subscription_id: int) -> SubscriptionChange | None:
    return db.session.execute(select(SubscriptionChange).where(
        SubscriptionChange.request_key == request_key,
        SubscriptionChange.subscription_id == subscription_id)).scalar_one_or_none()


def _apply(subscription: Subscription, price_id: int, quantity: int, *, request_key: str | None, actor: Actor,
           now: datetime, site: Site) -> SubscriptionChange:
    local = today(subscription.organization, now)
    planned = _plan(subscription, price_id, quantity, local)
    old_price, old_quantity = subscription.price, subscription.quantity
    proration = planned.proration
    _drop_pending(subscription, now=now)
    change = SubscriptionChange(
        subscription_id=subscription.id, kind=planned.kind, from_price_id=old_price.id, to_price_id=planned.price.id,
        from_quantity=old_quantity, to_quantity=quantity, status="applied" if planned.now else "scheduled",
        effective_on=planned.effective_on, credit=proration.credit if proration else 0,
        charge=proration.charge if proration else 0, request_key=request_key, actor_type=actor.type,
        actor_label=actor.label, created_at=now)
    db.session.add(change)
    db.session.flush()
    if not planned.now:
        subscription.pending_price_id = planned.price.id if planned.price.id != old_price.id else None
        subscription.pending_quantity = quantity if quantity != old_quantity else None
    else:
        subscription.price_id, subscription.plan_id, subscription.quantity = (planned.price.id, planned.price.plan_id,
                                                                              quantity)
        if planned.new_period_end is not None:
            subscription.anchor_day = local.day
            subscription.current_period_start, subscription.current_period_end = local, planned.new_period_end
        db.session.flush()
        db.session.refresh(subscription, ["price", "plan"])
    subscription.updated_at = now
    invoice = _settle(subscription, change, planned, now=now, site=site) if proration else None
    audit(subscription, "changed", actor=actor, now=now, change_id=change.id, kind=planned.kind,
          takes_effect="now" if planned.now else "period_end", from_price_id=old_price.id,
          from_quantity=old_quantity, price_id=planned.price.id, quantity=quantity, credit=change.credit,
          charge=change.charge, invoice_id=invoice.id if invoice else None)
    _confirm(subscription, change, planned, old_price, old_quantity, invoice_total=invoice.total if invoice else None,
             now=now, site=site)
    return change


def _settle(subscription: Subscription, change: SubscriptionChange, planned: _Plan, *, now: datetime,
            site: Site) -> Invoice | None:
    """The difference: invoiced and charged now when above zero, else kept as the client's credit."""
    assert planned.proration is not None
    net = planned.proration.net
    if net < 0:
        db.session.add(CreditEntry(organization_id=subscription.organization_id, client_id=subscription.client_id,
                                   currency=subscription.currency, amount=-net, reason="proration",
                                   description=f"Unused time after the change on {planned.effective_on.isoformat()}",
                                   subscription_id=subscription.id, change_id=change.id, created_at=now))
        return None
    if net == 0:
        return None
    local = planned.effective_on
    invoice = billing.make_invoice(subscription, list(planned.lines), issue=local,
                                   due=billing.due_date(subscription, local), now=now,
                                   what=f"the plan change of {local.isoformat()}")
    change.invoice_id = invoice.id
    if planned.new_period_end is not None:  # the new period is this invoice's
        db.session.add(SubscriptionPeriod(subscription_id=subscription.id, period_start=local,
                                          period_end=planned.new_period_end, invoice_id=invoice.id, created_at=now))
    db.session.flush()
    billing.issue_invoice(invoice, now=now, site=site)
    return invoice


def _confirm(subscription: Subscription, change: SubscriptionChange, planned: _Plan, old_price: PlanPrice,
             old_quantity: int, *, invoice_total: int | None, now: datetime, site: Site) -> None:
    new = price_label(planned.price, planned.quantity)
    rows = [("Before", price_label(old_price, old_quantity)), ("After", new)]
    if planned.now:
        paragraphs = [f"Your subscription changed to {new}, from today."]
        if invoice_total:
            rows.append(("Charged now", format_money(invoice_total, subscription.currency)))
        elif planned.proration is not None and planned.proration.net < 0:
            rows.append(("Credit for your next invoice", format_money(-planned.proration.net, subscription.currency)))
    else:
        paragraphs = [f"Your subscription changes to {new} on {notices.day(planned.effective_on)}, when the current "
                      "period ends. Until then nothing changes."]
    notices.notify(subscription, f"change:{change.id}", subject=f"Your {subscription.plan.name} subscription: plan "
                   "change confirmed", paragraphs=paragraphs, rows=rows, now=now, site=site)


def cancel_pending_change(subscription_id: int, organization_id: int | None, *, actor: Actor, now: datetime,
                          site: Site) -> Subscription:
    """Keep the current plan: the downgrade scheduled for the period's end does not happen."""
    with atomic():
        subscription = locked(subscription_id, organization_id)
        if subscription.pending_price_id is None and subscription.pending_quantity is None:
            raise DomainError("No change is scheduled.")
        _drop_pending(subscription, now=now)
        subscription.updated_at = now
        audit(subscription, "change_canceled", actor=actor, now=now)
        notices.notify(subscription, f"change_canceled:{now.isoformat()}", subject=f"Your {subscription.plan.name} "
                       "subscription stays as it is", paragraphs=[
                           f"The scheduled change was canceled: you keep "
                           f"{price_label(subscription.price, subscription.quantity)}."], now=now, site=site)
    return subscription


def migrate_price(subscription_id: int, organization_id: int | None, *, price_id: int, request_key: str | None,
                  actor: Actor, now: datetime, site: Site) -> SubscriptionChange:
    """Staff move a subscriber to a new price of the same plan (plans.migrate_subscribers, after a price
    changed): no proration, from the current period's end (the renewal bills the new price), audited
    "subscription.migrated" and the client emailed. Allowed from an archived price and while trialing, active,
    past_due or paused. The same request_key twice returns the first change."""
    if request_key is not None and (done := _by_key(request_key, subscription_id)) is not None:
        return done
    try:
        with atomic():
            subscription = locked(subscription_id, organization_id)
            change = _migrate(subscription, price_id, request_key=request_key, actor=actor, now=now, site=site)
    except IntegrityError:
        if request_key is not None and (done := _by_key(request_key, subscription_id)) is not None:
            return done
        raise
    return change


def _migrate(subscription: Subscription, price_id: int, *, request_key: str | None, actor: Actor, now: datetime,
             site: Site) -> SubscriptionChange:
    if subscription.status in FINAL:
        raise DomainError(f"This subscription is {subscription.status}: there is nothing to migrate.")
    price = db.session.get(PlanPrice, price_id)
    if price is None or price.plan.organization_id != subscription.organization_id:
        raise NotFound("Price not found.")
    if price.plan_id != subscription.plan_id or price.currency != subscription.currency:
        raise DomainError(f"Migrate to a price of {subscription.plan.name} in {subscription.currency}.")
    if price.archived_at is not None:
        raise DomainError("That price is archived: migrate to the plan's current price.")
    if price.id == subscription.price_id:
        raise DomainError("This subscription already has that price.")
    if subscription.pending_price_id not in (None, price.id):
        raise DomainError("Another plan change is scheduled for this subscription's period end.")
    old = subscription.price
    effective = subscription.current_period_end
    change = SubscriptionChange(
        subscription_id=subscription.id, kind="migration", from_price_id=old.id, to_price_id=price.id,
        from_quantity=subscription.quantity, to_quantity=subscription.quantity, status="scheduled",
        effective_on=effective, credit=0, charge=0, request_key=request_key, actor_type=actor.type,
        actor_label=actor.label, created_at=now)
    db.session.add(change)
    db.session.flush()
    subscription.pending_price_id = price.id
    subscription.updated_at = now
    audit(subscription, "migrated", actor=actor, now=now, change_id=change.id, from_price_id=old.id,
          price_id=price.id, from_amount=old.amount, amount=price.amount, effective_on=effective.isoformat())
    before, after = price_label(old, subscription.quantity), price_label(price, subscription.quantity)
    notices.notify(subscription, f"migrated:{change.id}", subject=f"Your {subscription.plan.name} price changes on "
                   f"{notices.day(effective)}", paragraphs=[
                       f"The price of your subscription changes from {before} to {after} on "
                       f"{notices.day(effective)}, when the current period ends. Nothing changes before then; "
                       "you can change or cancel your subscription from the client portal."],
                   rows=[("Before", before), ("From " + notices.day(effective), after)], now=now, site=site)
    return change
