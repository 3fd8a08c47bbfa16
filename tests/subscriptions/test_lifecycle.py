"""services/subscriptions: sign-up, trial reminder, renewals exactly once (month ends, catch-up), plan changes with
exact proration (hand calculations in USD and JPY), downgrade at period end, credit kept and applied, past_due
and back, cancel (at period end, undo, now with a refund), pause and resume, the job and its command."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.mail import deliver_due
from invoicing.models import CreditEntry, Invoice, Refund, SubscriptionChange
from invoicing.services import DomainError
from invoicing.services.audit import Actor
from invoicing.services.billing.schedule_preview import next_hours
from invoicing.services.db import atomic
from invoicing.services.payments import record_manual_payment
from invoicing.services.subscriptions import changes, lifecycle
from invoicing.services.subscriptions.billing import CREDIT_LINE
from tests.conftest import SYSTEM, login, make_client
from tests.services.billing.helpers import emails, events, site, utc
from tests.subscriptions.helpers import credits, fresh, make_plan, moves, period_invoices, subscribe


def renew(at):  # noqa: ANN001, ANN201
    return lifecycle.renew_due(now=at, site=site())


def terms(org, days: int) -> None:  # noqa: ANN001
    with atomic():
        org.payment_terms_days = days


def lines(invoice: Invoice) -> list[tuple[str, int, int]]:
    return [(li.description, li.amount, li.tax) for li in invoice.lines]


def change(sub, price, quantity=1, *, at, actor=SYSTEM, key=None):  # noqa: ANN001, ANN201
    return changes.change_subscription(sub.id, sub.organization_id, price_id=price.id, quantity=quantity,
                                       request_key=key, actor=actor, now=at, site=site())


# --- sign-up and trial ---------------------------------------------------------------------------------


def test_a_trial_reminds_three_days_before_then_invoices_with_a_pay_link(world, smtp):
    org = world.org_a  # New York; the send hour is 09:00 local (13:00 UTC in March, after DST)
    terms(org, 14)
    basic = make_plan(org, "Basic", prices=(("USD", 2900, "month", 1),), trial_days=14, setup_fee=5000)
    sub = subscribe(world.client_a, basic.prices[0], now=utc(2026, 3, 10, 15),
                    contact_id=world.client_a.contacts[0].id)
    assert (sub.status, sub.trial_end, sub.anchor_day) == ("trialing", date(2026, 3, 24), 24)
    assert lifecycle.next_invoice_preview(sub, now=utc(2026, 3, 10, 15)) == (date(2026, 3, 24), 7900)  # + setup
    assert renew(utc(2026, 3, 21, 12, 59)).reminded == 0
    assert renew(utc(2026, 3, 21, 13)).reminded == 1
    assert renew(utc(2026, 3, 22, 13)).reminded == 0  # once
    deliver_due(now=utc(2026, 3, 21, 13, 1))
    subjects = sorted(m["Subject"] for m in smtp.messages)
    assert subjects == ["Your Basic trial ends on March 24, 2026", "Your subscription to Basic"]
    reminder = next(m for m in smtp.messages if "trial ends" in m["Subject"])
    assert reminder["To"] == "c1@clienta.test"
    assert "$79.00" in reminder.get_body(("plain",)).get_content()
    # Trial end: the first invoice (price and setup fee), sent with its pay link, due after the payment terms.
    assert renew(utc(2026, 3, 24, 12, 59)).invoiced == 0
    assert renew(utc(2026, 3, 24, 13)).invoiced == 1
    [invoice] = period_invoices(sub)
    assert (invoice.status, invoice.issue_date, invoice.due_date, invoice.total) == (
        "open", date(2026, 3, 24), date(2026, 4, 7), 7900)
    assert [d for d, _, _ in lines(invoice)] == ["Basic: 2026-03-24 to 2026-04-23", "Basic: setup fee"]
    sub = fresh(sub)
    assert (sub.status, sub.current_period_start, sub.current_period_end) == (
        "active", date(2026, 3, 24), date(2026, 4, 24))
    assert [e.to_addr for e in emails("invoice", invoice)] == ["c1@clienta.test"]
    smtp.clear()
    deliver_due(now=utc(2026, 3, 24, 13, 1))
    [sent] = smtp.messages
    assert "/pay/" in sent.get_body(("plain",)).get_content()
    # Unpaid on the day after its due date (local): past_due; paid by hand: active again.
    assert renew(utc(2026, 4, 7, 23)).past_due == 0
    assert renew(utc(2026, 4, 8, 13)).past_due == 1
    assert fresh(sub).status == "past_due"
    record_manual_payment(invoice.id, amount=7900, method="bank_transfer", paid_on=date(2026, 4, 9), reference="T1",
                          actor=SYSTEM, now=utc(2026, 4, 9, 15))
    assert fresh(sub).status == "active" and fresh(sub).past_due_since is None
    assert moves(sub) == ["subscription.created", "subscription.trial_reminded", "subscription.active",
                          "subscription.renewed", "subscription.past_due", "subscription.active"]


def test_no_trial_invoices_now_and_a_resubmitted_form_makes_one(world):
    org = world.org_a
    plan = make_plan(org, "Care", prices=(("USD", 12000, "month", 1),), trial_days=30)
    sub = subscribe(world.client_a, plan.prices[0], now=utc(2026, 1, 31, 15), trial_days=0, signup_key="form-1")
    again = subscribe(world.client_a, plan.prices[0], now=utc(2026, 1, 31, 15), trial_days=0, signup_key="form-1")
    assert again.id == sub.id
    [invoice] = period_invoices(sub)
    assert (sub.status, invoice.status, invoice.issue_date, invoice.due_date, invoice.total) == (
        "active", "open", date(2026, 1, 31), date(2026, 3, 2), 12000)  # no card: the organization's 30 days
    later = subscribe(world.client_a, plan.prices[0], now=utc(2026, 1, 31, 15), trial_days=0, charge_now=False)
    assert period_invoices(later)[0].due_date == date(2026, 3, 2)


@pytest.mark.parametrize("bad, message", [
    (dict(quantity=2), "not sold per seat"),
    (dict(trial_days=-1), "A trial lasts"),
    (dict(client_id=-1), "Client not found"),
])
def test_bad_sign_ups_change_nothing(world, bad, message):
    plan = make_plan(world.org_a, "Care", prices=(("USD", 12000, "month", 1),))
    values = dict(client_id=world.client_a.id, price_id=plan.prices[0].id, actor=SYSTEM, now=utc(2026, 3, 1),
                  site=site()) | bad
    with pytest.raises(DomainError, match=message):
        lifecycle.create_subscription(world.org_a.id, **values)
    assert db.session.scalar(select(db.func.count()).select_from(Invoice)) == 0
    with pytest.raises(DomainError, match="Price not found"):  # another organization's price
        lifecycle.create_subscription(world.org_b.id, client_id=world.client_b.id, price_id=plan.prices[0].id,
                                      actor=SYSTEM, now=utc(2026, 3, 1), site=site())


# --- renewals ------------------------------------------------------------------------------------------


def test_renewals_follow_month_ends_and_catch_up_each_period_once(world):
    org = world.org_a
    plan = make_plan(org, "Care", prices=(("USD", 12000, "month", 1),))
    sub = subscribe(world.client_a, plan.prices[0], now=utc(2026, 1, 31, 15))
    assert renew(utc(2026, 2, 27, 14)).invoiced == 0
    report = renew(utc(2026, 4, 30, 14))  # a scheduler down since February: Feb 28, Mar 31, Apr 30, each once
    assert report.invoiced == 3 and not report.errors
    assert renew(utc(2026, 4, 30, 15)).invoiced == 0
    assert [i.issue_date for i in period_invoices(sub)] == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31),
                                                           date(2026, 4, 30)]
    assert (fresh(sub).current_period_start, fresh(sub).current_period_end) == (date(2026, 4, 30), date(2026, 5, 31))
    assert len(emails("invoice")) == 4


def test_two_threads_renew_each_period_once(app, world):
    plan = make_plan(world.org_a, "Care", prices=(("USD", 1000, "month", 1),))
    subs = [subscribe(make_client(world.org_a, f"C{n}"), plan.prices[0], now=utc(2026, 1, 15, 15)) for n in range(8)]
    barrier, reports = threading.Barrier(2), []

    def worker() -> None:
        with app.app_context():
            barrier.wait()
            for month in (2, 3, 4):
                reports.append(lifecycle.renew_due(now=utc(2026, month, 15, 15), site=site()))
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(r.invoiced for r in reports) == 8 * 3 and all(not r.errors for r in reports)
    for sub in subs:
        assert len(period_invoices(sub)) == 4
    assert sorted(db.session.execute(select(Invoice.number_seq)).scalars()) == list(range(1, 33))


# --- plan changes: exact proration --------------------------------------------------------------------


def test_upgrade_mid_period_in_usd_by_hand(world):
    org = world.org_a  # New York
    basic = make_plan(org, "Basic", prices=(("USD", 3000, "month", 1),), tax_rate_milli=8875)
    pro = make_plan(org, "Pro", prices=(("USD", 9000, "month", 1),), tax_rate_milli=8875)
    sub = subscribe(world.client_a, basic.prices[0], now=utc(2026, 3, 1, 15))  # March 1 to April 1: 31 days
    # March 10, 11:00 in New York: 22 days left (10..31).
    preview = changes.preview_change(sub.id, org.id, price_id=pro.prices[0].id, quantity=1, now=utc(2026, 3, 10, 15))
    # credit 3000 x 22/31 = 2129.03 -> 2129; charge 9000 x 22/31 = 6387.10 -> 6387; net 4258 before tax;
    # tax 8.875 %: -2129 -> -188.95 -> -189, 6387 -> 566.85 -> 567; total 4258 + 378 = 4636.
    assert (preview.kind, preview.takes_effect, preview.effective_on) == ("upgrade", "now", date(2026, 3, 10))
    assert (preview.credit, preview.charge, preview.net, preview.kept) == (2129, 6387, 4636, 0)
    assert [v for _, v in preview.lines] == [-2129, 6387, 378]
    done = change(sub, pro.prices[0], at=utc(2026, 3, 10, 15), key="req-1")
    assert change(sub, pro.prices[0], at=utc(2026, 3, 10, 15), key="req-1").id == done.id  # resubmitted
    invoice = db.session.get(Invoice, done.invoice_id)
    assert lines(invoice) == [("Unused time on Basic, $30.00 per month (22 of 31 days)", -2129, -189),
                              ("Pro, $90.00 per month: 2026-03-10 to 2026-03-31 (22 of 31 days)", 6387, 567)]
    assert (invoice.status, invoice.total, invoice.due_date) == ("open", 4636, date(2026, 4, 9))  # no card: 30 days
    sub = fresh(sub)
    assert (sub.price_id, sub.plan_id, sub.current_period_end) == (pro.prices[0].id, pro.id, date(2026, 4, 1))
    assert renew(utc(2026, 4, 1, 13)).invoiced == 1
    assert period_invoices(sub)[-1].total == 9000 + 799  # Pro from April 1: 9000 + 8.875 % (798.75)
    subjects = [e.subject for e in emails("subscription")]
    assert "Your Pro subscription: plan change confirmed" in subjects


def test_upgrade_mid_period_in_jpy_on_tokyo_days(world):
    org = world.org_b  # Tokyo
    basic = make_plan(org, "Basic", prices=(("JPY", 980, "month", 1),), tax_rate_milli=10000)
    pro = make_plan(org, "Pro", prices=(("JPY", 2980, "month", 1),), tax_rate_milli=10000)
    sub = subscribe(world.client_b, basic.prices[0], now=utc(2026, 3, 1, 0, 30))  # 09:30 on March 1 in Tokyo
    assert period_invoices(sub)[0].total == 1078
    # March 19, 16:00 UTC is March 20, 01:00 in Tokyo: 12 days left (20..31), not 13.
    done = change(sub, pro.prices[0], at=utc(2026, 3, 19, 16))
    # credit 980 x 12/31 = 379.35 -> 379; charge 2980 x 12/31 = 1153.55 -> 1154; net 775;
    # tax 10 %: -37.9 -> -38, 115.4 -> 115; total 852 yen.
    assert (done.credit, done.charge, done.effective_on) == (379, 1154, date(2026, 3, 20))
    invoice = db.session.get(Invoice, done.invoice_id)
    assert [(li.amount, li.tax) for li in invoice.lines] == [(-379, -38), (1154, 115)]
    assert (invoice.total, invoice.currency) == (852, "JPY")


def test_downgrade_and_fewer_seats_wait_for_the_period_end(world):
    org = world.org_a
    terms(org, 60)  # nothing past due in this story
    team = make_plan(org, "Team", prices=(("USD", 1500, "month", 1),), per_seat=True)
    small = make_plan(org, "Small", prices=(("USD", 1000, "month", 1),), per_seat=True)
    sub = subscribe(world.client_a, team.prices[0], now=utc(2026, 3, 1, 15), quantity=5)
    more = change(sub, team.prices[0], 8, at=utc(2026, 3, 17, 15))  # 15 days left: 3 seats x 1500 x 15/31
    assert (more.kind, more.status, more.credit, more.charge) == ("quantity", "applied", 3629, 5806)
    assert db.session.get(Invoice, more.invoice_id).total == 5806 - 3629  # 7500 x 15/31, 12000 x 15/31
    preview = changes.preview_change(sub.id, org.id, price_id=small.prices[0].id, quantity=8, now=utc(2026, 3, 20))
    assert (preview.kind, preview.takes_effect, preview.effective_on, preview.net) == (
        "downgrade", "period_end", date(2026, 4, 1), 0)
    down = change(sub, small.prices[0], 8, at=utc(2026, 3, 20, 15))
    assert (down.status, fresh(sub).pending_price_id, fresh(sub).price_id) == (
        "scheduled", small.prices[0].id, team.prices[0].id)
    with pytest.raises(DomainError, match="cancel the scheduled change"):
        changes.preview_change(sub.id, org.id, price_id=team.prices[0].id, quantity=8, now=utc(2026, 3, 21))
    assert lifecycle.next_invoice_preview(fresh(sub), now=utc(2026, 3, 21)) == (date(2026, 4, 1), 8000)
    renew(utc(2026, 4, 1, 13))
    sub = fresh(sub)
    assert (sub.price_id, sub.quantity, sub.pending_price_id) == (small.prices[0].id, 8, None)
    assert period_invoices(sub)[-1].total == 8000
    assert db.session.get(SubscriptionChange, down.id).status == "applied"
    # Fewer seats, then changed mind: the scheduled change is dropped.
    change(sub, small.prices[0], 2, at=utc(2026, 4, 5, 15))
    changes.cancel_pending_change(sub.id, org.id, actor=SYSTEM, now=utc(2026, 4, 6), site=site())
    renew(utc(2026, 5, 1, 13))
    assert (fresh(sub).quantity, period_invoices(sub)[-1].total) == (8, 8000)


def test_a_net_credit_is_kept_and_applied_to_the_next_invoices(world):
    org = world.org_a
    yearly = make_plan(org, "Yearly", prices=(("USD", 120000, "year", 1),))
    monthly = make_plan(org, "Monthly", prices=(("USD", 15000, "month", 1),))
    sub = subscribe(world.client_a, yearly.prices[0], now=utc(2026, 1, 1, 15))  # 2026-01-01 to 2027-01-01
    # March 1: monthly costs more per month (150 > 100): now. A new monthly period starts today, charged whole;
    # the unused year is credited: 120000 x 306/365 = 100602.74 -> 100603. Net -85603: kept as credit.
    done = change(sub, monthly.prices[0], at=utc(2026, 3, 1, 15))
    assert (done.credit, done.charge, done.invoice_id) == (100603, 15000, None)
    assert credits(world.client_a) == [("proration", 85603)]
    assert changes.credit_balance(world.client_a.id, "USD") == 85603
    sub = fresh(sub)
    assert (sub.current_period_start, sub.current_period_end, sub.anchor_day) == (
        date(2026, 3, 1), date(2026, 4, 1), 1)
    # April to August: each invoice paid entirely by credit (numbered, paid, nothing to charge).
    for month in (4, 5, 6, 7, 8):
        renew(utc(2026, month, 1, 13))
    paid_by_credit = period_invoices(sub)[1:]
    assert [(i.total, i.status) for i in paid_by_credit] == [(0, "paid")] * 5
    assert all(i.number for i in paid_by_credit)
    assert lines(paid_by_credit[0])[-1] == (CREDIT_LINE, -15000, 0)
    # September: 10603 left, the invoice asks for the rest.
    renew(utc(2026, 9, 1, 13))
    september = period_invoices(sub)[-1]
    assert lines(september)[-1] == (CREDIT_LINE, -10603, 0)
    assert (september.total, september.status) == (4397, "open")
    assert changes.credit_balance(world.client_a.id, "USD") == 0
    applied = db.session.execute(select(CreditEntry).where(CreditEntry.reason == "applied")).scalars().all()
    assert sorted(e.invoice_id for e in applied) == sorted(i.id for i in [*paid_by_credit, september])


# --- cancel, pause, resume ----------------------------------------------------------------------------


def test_cancel_at_period_end_can_be_undone_then_ends(world):
    plan = make_plan(world.org_a, "Care", prices=(("USD", 5000, "month", 1),))
    sub = subscribe(world.client_a, plan.prices[0], now=utc(2026, 3, 1, 15))
    contact = Actor.contact(world.client_a.contacts[0])
    with pytest.raises(DomainError, match="Only staff"):
        lifecycle.cancel_subscription(sub.id, None, at_period_end=False, actor=contact, now=utc(2026, 3, 5),
                                      site=site())
    lifecycle.cancel_subscription(sub.id, world.org_a.id, actor=contact, now=utc(2026, 3, 5), site=site())
    assert lifecycle.next_invoice_preview(fresh(sub), now=utc(2026, 3, 5)) is None
    lifecycle.undo_cancel(sub.id, world.org_a.id, actor=contact, now=utc(2026, 3, 6), site=site())
    lifecycle.cancel_subscription(sub.id, world.org_a.id, actor=contact, now=utc(2026, 3, 7), reason="too dear",
                                  site=site())
    assert renew(utc(2026, 4, 1, 13)).ended == 1
    sub = fresh(sub)
    assert (sub.status, sub.cancel_reason, len(period_invoices(sub))) == ("ended", "too dear", 1)
    with pytest.raises(DomainError, match="already ended"):
        lifecycle.cancel_subscription(sub.id, None, actor=SYSTEM, now=utc(2026, 4, 2), site=site())
    assert moves(sub)[-1] == "subscription.ended"
    assert [e.subject for e in emails("subscription")][-1] == "Your Care subscription has ended"


def test_cancel_now_refunds_the_unused_part_through_the_refund_door(world):
    plan = make_plan(world.org_a, "Care", prices=(("USD", 3100, "month", 1),))
    sub = subscribe(world.client_a, plan.prices[0], now=utc(2026, 3, 1, 15))
    [invoice] = period_invoices(sub)
    record_manual_payment(invoice.id, amount=3100, method="cash", paid_on=date(2026, 3, 1), reference="",
                          actor=SYSTEM, now=utc(2026, 3, 1, 16))
    lifecycle.cancel_subscription(sub.id, world.org_a.id, at_period_end=False, refund_unused=True,
                                  reason="moving away", actor=Actor.user(world.alice), now=utc(2026, 3, 22, 15),
                                  site=site())
    [refund] = db.session.execute(select(Refund)).scalars().all()
    assert refund.amount == 1000  # 3100 x 10/31 (March 22..31)
    sub = fresh(sub)
    assert (sub.status, sub.canceled_at is not None) == ("canceled", True)
    assert renew(utc(2026, 4, 1, 13)).invoiced == 0


def test_pause_makes_no_invoices_and_resume_starts_a_new_period(world):
    plan = make_plan(world.org_a, "Care", prices=(("USD", 5000, "month", 1),))
    sub = subscribe(world.client_a, plan.prices[0], now=utc(2026, 3, 1, 15))
    with pytest.raises(DomainError, match="Only staff"):
        lifecycle.pause_subscription(sub.id, None, actor=Actor.contact(world.client_a.contacts[0]),
                                     now=utc(2026, 3, 10), site=site())
    lifecycle.pause_subscription(sub.id, world.org_a.id, actor=SYSTEM, now=utc(2026, 3, 10), site=site())
    assert renew(utc(2026, 4, 1, 13)).invoiced == 0 and renew(utc(2026, 5, 1, 13)).invoiced == 0
    lifecycle.resume_subscription(sub.id, world.org_a.id, actor=SYSTEM, now=utc(2026, 5, 12, 15), site=site())
    sub = fresh(sub)
    assert (sub.status, sub.current_period_start, sub.current_period_end) == (
        "active", date(2026, 5, 12), date(2026, 6, 12))
    assert [i.issue_date for i in period_invoices(sub)] == [date(2026, 3, 1), date(2026, 5, 12)]
    assert events("subscription.active", sub.id)[-1].details["skipped_from"] == "2026-04-01"


def test_changes_are_refused_while_they_cannot_apply(world):
    org = world.org_a
    basic = make_plan(org, "Basic", prices=(("USD", 1000, "month", 1), ("EUR", 900, "month", 1)))
    sub = subscribe(world.client_a, basic.prices[0], now=utc(2026, 3, 1, 15))
    with pytest.raises(DomainError, match="billed in USD"):
        changes.preview_change(sub.id, org.id, price_id=basic.prices[1].id, quantity=1, now=utc(2026, 3, 2))
    with pytest.raises(DomainError, match="current plan"):
        changes.preview_change(sub.id, org.id, price_id=basic.prices[0].id, quantity=1, now=utc(2026, 3, 2))
    lifecycle.pause_subscription(sub.id, org.id, actor=SYSTEM, now=utc(2026, 3, 3), site=site())
    with pytest.raises(DomainError, match="paused"):
        changes.preview_change(sub.id, org.id, price_id=basic.prices[0].id, quantity=2, now=utc(2026, 3, 4))
    with pytest.raises(DomainError, match="not found"):
        changes.preview_change(sub.id, world.org_b.id, price_id=basic.prices[0].id, quantity=1, now=utc(2026, 3, 4))


# --- the job, its command, the Scheduler page's preview ------------------------------------------------


def test_the_command_lists_then_renews(client, world, runner, time_machine):
    assert "subscriptions" in runner.invoke(args=["billing", "--help"]).output
    plan = make_plan(world.org_a, "Care", prices=(("USD", 5000, "month", 1),))
    subscribe(world.client_a, plan.prices[0], now=utc(2026, 3, 1, 15))
    preview = next_hours(now=utc(2026, 3, 31, 14), organization_id=world.org_a.id)
    assert [(r.plan_name, r.period_start, r.amount) for r in preview.renewals] == [("Care", date(2026, 4, 1), 5000)]
    time_machine.move_to(utc(2026, 3, 31, 14), tick=False)
    login(client, world.alice)  # the Scheduler page lists it among the next 24 hours' work
    page = client.get("/admin/scheduler").text
    assert "Subscriptions to renew (1)" in page and "Care" in page and "$50.00" in page
    time_machine.move_to(utc(2026, 4, 1, 14), tick=False)
    dry = runner.invoke(args=["billing", "subscriptions", "--dry-run"])
    assert "would renew 1 subscription(s)" in dry.output and "Care (Client A): period from 2026-04-01" in dry.output
    assert db.session.scalar(select(db.func.count()).select_from(Invoice)) == 1
    done = runner.invoke(args=["billing", "subscriptions"])
    assert "1 invoice(s) made" in done.output, done.output
    assert db.session.scalar(select(db.func.count()).select_from(Invoice)) == 2


def test_credit_is_before_tax_and_never_takes_a_total_below_zero():
    from invoicing.services.invoices import LineData
    from invoicing.services.subscriptions.billing import credit_to_apply
    from invoicing.services.totals import LineInput, compute_totals

    rate = Decimal(10)
    lines_ = [LineData("a", Decimal(1), 3, rate), LineData("b", Decimal(1), 3, rate)]  # taxes 0.3 -> 0 each
    credit = credit_to_apply(lines_, 10_000)
    totals = compute_totals([LineInput(li.quantity, li.unit_price, li.tax_rate) for li in lines_]
                            + [LineInput(Decimal(1), -credit, rate)])
    assert (credit, totals.total) == (5, 0)  # 6 would leave -6 - 0.6 -> -7 of tax rounding: total -1


def test_staff_migrate_a_subscriber_to_a_new_price_from_the_period_end(world):
    from invoicing.models import PlanPrice

    org = world.org_a
    plan = make_plan(org, "Care", prices=(("USD", 5000, "month", 1),))
    other = make_plan(org, "Other", prices=(("USD", 9000, "month", 1),))
    sub = subscribe(world.client_a, plan.prices[0], now=utc(2026, 3, 1, 15))
    with atomic():  # the price changed: a new row, the old one archived (plans.py)
        old = db.session.get(PlanPrice, plan.prices[0].id)
        old.archived_at = utc(2026, 3, 5)
        new = PlanPrice(plan_id=plan.id, currency="USD", amount=5500, interval_unit="month", interval_count=1)
        db.session.add(new)
    staff = Actor.user(world.alice)
    with pytest.raises(DomainError, match="Migrate to a price of Care"):
        changes.migrate_price(sub.id, org.id, price_id=other.prices[0].id, request_key=None, actor=staff,
                              now=utc(2026, 3, 6), site=site())
    done = changes.migrate_price(sub.id, org.id, price_id=new.id, request_key="m-1", actor=staff,
                                 now=utc(2026, 3, 6, 15), site=site())
    again = changes.migrate_price(sub.id, org.id, price_id=new.id, request_key="m-1", actor=staff,
                                  now=utc(2026, 3, 6, 15), site=site())
    assert again.id == done.id
    assert (done.kind, done.status, done.effective_on, done.credit, done.charge) == (
        "migration", "scheduled", date(2026, 4, 1), 0, 0)
    assert events("subscription.migrated", sub.id)[0].details["amount"] == 5500
    assert emails("subscription")[-1].subject == "Your Care price changes on April 1, 2026"
    assert lifecycle.next_invoice_preview(fresh(sub), now=utc(2026, 3, 7)) == (date(2026, 4, 1), 5500)
    renew(utc(2026, 4, 1, 13))
    assert (fresh(sub).price_id, period_invoices(sub)[-1].total) == (new.id, 5500)
    assert db.session.get(SubscriptionChange, done.id).status == "applied"


def test_the_public_sign_up_sends_its_own_welcome(world):
    plan = make_plan(world.org_a, "Care", prices=(("USD", 5000, "month", 1),), trial_days=7)
    contact = world.client_a.contacts[0]
    lifecycle.create_subscription(world.org_a.id, client_id=world.client_a.id, price_id=plan.prices[0].id,
                                  contact_id=contact.id, signup_key="form-9", actor=Actor.contact(contact),
                                  now=utc(2026, 3, 1, 15), site=site())
    assert emails("subscription") == []  # signup.py queues the welcome with its sign-in link
    lifecycle.create_subscription(world.org_a.id, client_id=world.client_a.id, price_id=plan.prices[0].id,
                                  signup_key="staff:form-10", actor=Actor.user(world.alice),
                                  now=utc(2026, 3, 1, 15), site=site())
    assert [e.subject for e in emails("subscription")] == ["Your subscription to Care"]  # staff's: confirmed


def test_the_credit_line_shows_on_the_invoice_page_the_pay_page_and_the_pdf(client, world, time_machine):
    from invoicing import pdf
    from tests.pay.support import pay_path

    org = world.org_a
    yearly = make_plan(org, "Yearly", prices=(("USD", 120000, "year", 1),))
    monthly = make_plan(org, "Monthly", prices=(("USD", 150000, "month", 1),))
    sub = subscribe(world.client_a, yearly.prices[0], now=utc(2026, 1, 1, 15))
    change(sub, monthly.prices[0], at=utc(2026, 3, 1, 15))  # 150000 - 100603: charged, nothing kept
    with atomic():
        db.session.add(CreditEntry(organization_id=org.id, client_id=world.client_a.id, currency="USD", amount=2500,
                                   reason="granted", description="goodwill", created_at=utc(2026, 3, 2)))
    renew(utc(2026, 4, 1, 13))
    invoice = period_invoices(sub)[-1]
    assert (invoice.total, lines(invoice)[-1]) == (147500, (CREDIT_LINE, -2500, 0))
    time_machine.move_to(utc(2026, 4, 2, 15), tick=False)  # while its pay link is valid
    login(client, world.alice)
    for page in (client.get(f"/admin/invoices/{invoice.id}").text, client.get(pay_path(invoice)).text,
                 pdf.render_html(invoice, pdf.pay_url_for(invoice))):
        assert CREDIT_LINE in page and "-$25.00" in page.replace("−", "-") and "$1,475.00" in page
    timeline = client.get(f"/admin/invoices/{invoice.id}").text
    assert "Made by the subscription to Monthly for the period from 2026-04-01" in timeline
