"""Clients: the searchable list, create/edit/archive, contacts, and the client page (invoices, balance due,
payment history). Another organization's client answers 404."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.wrappers import Response

from invoicing.admin import bp
from invoicing.admin.autopay import autopay_panel
from invoicing.admin.forms import ClientForm, ContactForm
from invoicing.admin.subscription_forms import SubscribeForm
from invoicing.admin.subscription_panel import subscription_panel
from invoicing.auth import staff_required
from invoicing.extensions import db
from invoicing.models import Client, Contact, Organization
from invoicing.rendering import render
from invoicing.services import DomainError, NotFound, clients, queries
from invoicing.services.audit import Actor
from invoicing.services.invoices import local_today
from invoicing.services.portal import staff as portal_staff
from invoicing.services.site import Site


def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> Actor:
    return Actor.user(current_user)


def _acting_org() -> Organization:
    org_id = queries.org_scope(current_user)
    org = db.session.get(Organization, org_id) if org_id is not None else None
    if org is None:
        abort(403, "Switch to an organization first: clients belong to one.")
    return org


def _to_client(client_id: int) -> Response:
    return redirect(url_for("admin.client", client_id=client_id), code=303)


@bp.get("/clients", endpoint="clients")
@staff_required
def client_list() -> ResponseReturnValue:
    q = request.args.get("q", "")[:100]
    archived = request.args.get("archived") == "1"
    page = clients.search_clients(current_user, q=q, archived=archived, cursor=request.args.get("after"),
                                  with_contacts=True)
    return render("admin/clients.html", "rows", page=page, q=q, archived=archived)


@bp.get("/clients/options")
@staff_required
def client_options() -> ResponseReturnValue:
    """`<option>`s for a client picker, searched as you type (the selected client stays in the list)."""
    raw = request.args.get("client_id") or request.args.get("client") or ""
    options = clients.client_choices(current_user, q=request.args.get("client_search", "")[:100],
                                     selected_id=int(raw) if raw.isdigit() else None)
    return render("admin/_client_options.html", None, options=options, blank=request.args.get("blank", "")[:40],
                  selected=int(raw) if raw.isdigit() else None)


@bp.route("/clients/new", methods=["GET", "POST"])
@staff_required
def new_client() -> ResponseReturnValue:
    org = _acting_org()
    form = ClientForm(default_currency=org.default_currency)
    if form.validate_on_submit():
        try:
            client = clients.create_client(org, form.client_data(), actor=_actor(), now=_now())
        except DomainError as exc:
            form.form_errors.append(str(exc))
        else:
            flash(f"Client {client.name} created.", "success")
            return _to_client(client.id)
    return render("admin/client_form.html", None, form=form, client=None), 422 if form.is_submitted() else 200


@bp.get("/clients/<int:client_id>")
@staff_required
def client(client_id: int) -> ResponseReturnValue:
    return _client_page(clients.get_client(current_user, client_id))


def _client_page(client: Client, contact_form: ContactForm | None = None, error: str = "",
                 status: int = 200, subscribe_form: SubscribeForm | None = None) -> ResponseReturnValue:
    today = local_today(client.organization, _now())
    contact_form = contact_form or ContactForm(formdata=None, prefix="contact")
    summary = clients.client_summary(client, today=today)
    return render("admin/client.html", None, client=client, summary=summary, contact_form=contact_form, error=error,
                  today=today, email_states=queries.email_states(i.id for i in summary.invoices),
                  autopay=autopay_panel(client), subscriptions=subscription_panel(client, form=subscribe_form)), status


@bp.route("/clients/<int:client_id>/edit", methods=["GET", "POST"])
@staff_required
def edit_client(client_id: int) -> ResponseReturnValue:
    client = clients.get_client(current_user, client_id)
    form = ClientForm(obj=client, default_currency=client.currency)
    if form.validate_on_submit():
        try:
            clients.update_client(client.id, client.organization_id, form.client_data(), actor=_actor(), now=_now())
        except DomainError as exc:
            form.form_errors.append(str(exc))
        else:
            flash("Client saved.", "success")
            return _to_client(client.id)
    return render("admin/client_form.html", None, form=form, client=client), 422 if form.is_submitted() else 200


@bp.post("/clients/<int:client_id>/archive")
@staff_required
def archive_client(client_id: int) -> ResponseReturnValue:
    client = clients.get_client(current_user, client_id)
    restore = request.form.get("restore") == "1"
    try:
        (clients.unarchive_client if restore else clients.archive_client)(
            client.id, client.organization_id, actor=_actor(), now=_now())
    except DomainError as exc:
        return _client_page(client, error=str(exc), status=422)
    flash(f"{client.name} is {'active again' if restore else 'archived: it leaves the pickers'}.", "success")
    return _to_client(client.id)


@bp.post("/clients/<int:client_id>/contacts")
@staff_required
def add_contact(client_id: int) -> ResponseReturnValue:
    client = clients.get_client(current_user, client_id)
    form = ContactForm(prefix="contact")  # the client page has other forms: keep ids unique
    if form.validate_on_submit():
        try:
            contact = clients.add_contact(client.id, client.organization_id, form.contact_data(), actor=_actor(),
                                          now=_now())
        except DomainError as exc:
            form.email.errors = [*form.email.errors, str(exc)]
        else:
            flash(f"Contact {contact.name} added.", "success")
            return _to_client(client.id)
    return _client_page(client, contact_form=form, status=422)


def _contact(client: Client, contact_id: int) -> Contact:
    contact = next((c for c in client.contacts if c.id == contact_id), None)
    if contact is None:
        raise NotFound("Contact not found.")
    return contact


@bp.route("/clients/<int:client_id>/contacts/<int:contact_id>", methods=["GET", "POST"])
@staff_required
def edit_contact(client_id: int, contact_id: int) -> ResponseReturnValue:
    client = clients.get_client(current_user, client_id)
    contact = _contact(client, contact_id)
    form = ContactForm(obj=contact)
    if form.validate_on_submit():
        try:
            clients.update_contact(contact.id, client.organization_id, form.contact_data(), actor=_actor(), now=_now())
        except DomainError as exc:
            form.email.errors = [*form.email.errors, str(exc)]
        else:
            flash("Contact saved.", "success")
            return _to_client(client.id)
    return render("admin/contact_form.html", None, form=form, client=client, contact=contact), \
        422 if form.is_submitted() else 200


@bp.post("/clients/<int:client_id>/contacts/<int:contact_id>/remove")
@staff_required
def remove_contact(client_id: int, contact_id: int) -> ResponseReturnValue:
    client = clients.get_client(current_user, client_id)
    contact = _contact(client, contact_id)
    try:
        clients.remove_contact(contact.id, client.organization_id, actor=_actor(), now=_now())
    except DomainError as exc:
        return _client_page(client, error=str(exc), status=422)
    flash(f"Contact {contact.name} removed.", "success")
    return _to_client(client.id)


@bp.post("/clients/<int:client_id>/contacts/<int:contact_id>/portal-invitation")
@staff_required
def invite_contact(client_id: int, contact_id: int) -> ResponseReturnValue:
    client = clients.get_client(current_user, client_id)
    contact = _contact(client, contact_id)
    try:
        portal_staff.invite_contact(contact.id, client.organization_id, actor=_actor(),
                                    site=Site.from_config(current_app.config), now=_now())
    except DomainError as exc:
        return _client_page(client, error=str(exc), status=422)
    days = portal_staff.INVITATION_TTL.days
    flash(f"Portal invitation emailed to {contact.email}: its sign-in link works once, for {days} days.", "success")
    return _to_client(client.id)


@bp.post("/clients/<int:client_id>/contacts/<int:contact_id>/revoke-portal")
@staff_required
def revoke_portal(client_id: int, contact_id: int) -> ResponseReturnValue:
    client = clients.get_client(current_user, client_id)
    contact = _contact(client, contact_id)
    try:
        portal_staff.revoke_access(contact.id, client.organization_id, actor=_actor(), now=_now())
    except DomainError as exc:
        return _client_page(client, error=str(exc), status=422)
    flash(f"{contact.name} can no longer use the portal; any session of theirs has ended.", "success")
    return _to_client(client.id)
