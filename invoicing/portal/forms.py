from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length

from invoicing.services.portal.auth import MAX_PASSWORD
from invoicing.services.portal.autopay import MODES
from invoicing.services.portal.profile import ProfileData
from invoicing.services.users import MIN_PASSWORD


class EmailLinkForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])


class PasswordSignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])


class ConfirmForm(FlaskForm):
    """A bare POST with its CSRF token (sign in with a link, sign out)."""


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[Length(max=MAX_PASSWORD)])
    new_password = PasswordField(f"New password (at least {MIN_PASSWORD} characters)",
                                 validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    confirm = PasswordField("Repeat the new password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])

    def add_errors(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            field = getattr(self, name)
            field.errors = [*field.errors, message]


class CompanyForm(FlaskForm):
    """Act for another company: the contact row of the same person there."""

    contact_id = IntegerField(validators=[InputRequired()])


class AutopayForm(FlaskForm):
    """Autopay on: when to charge, and the explicit agreement to the terms of the version shown."""

    mode = RadioField("When should we charge your card?",
                      choices=[SelectChoice(key, label) for key, label in MODES.items()],
                      validators=[InputRequired(message="Choose when autopay charges.")])
    agree = BooleanField("I agree to these terms", validators=[
        DataRequired(message="Tick the box to agree to the terms: autopay stays off without it.")])
    text_version = HiddenField(validators=[Length(max=40)])


class CompanyProfileForm(FlaskForm):
    """What a contact may change about their company (the name is staff's): plain values for the service."""

    email = EmailField("Billing email", validators=[DataRequired(), Length(max=254)])
    address = TextAreaField("Address", validators=[Length(max=2000)])
    tax_id = StringField("Tax id (VAT number, EIN...)", validators=[Length(max=64)])

    def profile_data(self) -> ProfileData:
        return ProfileData(email=self.email.data or "", address=self.address.data or "", tax_id=self.tax_id.data or "")
