"""Three-decimal currencies (KWD, BHD, JOD, OMR, TND) are taken by cards only in steps of 10: a plan change's
proration lines are rounded to a multiple of 10 so that autopay can charge the difference; an amount a card
cannot take is never sent to the provider and is not a card decline (no "new card" email, no past_due)."""

from __future__ import annotations

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.gateways import current_gateway
from invoicing.models import ChargeAttempt, InvoiceAutopay, Organization
from invoicing.services.billing.charges import process_due
from invoicing.services.db import atomic
from invoicing.services.subscriptions import changes
from invoicing.services.subscriptions.proration import exact_fraction, share
from tests.conftest import SYSTEM
from tests.services.billing.helpers import autopay_on, emails, site, utc
from tests.subscriptions.helpers import fresh, make_plan, period_invoices, subscribe


def test_share_rounds_to_the_card_step_within_half_a_step():
    for amount, days, period in ((10000, 22, 31), (15000, 22, 31), (12345, 1, 30), (999, 29, 30)):
        for step in (1, 10):
            value = share(amount, days, period, step)
            assert value % step == 0 and abs(value - exact_fraction(amount, days, period)) <= step / 2


def test_a_kwd_upgrade_is_charged_at_once_in_whole_steps(world):
    org = world.org_a
    with atomic():
        db.session.get(Organization, org.id).subscription_unpaid = "cancel"
    autopay_on(world.client_a, mode="on_issue", now=utc(2026, 3, 1))
    basic = make_plan(org, "Basic", prices=(("KWD", 10000, "month", 1),))
    pro = make_plan(org, "Pro", prices=(("KWD", 15000, "month", 1),))
    sub = subscribe(world.client_a, basic.prices[0], now=utc(2026, 3, 1, 15))
    process_due(now=utc(2026, 3, 1, 16), gateway=current_gateway(), site=site())
    assert [(i.total, i.status) for i in period_invoices(sub)] == [(10000, "paid")]
    change = changes.change_subscription(sub.id, sub.organization_id, price_id=pro.prices[0].id, quantity=1,
                                         request_key=None, actor=SYSTEM, now=utc(2026, 3, 10, 15), site=site())
    # 22 of 31 days left: credit 7.096774 -> 7.100, charge 10.645161 -> 10.650 (exact: 7.097 and 10.645)
    assert (change.credit, change.charge) == (7100, 10650)
    # Charged at once, in the same call (no scheduler tick), although this consent charges invoices on issue
    # or on their due date: an upgrade's difference does not wait.
    attempts = db.session.scalars(select(ChargeAttempt).order_by(ChargeAttempt.id)).all()
    assert [(a.amount, a.status) for a in attempts] == [(10000, "succeeded"), (3550, "succeeded")]
    assert fresh(sub).status == "active"


def test_an_amount_cards_cannot_take_is_not_sent_and_is_not_a_decline(world):
    from datetime import date
    from decimal import Decimal

    from invoicing.services.invoices import LineData
    from tests.services.billing.helpers import open_invoice

    autopay_on(world.client_a, mode="on_issue", now=utc(2026, 3, 1))
    invoice = open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15), currency="KWD",
                           lines=(LineData("Audit", Decimal(1), 3545),))
    assert invoice.total == 3545  # 3.545 KWD: cards take 3.540 or 3.550, not this
    process_due(now=utc(2026, 3, 6), gateway=current_gateway(), site=site())
    state = db.session.get(InvoiceAutopay, invoice.id, populate_existing=True)
    assert state is not None and state.status == "cancelled" and state.end_reason == "amount_not_chargeable"
    assert db.session.scalars(select(ChargeAttempt)).all() == []  # nothing sent to the provider
    assert emails("autopay_failed") == []  # no "update your card" email: the card did nothing wrong


def test_voiding_an_invoice_gives_back_the_credit_it_used(world):
    from invoicing.services.invoices import void_invoice
    from invoicing.services.subscriptions import lifecycle
    from tests.subscriptions.helpers import credits

    yearly = make_plan(world.org_a, "Yearly", prices=(("USD", 120000, "year", 1),))
    monthly = make_plan(world.org_a, "Monthly", prices=(("USD", 15000, "month", 1),))
    sub = subscribe(world.client_a, yearly.prices[0], now=utc(2026, 1, 1, 15))
    changes.change_subscription(sub.id, sub.organization_id, price_id=monthly.prices[0].id, quantity=1,
                                request_key=None, actor=SYSTEM, now=utc(2026, 3, 1, 15), site=site())
    for month in (4, 5, 6, 7, 8, 9):
        lifecycle.renew_due(now=utc(2026, month, 1, 13), site=site())
    september = period_invoices(sub)[-1]
    assert changes.credit_balance(world.client_a.id, "USD") == 0 and september.total == 4397  # 10603 used
    void_invoice(september.id, reason="Billed by mistake", actor=SYSTEM, now=utc(2026, 9, 2, 13))
    assert changes.credit_balance(world.client_a.id, "USD") == 10603
    assert credits(world.client_a)[-2:] == [("applied", -10603), ("restored", 10603)]
    lifecycle.renew_due(now=utc(2026, 10, 1, 13), site=site())
    october = period_invoices(sub)[-1]
    assert october.total == 4397 and changes.credit_balance(world.client_a.id, "USD") == 0  # used again, once
