"""Forms of the portal's subscription pages (portal/subscriptions.py): plain values for the service."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, RadioField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, NumberRange, Optional

from invoicing.models import PlanPrice, Subscription
from invoicing.services.subscriptions.core import MAX_SEATS
from invoicing.services.subscriptions.signup import price_label


class ChangeForm(FlaskForm):
    """Choose a plan and seats: a GET (the preview changes nothing), so no CSRF token."""

    class Meta:
        csrf = False

    price_id = RadioField("Plan", coerce=int, validate_choice=False, validators=[Optional()])
    quantity = IntegerField("Seats", validators=[Optional(), NumberRange(min=1, max=MAX_SEATS)])

    def offer(self, subscription: Subscription, prices: list[PlanPrice]) -> ChangeForm:
        self.price_id.choices = [SelectChoice(p.id, f"{p.plan.name}: {price_label(p)}") for p in prices]
        if self.price_id.data is None:
            self.price_id.data = subscription.price_id
        if self.quantity.data is None and not self.quantity.raw_data:
            self.quantity.data = subscription.quantity
        return self

    def chosen_price(self) -> int | None:
        self.validate()
        return self.price_id.data if not self.price_id.errors else None

    def chosen_quantity(self) -> int | None:
        """The seats typed; 0 (the service's "between 1 and N" message) for anything that is not a number."""
        self.validate()
        return 0 if self.quantity.raw_data and self.quantity.raw_data[0] and self.quantity.data is None \
            else self.quantity.data


class ConfirmChangeForm(FlaskForm):
    """The confirm step: the previewed values and the token that makes a second confirm the same change."""

    price_id = HiddenField()
    quantity = HiddenField()
    request_key = HiddenField(validators=[Length(max=64)])

    def values(self) -> tuple[int | None, int | None]:
        def number(text: str | None) -> int | None:
            return int(text) if text and text.isdigit() and len(text) < 10 else None

        return number(self.price_id.data), number(self.quantity.data)


class CancelForm(FlaskForm):
    reason = TextAreaField("Why are you cancelling? (optional)", validators=[Length(max=200)])
