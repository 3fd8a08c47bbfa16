"""Accepting a staff invitation: the emailed link shows a form (GET never acts); the POST sets the password."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_user
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from invoicing.admin import bp
from invoicing.extensions import limiter
from invoicing.services import invites
from invoicing.services.settings import SettingsInvalid
from invoicing.services.users import MIN_PASSWORD

LIMIT = "20 per minute"  # like the login page (per address)


class AcceptForm(FlaskForm):
    password = PasswordField(f"Choose a password (at least {MIN_PASSWORD} characters)",
                             validators=[DataRequired(), Length(max=200)])
    confirm = PasswordField("The same password again",
                            validators=[DataRequired(), EqualTo("password", message="The passwords differ.")])


def _token_key() -> str:
    return "invite:" + (request.view_args or {}).get("token", "")[:200]


def _invalid(exc: invites.InvitationInvalid) -> ResponseReturnValue:
    return render_template("admin/invite_invalid.html", code=exc.status, reason=exc.reason), exc.status


@bp.route("/invite/<token>", methods=["GET", "POST"])
@limiter.limit(LIMIT)
@limiter.limit("5 per minute", methods=["POST"], key_func=_token_key)
def accept_invitation(token: str) -> ResponseReturnValue:
    now = datetime.now(UTC)
    secret_key = current_app.config["SECRET_KEY"]
    try:
        user = invites.read_invitation(token, secret_key=secret_key, now=now)
    except invites.InvitationInvalid as exc:
        return _invalid(exc)
    form = AcceptForm()
    if form.validate_on_submit():
        try:
            user = invites.accept_invitation(token, form.password.data or "", secret_key=secret_key, now=now,
                                             hash_method=current_app.config["PASSWORD_HASH_METHOD"])
        except invites.InvitationInvalid as exc:
            return _invalid(exc)
        except SettingsInvalid as exc:
            form.password.errors = [*form.password.errors, *exc.errors.values()]
        else:
            login_user(user)
            flash(f"Welcome, {user.email}: your password is set.")
            return redirect(url_for("admin.dashboard"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template("admin/invite_accept.html", form=form, user=user, organization=user.organization), status
