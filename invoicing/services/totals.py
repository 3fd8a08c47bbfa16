"""Invoice totals, computed here and nowhere else (the editor's live totals call this too).

Rounding, documented once:
1. Each line's amount is quantity x unit price, rounded half-up to a whole minor unit.
2. The invoice discount is a percentage of the subtotal (rounded half-up) or a fixed amount capped at the
   subtotal. It is spread over the lines in proportion to their amounts (largest remainder, ties to the
   earlier line) so that the per-line parts add up exactly to the discount.
3. Each line's tax is (amount - its share of the discount) x its tax rate, rounded half-up; tax is the sum.
4. Total = subtotal - discount + tax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from invoicing.money import round_half_up

PERCENT = "percent"
AMOUNT = "amount"
BASIS_POINTS = Decimal(10_000)  # a percent discount is stored in hundredths of a percent (12.5 % = 1250)


@dataclass(frozen=True)
class LineInput:
    quantity: Decimal
    unit_price: int  # minor units
    tax_rate: Decimal = Decimal(0)  # percent, e.g. Decimal("8.875")


@dataclass(frozen=True)
class LineTotals:
    amount: int
    discount: int
    tax: int


@dataclass(frozen=True)
class Totals:
    lines: tuple[LineTotals, ...]
    subtotal: int
    discount: int
    tax: int
    total: int


def _allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split total over weights proportionally with the largest-remainder method; the parts sum to total."""
    whole = sum(weights)
    if total == 0 or whole == 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


def compute_totals(lines: Sequence[LineInput], discount_kind: str | None = None, discount_value: int = 0) -> Totals:
    amounts = [round_half_up(line.quantity * line.unit_price) for line in lines]
    subtotal = sum(amounts)
    if discount_kind == PERCENT:
        discount = round_half_up(Decimal(subtotal) * discount_value / BASIS_POINTS)
    elif discount_kind == AMOUNT:
        discount = discount_value
    else:
        discount = 0
    discount = max(0, min(discount, subtotal))
    shares = _allocate(discount, amounts)
    taxes = [
        round_half_up((amount - share) * line.tax_rate / 100)
        for line, amount, share in zip(lines, amounts, shares, strict=True)
    ]
    tax = sum(taxes)
    return Totals(
        lines=tuple(LineTotals(a, s, t) for a, s, t in zip(amounts, shares, taxes, strict=True)),
        subtotal=subtotal,
        discount=discount,
        tax=tax,
        total=subtotal - discount + tax,
    )
