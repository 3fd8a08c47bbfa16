"""The public sign-up form. Field checks that need the plan live in the service (signup._clean), so the page
and the service say the same thing; this form checks the CSRF token and the types."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from invoicing.models import Plan
from invoicing.services.subscriptions import signup


class SignupForm(FlaskForm):
    name = StringField("Your name", render_kw={"maxlength": 200})  # lengths: the service's messages
    company = StringField("Company (optional)", render_kw={"maxlength": 200})
    email = EmailField("Email", render_kw={"maxlength": 254})
    price_id = RadioField("Price", coerce=int, validate_choice=False, validators=[Optional()])
    quantity = StringField("Seats", default="1", render_kw={"inputmode": "numeric"})  # checked by the service
    agree = BooleanField("I agree to these recurring charges")
    text_version = HiddenField(validators=[Length(max=40)])
    signup_key = HiddenField(validators=[Length(max=64)])

    def __init__(self, plan: Plan, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        prices = signup.active_prices(plan)
        self.price_id.choices = [SelectChoice(p.id, signup.price_label(p)) for p in prices]
        if self.price_id.data is None and prices and not self.is_submitted():  # the first, ticked
            self.price_id.data = prices[0].id
        self.text_version.data = self.text_version.data or signup.CONSENT_VERSION
        self.signup_key.data = self.signup_key.data or signup.new_signup_key()

    def signup_data(self) -> signup.SignupData:
        return signup.SignupData(name=self.name.data or "", company=self.company.data or "",
                                 email=self.email.data or "", price_id=self.price_id.data,
                                 quantity=_number(self.quantity.data), agree=bool(self.agree.data),
                                 text_version=self.text_version.data or "")

    def add_errors(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            if name == "form":
                self.form_errors.append(message)
            else:
                field = getattr(self, name)
                field.errors = [*field.errors, message]


def _number(text: str | None) -> int:
    """Seats as typed: a whole number, else 0 (which the service refuses with its message)."""
    text = (text or "").strip()
    return int(text) if text.isdigit() and len(text) < 10 else 0
