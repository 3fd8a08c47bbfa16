"""The superadmin's organizations: switch to one, create, rename, public URL, archive and un-archive, invite
the first admin. Only superadmins see the management pages; everyone else gets the 404 of a missing page."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from invoicing.admin import bp
from invoicing.admin.settings import ACTING_ORG, InviteForm, _Form, _now, _site
from invoicing.auth import role_required, superadmin_only
from invoicing.models import Organization
from invoicing.services import invites, organizations
from invoicing.services import settings as svc
from invoicing.services.audit import Actor


class OrganizationForm(_Form):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    public_url = StringField("Public URL (optional: its own address for clients, e.g. https://billing.acme.test)",
                             validators=[Length(max=300)])


def _base_url() -> str:
    return str(current_app.config["BASE_URL"])


def list_page(form: OrganizationForm | None = None, *, status: int = 200) -> ResponseReturnValue:
    """The superadmin's organization list (switch, manage) with the form that creates one."""
    return render_template("admin/settings_organizations.html", organizations=svc.list_organizations(),
                           form=form or OrganizationForm(formdata=None), base_url=_base_url()), status


def _manage_page(org: Organization, *, status: int = 200, **forms: Any) -> ResponseReturnValue:
    form = forms.get("form") or OrganizationForm(formdata=None, data={"name": org.name,
                                                                       "public_url": org.public_url or ""})
    return render_template("admin/organization.html", organization=org, form=form,
                           invite_form=forms.get("invite_form") or InviteForm(formdata=None, prefix="invite"),
                           users=svc.list_users(org.id), base_url=_base_url()), status


@bp.post("/organizations")
@superadmin_only
def create_organization() -> ResponseReturnValue:
    form = OrganizationForm()
    if not form.validate_on_submit():
        return list_page(form, status=400)
    try:
        org = organizations.add_organization(form.name.data or "", form.public_url.data or "", base_url=_base_url(),
                                             actor=Actor.user(current_user), now=_now())
    except svc.SettingsInvalid as exc:
        form.add_errors(exc.errors)
        return list_page(form, status=400)
    flash(f"{org.name} created. Invite its first admin below.")
    return redirect(url_for("admin.organization", organization_id=org.id), 303)


@bp.route("/organizations/<int:organization_id>", methods=["GET", "POST"])
@superadmin_only
def organization(organization_id: int) -> ResponseReturnValue:
    org = organizations.get_organization(organization_id)
    form = OrganizationForm()
    if request.method == "GET" or not form.validate_on_submit():
        return _manage_page(org, form=form if request.method == "POST" else None,
                            status=400 if request.method == "POST" else 200)
    try:
        org = organizations.update_organization(org.id, form.name.data or "", form.public_url.data or "",
                                                base_url=_base_url(), actor=Actor.user(current_user), now=_now())
    except svc.SettingsInvalid as exc:
        form.add_errors(exc.errors)
        return _manage_page(organizations.get_organization(organization_id), form=form, status=400)
    flash(f"{org.name} saved.")
    return redirect(url_for("admin.organization", organization_id=org.id), 303)


@bp.post("/organizations/<int:organization_id>/archive")
@superadmin_only
def archive_organization(organization_id: int) -> ResponseReturnValue:
    archived = request.form.get("archived") == "1"
    org = organizations.set_archived(organization_id, archived, actor=Actor.user(current_user), now=_now())
    flash(f"{org.name} is archived: its staff cannot log in and its pay links no longer take payments."
          if org.is_archived else f"{org.name} is active again.")
    return redirect(url_for("admin.organization", organization_id=org.id), 303)


@bp.post("/organizations/<int:organization_id>/invite")
@superadmin_only
def invite_first_admin(organization_id: int) -> ResponseReturnValue:
    org = organizations.get_organization(organization_id)
    form = InviteForm(prefix="invite")
    if not form.validate_on_submit():
        return _manage_page(org, invite_form=form, status=400)
    try:
        user = invites.invite_user(org.id, email=form.email.data or "", name=form.name.data or "", role="admin",
                                   actor=Actor.user(current_user), site=_site(), now=_now())
    except svc.SettingsInvalid as exc:
        form.add_errors(exc.errors)
        return _manage_page(organizations.get_organization(organization_id), invite_form=form, status=400)
    flash(f"Invitation sent to {user.email}: they become an admin of {org.name} once they choose a password.")
    return redirect(url_for("admin.organization", organization_id=org.id), 303)


@bp.route("/organization", methods=["GET", "POST"])
@role_required("superadmin")
def switch_organization() -> ResponseReturnValue:
    if request.method == "POST":
        raw = request.form.get("organization_id", "")
        org = svc.organization_to_act_in(current_user, int(raw) if raw.isdigit() else None)
        if org is None:
            session.pop(ACTING_ORG, None)
        else:
            session[ACTING_ORG] = org.id
        flash(f"Acting in {org.name}." if org else "Seeing every organization.")
        return redirect(url_for("admin.dashboard"), 303)
    return list_page()
