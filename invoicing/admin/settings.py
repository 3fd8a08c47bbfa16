"""Organization settings and staff users (the superadmin's organizations: admin/organizations.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from invoicing.admin import bp
from invoicing.auth import role_required
from invoicing.extensions import db
from invoicing.models import Organization, User
from invoicing.money import COMMON_CURRENCIES, MoneyError, format_plain, parse_amount
from invoicing.services import DomainError, NotFound, invites, queries
from invoicing.services import settings as svc
from invoicing.services.audit import Actor
from invoicing.services.site import Site

ACTING_ORG = "acting_organization_id"


def _now() -> datetime:
    return datetime.now(UTC)


@bp.before_request
def _load_acting_organization() -> None:
    """A superadmin who switched organization is scoped to it (queries.org_scope reads the attribute)."""
    g.acting_organization = None
    user = current_user._get_current_object() if current_user.is_authenticated else None
    if not isinstance(user, User) or not user.is_superadmin:
        return
    org_id = session.get(ACTING_ORG)
    org = db.session.get(Organization, org_id) if isinstance(org_id, int) else None
    if org is None:
        session.pop(ACTING_ORG, None)
    user.acting_organization_id = org.id if org else None
    g.acting_organization = org


class _Form(FlaskForm):
    def add_errors(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            field = getattr(self, name, None)
            if field is None:
                self.form_errors.append(message)
            else:
                field.errors = [*field.errors, message]


class SettingsForm(_Form):
    name = StringField("Organization name", validators=[DataRequired(), Length(max=200)])
    address = TextAreaField("Address", validators=[Length(max=1000)])
    phone = StringField("Phone", validators=[Length(max=50)])
    website = StringField("Website", validators=[Length(max=200)])
    sender_email = StringField("Reply-to email (clients' replies go here)", validators=[Length(max=254)])
    logo = FileField("Logo (PNG, JPEG or WebP, 512 KB at most)")
    remove_logo = BooleanField("Remove the current logo")
    brand_color = StringField("Brand colour", validators=[DataRequired(), Length(max=7)])
    accent_color = StringField("Accent colour", validators=[DataRequired(), Length(max=7)])
    default_currency = StringField("Default currency", validators=[DataRequired(), Length(max=3)])
    payment_terms_days = IntegerField("Payment terms (days)", validators=[InputRequired(), NumberRange(0, 365)])
    number_format = StringField("Invoice number format", validators=[DataRequired(), Length(max=64)])
    timezone = SelectField("Time zone", validate_choice=False)
    allow_partial_payments = BooleanField("Clients may pay part of an invoice")
    min_partial_amount = StringField("Smallest partial payment", validators=[Length(max=30)])
    payment_instructions = TextAreaField("Payment instructions (printed on invoices)", validators=[Length(max=2000)])
    manual_payment_receipts = BooleanField("Email the client a receipt when staff record a cash, bank transfer or "
                                           "cheque payment")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.timezone.choices = [SelectChoice(zone) for zone in svc.timezones()]

    @classmethod
    def initial(cls, org: Organization) -> dict[str, Any]:
        data: dict[str, Any] = svc.OrgSettings.of(org).__dict__.copy()
        data["min_partial_amount"] = format_plain(org.min_partial_amount or 0, org.default_currency)
        return data

    def to_settings(self) -> svc.OrgSettings | None:
        """The settings as domain values (the minimum partial amount in minor units), or None with errors."""
        currency = (self.default_currency.data or "").strip().upper()
        minimum = 0
        if self.allow_partial_payments.data and (self.min_partial_amount.data or "").strip():
            try:
                minimum = parse_amount(self.min_partial_amount.data or "", currency)
            except MoneyError as exc:
                self.add_errors({"min_partial_amount": str(exc)})
                return None
        return svc.OrgSettings(
            name=self.name.data or "", address=self.address.data or "", sender_email=self.sender_email.data or "",
            phone=self.phone.data or "", website=self.website.data or "", brand_color=self.brand_color.data or "",
            accent_color=self.accent_color.data or "", default_currency=currency,
            payment_terms_days=self.payment_terms_days.data or 0, number_format=self.number_format.data or "",
            timezone=self.timezone.data or "", allow_partial_payments=bool(self.allow_partial_payments.data),
            min_partial_amount=minimum, payment_instructions=self.payment_instructions.data or "",
            manual_payment_receipts=bool(self.manual_payment_receipts.data),
        )

    def logo_bytes(self) -> bytes | None:
        upload = self.logo.data
        if upload is None or not getattr(upload, "filename", ""):
            return None
        return bytes(upload.read(svc.LOGO_MAX_BYTES + 1))  # one byte more than allowed is enough to refuse


class InviteForm(_Form):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    role = SelectField("Role", choices=[SelectChoice("staff", "Staff"), SelectChoice("admin", "Admin")],
                       default="staff")


class PasswordForm(_Form):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=200)])
    new_password = PasswordField("New password (at least 10 characters)", validators=[DataRequired(), Length(max=200)])


def _organization() -> Organization | None:
    return svc.current_organization(current_user)


@bp.route("/settings", methods=["GET", "POST"])
@role_required("admin")
def settings() -> ResponseReturnValue:
    org = _organization()
    if org is None:
        flash("Choose the organization to act in first.")
        return redirect(url_for("admin.switch_organization"), 303)
    form = SettingsForm() if request.method == "POST" else SettingsForm(data=SettingsForm.initial(org))
    if form.validate_on_submit() and (data := form.to_settings()) is not None:
        try:
            svc.update_settings(org.id, data, logo=form.logo_bytes(), remove_logo=bool(form.remove_logo.data),
                                actor=Actor.user(current_user), now=_now())
        except svc.SettingsInvalid as exc:
            form.add_errors(exc.errors)
        else:
            flash("Settings saved.")
            return redirect(url_for("admin.settings"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template("admin/settings.html", form=form, organization=org,
                           currencies=COMMON_CURRENCIES), status


@bp.get("/settings/logo")
@role_required("admin", "staff")
def settings_logo() -> ResponseReturnValue:
    org = _organization()
    if org is None or not org.logo:
        return render_template("errors/error.html", code=404, message="No logo."), 404
    return current_app.response_class(org.logo, mimetype=org.logo_mime or "application/octet-stream")


def _site() -> Site:
    return Site.from_config(current_app.config)


def _users_page(form: InviteForm, *, error: str | None = None, status: int = 200) -> ResponseReturnValue:
    org = _organization()
    return render_template("admin/users.html", users=svc.list_users(queries.org_scope(current_user)), form=form,
                           organization=org, error=error), status


@bp.route("/users", methods=["GET", "POST"])
@role_required("admin")
def users() -> ResponseReturnValue:
    form = InviteForm()
    org = _organization()
    if org is None or not form.validate_on_submit():
        return _users_page(form, status=400 if request.method == "POST" else 200)
    try:
        user = invites.invite_user(org.id, email=form.email.data or "", name=form.name.data or "",
                                   role=form.role.data or "", actor=Actor.user(current_user), site=_site(),
                                   now=_now())
    except svc.SettingsInvalid as exc:
        form.add_errors(exc.errors)
        return _users_page(form, status=400)
    flash(f"Invitation sent to {user.email}: they choose their password from the link in the email.")
    return redirect(url_for("admin.users"), 303)


@bp.post("/users/<int:user_id>/invitation")
@role_required("admin")
def user_invitation(user_id: int) -> ResponseReturnValue:
    try:
        user = invites.resend_invitation(user_id, queries.org_scope(current_user), actor=Actor.user(current_user),
                                         site=_site(), now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        return _users_page(InviteForm(formdata=None), error=str(exc), status=422)
    flash(f"A new invitation was sent to {user.email}; the earlier link no longer works.")
    return redirect(url_for("admin.users"), 303)


@bp.post("/users/<int:user_id>/role")
@role_required("admin")
def user_role(user_id: int) -> ResponseReturnValue:
    try:
        user = svc.change_role(user_id, queries.org_scope(current_user), request.form.get("role", ""),
                               actor=Actor.user(current_user), now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        return _users_page(InviteForm(formdata=None), error=str(exc), status=422)
    flash(f"{user.email} is now {user.role}.")
    return redirect(url_for("admin.users"), 303)


@bp.post("/users/<int:user_id>/active")
@role_required("admin")
def user_active(user_id: int) -> ResponseReturnValue:
    active = request.form.get("active") == "1"
    try:
        user = svc.set_active(user_id, queries.org_scope(current_user), active, actor=Actor.user(current_user),
                              now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        return _users_page(InviteForm(formdata=None), error=str(exc), status=422)
    flash(f"{user.email} is {'active again' if user.active else 'deactivated'}.")
    return redirect(url_for("admin.users"), 303)


@bp.route("/password", methods=["GET", "POST"])
@role_required("admin", "staff")
def password() -> ResponseReturnValue:
    form = PasswordForm()
    if form.validate_on_submit():
        try:
            svc.change_password(current_user.id, form.current_password.data or "", form.new_password.data or "",
                                now=_now(), hash_method=current_app.config["PASSWORD_HASH_METHOD"])
        except svc.SettingsInvalid as exc:
            form.add_errors(exc.errors)
        else:
            flash("Your password was changed.")
            return redirect(url_for("admin.dashboard"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template("admin/settings_password.html", form=form), status
