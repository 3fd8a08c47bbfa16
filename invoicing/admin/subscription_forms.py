"""Forms of the staff subscription pages: a plan with its prices, subscribing a client, changing a plan or seats,
cancelling. Amounts are typed in major units and parsed into minor units of each price's currency
(invoicing/money.py: JPY takes no decimals, KWD three); the services get plain values."""

from __future__ import annotations

import secrets
from decimal import Decimal, InvalidOperation
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, ValidationError

from invoicing.admin.forms import currency_choices
from invoicing.models import MILLI, PLAN_INTERVAL_UNITS, Plan
from invoicing.money import MoneyError, format_plain, parse_amount
from invoicing.services.subscriptions.plans import (
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_TRIAL_DAYS,
    PlanData,
    PriceData,
    tax_percent,
)

BLANK_PRICES = 1  # empty price rows offered under the filled ones (no JavaScript needed to add one)
INTERVAL_LABELS = {"month": "months", "year": "years"}


def new_key() -> str:
    return secrets.token_urlsafe(24)


def choices(pairs: list[tuple[int, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


def _whole(text: str | None, *, low: int, high: int, message: str) -> int:
    value = (text or "").strip()
    if not value.isdigit() or not low <= int(value) <= high:
        raise ValidationError(message)
    return int(value)


class PriceForm(Form):
    """One price row. `id` is the current price it stands for (empty: a new price)."""

    id = HiddenField()
    currency = SelectField("Currency", choices=[])
    amount = StringField("Amount per period", validators=[Length(max=40)])
    interval_count = StringField("Every", default="1", validators=[Length(max=4)])
    interval_unit = SelectField("Unit", choices=[SelectChoice(u, INTERVAL_LABELS[u]) for u in PLAN_INTERVAL_UNITS])
    setup_fee = StringField("Setup fee (optional)", validators=[Length(max=40)])
    remove = BooleanField("Stop offering this price")

    @property
    def blank(self) -> bool:
        return not self.id.data and not (self.amount.data or "").strip()

    def price_data(self) -> PriceData | None:
        """The row as a PriceData (minor units), or None with the errors on its fields."""
        if self.blank:
            return None
        currency = self.currency.data or ""
        amount = setup_fee = count = 0
        try:
            amount = parse_amount(self.amount.data or "", currency)
        except MoneyError as exc:
            self.amount.errors = [str(exc)]
        try:
            setup_fee = parse_amount(self.setup_fee.data or "0", currency)
        except MoneyError as exc:
            self.setup_fee.errors = [str(exc)]
        try:
            count = _whole(self.interval_count.data, low=1, high=99, message="A whole number, e.g. 1 for every month.")
        except ValidationError as exc:
            self.interval_count.errors = [str(exc)]
        if self.amount.errors or self.setup_fee.errors or self.interval_count.errors:
            return None
        return PriceData(currency=currency, amount=amount, interval_unit=self.interval_unit.data or "",
                         interval_count=count, setup_fee=setup_fee,
                         id=int(self.id.data) if (self.id.data or "").isdigit() else None,
                         remove=bool(self.remove.data))


class PlanForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="Give the plan a name."), Length(max=MAX_NAME)])
    description = TextAreaField("Description (shown on the sign-up page)", validators=[Length(max=MAX_DESCRIPTION)])
    trial_days = StringField("Free trial (days; 0 for none)", default="0")
    tax_rate = StringField("Tax rate (%)", default="0")
    per_seat = BooleanField("Priced per seat: clients choose how many")
    public = BooleanField("Public sign-up page open")
    slug = StringField("Sign-up address /subscribe/…", validators=[Length(max=80)])
    prices = FieldList(FormField(PriceForm), min_entries=1, max_entries=20)

    def __init__(self, *args: Any, currencies: list[tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.price_rows: list[int] = []
        for row in self.prices:
            row.form.currency.choices = [SelectChoice(c, c) for c, _ in currencies]

    @classmethod
    def of(cls, plan: Plan | None, *, default_currency: str, formdata: Any = None) -> PlanForm:
        """The form for a new plan (formdata None: blank) or filled from `plan` on GET."""
        rows: list[dict[str, Any]] = []
        if plan is not None:
            rows = [{"id": str(p.id), "currency": p.currency, "amount": format_plain(p.amount, p.currency),
                     "interval_count": str(p.interval_count), "interval_unit": p.interval_unit,
                     "setup_fee": format_plain(p.setup_fee, p.currency) if p.setup_fee else ""}
                    for p in plan.prices if p.archived_at is None]
        rows += [{"currency": default_currency, "interval_count": "1", "interval_unit": "month"}] * BLANK_PRICES
        data: dict[str, Any] = {"prices": rows}
        if plan is not None:
            data.update(name=plan.name, description=plan.description, trial_days=str(plan.trial_days),
                        tax_rate=tax_percent(plan.tax_rate_milli), per_seat=plan.per_seat,
                        public=plan.public, slug=plan.slug)
        codes = [p["currency"] for p in rows]
        return cls(formdata=formdata, data=data, currencies=currency_choices(*codes, default_currency))

    def validate_trial_days(self, field: StringField) -> None:
        _whole(field.data or "0", low=0, high=MAX_TRIAL_DAYS, message=f"0 to {MAX_TRIAL_DAYS} days (0: no trial).")

    def validate_tax_rate(self, field: StringField) -> None:
        if self.tax_milli() is None:
            raise ValidationError("0 to 100 %, at most 3 decimals.")

    def tax_milli(self) -> int | None:
        try:
            rate = Decimal((self.tax_rate.data or "0").strip().rstrip("%").strip() or "0")
        except InvalidOperation:
            return None
        milli = rate * MILLI
        return int(milli) if rate.is_finite() and 0 <= rate <= 100 and milli == int(milli) else None

    def plan_data(self) -> PlanData | None:
        """PlanData when every field parses (validate() ran), else None with the errors on the fields."""
        parsed = [(n, row.form.price_data()) for n, row in enumerate(self.prices)]
        self.price_rows = [n for n, price in parsed if price is not None]  # the service's price n is row price_rows[n]
        if any(f.errors for f in self if f.name != "prices") or any(
                sub.errors for row in self.prices for sub in row.form):
            return None
        return PlanData(name=self.name.data or "", description=self.description.data or "",
                        slug=self.slug.data or "", public=bool(self.public.data),
                        trial_days=int((self.trial_days.data or "0").strip()), tax_rate_milli=self.tax_milli() or 0,
                        per_seat=bool(self.per_seat.data), prices=tuple(p for _, p in parsed if p is not None))

    def show_errors(self, errors: dict[str, str]) -> None:
        """Put a service's PlanInvalid messages ("name", "prices-0-amount", ...) beside their fields."""
        fields = {"tax_rate": self.tax_rate, **{f.name: f for f in self if f.name != "prices"}}
        fields.update({sub.name: sub for row in self.prices for sub in row.form})
        for name, message in errors.items():
            kind, _, rest = name.partition("-")
            index, _, sub = rest.partition("-")
            if kind == "prices" and index.isdigit() and int(index) < len(self.price_rows):
                name = f"prices-{self.price_rows[int(index)]}-{sub}"
            field = fields.get(name)
            if field is not None:
                field.errors = [*field.errors, message]
            else:
                self.form_errors.append(message)


# --- subscriptions ---------------------------------------------------------------------------------------


class SubscribeForm(FlaskForm):
    """Staff subscribe an existing client. `key` makes a double-submitted form one subscription."""

    price_id = SelectField("Plan and price", coerce=int, validate_choice=False)
    quantity = StringField("Seats", default="1")
    trial = RadioField("Trial", default="plan", choices=[SelectChoice("plan", "With the plan's trial"),
                                                         SelectChoice("none", "No trial")])
    charge = RadioField("First invoice", default="now", choices=[
        SelectChoice("now", "Issue it now and charge the card on file (if any)"),
        SelectChoice("due", "Issue it now, due after your payment terms")])
    key = HiddenField(validators=[DataRequired(message="The form expired; reload the page."), Length(max=64)])

    def validate_quantity(self, field: StringField) -> None:
        _whole(field.data, low=1, high=10_000, message="1 to 10,000 seats.")


class ChangeForm(FlaskForm):
    """Change a subscription's plan price or seats: preview first, then confirm (the key makes one change)."""

    price_id = SelectField("New plan and price", coerce=int, validate_choice=False)
    quantity = StringField("Seats", default="1")
    key = HiddenField(validators=[DataRequired(message="The form expired; reload the page."), Length(max=64)])

    def validate_quantity(self, field: StringField) -> None:
        _whole(field.data, low=1, high=10_000, message="1 to 10,000 seats.")


class CancelNowForm(FlaskForm):
    refund_unused = BooleanField("Refund the unused part of the period (prorated, through the refund door)")
    reason = StringField("Reason (optional)", validators=[Length(max=200)])


class MigrateForm(FlaskForm):
    to_price_id = SelectField("Move them to", coerce=int, validate_choice=False)
