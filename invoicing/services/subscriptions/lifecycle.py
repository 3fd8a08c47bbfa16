"""A subscription's life: sign-up (trial or first invoice), each period's invoice (job `subscriptions`, exactly
once), status moves, cancellation, pause and resume. Every move is an AuditEvent "subscription.<what>" and
emails the client a confirmation (notices.py).

Statuses: trialing -> active at the trial's end (first invoice issued and charged); active <-> past_due (the
first failed charge, or an invoice unpaid on the day after its due date; paying it, by card, link or by hand,
makes it active again); paused (staff: no invoices) -> active; canceled (now: by staff, or when the autopay
ladder ends unpaid and the organization's setting says so) and ended (a cancellation at period end, reached)
are final.

Time: a period's work is done at the organization's send hour on its first day (as recurring profiles), dates
are the organization's local dates; periods fall on `anchor_day`, clamped to shorter months.

Exactly once: the sweep locks each subscription (FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE), re-checks it
is due, and writes the period's invoice with a SubscriptionPeriod row, UNIQUE(subscription, period start): an
IntegrityError means another scheduler made it. Periods missed while the app was down are each invoiced once,
dated for their period; periods that fall while paused are not invoiced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import func, or_, select, union_all
from sqlalchemy.exc import IntegrityError

from invoicing.extensions import db
from invoicing.jobs import register
from invoicing.models import (
    AuditEvent,
    Client,
    Contact,
    Invoice,
    Organization,
    Plan,
    PlanPrice,
    Subscription,
    SubscriptionChange,
    SubscriptionPeriod,
)
from invoicing.money import format_money
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor
from invoicing.services.billing.autopay import AutopayOutcome, on_autopay_outcome
from invoicing.services.db import atomic
from invoicing.services.site import Site
from invoicing.services.subscriptions import billing, notices
from invoicing.services.subscriptions.core import (
    ACTOR,
    FINAL,
    LIVE,
    MAX_SEATS,
    audit,
    lock,
    locked,
    moment,
    move,
    period_end,
    price_label,
    today,
)
from invoicing.services.subscriptions.proration import card_step, days_left, share
from invoicing.services.totals import LineInput, compute_totals

log = logging.getLogger(__name__)

TRIAL_NOTICE_DAYS = 3
MAX_TRIAL_DAYS = 730
MAX_CATCH_UP = 24  # periods of one subscription per run
UNPAID_ACTIONS = ("cancel", "leave_unpaid")


# --- sign-up ---------------------------------------------------------------------------------------------


def _price(organization_id: int, price_id: int) -> PlanPrice:
    price = db.session.get(PlanPrice, price_id)
    if price is None or price.plan.organization_id != organization_id:
        raise NotFound("Price not found.")
    return price


def check_quantity(plan: Plan, quantity: int) -> None:
    if not 1 <= quantity <= MAX_SEATS:
        raise DomainError(f"The number of seats must be between 1 and {MAX_SEATS:,}.")
    if quantity > 1 and not plan.per_seat:
        raise DomainError(f"{plan.name} is not sold per seat: the quantity is 1.")


def create_subscription(organization_id: int, *, client_id: int, price_id: int, quantity: int = 1,
                        trial_days: int | None = None, charge_now: bool = True, contact_id: int | None = None,
                        consent_id: int | None = None, signup_key: str | None = None, actor: Actor,
                        now: datetime, site: Site) -> Subscription:
    """Put a client on a price. With a trial (None: the plan's trial days; 0: none) it is `trialing` and the
    first invoice comes at the trial's end; without, the first period's invoice is issued now (due at once and
    charged by autopay when `charge_now`, else due after the organization's payment terms). `signup_key` (the
    sign-up form's token): the same key twice returns the same subscription; with it and a non-staff actor (the
    public sign-up page, which sends its own welcome), no "subscribed" email."""
    if signup_key is not None and (existing := _by_signup_key(signup_key, organization_id)) is not None:
        return existing
    try:
        with atomic():
            subscription = _create(organization_id, client_id=client_id, price_id=price_id, quantity=quantity,
                                   trial_days=trial_days, charge_now=charge_now, contact_id=contact_id,
                                   consent_id=consent_id, signup_key=signup_key, actor=actor, now=now, site=site)
    except IntegrityError:
        if signup_key is not None and (existing := _by_signup_key(signup_key, organization_id)) is not None:
            return existing  # the same form submitted twice at once: the other request made it
        raise
    return subscription


def _by_signup_key(signup_key: str, organization_id: int) -> Subscription | None:
    return db.session.execute(select(Subscription).where(
        Subscription.signup_key == signup_key, Subscription.organization_id == organization_id)).scalar_one_or_none()


def _create(organization_id: int, *, client_id: int, price_id: int, quantity: int, trial_days: int | None,
            charge_now: bool, contact_id: int | None, consent_id: int | None, signup_key: str | None, actor: Actor,
            now: datetime, site: Site) -> Subscription:
    organization = db.session.get(Organization, organization_id)
    if organization is None:
        raise NotFound("Organization not found.")
    price = _price(organization_id, price_id)
    plan = price.plan
    if plan.archived_at is not None or price.archived_at is not None:
        raise DomainError(f"{plan.name} is no longer offered: choose another plan.")
    check_quantity(plan, quantity)
    client = db.session.get(Client, client_id)
    if client is None or client.organization_id != organization_id:
        raise NotFound("Client not found.")
    if client.archived_at is not None:
        raise DomainError("This client is archived.")
    if contact_id is not None:
        contact = db.session.get(Contact, contact_id)
        if contact is None or contact.client_id != client.id:
            raise DomainError("The contact does not belong to this client.")
    days = plan.trial_days if trial_days is None else trial_days
    if not 0 <= days <= MAX_TRIAL_DAYS:
        raise DomainError(f"A trial lasts 0 to {MAX_TRIAL_DAYS} days.")
    start = today(organization, now)
    trial_end = start + timedelta(days=days) if days else None
    anchor = trial_end or start
    subscription = Subscription(
        organization_id=organization_id, client_id=client.id, contact_id=contact_id, plan_id=plan.id,
        price_id=price.id, quantity=quantity, currency=price.currency, status="trialing" if trial_end else "active",
        anchor_day=anchor.day, current_period_start=start,
        current_period_end=trial_end or period_end(start, anchor.day, price), trial_end=trial_end,
        consent_id=consent_id, signup_key=signup_key, cancel_reason="", created_at=now, updated_at=now)
    db.session.add(subscription)
    db.session.flush()
    audit(subscription, "created", actor=actor, now=now, status=subscription.status, price_id=price.id,
          quantity=quantity, trial_end=trial_end.isoformat() if trial_end else None)
    rows = [("Plan", price_label(price, quantity))]
    if trial_end:
        rows.append(("Trial ends", notices.day(trial_end)))
        paragraphs = [f"Your free trial of {plan.name} has started. Nothing is charged before "
                      f"{notices.day(trial_end)}; we will remind you {TRIAL_NOTICE_DAYS} days before."]
    else:
        due = start if charge_now else start + timedelta(days=organization.payment_terms_days)
        issued = billing.invoice_period(subscription, start, subscription.current_period_end, now=now, site=site,
                                        due=billing.due_date(subscription, start) if charge_now else due)
        rows.append(("First invoice", f"{issued.invoice.number}, "
                     f"{format_money(issued.invoice.total, issued.invoice.currency)}"))
        paragraphs = [f"Your subscription to {plan.name} has started. Your first invoice is on its way."]
    rows.append(("Renews on", notices.day(subscription.current_period_end)))
    if signup_key is not None and actor.type != "user":  # the public sign-up sends its own welcome (signup.py)
        return subscription
    notices.notify(subscription, "created", subject=f"Your subscription to {plan.name}", paragraphs=paragraphs,
                   rows=rows, now=now, site=site)
    return subscription


# --- cancel, undo, pause, resume -------------------------------------------------------------------------


def cancel_subscription(subscription_id: int, organization_id: int | None, *, at_period_end: bool = True,
                        refund_unused: bool = False, reason: str = "", actor: Actor, now: datetime,
                        site: Site) -> Subscription:
    """At period end (default; undoable until then: it then `ended`), or now (staff only: `canceled` at once,
    optionally refunding the unused part of the current period's payment through the refund door)."""
    reason = reason.strip()[:200]
    if not at_period_end and actor.type not in ("user", "system"):
        raise DomainError("Only staff can cancel a subscription at once; it can be canceled at the period's end.")
    if at_period_end and refund_unused:
        raise DomainError("A subscription canceled at the period's end is used until then: nothing to refund.")
    refund: tuple[int, int] | None = None
    with atomic():
        subscription = locked(subscription_id, organization_id)
        if subscription.status in FINAL:
            raise DomainError(f"This subscription is already {subscription.status}.")
        if refund_unused:
            refund = _unused_payment(subscription, now)
        if at_period_end:
            if subscription.cancel_at_period_end:
                raise DomainError("This subscription is already set to cancel at the period's end.")
            _schedule_cancel(subscription, reason=reason, actor=actor, now=now, site=site)
            return subscription
    if refund is not None:
        _refund(subscription, *refund, reason=reason or "subscription canceled", actor=actor, now=now)
    with atomic():
        subscription = locked(subscription_id, organization_id)
        if subscription.status in FINAL:
            raise DomainError(f"This subscription is already {subscription.status}.")
        _cancel_now(subscription, reason=reason, actor=actor, now=now, site=site,
                    refunded=refund[1] if refund else 0)
    return subscription


def _schedule_cancel(subscription: Subscription, *, reason: str, actor: Actor, now: datetime, site: Site) -> None:
    subscription.cancel_at_period_end, subscription.cancel_reason = True, reason
    subscription.updated_at = now
    _drop_pending(subscription, now=now)
    ends = subscription.current_period_end
    audit(subscription, "cancel_scheduled", actor=actor, now=now, ends_on=ends.isoformat(), reason=reason)
    notices.notify(subscription, f"cancel:{now.isoformat()}", subject=f"Your {subscription.plan.name} subscription "
                   f"ends on {notices.day(ends)}",
                   paragraphs=[f"As asked, your subscription to {subscription.plan.name} ends on {notices.day(ends)}. "
                               "Nothing more will be invoiced. Changed your mind? Keep it from the client portal "
                               "until then."], now=now, site=site)


def _cancel_now(subscription: Subscription, *, reason: str, actor: Actor, now: datetime, site: Site,
                refunded: int = 0) -> None:
    subscription.canceled_at = subscription.ended_at = now
    subscription.cancel_reason = reason
    subscription.cancel_at_period_end = False
    _drop_pending(subscription, now=now)
    move(subscription, "canceled", actor=actor, now=now, reason=reason, refunded=refunded)
    paragraphs = [f"Your subscription to {subscription.plan.name} was canceled today. Nothing more will be invoiced."]
    if refunded:
        paragraphs.append(f"{format_money(refunded, subscription.currency)} for the unused part of the period is "
                          "being refunded to your card.")
    notices.notify(subscription, "canceled", subject=f"Your {subscription.plan.name} subscription was canceled",
                   paragraphs=paragraphs, now=now, site=site)


def _drop_pending(subscription: Subscription, *, now: datetime) -> None:
    """A scheduled downgrade no longer happens (an upgrade replaced it, or the subscription stops)."""
    if subscription.pending_price_id is None and subscription.pending_quantity is None:
        return
    subscription.pending_price_id = subscription.pending_quantity = None
    for change in db.session.execute(select(SubscriptionChange).where(
            SubscriptionChange.subscription_id == subscription.id, SubscriptionChange.status == "scheduled")).scalars():
        change.status = "canceled"


def _current_invoice(subscription: Subscription) -> Invoice | None:
    return db.session.execute(select(Invoice).join(SubscriptionPeriod, SubscriptionPeriod.invoice_id == Invoice.id)
                              .where(SubscriptionPeriod.subscription_id == subscription.id,
                                     SubscriptionPeriod.period_start == subscription.current_period_start)
                              ).scalar_one_or_none()


def _unused_payment(subscription: Subscription, now: datetime) -> tuple[int, int] | None:
    """(invoice id, amount): the unused part of what was paid for the current period (whole local days)."""
    invoice = _current_invoice(subscription)
    if invoice is None or invoice.amount_paid <= 0:
        raise DomainError("Nothing was paid for the current period: there is nothing to refund.")
    start, end = subscription.current_period_start, subscription.current_period_end
    left = days_left(today(subscription.organization, now), start, end)
    amount = share(invoice.amount_paid, left, (end - start).days, card_step(invoice.currency))
    return (invoice.id, amount) if amount > 0 else None


def _refund(subscription: Subscription, invoice_id: int, amount: int, *, reason: str, actor: Actor,
            now: datetime) -> None:
    """Through the refund door (services/refunds.py), across the period invoice's payments, oldest first."""
    from invoicing.gateways import get_gateway
    from invoicing.services.refunds import refund_payment, refundable_payments

    gateway = get_gateway(current_app.config)
    left = amount
    for payment in refundable_payments(invoice_id):
        part = min(left, payment.amount - payment.amount_refunded)
        refund_payment(invoice_id, payment.id, amount=part, reason=reason, key=f"sub{subscription.id}",
                       actor=actor, gateway=gateway, now=now)
        left -= part
        if left == 0:
            break


def undo_cancel(subscription_id: int, organization_id: int | None, *, actor: Actor, now: datetime,
                site: Site) -> Subscription:
    """Keep a subscription set to cancel at period end (until that end comes)."""
    with atomic():
        subscription = locked(subscription_id, organization_id)
        if subscription.status in FINAL:
            raise DomainError(f"This subscription is {subscription.status}; start a new one.")
        if not subscription.cancel_at_period_end:
            raise DomainError("This subscription is not set to cancel.")
        subscription.cancel_at_period_end, subscription.cancel_reason = False, ""
        subscription.updated_at = now
        audit(subscription, "cancel_undone", actor=actor, now=now)
        notices.notify(subscription, f"kept:{now.isoformat()}", subject=f"Your {subscription.plan.name} "
                       "subscription continues", paragraphs=[
                           f"Your subscription to {subscription.plan.name} will not end: it renews on "
                           f"{notices.day(subscription.current_period_end)} as before."], now=now, site=site)
    return subscription


def pause_subscription(subscription_id: int, organization_id: int | None, *, actor: Actor, now: datetime,
                       site: Site) -> Subscription:
    """Staff: no invoices while paused (the period already paid runs on)."""
    _staff_only(actor, "pause")
    with atomic():
        subscription = locked(subscription_id, organization_id)
        if subscription.status not in ("active", "past_due"):
            raise DomainError(f"This subscription is {subscription.status}; only an active one can be paused.")
        subscription.paused_at = now
        move(subscription, "paused", actor=actor, now=now)
        notices.notify(subscription, f"paused:{now.isoformat()}", subject=f"Your {subscription.plan.name} "
                       "subscription is paused", paragraphs=[
                           f"{subscription.organization.name} paused your subscription to {subscription.plan.name}: "
                           "nothing is invoiced until it resumes."], now=now, site=site)
    return subscription


def resume_subscription(subscription_id: int, organization_id: int | None, *, actor: Actor, now: datetime,
                        site: Site) -> Subscription:
    """Staff: active again. Within the period already invoiced nothing changes; after it, a new period starts
    today (invoiced now) and periods that fell while paused are not invoiced."""
    _staff_only(actor, "resume")
    with atomic():
        subscription = locked(subscription_id, organization_id)
        if subscription.status != "paused":
            raise DomainError(f"This subscription is {subscription.status}; only a paused one can be resumed.")
        organization = subscription.organization
        local = today(organization, now)
        subscription.paused_at = None
        skipped_from = None
        if local >= subscription.current_period_end:
            skipped_from = subscription.current_period_end
            _apply_pending(subscription, now=now)
            subscription.anchor_day = local.day
            subscription.current_period_start = local
            subscription.current_period_end = period_end(local, local.day, subscription.price)
        move(subscription, "active", actor=actor, now=now, resumed=True,
             skipped_from=skipped_from.isoformat() if skipped_from else None)
        if skipped_from is not None:
            billing.invoice_period(subscription, local, subscription.current_period_end, now=now, site=site)
        notices.notify(subscription, f"resumed:{now.isoformat()}", subject=f"Your {subscription.plan.name} "
                       "subscription is active again", paragraphs=[
                           f"Your subscription to {subscription.plan.name} is active again."],
                       rows=[("Renews on", notices.day(subscription.current_period_end))], now=now, site=site)
    return subscription


def _staff_only(actor: Actor, what: str) -> None:
    if actor.type not in ("user", "system"):
        raise DomainError(f"Only staff can {what} a subscription.")


def set_unpaid_action(organization_id: int, action: str, *, actor: Actor, now: datetime) -> None:
    """What happens when the autopay ladder ends unpaid: "cancel" the subscription or "leave_unpaid"."""
    from invoicing.services.audit import record

    if action not in UNPAID_ACTIONS:
        raise DomainError("Choose to cancel the subscription or leave it unpaid.")
    with atomic():
        organization = db.session.get(Organization, organization_id)
        if organization is None:
            raise NotFound("Organization not found.")
        before, organization.subscription_unpaid = organization.subscription_unpaid, action
        record("organization.subscription_unpaid", organization, actor=actor, now=now,
               details={"before": before, "after": action})


# --- the sweep (job "subscriptions") ---------------------------------------------------------------------


@dataclass
class RenewalReport:
    invoiced: int = 0
    ended: int = 0
    reminded: int = 0
    past_due: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"subscriptions: {self.invoiced} invoice(s) made, {self.ended} ended, {self.reminded} trial "
                f"reminder(s), {self.past_due} now past due")
        return text + (f"; {len(self.errors)} error(s): " + "; ".join(self.errors[:5]) if self.errors else "")


@dataclass(frozen=True)
class PlannedRenewal:
    subscription_id: int
    organization_id: int
    client_name: str
    plan_name: str
    period_start: date
    at: datetime
    amount: int  # before credit
    currency: str
    action: str  # invoice, end


def plan(*, now: datetime, until: datetime | None = None, organization_id: int | None = None) -> list[PlannedRenewal]:
    """The renewals runs from `now` to `until` (default now) would do (each subscription's next one)."""
    until = until or now
    query = (select(Subscription, Organization, Client.name)
             .join(Organization, Organization.id == Subscription.organization_id)
             .join(Client, Client.id == Subscription.client_id)
             .where(Subscription.status.in_(LIVE), Organization.archived_at.is_(None),
                    Subscription.current_period_end <= (until + timedelta(days=1)).date())
             .order_by(Subscription.current_period_end, Subscription.id))
    if organization_id is not None:
        query = query.where(Subscription.organization_id == organization_id)
    planned = []
    for subscription, organization, client_name in db.session.execute(query).all():
        at = moment(organization, subscription.current_period_end)
        if at > until:
            continue
        price, quantity = _next_price(subscription)
        planned.append(PlannedRenewal(subscription.id, organization.id, client_name, subscription.plan.name,
                                      subscription.current_period_end, at, price.amount * quantity,
                                      subscription.currency, "end" if subscription.cancel_at_period_end else "invoice"))
    return planned


def renew_due(*, now: datetime, site: Site, organization_id: int | None = None) -> RenewalReport:
    """Everything due: trial reminders, each period's invoice (missed ones too, each once), scheduled ends,
    and invoices unpaid after their due date (past_due). One transaction per subscription."""
    report = RenewalReport()
    report.reminded = remind_trials(now=now, site=site, organization_id=organization_id)
    ids = list(dict.fromkeys(p.subscription_id for p in plan(now=now, organization_id=organization_id)))
    db.session.rollback()  # end the read before the writes
    for subscription_id in ids:
        for _ in range(MAX_CATCH_UP):
            try:
                done = renew_one(subscription_id, now=now, site=site)
            except DomainError as exc:
                db.session.rollback()
                report.errors.append(f"subscription {subscription_id}: {exc}")
                break
            if done is None:
                break
            if done == "ended":
                report.ended += 1
                break
            report.invoiced += 1
            if done == "invoiced":  # the next period is not due yet: no need to look again
                break
    report.past_due = mark_past_due(now=now, organization_id=organization_id)
    return report


def renew_one(subscription_id: int, *, now: datetime, site: Site) -> str | None:
    """The subscription's next period if its time has come: "invoiced", "invoiced_more" (the period after is
    due too: a catch-up), "ended", or None (nothing to do, or another scheduler holds it or made this period)."""
    try:
        with atomic():
            subscription = lock(subscription_id, None, skip_locked=True)
            if subscription is None or subscription.status not in LIVE:
                return None
            organization = subscription.organization
            start = subscription.current_period_end
            if organization.is_archived or moment(organization, start) > now:
                return None
            if subscription.cancel_at_period_end:
                _end(subscription, now=now, site=site)
                return "ended"
            if subscription.client.archived_at is not None:
                _cancel_now(subscription, reason="the client is archived", actor=ACTOR, now=now, site=site)
                return "ended"
            _renew(subscription, start, now=now, site=site)
            more = moment(organization, subscription.current_period_end) <= now
    except IntegrityError:  # another process invoiced this very period a moment ago: done, once
        log.info("subscription %s: period already invoiced by another process", subscription_id)
        return None
    return "invoiced_more" if more else "invoiced"


def _renew(subscription: Subscription, start: date, *, now: datetime, site: Site) -> None:
    _apply_pending(subscription, now=now)
    end = period_end(start, subscription.anchor_day, subscription.price)
    issued = billing.invoice_period(subscription, start, end, now=now, site=site)
    trial_over = subscription.status == "trialing"
    subscription.current_period_start, subscription.current_period_end = start, end
    subscription.updated_at = now
    if trial_over:
        move(subscription, "active", actor=ACTOR, now=now, trial_ended=True, invoice_id=issued.invoice.id)
    audit(subscription, "renewed", actor=ACTOR, now=now, period_start=start.isoformat(), period_end=end.isoformat(),
          invoice_id=issued.invoice.id, number=issued.invoice.number, total=issued.invoice.total,
          credit_applied=issued.credit_applied, sent=issued.sent)


def _apply_pending(subscription: Subscription, *, now: datetime) -> None:
    """A downgrade (or fewer seats) scheduled for the period's end takes effect as the new period starts."""
    if subscription.pending_price_id is None and subscription.pending_quantity is None:
        return
    before = (subscription.price_id, subscription.quantity)
    if subscription.pending_price_id is not None:
        price = db.session.get(PlanPrice, subscription.pending_price_id)
        assert price is not None
        subscription.price_id, subscription.plan_id = price.id, price.plan_id
    if subscription.pending_quantity is not None:
        subscription.quantity = subscription.pending_quantity
    subscription.pending_price_id = subscription.pending_quantity = None
    for change in db.session.execute(select(SubscriptionChange).where(
            SubscriptionChange.subscription_id == subscription.id, SubscriptionChange.status == "scheduled")).scalars():
        change.status = "applied"
    db.session.flush()
    db.session.refresh(subscription, ["price", "plan"])
    audit(subscription, "change_applied", actor=ACTOR, now=now, from_price_id=before[0], from_quantity=before[1],
          price_id=subscription.price_id, quantity=subscription.quantity)


def _end(subscription: Subscription, *, now: datetime, site: Site) -> None:
    subscription.ended_at = now
    subscription.canceled_at = subscription.canceled_at or now
    subscription.cancel_at_period_end = False
    move(subscription, "ended", actor=ACTOR, now=now, reason=subscription.cancel_reason)
    notices.notify(subscription, "ended", subject=f"Your {subscription.plan.name} subscription has ended",
                   paragraphs=[f"Your subscription to {subscription.plan.name} ended today, as asked. Thank you!"],
                   now=now, site=site)


def remind_trials(*, now: datetime, site: Site, organization_id: int | None = None) -> int:
    """"Your trial ends in 3 days", once per subscription, at the send hour three days before its end."""
    horizon = (now + timedelta(days=TRIAL_NOTICE_DAYS + 1)).date()
    query = select(Subscription.id).where(Subscription.status == "trialing", Subscription.trial_reminded_at.is_(None),
                                          Subscription.trial_end <= horizon)
    if organization_id is not None:
        query = query.where(Subscription.organization_id == organization_id)
    ids = list(db.session.execute(query).scalars())
    db.session.rollback()
    sent = 0
    for subscription_id in ids:
        with atomic():
            subscription = lock(subscription_id, None, skip_locked=True)
            if subscription is None or subscription.status != "trialing" or subscription.trial_reminded_at:
                continue
            organization = subscription.organization
            assert subscription.trial_end is not None
            if organization.is_archived or moment(organization, subscription.trial_end
                                                  - timedelta(days=TRIAL_NOTICE_DAYS)) > now:
                continue
            subscription.trial_reminded_at = now
            when, amount = next_invoice_preview(subscription, now=now) or (subscription.trial_end, 0)
            audit(subscription, "trial_reminded", actor=ACTOR, now=now, trial_end=subscription.trial_end.isoformat())
            notices.notify(subscription, "trial_ending", subject=f"Your {subscription.plan.name} trial ends on "
                           f"{notices.day(subscription.trial_end)}", paragraphs=[
                               f"Your free trial of {subscription.plan.name} ends on "
                               f"{notices.day(subscription.trial_end)}. Your first invoice is issued that day"
                               + (" and charged to your saved card." if billing.autopay_on(subscription.client_id)
                                  else "; pay it from the link in its email."),
                               "Nothing to do to continue. To stop before then, cancel from the client portal."],
                           rows=[("First invoice",
                                  f"{notices.day(when)}, {format_money(amount, subscription.currency)}")],
                           now=now, site=site)
            sent += 1
    return sent


def mark_past_due(*, now: datetime, organization_id: int | None = None) -> int:
    """Active subscriptions with an invoice still unpaid after its due date (the organization's date) are
    past_due: the usual case without a card, or a charge that has not happened."""
    query = (select(Subscription.id, Invoice.due_date, Organization)
             .join(SubscriptionPeriod, SubscriptionPeriod.subscription_id == Subscription.id)
             .join(Invoice, Invoice.id == SubscriptionPeriod.invoice_id)
             .join(Organization, Organization.id == Subscription.organization_id)
             .where(Subscription.status == "active", Invoice.status.in_(("open", "processing")),
                    Invoice.due_date < now.date()))
    if organization_id is not None:
        query = query.where(Subscription.organization_id == organization_id)
    ids = list(dict.fromkeys(sid for sid, due, org in db.session.execute(query).all() if due < today(org, now)))
    db.session.rollback()
    moved = 0
    for subscription_id in ids:
        with atomic():
            subscription = lock(subscription_id, None, skip_locked=True)
            if subscription is not None and subscription.status == "active":
                move(subscription, "past_due", actor=ACTOR, now=now, reason="an invoice is unpaid after its due date")
                moved += 1
    return moved


@register("subscriptions", every_seconds=900)
def subscriptions_job(now: datetime, dry_run: bool) -> str:
    """Invoice subscriptions whose period has started, remind trials ending, mark unpaid ones past due."""
    if dry_run:
        planned = plan(now=now)
        db.session.rollback()
        lines = [f"  {p.plan_name} ({p.client_name}): {'ends' if p.action == 'end' else 'period from'} "
                 f"{p.period_start.isoformat()}" for p in planned[:50]]
        more = [f"  ... and {len(planned) - 50} more"] if len(planned) > 50 else []
        return "\n".join([f"subscriptions would renew {len(planned)} subscription(s)", *lines, *more])
    return str(renew_due(now=now, site=Site.from_config(current_app.config)))


# --- what comes next, and money heard from elsewhere ------------------------------------------------------


def _next_price(subscription: Subscription) -> tuple[PlanPrice, int]:
    price = subscription.pending_price or subscription.price
    return price, subscription.pending_quantity or subscription.quantity


def next_invoice_preview(subscription: Subscription, *, now: datetime) -> tuple[date, int] | None:
    """The next period invoice's date and amount (minor units, tax and the client's credit included); None
    when none is coming (canceled, ended, paused, or set to cancel at the period's end)."""
    if subscription.status not in LIVE or subscription.cancel_at_period_end:
        return None
    price, quantity = _next_price(subscription)
    start = subscription.current_period_end
    lines = billing.period_lines(subscription, price, quantity, start, period_end(start, subscription.anchor_day,
                                                                                  price),
                                 first=not billing.has_period(subscription.id))
    credit = billing.credit_to_apply(lines, billing.credit_balance(subscription.client_id, subscription.currency))
    inputs = [LineInput(li.quantity, li.unit_price, li.tax_rate) for li in lines]
    if credit:
        inputs.append(LineInput(Decimal(1), -credit, lines[0].tax_rate))
    return start, compute_totals(inputs).total


def subscription_of_invoice(invoice_id: int) -> int | None:
    """The subscription an invoice bills (a period's, or a plan change's difference)."""
    periods = select(SubscriptionPeriod.subscription_id).where(SubscriptionPeriod.invoice_id == invoice_id)
    changes = select(SubscriptionChange.subscription_id).where(SubscriptionChange.invoice_id == invoice_id)
    return db.session.scalar(union_all(periods, changes).limit(1))  # one statement: the money door asks each time


def on_invoice_paid(invoice: Invoice, *, now: datetime) -> None:
    """Called by the money door (payments.recompute_balance) when an invoice becomes paid, under its lock:
    a past_due subscription whose unpaid invoices are now all paid is active again."""
    subscription_id = subscription_of_invoice(invoice.id)
    if subscription_id is None:
        return
    subscription = lock(subscription_id, None)
    if subscription is None or subscription.status != "past_due" or _unpaid_overdue(subscription, now, invoice.id):
        return
    move(subscription, "active", actor=ACTOR, now=now, paid_invoice_id=invoice.id)


def _unpaid_overdue(subscription: Subscription, now: datetime, paid_id: int) -> bool:
    periods = select(SubscriptionPeriod.invoice_id).where(SubscriptionPeriod.subscription_id == subscription.id)
    changes = select(SubscriptionChange.invoice_id).where(SubscriptionChange.subscription_id == subscription.id,
                                                          SubscriptionChange.invoice_id.is_not(None))
    return bool(db.session.scalar(select(Invoice.id).where(
        Invoice.id != paid_id, Invoice.status.in_(("open", "processing")),
        Invoice.due_date < today(subscription.organization, now),
        or_(Invoice.id.in_(periods), Invoice.id.in_(changes))).limit(1)))


@on_autopay_outcome
def on_charge_outcome(outcome: AutopayOutcome) -> None:
    """Autopay's outcome listener (services/billing/autopay.on_autopay_outcome), in its transaction: a failed
    charge makes the subscription past_due; the ladder's final failure cancels it or leaves it unpaid (the
    organization's setting); a success makes it active again."""
    subscription_id = subscription_of_invoice(outcome.invoice_id)
    if subscription_id is None:
        return
    subscription = lock(subscription_id, None)
    if subscription is None or subscription.status in FINAL:
        return
    now = _outcome_time(outcome.invoice_id)
    if outcome.status == "succeeded" and subscription.status == "past_due":
        move(subscription, "active", actor=ACTOR, now=now, invoice_id=outcome.invoice_id)
    elif outcome.status in ("retry_scheduled", "failed") and subscription.status in ("active", "trialing"):
        move(subscription, "past_due", actor=ACTOR, now=now, invoice_id=outcome.invoice_id,
             decline_code=outcome.decline_code)
    if outcome.status == "failed" and outcome.final and subscription.organization.subscription_unpaid == "cancel":
        _cancel_now(subscription, reason="unpaid", actor=ACTOR, now=now,
                    site=Site.from_config(current_app.config))


def _outcome_time(invoice_id: int) -> datetime:
    """When autopay recorded this outcome: its newest audit row on the invoice, written in this very
    transaction (the outcome carries no time; the job's `now` is the time of its run)."""
    at = db.session.scalar(select(func.max(AuditEvent.created_at)).where(
        AuditEvent.object_type == "invoice", AuditEvent.object_id == invoice_id,
        AuditEvent.action.like("autopay.%")))
    return at or datetime.now(UTC)
