"""The proration rule (services/subscriptions/proration.py), property-tested: any sequence of changes within a
period, in minor units, never negative, each line within one minor unit of its exact fraction (half a unit, in
fact: round half away from zero), and the same through the real service (invoices, credit entries)."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import CreditEntry, Invoice, SubscriptionChange
from invoicing.money import MAX_AMOUNT
from invoicing.services import DomainError
from invoicing.services.subscriptions import changes
from invoicing.services.subscriptions.billing import CREDIT_LINE
from invoicing.services.subscriptions.proration import (
    compare_cost,
    days_left,
    exact_fraction,
    prorate,
    round_half_up_fraction,
    share,
)
from tests.conftest import SYSTEM, make_client
from tests.services.billing.helpers import site, utc
from tests.subscriptions.helpers import make_plan, subscribe

# --- the rule, pure --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(Fraction(5, 2), 3), (Fraction(-5, 2), -3), (Fraction(7, 3), 2),
                                             (Fraction(8, 3), 3), (Fraction(0), 0), (Fraction(-1, 3), 0),
                                             (Fraction(1, 2), 1), (Fraction(-1, 2), -1)])
def test_rounding_is_half_away_from_zero(value, expected):
    assert round_half_up_fraction(value) == expected


def test_a_hand_calculation():
    # $30.00 a month, March (31 days), upgrade to $90.00 on March 10: 22 days left (10..31).
    p = prorate(old_amount=3000, old_quantity=1, new_amount=9000, new_quantity=1, start=date(2026, 3, 1),
                end=date(2026, 4, 1), today=date(2026, 3, 10))
    assert (p.days_left, p.period_days) == (22, 31)
    assert p.credit == 2129  # 3000 * 22 / 31 = 2129.03
    assert p.charge == 6387  # 9000 * 22 / 31 = 6387.10
    assert p.net == 4258
    # A change on the first day credits everything; on a day after the period, nothing.
    assert days_left(date(2026, 3, 1), date(2026, 3, 1), date(2026, 4, 1)) == 31
    assert days_left(date(2026, 4, 1), date(2026, 3, 1), date(2026, 4, 1)) == 0


def test_cost_comparison_is_per_month_and_exact():
    assert compare_cost((1000, 1, 1), (10000, 1, 12)) == -1  # $100/year is cheaper than $10/month
    assert compare_cost((1000, 1, 1), (12000, 1, 12)) == 0
    assert compare_cost((1000, 2, 1), (1500, 1, 1)) == -1
    assert compare_cost((1000, 1, 1), (1000, 3, 1)) == 1


prices = st.integers(min_value=0, max_value=10**9)
seats = st.integers(min_value=1, max_value=500)


@given(period_days=st.integers(min_value=1, max_value=400), first=st.tuples(prices, seats),
       steps=st.lists(st.tuples(st.integers(min_value=0, max_value=400), prices, seats), max_size=8))
def test_any_sequence_of_changes_in_a_period(period_days, first, steps):
    start = date(2026, 1, 1)
    end = start + timedelta(days=period_days)
    amount, quantity = first
    billed = [amount * quantity]  # the period's invoice
    exact_used = Fraction(0)
    last_day = start
    for offset, new_amount, new_quantity in sorted(steps):
        today = start + timedelta(days=min(offset, period_days))
        p = prorate(old_amount=amount, old_quantity=quantity, new_amount=new_amount, new_quantity=new_quantity,
                    start=start, end=end, today=today)
        left = (end - today).days
        assert p.days_left == left and p.period_days == period_days
        for line, exact in ((p.credit, exact_fraction(amount * quantity, left, period_days)),
                            (p.charge, exact_fraction(new_amount * new_quantity, left, period_days))):
            assert isinstance(line, int) and line >= 0
            assert abs(line - exact) <= Fraction(1, 2)  # within one minor unit, in fact half of one
        exact_used += exact_fraction(amount * quantity, (today - last_day).days, period_days)
        billed += [-p.credit, p.charge]
        amount, quantity, last_day = new_amount, new_quantity, today
    exact_used += exact_fraction(amount * quantity, (end - last_day).days, period_days)
    # What the client paid for the period in all is what they used, within half a unit per rounded line.
    assert abs(sum(billed) - exact_used) <= Fraction(len(billed) - 1, 2)
    assert sum(billed) >= 0


@given(amount=st.integers(min_value=0, max_value=MAX_AMOUNT), days=st.integers(min_value=0, max_value=366),
       extra=st.integers(min_value=0, max_value=366))
def test_a_share_is_never_more_than_the_whole(amount, days, extra):
    total = max(1, days + extra)
    assert 0 <= share(amount, days, total) <= amount


# --- the same through the service: invoices and credit --------------------------------------------------

_names = count()


@pytest.mark.parametrize("currency, amounts", [("USD", (1999, 4999, 12900)), ("JPY", (980, 2980, 9800))])
def test_sequences_through_the_service(world, currency, amounts):
    org = world.org_a
    plans = [make_plan(org, f"{currency} {n}", prices=((currency, amount, "month", 1),), per_seat=True,
                       tax_rate_milli=8875) for n, amount in enumerate(amounts)]

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=st.lists(st.tuples(st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=2),
                                    st.integers(min_value=1, max_value=6)), min_size=1, max_size=5))
    def run(steps):  # noqa: ANN001, ANN202
        client = make_client(org, f"Client {next(_names)}", currency=currency)
        sub = subscribe(client, plans[0].prices[0], now=utc(2026, 3, 1, 15))  # period March 1 to April 1
        for offset, plan_index, quantity in sorted(steps):
            now = utc(2026, 3, 1, 15) + timedelta(days=min(offset, 30))
            price = plans[plan_index].prices[0]
            try:
                preview = changes.preview_change(sub.id, org.id, price_id=price.id, quantity=quantity, now=now)
            except DomainError:
                continue  # the current plan
            change = changes.change_subscription(sub.id, org.id, price_id=price.id, quantity=quantity,
                                                 request_key=None, actor=SYSTEM, now=now, site=site())
            assert (change.credit, change.charge) == (preview.credit, preview.charge)
            assert change.credit >= 0 and change.charge >= 0
            if preview.takes_effect == "now":
                left = (date(2026, 4, 1) - now.date()).days
                from_amount = db.session.get(type(price), change.from_price_id).amount * change.from_quantity
                assert abs(change.credit - exact_fraction(from_amount, left, 31)) <= 1
                assert abs(change.charge - exact_fraction(price.amount * quantity, left, 31)) <= 1
            if change.invoice_id is not None:
                invoice = db.session.get(Invoice, change.invoice_id)
                assert invoice.total == preview.net > 0
                assert [li.amount for li in invoice.lines] == [v for d, v in preview.lines if d != "Tax"]
        balance = changes.credit_balance(client.id, currency)
        assert balance >= 0
        kept = db.session.scalar(select(db.func.coalesce(db.func.sum(CreditEntry.amount), 0)).where(
            CreditEntry.client_id == client.id))
        assert balance == kept
        for invoice in db.session.execute(select(Invoice).where(Invoice.client_id == client.id)).scalars():
            assert invoice.total >= 0
            assert all(li.description != CREDIT_LINE for li in invoice.lines)  # no renewal within the period
        assert db.session.scalar(select(db.func.count()).select_from(SubscriptionChange).where(
            SubscriptionChange.subscription_id == sub.id)) <= len(steps)

    run()
