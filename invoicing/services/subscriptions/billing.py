"""A subscription's invoices: each period's (exactly once: UNIQUE(subscription, period start)) and the difference
of an upgrade. Made as drafts (services/invoices.new_draft), numbered when issued and sent like recurring
invoices (services/sending.send_locked), which hands them to autopay (invoices.finalize schedules the client's
card when autopay is on): that is the whole handoff.

Credit: a client's credit balance (CreditEntry, per currency, kept before tax) is applied to the next period
invoice as a line of its own, "Credit from your balance" with a negative amount, so the client sees it on the
invoice page and the PDF, and the tax is computed on what is actually charged. It is the one kind of line
with a negative price, made only here (new_draft(credit_lines=True)); it is at most what the other lines come
to, one minor unit less while tax rounding would otherwise take the total below zero, so a total is never
negative. The negative "applied" CreditEntry names the invoice: UNIQUE(invoice, reason) applies it once.
A period paid entirely by credit is numbered and marked paid at once (nothing to charge, no email to pay).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import exists, func, select

from invoicing.extensions import db
from invoicing.models import (
    MILLI,
    AutopayConsent,
    Client,
    CreditEntry,
    Invoice,
    PlanPrice,
    Subscription,
    SubscriptionPeriod,
)
from invoicing.services.audit import record
from invoicing.services.invoices import DraftData, LineData, finalize, new_draft
from invoicing.services.payments import recompute_balance
from invoicing.services.sending import send_locked
from invoicing.services.site import Site
from invoicing.services.subscriptions.core import ACTOR
from invoicing.services.totals import LineInput, compute_totals

CREDIT_LINE = "Credit from your balance"


def tax_rate(price: PlanPrice) -> Decimal:
    return Decimal(price.plan.tax_rate_milli) / MILLI


def period_lines(subscription: Subscription, price: PlanPrice, quantity: int, start: date, end: date, *,
                 first: bool) -> list[LineData]:
    last = end - timedelta(days=1)
    lines = [LineData(f"{price.plan.name}: {start.isoformat()} to {last.isoformat()}"
                      + (" (per seat)" if price.plan.per_seat else ""), Decimal(quantity), price.amount,
                      tax_rate(price))]
    if first and price.setup_fee:
        lines.append(LineData(f"{price.plan.name}: setup fee", Decimal(1), price.setup_fee, tax_rate(price)))
    return lines


def credit_balance(client_id: int, currency: str) -> int:
    return int(db.session.scalar(select(func.coalesce(func.sum(CreditEntry.amount), 0)).where(
        CreditEntry.client_id == client_id, CreditEntry.currency == currency.upper())) or 0)


def lock_client(client_id: int) -> None:
    """The client's row lock: two invoices of one client never spend the same credit (PostgreSQL; SQLite's
    write transaction already serializes)."""
    db.session.execute(select(Client.id).where(Client.id == client_id).with_for_update())


def credit_to_apply(lines: list[LineData], balance: int) -> int:
    """As much of the balance as the lines can take, the total staying >= 0 after each line's tax rounding."""
    if balance <= 0 or not lines:
        return 0
    inputs = [LineInput(li.quantity, li.unit_price, li.tax_rate) for li in lines]
    credit = min(balance, compute_totals(inputs).subtotal)
    rate = lines[0].tax_rate
    while credit > 0 and compute_totals([*inputs, LineInput(Decimal(1), -credit, rate)]).total < 0:
        credit -= 1
    return credit


def has_period(subscription_id: int) -> bool:
    return bool(db.session.scalar(select(exists().where(SubscriptionPeriod.subscription_id == subscription_id))))


def autopay_on(client_id: int) -> bool:
    return bool(db.session.scalar(select(exists().where(AutopayConsent.client_id == client_id,
                                                        AutopayConsent.ended_at.is_(None)))))


def due_date(subscription: Subscription, issue: date) -> date:
    """Charged by autopay on the day it is issued; without a card the organization's payment terms apply."""
    if autopay_on(subscription.client_id):
        return issue
    return issue + timedelta(days=subscription.organization.payment_terms_days)


@dataclass(frozen=True)
class Issued:
    invoice: Invoice
    sent: bool
    credit_applied: int


def invoice_period(subscription: Subscription, start: date, end: date, *, now: datetime, site: Site,
                   due: date | None = None) -> Issued:
    """Invoice the period [start, end) at the subscription's price (the setup fee on its first invoice),
    credit applied, numbered and sent; the SubscriptionPeriod row makes it once (IntegrityError otherwise)."""
    price = subscription.price
    lines = period_lines(subscription, price, subscription.quantity, start, end,
                         first=not has_period(subscription.id))
    lock_client(subscription.client_id)
    credit = credit_to_apply(lines, credit_balance(subscription.client_id, subscription.currency))
    if credit:
        lines.append(LineData(CREDIT_LINE, Decimal(1), -credit, tax_rate(price)))
    invoice = make_invoice(subscription, lines, issue=start, due=due or due_date(subscription, start), now=now,
                           what=f"the period from {start.isoformat()}")
    db.session.add(SubscriptionPeriod(subscription_id=subscription.id, period_start=start, period_end=end,
                                      invoice_id=invoice.id, created_at=now))
    db.session.flush()  # UNIQUE(subscription, period start): a second invoice of this period stops here
    if credit:
        db.session.add(CreditEntry(organization_id=subscription.organization_id, client_id=subscription.client_id,
                                   currency=subscription.currency, amount=-credit, reason="applied",
                                   description=f"Applied to the invoice of {start.isoformat()}",
                                   subscription_id=subscription.id, invoice_id=invoice.id, created_at=now))
    sent = issue_invoice(invoice, now=now, site=site)
    return Issued(invoice, sent, credit)


def make_invoice(subscription: Subscription, lines: list[LineData], *, issue: date, due: date, now: datetime,
                 what: str) -> Invoice:
    """A draft of the subscription's; `what` says why on the invoice's timeline ("the period from ...")."""
    data = DraftData(client_id=subscription.client_id, currency=subscription.currency, issue_date=issue,
                     due_date=due, lines=tuple(lines), contact_id=subscription.contact_id,
                     notes=f"Subscription {subscription.public_id}")
    invoice = new_draft(subscription.organization, data, actor=ACTOR, now=now, credit_lines=True)
    record("invoice.subscription", invoice, actor=ACTOR, now=now, details={
        "subscription_id": subscription.id, "plan": subscription.plan.name, "what": what})
    return invoice


def issue_invoice(invoice: Invoice, *, now: datetime, site: Site) -> bool:
    """Number it and email it with its pay link (finalize hands it to autopay); True when an email was queued.
    Nobody to email: numbered all the same (autopay can charge it; staff see it). Zero: paid by credit."""
    if invoice.total == 0:
        finalize(invoice, actor=ACTOR, now=now, expiry_days=site.paylink_expiry_days, allow_zero=True)
        recompute_balance(invoice, now=now)
        record("invoice.paid_by_credit", invoice, actor=ACTOR, now=now)
        return False
    if invoice.contact is not None and invoice.contact.email or invoice.client.email:
        send_locked(invoice, actor=ACTOR, now=now, config=site)
        return True
    finalize(invoice, actor=ACTOR, now=now, expiry_days=site.paylink_expiry_days)
    record("invoice.not_sent", invoice, actor=ACTOR, now=now, details={"reason": "the client has no billing email"})
    return False
