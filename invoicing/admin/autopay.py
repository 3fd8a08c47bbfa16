"""A client's saved cards and autopay consent on the staff client page; staff can turn autopay off (never on:
only a client's contact can agree to it). Another organization's client answers 404."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import abort, current_app, flash, redirect, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from invoicing.admin import bp
from invoicing.auth import staff_required
from invoicing.gateways import current_gateway
from invoicing.models import Client
from invoicing.services import clients
from invoicing.services.audit import Actor
from invoicing.services.invoices import local_today
from invoicing.services.portal import autopay, cards
from invoicing.services.site import Site


@dataclass(frozen=True)
class AutopayPanel:
    state: autopay.AutopayState
    cards: list[cards.CardRow]


def autopay_panel(client: Client) -> AutopayPanel:
    """What the client page shows: the cards saved at the configured provider and the consents."""
    provider = current_gateway().name
    today = local_today(client.organization, datetime.now(UTC))
    return AutopayPanel(autopay.autopay_state(client.id, provider=provider),
                        cards.list_cards(client.id, provider=provider, today=today))


@bp.post("/clients/<int:client_id>/autopay/off")
@staff_required
def client_autopay_off(client_id: int) -> Response:
    client = clients.get_client(current_user, client_id)
    if not FlaskForm().validate_on_submit():  # the CSRF token
        abort(400)
    consent = autopay.turn_off(client.id, organization_id=client.organization_id, actor=Actor.user(current_user),
                               now=datetime.now(UTC), site=Site.from_config(current_app.config))
    emailed = f" {consent.contact.name} was emailed that it is off." if consent is not None else ""
    flash(f"Autopay is off for {client.name}: nothing will be charged automatically.{emailed}", "success")
    return redirect(url_for("admin.client", client_id=client.id), code=303)
