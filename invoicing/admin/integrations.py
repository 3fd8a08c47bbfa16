"""Settings > API keys and Settings > Webhooks (admins), and the API reference (every staff member).

A new key or endpoint secret is shown once, in the answer to the POST that made it (not after a redirect:
nothing secret goes into the session cookie or a URL), with `Cache-Control: no-store` like every admin page.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField, RadioField, SelectMultipleField, StringField, URLField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from invoicing.admin import bp
from invoicing.api import reference
from invoicing.api.views import openapi_document
from invoicing.auth import role_required
from invoicing.gateways import payments_mode
from invoicing.models import WEBHOOK_EVENT_TYPES, Organization
from invoicing.services import DomainError, NotFound, queries
from invoicing.services import settings as org_settings
from invoicing.services.api import keys, webhooks
from invoicing.services.audit import Actor

ACCESS = {"read": ["read"], "write": ["read", "write"]}


def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> Actor:
    return Actor.user(current_user)


def _org() -> Organization:
    org = org_settings.current_organization(current_user)
    if org is None:
        raise NotFound("Choose the organization to act in first (superadmin: switch organization).")
    return org


class ApiKeyForm(FlaskForm):
    name = StringField("Name (what uses it)", validators=[DataRequired(), Length(max=keys.MAX_NAME)])
    access = RadioField("Access", choices=[SelectChoice("read", "Read only"), SelectChoice("write", "Read and write")],
                        default="read")
    expires_on = DateField("Expires on (optional)", validators=[Optional()])


class EndpointForm(FlaskForm):
    url = URLField("Endpoint URL", validators=[DataRequired(), Length(max=webhooks.MAX_URL)])
    description = StringField("Description (optional)", validators=[Length(max=webhooks.MAX_DESCRIPTION)])
    events = SelectMultipleField("Events to send", choices=[SelectChoice(e, e) for e in WEBHOOK_EVENT_TYPES],
                                 default=list(WEBHOOK_EVENT_TYPES), widget=widgets.ListWidget(prefix_label=False),
                                 option_widget=widgets.CheckboxInput())


def _keys_page(form: ApiKeyForm, *, token: str | None = None, error: str | None = None,
               status: int = 200) -> ResponseReturnValue:
    org = _org()
    return render_template("admin/api_keys.html", organization=org, keys=keys.list_keys(org.id), form=form,
                           token=token, error=error, now=_now()), status


@bp.route("/settings/api-keys", methods=["GET", "POST"])
@role_required("admin")
def api_keys() -> ResponseReturnValue:
    form = ApiKeyForm()
    if not form.validate_on_submit():
        return _keys_page(form, status=422 if request.method == "POST" else 200)
    org = _org()
    expires = form.expires_on.data
    expires_at = datetime.combine(expires, time(23, 59, 59), ZoneInfo(org.timezone)).astimezone(UTC) \
        if expires else None
    try:
        new = keys.create_key(org.id, name=form.name.data or "", scopes=ACCESS.get(form.access.data or "", []),
                              expires_at=expires_at, live=payments_mode(current_app.config) == "live",
                              actor=_actor(), now=_now())
    except DomainError as exc:
        return _keys_page(form, error=str(exc), status=422)
    return _keys_page(ApiKeyForm(formdata=None), token=new.token, status=201)


@bp.post("/settings/api-keys/<int:key_id>/revoke")
@role_required("admin")
def revoke_api_key(key_id: int) -> ResponseReturnValue:
    try:
        key = keys.revoke_key(key_id, queries.org_scope(current_user), actor=_actor(), now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        return _keys_page(ApiKeyForm(formdata=None), error=str(exc), status=422)
    flash(f"The key {key.name} is revoked: requests with it are refused from now on.", "success")
    return redirect(url_for("admin.api_keys"), 303)


def _endpoints_page(form: EndpointForm, *, created: webhooks.WebhookEndpoint | None = None,
                    error: str | None = None, status: int = 200) -> ResponseReturnValue:
    org = _org()
    secret = webhooks.secret_for(created, current_app.config["SECRET_KEY"]) if created else None
    return render_template("admin/webhook_endpoints.html", organization=org, form=form, created=created,
                           secret=secret, endpoints=webhooks.list_endpoints(org.id), error=error), status


@bp.route("/settings/webhooks", methods=["GET", "POST"])
@role_required("admin")
def webhook_endpoints() -> ResponseReturnValue:
    form = EndpointForm()
    if not form.validate_on_submit():
        return _endpoints_page(form, status=422 if request.method == "POST" else 200)
    try:
        endpoint = webhooks.create_endpoint(
            _org().id, url=form.url.data or "", description=form.description.data or "",
            events=list(form.events.data or []), allow_private=current_app.config["WEBHOOKS_ALLOW_PRIVATE"],
            actor=_actor(), now=_now())
    except DomainError as exc:
        return _endpoints_page(form, error=str(exc), status=422)
    return _endpoints_page(EndpointForm(formdata=None), created=endpoint, status=201)


def _endpoint_page(endpoint_id: int, *, secret: str | None = None, error: str | None = None,
                   status: int = 200) -> ResponseReturnValue:
    endpoint = webhooks.get_endpoint(endpoint_id, queries.org_scope(current_user))
    before = request.args.get("before", type=int)
    return render_template("admin/webhook_endpoint.html", endpoint=endpoint, secret=secret, error=error,
                           organization=queries.organization(endpoint.organization_id),
                           page=webhooks.list_deliveries(endpoint, before=before),
                           pending=webhooks.pending_count(endpoint), signature_header=webhooks.SIGNATURE_HEADER), status


@bp.get("/settings/webhooks/<int:endpoint_id>")
@role_required("admin")
def webhook_endpoint(endpoint_id: int) -> ResponseReturnValue:
    return _endpoint_page(endpoint_id)


@bp.post("/settings/webhooks/<int:endpoint_id>/enabled")
@role_required("admin")
def webhook_endpoint_enabled(endpoint_id: int) -> ResponseReturnValue:
    enable = request.form.get("enabled") == "1"
    try:
        webhooks.set_enabled(endpoint_id, queries.org_scope(current_user), enable, actor=_actor(), now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        return _endpoint_page(endpoint_id, error=str(exc), status=422)
    flash("Endpoint enabled: its waiting events go out now." if enable else "Endpoint disabled.", "success")
    return redirect(url_for("admin.webhook_endpoint", endpoint_id=endpoint_id), 303)


@bp.post("/settings/webhooks/<int:endpoint_id>/secret")
@role_required("admin")
def webhook_endpoint_secret(endpoint_id: int) -> ResponseReturnValue:
    endpoint = webhooks.rotate_secret(endpoint_id, queries.org_scope(current_user), actor=_actor(), now=_now())
    return _endpoint_page(endpoint.id, secret=webhooks.secret_for(endpoint, current_app.config["SECRET_KEY"]))


@bp.post("/settings/webhooks/<int:endpoint_id>/delete")
@role_required("admin")
def webhook_endpoint_delete(endpoint_id: int) -> ResponseReturnValue:
    webhooks.delete_endpoint(endpoint_id, queries.org_scope(current_user), actor=_actor(), now=_now())
    flash("Endpoint deleted.", "success")
    return redirect(url_for("admin.webhook_endpoints"), 303)


@bp.post("/settings/webhooks/deliveries/<int:delivery_id>/resend")
@role_required("admin")
def webhook_delivery_resend(delivery_id: int) -> ResponseReturnValue:
    delivery = webhooks.resend(delivery_id, queries.org_scope(current_user), actor=_actor(), now=_now())
    flash("Queued to be sent again within a few seconds.", "success")
    return redirect(url_for("admin.webhook_endpoint", endpoint_id=delivery.endpoint_id), 303)


@bp.get("/api")
@role_required("admin", "staff")
def api_reference() -> ResponseReturnValue:
    document = openapi_document()
    base = current_app.config["BASE_URL"].rstrip("/")
    return render_template("admin/api_reference.html", document=document, base_url=base,
                           sections=reference.sections(document, base), signature_header=webhooks.SIGNATURE_HEADER,
                           events=WEBHOOK_EVENT_TYPES, paragraphs=reference.paragraphs(document["info"]["description"]))
