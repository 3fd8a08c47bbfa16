"""A subscription's life through time (time-machine), charged by autopay at the Stripe test server, emails through a
real SMTP server: sign-up with a trial, the trial-ending email, the first charge, three renewals, an upgrade
mid-period (amounts by hand), a downgrade at the period's end, a pause and a resume, then a renewal whose card
is declined through the 3/7/14 ladder to canceled (the organization's default)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.mail import deliver_due
from invoicing.models import Invoice, Payment
from invoicing.services.audit import Actor
from invoicing.services.payments import apply_payment
from invoicing.services.subscriptions import changes, lifecycle
from tests.conftest import SYSTEM
from tests.services.billing.autopay_support import attempts, charge_now, stripe_card
from tests.services.billing.helpers import site, utc
from tests.subscriptions.helpers import fresh, make_plan, moves, period_invoices


def at(time_machine: Any, *when: int) -> datetime:
    time_machine.move_to(utc(*when), tick=False)
    return datetime.now(UTC)


def day(time_machine: Any, *when: int) -> datetime:
    """One scheduler tick: the subscriptions sweep, then the charge job (as the scheduler runs them)."""
    now = at(time_machine, *when)
    report = lifecycle.renew_due(now=now, site=site())
    assert not report.errors, report.errors
    charge_now(now)
    return now


def inbox(smtp: Any, now: datetime) -> list[str]:
    deliver_due(now=now)
    subjects = sorted(m["Subject"] for m in smtp.messages)
    smtp.clear()
    return subjects


def paid(invoice_id: int) -> tuple[str, int]:
    db.session.rollback()
    invoice = db.session.get(Invoice, invoice_id)
    assert invoice is not None
    return invoice.status, sum(p.amount for p in db.session.execute(
        select(Payment).where(Payment.invoice_id == invoice_id, Payment.status == "succeeded")).scalars())


def test_a_subscription_through_its_life(world, stripe_app, smtp, time_machine):
    org = world.org_a  # New York: work is done at 09:00 local, 13:00 UTC in summer
    basic = make_plan(org, "Basic", prices=(("USD", 2900, "month", 1),), trial_days=14)
    pro = make_plan(org, "Pro", prices=(("USD", 9900, "month", 1),))
    contact = world.client_a.contacts[0]
    card = stripe_card(stripe_app, world.client_a, now=utc(2026, 3, 10, 14))

    # Signed up by staff with a 14-day trial on March 10 (the public page's sign-up makes the same call).
    now = at(time_machine, 2026, 3, 10, 15)
    sub = lifecycle.create_subscription(org.id, client_id=world.client_a.id, price_id=basic.prices[0].id,
                                        contact_id=contact.id, signup_key="staff:1", actor=Actor.user(world.alice),
                                        now=now, site=site())
    assert (sub.status, sub.trial_end) == ("trialing", date(2026, 3, 24))
    assert inbox(smtp, now) == ["Your subscription to Basic"]

    # Three days before the trial ends: the email.
    now = day(time_machine, 2026, 3, 21, 13, 5)
    assert inbox(smtp, now) == ["Your Basic trial ends on March 24, 2026"]
    assert period_invoices(sub) == []

    # The trial ends: the first invoice, issued and charged to the saved card.
    now = day(time_machine, 2026, 3, 24, 13, 5)
    [first] = period_invoices(sub)
    assert paid(first.id) == ("paid", 2900)
    assert fresh(sub).status == "active"
    received = inbox(smtp, now)
    assert f"Invoice {first.number} from Org A" in received[0] or any(first.number in s for s in received)
    assert any("receipt" in s.lower() for s in received)

    # Three renewals, each invoiced once and charged once.
    for month in (4, 5, 6):
        day(time_machine, 2026, month, 24, 13, 5)
        day(time_machine, 2026, month, 24, 13, 35)  # a second tick the same day changes nothing
    invoices = period_invoices(sub)
    assert [i.issue_date for i in invoices] == [date(2026, m, 24) for m in (3, 4, 5, 6)]
    assert [paid(i.id) for i in invoices] == [("paid", 2900)] * 4
    assert stripe_app.count("payment_intents") == 4

    # Upgrade on July 3 in a period of June 24 to July 24 (30 days): 21 days left (July 3..23).
    # Credit 2900 x 21/30 = 2030, charge 9900 x 21/30 = 6930: 4900 invoiced and charged at once.
    now = at(time_machine, 2026, 7, 3, 15)
    preview = changes.preview_change(sub.id, None, price_id=pro.prices[0].id, quantity=1, now=now)
    assert (preview.credit, preview.charge, preview.net, preview.takes_effect) == (2030, 6930, 4900, "now")
    upgrade = changes.change_subscription(sub.id, None, price_id=pro.prices[0].id, quantity=1, request_key="up",
                                          actor=Actor.contact(contact), now=now, site=site())
    charge_now(now)
    assert paid(upgrade.invoice_id) == ("paid", 4900)
    assert [(li.description, li.amount) for li in db.session.get(Invoice, upgrade.invoice_id).lines] == [
        ("Unused time on Basic, $29.00 per month (21 of 30 days)", -2030),
        ("Pro, $99.00 per month: 2026-07-03 to 2026-07-23 (21 of 30 days)", 6930)]
    assert "Your Pro subscription: plan change confirmed" in inbox(smtp, now)

    # Downgrade on July 10: at the period's end (July 24), Basic again.
    now = at(time_machine, 2026, 7, 10, 15)
    down = changes.change_subscription(sub.id, None, price_id=basic.prices[0].id, quantity=1, request_key="down",
                                       actor=Actor.contact(contact), now=now, site=site())
    assert (down.status, down.effective_on, down.invoice_id) == ("scheduled", date(2026, 7, 24), None)
    day(time_machine, 2026, 7, 24, 13, 5)
    july = period_invoices(sub)[-1]
    assert (july.issue_date, paid(july.id)) == (date(2026, 7, 24), ("paid", 2900))
    assert fresh(sub).price_id == basic.prices[0].id

    # Paused by staff on July 30: no invoice on August 24. Resumed on September 2: a new period, charged.
    lifecycle.pause_subscription(sub.id, org.id, actor=Actor.user(world.alice), now=at(time_machine, 2026, 7, 30, 15),
                                 site=site())
    day(time_machine, 2026, 8, 24, 13, 5)
    assert len(period_invoices(sub)) == 5
    now = at(time_machine, 2026, 9, 2, 15)
    lifecycle.resume_subscription(sub.id, org.id, actor=Actor.user(world.alice), now=now, site=site())
    charge_now(now)
    resumed = period_invoices(sub)[-1]
    assert (resumed.issue_date, paid(resumed.id)) == (date(2026, 9, 2), ("paid", 2900))
    assert (fresh(sub).status, fresh(sub).current_period_end) == ("active", date(2026, 10, 2))

    # October 2: the card declines, past_due at once; retried 3, 7 and 14 days after; then canceled.
    stripe_app.script_charges(card.provider_id, *["insufficient_funds"] * 4)
    day(time_machine, 2026, 10, 2, 13, 5)
    october = period_invoices(sub)[-1]
    assert (paid(october.id), fresh(sub).status) == (("open", 0), "past_due")
    for when in ((2026, 10, 5, 13, 10), (2026, 10, 9, 13, 10)):
        day(time_machine, *when)
        assert fresh(sub).status == "past_due"
    day(time_machine, 2026, 10, 16, 13, 10)
    sub = fresh(sub)
    assert (sub.status, sub.cancel_reason) == ("canceled", "unpaid")
    assert [a.status for a in attempts(october.id)] == ["failed"] * 4
    day(time_machine, 2026, 11, 2, 13, 10)
    assert len(period_invoices(sub)) == 7  # nothing after canceled
    assert moves(sub) == [
        "subscription.created", "subscription.trial_reminded", "subscription.active", "subscription.renewed",
        "subscription.renewed", "subscription.renewed", "subscription.renewed", "subscription.changed",
        "subscription.changed", "subscription.change_applied", "subscription.renewed", "subscription.paused",
        "subscription.active", "subscription.renewed", "subscription.past_due", "subscription.canceled"]
    assert "Your Basic subscription was canceled" in inbox(smtp, datetime.now(UTC))


def test_left_unpaid_when_the_organization_says_so_and_active_again_once_paid(world, stripe_app, time_machine):
    org = world.org_a
    lifecycle.set_unpaid_action(org.id, "leave_unpaid", actor=SYSTEM, now=utc(2026, 3, 1))
    plan = make_plan(org, "Care", prices=(("USD", 5000, "month", 1),))
    card = stripe_card(stripe_app, world.client_a, now=utc(2026, 3, 1))
    stripe_app.script_charges(card.provider_id, "lost_card")  # a hard decline: the ladder ends at once
    now = at(time_machine, 2026, 3, 2, 15)
    sub = lifecycle.create_subscription(org.id, client_id=world.client_a.id, price_id=plan.prices[0].id,
                                        actor=SYSTEM, now=now, site=site())
    charge_now(now)
    [invoice] = period_invoices(sub)
    assert (fresh(sub).status, paid(invoice.id)) == ("past_due", ("open", 0))
    # The client pays by the pay link (recorded through the money door like the checkout's webhook does).
    apply_payment(invoice.id, amount=5000, currency="USD", method="card", status="succeeded",
                  actor=Actor.anonymous(), now=at(time_machine, 2026, 3, 3, 15), payment_intent_id="pi_link_1")
    assert fresh(sub).status == "active"
