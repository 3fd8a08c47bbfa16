"""Forms of the public pay pages. They return domain values: an amount in minor units, a card number."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import EmailField, StringField
from wtforms.validators import Length, Optional, ValidationError

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
