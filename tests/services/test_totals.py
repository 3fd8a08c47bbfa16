from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from invoicing.services.totals import AMOUNT, PERCENT, LineInput, compute_totals

quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("10000"), places=3)
prices = st.integers(min_value=0, max_value=10**8)
rates = st.decimals(min_value=Decimal(0), max_value=Decimal(30), places=3)
lines = st.lists(st.builds(LineInput, quantities, prices, rates), min_size=1, max_size=12)


def test_it_documents_rounding_with_an_example():
    totals = compute_totals(
        [LineInput(Decimal("12.5"), 9500, Decimal("8.5")), LineInput(Decimal("1"), 240000, Decimal(0))],
        PERCENT, 1000,
    )
    # 12.5 x 95.00 = 1187.50; subtotal 3587.50; 10 % off = 358.75 spread 118.75 / 240.00
    assert [line.amount for line in totals.lines] == [118750, 240000]
    assert totals.discount == 35875
    assert [line.discount for line in totals.lines] == [11875, 24000]
    assert totals.lines[0].tax == 9084  # (1187.50 - 118.75) x 8.5 % = 90.84375 -> 90.84
    assert totals.total == 358750 - 35875 + 9084


def test_it_rounds_half_up_for_zero_decimal_currencies():
    totals = compute_totals([LineInput(Decimal("0.5"), 3, Decimal("10"))])  # 1.5 yen -> 2, tax 0.2 -> 0
    assert (totals.subtotal, totals.tax, totals.total) == (2, 0, 2)


def test_it_caps_an_amount_discount_at_the_subtotal():
    totals = compute_totals([LineInput(Decimal(1), 500)], AMOUNT, 900)
    assert (totals.discount, totals.total) == (500, 0)


@given(lines=lines, kind=st.sampled_from([None, PERCENT, AMOUNT]), value=st.integers(0, 10_000))
def test_it_keeps_every_total_consistent(lines, kind, value):
    totals = compute_totals(lines, kind, value)
    assert totals.subtotal == sum(line.amount for line in totals.lines)
    assert totals.discount == sum(line.discount for line in totals.lines)
    assert totals.tax == sum(line.tax for line in totals.lines)
    assert totals.total == totals.subtotal - totals.discount + totals.tax
    assert 0 <= totals.discount <= totals.subtotal
    for line_input, line in zip(lines, totals.lines, strict=True):
        exact = line_input.quantity * line_input.unit_price
        assert abs(line.amount - exact) <= Decimal("0.5")  # one rounding per line, never more
        assert 0 <= line.discount <= line.amount
        assert line.tax >= 0


@given(lines=lines, pct=st.integers(0, 10_000))
def test_it_spreads_a_percent_discount_in_proportion(lines, pct):
    totals = compute_totals(lines, PERCENT, pct)
    for line in totals.lines:
        if totals.subtotal:
            share = Decimal(totals.discount) * line.amount / totals.subtotal
            assert abs(line.discount - share) < 1
