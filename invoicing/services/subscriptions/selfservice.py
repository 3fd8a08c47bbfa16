"""The client portal's subscription pages (self-service): what a signed-in contact sees of their company's
subscriptions and the actions they may take, always scoped to their client. A subscription of another company
is NotFound, exactly like a missing one. The actions themselves are subs-core's (lifecycle.py, changes.py:
preview_change, change_subscription, cancel_subscription at period end, undo_cancel), which audit every move
and queue the confirmation email of each (notices.py); this module only finds the subscription of this client
and passes plain values on."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import or_, select

from invoicing.extensions import db
from invoicing.models import Contact, Invoice, Plan, PlanPrice, Subscription, SubscriptionChange, SubscriptionPeriod
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor
from invoicing.services.site import Site
from invoicing.services.subscriptions.changes import (
    ChangePreview,
    cancel_pending_change,
    change_subscription,
    preview_change,
)
from invoicing.services.subscriptions.core import MAX_SEATS
from invoicing.services.subscriptions.lifecycle import cancel_subscription, next_invoice_preview, undo_cancel
from invoicing.services.subscriptions.signup import price_label, tax_label

LIVE = ("trialing", "active", "past_due", "paused")  # not ended: the contact may act on it
CHANGEABLE = ("trialing", "active", "past_due")
PAST_INVOICES = 24


def new_request_key() -> str:
    """The token of one confirm form: confirming the same preview twice makes one change."""
    return secrets.token_urlsafe(24)


def client_subscriptions(client_id: int) -> list[Subscription]:
    """The company's subscriptions: live ones first, then the ended and canceled, newest first."""
    rows = db.session.execute(
        select(Subscription).where(Subscription.client_id == client_id).order_by(Subscription.id.desc())
    ).scalars()
    return sorted(rows, key=lambda s: s.status not in LIVE)


def client_subscription(client_id: int, public_id: str) -> Subscription:
    subscription = db.session.execute(
        select(Subscription).where(Subscription.public_id == public_id[:32], Subscription.client_id == client_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if subscription is None:
        raise NotFound("Subscription not found.")
    return subscription


@dataclass(frozen=True)
class SubscriptionView:
    subscription: Subscription
    price: str  # "$98.00 per month (2 seats)"
    tax: str  # "20%", or ""
    next_invoice: tuple[date, int] | None  # date and amount (tax included), while it renews
    pending: str  # "Changes to Basic ($19.00 per month) on Apr 1, 2026", or ""
    invoices: list[Invoice]  # newest first

    @property
    def live(self) -> bool:
        return self.subscription.status in LIVE

    @property
    def can_change(self) -> bool:
        return self.subscription.status in CHANGEABLE and not self.subscription.cancel_at_period_end


def subscription_view(subscription: Subscription, *, now: datetime) -> SubscriptionView:
    upcoming = None
    if subscription.status in CHANGEABLE and not subscription.cancel_at_period_end:
        upcoming = next_invoice_preview(subscription, now=now)
    pending = ""
    if subscription.pending_price is not None or subscription.pending_quantity is not None:
        price = subscription.pending_price or subscription.price
        quantity = subscription.pending_quantity or subscription.quantity
        pending = f"Changes to {price.plan.name} ({price_label(price, quantity)})"
    return SubscriptionView(subscription, price_label(subscription.price, subscription.quantity),
                            tax_label(subscription.plan), upcoming, pending, _invoices(subscription))


def _invoices(subscription: Subscription) -> list[Invoice]:
    """The subscription's invoices (each period's and each change's), newest first; drafts are not shown."""
    periods = select(SubscriptionPeriod.invoice_id).where(SubscriptionPeriod.subscription_id == subscription.id)
    changes = select(SubscriptionChange.invoice_id).where(SubscriptionChange.subscription_id == subscription.id,
                                                          SubscriptionChange.invoice_id.is_not(None))
    return list(db.session.execute(
        select(Invoice).where(Invoice.client_id == subscription.client_id, Invoice.status != "draft",
                              or_(Invoice.id.in_(periods), Invoice.id.in_(changes)))
        .order_by(Invoice.issue_date.desc(), Invoice.id.desc()).limit(PAST_INVOICES)
    ).scalars())


def change_options(subscription: Subscription) -> list[PlanPrice]:
    """The prices a contact may move to: in the subscription's currency, of the organization's plans open to
    sign-up (public, not archived), and its own plan's; the current price first."""
    prices = db.session.execute(
        select(PlanPrice).join(Plan, Plan.id == PlanPrice.plan_id)
        .where(Plan.organization_id == subscription.organization_id, PlanPrice.currency == subscription.currency,
               PlanPrice.archived_at.is_(None), Plan.archived_at.is_(None),
               or_(Plan.public.is_(True), Plan.id == subscription.plan_id))
        .order_by(Plan.name, PlanPrice.amount, PlanPrice.id)
    ).scalars()
    current = subscription.price
    return [current, *(price for price in prices if price.id != current.id)]


def _change_values(subscription: Subscription, price_id: int | None, quantity: int | None) -> tuple[int, int]:
    """The target price and seats, or DomainError saying what to fix."""
    if subscription.status not in CHANGEABLE:
        raise DomainError("This subscription cannot be changed any more.")
    if subscription.cancel_at_period_end:
        raise DomainError("This subscription ends at the end of its period. Resume it first to change it.")
    price = next((p for p in change_options(subscription) if p.id == price_id), None)
    if price is None:
        raise DomainError("Choose one of the plans offered.")
    seats = subscription.quantity if quantity is None else quantity
    if not price.plan.per_seat:
        seats = 1
    elif not 1 <= seats <= MAX_SEATS:
        raise DomainError(f"Choose between 1 and {MAX_SEATS:,} seats.")
    if price.id == subscription.price_id and seats == subscription.quantity:
        raise DomainError("That is your current plan: choose another plan or another number of seats.")
    return price.id, seats


def preview(contact: Contact, public_id: str, *, price_id: int | None, quantity: int | None,
            now: datetime) -> tuple[Subscription, ChangePreview]:
    """What the change would cost (subs-core's ChangePreview), before the contact confirms."""
    subscription = client_subscription(contact.client_id, public_id)
    target, seats = _change_values(subscription, price_id, quantity)
    return subscription, preview_change(subscription.id, contact.organization_id, price_id=target, quantity=seats,
                                        now=now)


def change(contact: Contact, public_id: str, *, price_id: int | None, quantity: int | None, request_key: str,
           site: Site, now: datetime) -> SubscriptionChange:
    """The confirmed change: made once per confirm form (request_key)."""
    subscription = client_subscription(contact.client_id, public_id)
    key = request_key[:64] or None
    made = db.session.execute(select(SubscriptionChange).where(
        SubscriptionChange.request_key == key, SubscriptionChange.subscription_id == subscription.id)
    ).scalar_one_or_none() if key else None
    if made is not None:
        return made  # this confirm form was sent before: that change
    target, seats = _change_values(subscription, price_id, quantity)
    return change_subscription(subscription.id, contact.organization_id, price_id=target, quantity=seats,
                               request_key=key, actor=Actor.contact(contact), now=now, site=site)


def cancel(contact: Contact, public_id: str, *, reason: str, site: Site, now: datetime) -> Subscription:
    """Cancel at the end of the period (a contact never cancels now: that is staff's, with a refund)."""
    subscription = client_subscription(contact.client_id, public_id)
    if subscription.status not in CHANGEABLE:
        raise DomainError("This subscription cannot be cancelled from here any more.")
    if subscription.cancel_at_period_end:
        return subscription  # cancelled already (a second click)
    return cancel_subscription(subscription.id, contact.organization_id, at_period_end=True, refund_unused=False,
                               reason=" ".join(reason.split())[:200], actor=Actor.contact(contact), now=now,
                               site=site)


def resume(contact: Contact, public_id: str, *, site: Site, now: datetime) -> Subscription:
    """Undo a cancellation at period end, until the period ends."""
    subscription = client_subscription(contact.client_id, public_id)
    if not subscription.cancel_at_period_end:
        return subscription  # not cancelled (a second click)
    return undo_cancel(subscription.id, contact.organization_id, actor=Actor.contact(contact), now=now, site=site)


def change_message(made: SubscriptionChange) -> str:
    """What the page says once a change is confirmed."""
    price = db.session.get(PlanPrice, made.to_price_id)
    assert price is not None
    label = f"{price.plan.name} ({price_label(price, made.to_quantity)})"
    if made.status == "scheduled":
        return f"Your change to {label} takes effect on {made.effective_on:%b %-d, %Y}."
    return f"Your subscription is now {label}."


def keep_current(contact: Contact, public_id: str, *, site: Site, now: datetime) -> Subscription:
    """Drop the change scheduled for the period's end (a downgrade): the current plan stays."""
    subscription = client_subscription(contact.client_id, public_id)
    if subscription.pending_price_id is None and subscription.pending_quantity is None:
        return subscription  # nothing scheduled (a second click)
    return cancel_pending_change(subscription.id, contact.organization_id, actor=Actor.contact(contact), now=now,
                                 site=site)
