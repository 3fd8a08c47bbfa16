"""The proration rule, pure: no database, no clock. Everything in integer minor units.

A period runs from its first day to the next period's first day (exclusive), in whole days of the
organization's time zone. A change made on day D (the organization's local date) takes effect for the whole of
day D: the client used days [start, D) at the old price and gets days [D, end) at the new one.

- credit = old amount x old quantity x remaining / period days (the unused part of what was billed),
- charge = new amount x new quantity x remaining / period days (the rest of the period at the new price),

each rounded half away from zero to a whole minor unit (the money rule everywhere, money.round_half_up), so each
line is within half a minor unit of its exact fraction, and both are >= 0. A change that also changes the
interval (monthly to yearly) starts a new period on day D: the credit as above and a charge for the whole new
period. The difference (charge - credit) is invoiced now when above zero; when below zero it is kept as the
client's credit (CreditEntry) and applied to the next invoice. Credit is kept before tax and applied before tax
(as a line of the next invoice), so tax is always computed on what is actually charged.

Any sequence of changes in one period telescopes: each change credits exactly what the previous one charged for
the days left (same days, same price), up to the half unit of each line's rounding.

Three-decimal currencies (KWD, BHD, JOD, OMR, TND): cards take them only in steps of 10 (gateways/base.py
check_chargeable), so their lines are rounded half away from zero to a multiple of 10 (`step`): within 5 of the
exact fraction, the currency's smallest chargeable unit, so that the difference can be charged by autopay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fractions import Fraction

MONTHS = {"month": 1, "year": 12}


def card_step(currency: str) -> int:
    """The smallest amount step cards take in this currency (10 for the three-decimal ones, else 1)."""
    from invoicing.gateways.base import TEN_STEP_CURRENCIES

    return 10 if currency.upper() in TEN_STEP_CURRENCIES else 1


def share(amount: int, days: int, period_days: int, step: int = 1) -> int:
    """`amount` x days / period_days, rounded half away from zero to a whole minor unit (to a multiple of `step`:
    10 for currencies cards take in steps of 10)."""
    if period_days <= 0:
        raise ValueError("a period has at least one day")
    if not 0 <= days <= period_days:
        raise ValueError("the days left must be within the period")
    exact = Fraction(amount) * days / period_days
    return round_half_up_fraction(exact / step) * step


def round_half_up_fraction(value: Fraction) -> int:
    """Half away from zero, like money.round_half_up, for an exact fraction."""
    whole, rest = divmod(abs(value.numerator), value.denominator)
    if 2 * rest >= value.denominator:
        whole += 1
    return whole if value >= 0 else -whole


def days_left(today: date, start: date, end: date) -> int:
    """Whole days from `today` (included) to `end` (excluded), within the period [start, end)."""
    return max(0, (end - max(today, start)).days)


def months(interval_unit: str, interval_count: int) -> int:
    return MONTHS[interval_unit] * interval_count


def compare_cost(old: tuple[int, int, int], new: tuple[int, int, int]) -> int:
    """Compare two (amount, quantity, months per period) by what they cost per month: -1, 0 or 1.
    Cross-multiplied, so no rounding decides it."""
    left = old[0] * old[1] * new[2]
    right = new[0] * new[1] * old[2]
    return (right > left) - (right < left)


@dataclass(frozen=True)
class Proration:
    days_left: int
    period_days: int
    credit: int  # unused part at the old price, >= 0
    charge: int  # the rest at the new price (or the whole new period), >= 0

    @property
    def net(self) -> int:
        """Before tax: > 0 is invoiced now, < 0 is kept as the client's credit."""
        return self.charge - self.credit


def prorate(*, old_amount: int, old_quantity: int, new_amount: int, new_quantity: int, start: date, end: date,
            today: date, new_period_end: date | None = None, step: int = 1) -> Proration:
    """The proration of a change on `today` in the period [start, end). `new_period_end` set: the interval
    changes, a new period [today, new_period_end) starts and is charged whole."""
    total = (end - start).days
    left = days_left(today, start, end)
    credit = share(old_amount * old_quantity, left, total, step)
    if new_period_end is not None:
        charge = new_amount * new_quantity
    else:
        charge = share(new_amount * new_quantity, left, total, step)
    return Proration(left, total, credit, charge)


def exact_fraction(amount: int, days: int, period_days: int) -> Fraction:
    """The exact value `share` rounds (for tests and documentation)."""
    return Fraction(amount) * days / period_days
