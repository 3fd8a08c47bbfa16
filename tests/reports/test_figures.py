"""Every figure of the reports page against what was computed by hand for tests/reports/dataset.py."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

from invoicing.services.payments import record_manual_payment
from invoicing.services.reports import aging, figures
from invoicing.services.reports.period import Period, ReportFilters, offsets
from tests.conftest import NOW, SYSTEM
from tests.reports.dataset import PERIOD, build

TZ = "America/New_York"


def cards(report: figures.Report, currency: str) -> dict[str, tuple[int, int]]:
    found = report.for_currency(currency)
    assert found is not None
    return {key: (fig.count, fig.amount) for key, fig in found.cards.items()}


def test_it_computes_the_usd_cards_by_hand(world):
    build(world)
    report = figures.compute(world.org_a.id, PERIOD, tz=TZ, now=NOW)
    usd = cards(report, "USD")
    # Invoiced: U2 200 + U4 400 + U5 500 + U8 80 (U0, U1 before; U3 void; U6 after; U7 a draft)
    assert usd["invoiced"] == (4, 118000)
    # Collected: U2 50 (10 Jan) + 150 (28 Feb in New York, 1 Mar in UTC) + U4 400 + U8 80; U1's card payment
    # at 04:30 UTC on 1 January was 31 December in New York
    assert usd["collected"] == (3, 68000)
    assert usd["refunded"] == (1, 10000)
    # Now: U0 90 + U4 100 (refunded back to open) + U5 500 + U6 600; overdue U0 and U5
    assert usd["outstanding"] == (4, 129000)
    assert usd["overdue"] == (2, 59000)
    # Paid in the period: U2 on 28 Feb (54 days after 5 Jan, 24 days late), U8 on 18 Jan (10 days, on time)
    assert usd["days_to_pay"] == (2, 64)
    assert report.for_currency("USD").cards["days_to_pay"].average_days == Decimal("32.0")
    assert usd["paid_late"] == (1, 1)
    rate = report.for_currency("USD").cards["collection_rate"]
    assert (rate.amount, rate.base, rate.rate) == (58000, 118000, Decimal("49.2"))  # 200 + 300 + 0 + 80 of 1,180


def test_it_computes_jpy_and_kwd_in_their_own_units(world):
    build(world)
    report = figures.compute(world.org_a.id, PERIOD, tz=TZ, now=NOW)
    jpy, kwd = cards(report, "JPY"), cards(report, "KWD")
    assert jpy["invoiced"] == (2, 17345) and jpy["collected"] == (2, 14345) and jpy["outstanding"] == (1, 3000)
    assert jpy["days_to_pay"] == (1, 1) and jpy["overdue"] == (0, 0)
    assert report.for_currency("JPY").cards["collection_rate"].rate == Decimal("82.7")
    # KWD 1,234.567 paid by cheque the day after it was due; 0.234 refunded in March reopened it
    assert kwd["invoiced"] == (1, 1234567) and kwd["collected"] == (1, 1234567) and kwd["refunded"] == (0, 0)
    assert kwd["outstanding"] == (1, 234) and kwd["overdue"] == (1, 234) and kwd["days_to_pay"] == (0, 0)
    assert [r.currency for r in report.currencies] == ["KWD", "USD", "JPY"]  # largest invoiced first
    assert report.for_currency("EUR") is None  # nothing is ever added across currencies


def test_it_splits_the_months_methods_and_channels(world):
    build(world)
    usd = figures.compute(world.org_a.id, PERIOD, tz=TZ, now=NOW).for_currency("USD")
    assert [(m.first, m.invoiced, m.collected) for m in usd.months] == [
        (date(2026, 1, 1), 28000, 13000), (date(2026, 2, 1), 90000, 55000)]
    assert [(s.key, s.amount, s.percent) for s in usd.methods] == [
        ("card", 15000, Decimal("22.1")), ("bank_transfer", 45000, Decimal("66.2")), ("cash", 8000, Decimal("11.8"))]
    assert [(s.key, s.amount) for s in usd.channels] == [("portal", 15000), ("manual", 53000)]
    jpy = figures.compute(world.org_a.id, PERIOD, tz=TZ, now=NOW).for_currency("JPY")
    assert [(s.key, s.amount) for s in jpy.channels] == [("pay_link", 2000), ("autopay", 12345)]


def test_it_ages_what_is_owed_per_client_in_the_organizations_days(world):
    data = build(world)
    report = aging.compute(world.org_a.id, today=date(2026, 3, 10))
    rows = {(r.name, r.currency): r.buckets for r in report.rows}
    assert rows[("Client A", "USD")] == {"current": 70000, "d1_30": 50000, "d31_60": 0, "d61_90": 0,
                                         "d90_plus": 9000}
    assert rows[("Kaiju KK", "JPY")]["current"] == 3000
    assert rows[("Kuwait Co", "KWD")]["d31_60"] == 234  # due 31 January: 38 days
    assert report.totals["USD"].total == 129000 and set(report.totals) == {"JPY", "KWD", "USD"}
    assert [r.name for r in aging.compute(world.org_a.id, today=date(2026, 3, 10), sort="name",
                                          descending=False).rows] == ["Client A", "Kaiju KK", "Kuwait Co"]
    # Due 5 March: on 5 March it is current, on the 6th it is 1 day late
    assert aging.compute(world.org_a.id, today=date(2026, 3, 5), currency="USD").rows[0].buckets["current"] == 120000
    assert data.client_k.id in {r.client_id for r in report.rows}


def test_it_filters_by_client_and_currency(world):
    data = build(world)
    only_k = figures.compute(world.org_a.id, ReportFilters("custom", date(2026, 1, 1), date(2026, 2, 28),
                                                           client_id=data.client_k.id), tz=TZ, now=NOW)
    assert [r.currency for r in only_k.currencies] == ["KWD"]
    usd = figures.compute(world.org_a.id, ReportFilters("custom", date(2026, 1, 1), date(2026, 2, 28), "USD"),
                          tz=TZ, now=NOW)
    assert [r.currency for r in usd.currencies] == ["USD"] and [r.currency for r in usd.aging.rows] == ["USD"]


def test_it_never_counts_another_organizations_money(world):
    build(world)
    theirs = figures.compute(world.org_b.id, PERIOD, tz="Asia/Tokyo", now=NOW)
    assert cards(theirs, "JPY")["collected"] == (1, 99999) and len(theirs.currencies) == 1


def test_it_knows_the_local_day_across_daylight_saving(world):
    # New York moved to summer time at 07:00 UTC on 8 March 2026
    period = Period(date(2026, 3, 1), date(2026, 3, 31), TZ, date(2026, 3, 31))
    edges = offsets(TZ, period.start_at, period.end_before)
    assert [(at.isoformat(), offset) for at, offset in edges] == [
        ("2026-03-01T05:00:00+00:00", -18000), ("2026-03-08T07:00:00+00:00", -14400)]
    assert Period.of("last_month", TZ, NOW).start == date(2026, 2, 1)
    assert Period.of("12m", TZ, NOW).months[0] == date(2025, 4, 1)


def test_it_keeps_a_report_until_the_ledger_changes(world):
    data = build(world)
    first = figures.compute(world.org_a.id, PERIOD, tz=TZ, now=NOW)
    assert figures.compute(world.org_a.id, PERIOD, tz=TZ, now=NOW) is first  # asked again: kept
    record_manual_payment(data.usd["U5"], amount=1000, method="cash", paid_on=date(2026, 2, 20), reference="",
                          actor=SYSTEM, now=NOW)
    again = figures.compute(world.org_a.id, PERIOD, tz=TZ, now=NOW)
    assert again is not first and again.for_currency("USD").cards["collected"].amount == 69000
    assert figures.compute(world.org_a.id, PERIOD, tz=TZ, now=NOW.replace(day=11)) is not again  # a new day


def test_it_gives_the_api_plain_json_values(world):
    build(world)
    stats = figures.as_dict(figures.compute(world.org_a.id, PERIOD, tz=TZ, now=NOW))
    assert json.loads(json.dumps(stats)) == stats
    usd = next(c for c in stats["currencies"] if c["currency"] == "USD")
    assert usd["cards"]["collected"] == {"count": 3, "amount": 68000}
    assert usd["cards"]["days_to_pay"] == {"count": 2, "total_days": 64, "average_days": "32.0"}
    assert usd["cards"]["collection_rate"] == {"count": 4, "amount": 58000, "invoiced": 118000, "rate_percent": "49.2"}
    assert usd["months"][1] == {"month": "2026-02", "invoiced": 90000, "collected": 55000}
    assert stats["period"] == {"from": "2026-01-01", "to": "2026-02-28", "time_zone": TZ, "today": "2026-03-10"}
