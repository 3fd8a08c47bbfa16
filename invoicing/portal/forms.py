from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, IntegerField, PasswordField
from wtforms.validators import DataRequired, InputRequired, Length

from invoicing.services.portal.auth import MAX_PASSWORD
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
