from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from invoicing.services.portal.profile import ProfileData


class EmailLinkForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])


class ConfirmForm(FlaskForm):
    """A bare POST with its CSRF token (sign in with a link, sign out)."""


class CompanyProfileForm(FlaskForm):
    """What a contact may change about their company (the name is staff's): plain values for the service."""

    email = EmailField("Billing email", validators=[DataRequired(), Length(max=254)])
    address = TextAreaField("Address", validators=[Length(max=2000)])
    tax_id = StringField("Tax id (VAT number, EIN...)", validators=[Length(max=64)])

    def profile_data(self) -> ProfileData:
        return ProfileData(email=self.email.data or "", address=self.address.data or "", tax_id=self.tax_id.data or "")
