"""Headline figures per currency (services/subscriptions/figures.py), hand-calculated: MRR with yearly, every-3-
month and per-seat prices in USD and JPY, statuses counted, churn over the last 30 days; and the page shows them."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from invoicing.services.subscriptions import figures
from invoicing.services.subscriptions.plans import PriceData
from tests.conftest import NOW, login, make_client
from tests.subscriptions.admin_helpers import make_plan, price_of, subscription_row


def test_mrr_churn_and_counts_hand_calculated(world):
    org = world.org_a
    jpy_client = make_client(org, "Tokyo KK", currency="JPY")
    seats = make_plan(org.id, "Seats", PriceData("USD", 1000), PriceData("USD", 10000, "year"),
                      PriceData("JPY", 1000, "month", 3), per_seat=True)
    flat = make_plan(org.id, "Flat", PriceData("USD", 4999), PriceData("JPY", 12000, "year"))
    a = world.client_a
    subscription_row(a, price_of(seats, "USD", "month"), quantity=3)  # 30.00 a month
    subscription_row(a, price_of(seats, "USD", "year"), quantity=2)  # 200.00 a year: 16.666... a month
    subscription_row(a, price_of(flat, "USD"), status="past_due")  # 49.99 a month: past due still counts
    subscription_row(a, price_of(flat, "USD"), status="trialing", created=NOW - timedelta(days=3),
                     trial_end=NOW.date() + timedelta(days=11))  # nothing
    subscription_row(a, price_of(flat, "USD"), status="paused")  # nothing
    subscription_row(a, price_of(flat, "USD"), status="canceled", stopped=NOW - timedelta(days=10))  # churned
    subscription_row(a, price_of(flat, "USD"), status="ended", stopped=NOW - timedelta(days=45))  # before the window
    subscription_row(a, price_of(flat, "USD"), status="canceled", created=NOW - timedelta(days=20),
                     stopped=NOW - timedelta(days=2))  # started inside the window: not in the base
    subscription_row(jpy_client, price_of(seats, "JPY"), quantity=5)  # ¥5,000 every 3 months: 1,666.67 a month
    subscription_row(jpy_client, price_of(flat, "JPY"))  # ¥12,000 a year: ¥1,000 a month
    subscription_row(jpy_client, price_of(flat, "JPY"), status="ended", stopped=NOW - timedelta(days=29))

    jpy, usd = figures.headline(org.id, now=NOW)  # by currency code
    # USD: 3 x 10.00 + 2 x 100.00 / 12 + 49.99 = 30.00 + 16.6666... + 49.99 = 96.6566... -> $96.66 (9665.67 cents)
    assert (usd.currency, usd.mrr) == ("USD", 9666)
    assert (usd.active, usd.trialing, usd.past_due, usd.paused) == (2, 1, 1, 1)
    # paying 30 days ago: the 2 active, the past-due, the paused, the one canceled 10 days ago = 5; 1 churned
    assert (usd.churned, usd.churn_base, usd.churn_rate) == (1, 5, Decimal("20.0"))
    # JPY: 5 x 1,000 / 3 + 12,000 / 12 = 1,666.666... + 1,000 = 2,666.67 -> ¥2,667 (no decimals)
    assert (jpy.currency, jpy.mrr, jpy.active) == ("JPY", 2667, 2)
    assert (jpy.churned, jpy.churn_base, jpy.churn_rate) == (1, 3, Decimal("33.3"))
    assert figures.headline(world.org_b.id, now=NOW) == []  # another organization's subscriptions are not counted


def test_no_rate_when_nobody_was_paying_30_days_ago(world):
    plan = make_plan(world.org_a.id, trial_days=14)
    subscription_row(world.client_a, price_of(plan), status="trialing", created=NOW - timedelta(days=1),
                     trial_end=date(2026, 3, 23))
    (usd,) = figures.headline(world.org_a.id, now=NOW)
    assert (usd.mrr, usd.trialing, usd.churn_base, usd.churn_rate) == (0, 1, 0, None)


def test_the_page_shows_each_currencys_figures(client, world):
    plan = make_plan(world.org_a.id, "Yearly", PriceData("USD", 120000, "year"), PriceData("JPY", 3000))
    subscription_row(world.client_a, price_of(plan, "USD"))
    subscription_row(make_client(world.org_a, "Osaka", currency="JPY"), price_of(plan, "JPY"), quantity=1)
    login(client, world.alice)
    page = client.get("/admin/subscriptions").text
    assert 'data-currency="JPY"' in page and 'data-currency="USD"' in page
    assert 'data-mrr="10000">$100.00<' in page and 'data-mrr="3000">¥3,000<' in page
    assert "What is counted" in page
