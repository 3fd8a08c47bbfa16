"""Forms of the public pay pages. They return domain values: an amount in minor units, a card number."""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import EmailField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from invoicing.money import MoneyError, parse_amount


class PayForm(FlaskForm):
    """Pay now: the amount due, or (partial payments allowed) an amount the client chooses."""

    amount = StringField("Amount to pay", validators=[Optional(), Length(max=32)])

    def __init__(self, *args: Any, currency: str, amount_due: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.amount_due = amount_due
        self.minor: int = amount_due

    def validate_amount(self, field: StringField) -> None:
        if not (field.data or "").strip():
            self.minor = self.amount_due
            return
        try:
            self.minor = parse_amount(field.data or "", self.currency)
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None


class SandboxCardForm(FlaskForm):
    """The sandbox's hosted page: a test card number (or a test bank account for a debit) and a receipt email."""

    card = StringField("Card number", validators=[Length(max=40)])
    account = StringField("Account number", validators=[Length(max=40)])
    email = EmailField("Email", validators=[Optional(), Length(max=254)])

    @property
    def number(self) -> str:
        return "".join(ch for ch in (self.card.data or "") if ch.isdigit())


class SandboxSetupForm(FlaskForm):
    """The sandbox's save-a-card page: a test card number and its expiry (MM / YY)."""

    card = StringField("Card number", validators=[DataRequired(message="Enter a card number."), Length(max=40)])
    expiry = StringField("Expiry (MM / YY)", validators=[DataRequired(message="Enter the expiry date."),
                                                         Length(max=10)])
    exp_month: int = 0
    exp_year: int = 0

    @property
    def number(self) -> str:
        return "".join(ch for ch in (self.card.data or "") if ch.isdigit())

    def validate_expiry(self, field: StringField) -> None:
        match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", field.data or "")
        if not match or not 1 <= int(match.group(1)) <= 12:
            raise ValidationError("Enter the expiry as MM / YY, for example 12 / 34.")
        year = int(match.group(2))
        self.exp_month, self.exp_year = int(match.group(1)), year + 2000 if year < 100 else year
