"""The contract's functions work end to end on the simplest path (SUBS_API.md)."""

from __future__ import annotations

from datetime import date

from invoicing.services.subscriptions import changes, lifecycle
from tests.conftest import SYSTEM
from tests.services.billing.helpers import emails, site, utc
from tests.subscriptions.helpers import make_plan, moves, period_invoices, subscribe


def test_the_contract_on_its_simplest_path(world):
    org = world.org_a  # New York
    basic = make_plan(org, "Basic", prices=(("USD", 1000, "month", 1),), trial_days=14)
    pro = make_plan(org, "Pro", prices=(("USD", 3000, "month", 1),))
    now = utc(2026, 3, 10, 15)
    sub = subscribe(world.client_a, basic.prices[0], now=now)
    assert (sub.status, sub.trial_end, sub.current_period_end) == ("trialing", date(2026, 3, 24), date(2026, 3, 24))
    assert lifecycle.next_invoice_preview(sub, now=now) == (date(2026, 3, 24), 1000)
    again = subscribe(world.client_a, basic.prices[0], now=now, signup_key="k1")
    assert subscribe(world.client_a, basic.prices[0], now=now, signup_key="k1").id == again.id
    report = lifecycle.renew_due(now=utc(2026, 3, 21, 13), site=site())
    assert report.reminded == 2
    report = lifecycle.renew_due(now=utc(2026, 3, 24, 13), site=site())
    assert report.invoiced == 2, report
    [invoice] = period_invoices(sub)
    assert (invoice.status, invoice.total, invoice.issue_date) == ("open", 1000, date(2026, 3, 24))
    preview = changes.preview_change(sub.id, org.id, price_id=pro.prices[0].id, quantity=1, now=utc(2026, 4, 8, 15))
    assert (preview.kind, preview.takes_effect) == ("upgrade", "now")
    change = changes.change_subscription(sub.id, org.id, price_id=pro.prices[0].id, quantity=1, request_key="r1",
                                         actor=SYSTEM, now=utc(2026, 4, 8, 15), site=site())
    assert (change.credit, change.charge) == (preview.credit, preview.charge)
    assert changes.credit_balance(world.client_a.id, "USD") == 0
    lifecycle.cancel_subscription(sub.id, org.id, actor=SYSTEM, now=utc(2026, 4, 9), site=site())
    lifecycle.undo_cancel(sub.id, org.id, actor=SYSTEM, now=utc(2026, 4, 9), site=site())
    lifecycle.pause_subscription(sub.id, org.id, actor=SYSTEM, now=utc(2026, 4, 9), site=site())
    lifecycle.resume_subscription(sub.id, org.id, actor=SYSTEM, now=utc(2026, 4, 10), site=site())
    assert moves(sub)[-4:] == ["subscription.cancel_scheduled", "subscription.cancel_undone", "subscription.paused",
                               "subscription.active"]
    assert [e.subject for e in emails("subscription")][-1] == "Your Pro subscription is active again"
