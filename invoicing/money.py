"""Money is an integer count of minor units plus an ISO 4217 code; Decimal appears only at the edges.

Precision comes from Babel's CLDR data: USD and EUR have 2 decimals, JPY 0, KWD 3.
"""

from __future__ import annotations

import functools
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel import Locale
from babel.numbers import (
    NumberFormatError,
    format_currency,
    get_currency_precision,
    is_currency,
    parse_decimal,
)

DEFAULT_LOCALE = "en_US"

# Currencies offered in pickers; any ISO code Babel knows is accepted by the services.
COMMON_CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY", "SEK", "NOK", "DKK", "NZD", "KWD")

# The largest amount the app takes, in minor units, whatever the currency ($9,999,999,999,999.99, ¥999,999,999,999,999):
# unit prices, line amounts, invoice totals, payments and refunds. Sums of such amounts stay far below what the
# 64-bit columns hold (about 9.2e18). The rules that apply it are in services/totals.py.
MAX_AMOUNT = 10**15 - 1


class MoneyError(ValueError):
    """An amount or currency a user typed cannot be used; the message is safe to show."""


def check_currency(code: str) -> str:
    code = (code or "").strip().upper()
    if len(code) != 3 or not is_currency(code):
        raise MoneyError(f"{code or 'empty'} is not an ISO 4217 currency code.")
    return code


@functools.lru_cache(maxsize=256)
def precision(currency: str) -> int:
    """Number of decimals of the currency's minor unit (USD 2, JPY 0, KWD 3)."""
    return int(get_currency_precision(check_currency(currency)))


def round_half_up(value: Decimal) -> int:
    """The one rounding rule for money: half away from zero, to a whole minor unit."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_minor(amount: Decimal, currency: str) -> int:
    """Exact conversion of a major-unit Decimal; more decimals than the currency has is an error."""
    digits = precision(currency)
    scaled = amount.scaleb(digits)
    if scaled != scaled.to_integral_value():
        unit = "no decimals" if digits == 0 else f"at most {digits} decimal{'s' if digits > 1 else ''}"
        raise MoneyError(f"{currency} amounts take {unit}.")
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-precision(currency))


def parse_amount(text: str, currency: str, *, locale: str = DEFAULT_LOCALE, allow_negative: bool = False) -> int:
    """Parse what a person typed ("1,234.50", "$12", "1000") into minor units."""
    cleaned = (text or "").strip()
    for symbol in ("$", "€", "£", "¥", currency.upper()):
        cleaned = cleaned.replace(symbol, "")
    cleaned = cleaned.replace("\u00a0", "").replace(" ", "")
    if not cleaned:
        raise MoneyError("Enter an amount.")
    if not re.fullmatch(r"-?[0-9][0-9.,']*", cleaned):  # digits and separators only: no "1e3", "NaN", "0x10"
        raise MoneyError(f"{text.strip()!r} is not an amount.")
    try:
        value = parse_decimal(cleaned, locale=locale, strict=True)
    except (NumberFormatError, InvalidOperation):
        raise MoneyError(f"{text.strip()!r} is not an amount.") from None
    if not value.is_finite():
        raise MoneyError(f"{text.strip()!r} is not an amount.")
    if value < 0 and not allow_negative:
        raise MoneyError("The amount cannot be negative.")
    minor = to_minor(value, currency)
    if abs(minor) > MAX_AMOUNT:
        raise MoneyError(f"The amount is too large: at most {format_money(MAX_AMOUNT, currency)}.")
    return minor


@functools.lru_cache(maxsize=32)
def _locale(name: str) -> Locale:
    return Locale.parse(name)  # parsing the name on every call costs more than the formatting itself


@functools.lru_cache(maxsize=8192)
def format_money(minor: int, currency: str, *, locale: str = DEFAULT_LOCALE) -> str:
    """Display form with symbol and grouping: 123450 USD -> "$1,234.50", 5000 JPY -> "¥5,000".

    Memoized: it is pure, Babel takes ~40 µs a call, and pages show the same few amounts again and again."""
    return str(format_currency(from_minor(minor, currency), currency, locale=_locale(locale)))


def format_plain(minor: int, currency: str) -> str:
    """Form-field form without symbol or grouping: 123450 USD -> "1234.50"; round-trips with parse_amount."""
    return f"{from_minor(minor, currency):f}"
