from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.money import MoneyError, format_money, format_plain, parse_amount, precision, to_minor

CURRENCIES = ["USD", "EUR", "JPY", "KWD", "GBP", "CHF"]


def test_it_knows_each_currency_precision():
    assert (precision("USD"), precision("EUR"), precision("JPY"), precision("KWD")) == (2, 2, 0, 3)


@given(minor=st.integers(min_value=0, max_value=10**13), currency=st.sampled_from(CURRENCIES))
def test_it_round_trips_the_form_format(minor, currency):
    assert parse_amount(format_plain(minor, currency), currency) == minor


@given(minor=st.integers(min_value=0, max_value=10**13), currency=st.sampled_from(CURRENCIES))
def test_it_round_trips_the_display_format(minor, currency):
    assert parse_amount(format_money(minor, currency), currency) == minor


def test_it_formats_zero_decimal_and_three_decimal_currencies():
    assert format_money(5000, "JPY") == "¥5,000"
    assert format_money(1234567, "KWD") == "KWD1,234.567"
    assert format_money(123450, "USD") == "$1,234.50"


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [("12.5", "JPY", "no decimals"), ("1.234", "USD", "at most 2 decimals"), ("1.2345", "KWD", "at most 3"),
     ("abc", "USD", "not an amount"), ("-5", "USD", "negative"), ("", "USD", "Enter an amount"),
     ("NaN", "USD", "not an amount"), ("1e3", "USD", "not an amount"), ("1" * 16, "USD", "too large")],
)
def test_it_rejects_amounts_with_a_clear_message(text, currency, message):
    with pytest.raises(MoneyError, match=message):
        parse_amount(text, currency)


def test_it_rejects_unknown_currencies():
    with pytest.raises(MoneyError, match="ISO 4217"):
        precision("XYZ1")
    with pytest.raises(MoneyError):
        to_minor(Decimal("1"), "ZZZ")
