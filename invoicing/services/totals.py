"""Invoice totals, computed here and nowhere else (the editor's live totals call this too).

Rounding, documented once:
1. Each line's amount is quantity x unit price, rounded half-up to a whole minor unit.
2. The invoice discount is a percentage of the subtotal (rounded half-up) or a fixed amount capped at the
   subtotal. It is spread over the lines in proportion to their amounts (largest remainder, ties to the
   earlier line) so that the per-line parts add up exactly to the discount.
3. Each line's tax is (amount - its share of the discount) x its tax rate, rounded half-up; tax is the sum.
4. Total = subtotal - discount + tax.

Limits, so that no amount can overflow the 64-bit columns (the editor's messages state them too):
5. A quantity is above zero and at most MAX_QUANTITY (1,000,000,000), with at most 3 decimals.
6. Every amount is at most money.MAX_AMOUNT = 10**15 - 1 minor units ($9,999,999,999,999.99, ¥999,999,999,999,999,
   KWD 999,999,999,999.999): a unit price, each line's amount, the subtotal and the total of an invoice, a
   payment, a refund. limit_error() says which amount of an invoice is over; services.invoices refuses to store it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from invoicing.money import MAX_AMOUNT, format_money, round_half_up

PERCENT = "percent"
AMOUNT = "amount"
BASIS_POINTS = Decimal(10_000)  # a percent discount is stored in hundredths of a percent (12.5 % = 1250)
MAX_QUANTITY = Decimal(1_000_000_000)


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


def limit_error(totals: Totals, currency: str) -> str | None:
    """What is above MAX_AMOUNT in these totals (rule 6), as a message for staff; None when all fit."""
    most = format_money(MAX_AMOUNT, currency)
    for n, line in enumerate(totals.lines, 1):
        if line.amount > MAX_AMOUNT:
            return (f"Line {n}: quantity × unit price comes to {format_money(line.amount, currency)}; "
                    f"a line can be at most {most}.")
    largest = max(totals.subtotal, totals.total)
    if largest > MAX_AMOUNT:
        return f"The invoice would come to {format_money(largest, currency)}; an invoice can be at most {most}."
    return None
