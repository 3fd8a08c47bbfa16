from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField
from wtforms.validators import DataRequired, Length


class EmailLinkForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])


class ConfirmForm(FlaskForm):
    """A bare POST with its CSRF token (sign in with a link, sign out)."""
