"""Portal: the company's saved cards (/portal/payment-methods) and autopay (/portal/autopay).

Everything is scoped to the signed-in contact's client (the services take its id): another company's card
answers 404 exactly like a missing one. Adding a card goes to the provider's hosted setup page; its return
page asks the provider what was saved (verify on return) and stores the card once."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from invoicing.extensions import limiter
from invoicing.gateways import current_gateway
from invoicing.gateways.base import GatewayError
from invoicing.portal import bp
from invoicing.portal.access import contact_required, current_contact
from invoicing.portal.forms import AutopayForm, ConfirmForm
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor
from invoicing.services.invoices import local_today
from invoicing.services.portal import autopay, cards
from invoicing.services.site import Site

SAVED = {"saved": ("success", "Card saved: {card}."),
         "removed": ("error", "{card} was removed: it is no longer saved."),
         "not_saved": ("error", "No card was saved.")}

ADD_LIMIT = "10 per minute"  # per IP: each press opens a page (and maybe a customer) at the provider
Page = tuple[str, int]


def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> Actor:
    return Actor.contact(current_contact())


def _cards_page(error: str = "", status: int = 200) -> Page:
    contact, gateway = current_contact(), current_gateway()
    return render_template(
        "portal/payment_methods.html", organization=contact.organization, contact=contact, error=error,
        cards=cards.list_cards(contact.client_id, provider=gateway.name,
                               today=local_today(contact.organization, _now())),
        autopay=autopay.autopay_state(contact.client_id, provider=gateway.name), form=ConfirmForm()), status


def _checked() -> None:
    if not ConfirmForm().validate_on_submit():  # the CSRF token
        abort(400)


@bp.get("/payment-methods")
@contact_required
def payment_methods() -> Page:
    return _cards_page()


@bp.post("/payment-methods/add")
@contact_required
@limiter.limit(ADD_LIMIT)
def add_card() -> Response | Page:
    _checked()
    try:
        url = cards.start_setup(current_contact().id, gateway=current_gateway(),
                                site=Site.from_config(current_app.config))
    except GatewayError as exc:
        return _cards_page(error=exc.message, status=503)
    return redirect(url, code=303)


@bp.get("/payment-methods/added")
@contact_required
def card_added() -> Response | Page:
    """Back from the provider's setup page: confirm with the provider and store the card (once)."""
    contact, session_id = current_contact(), request.args.get("session_id", "")[:255]
    if not session_id:
        return redirect(url_for(".payment_methods"), code=303)
    try:
        outcome = cards.confirm_setup(contact.client_id, contact.id, session_id, gateway=current_gateway(),
                                      now=_now())
    except GatewayError:
        return _cards_page(error="We could not confirm your card with the payment provider yet. Reload this "
                                 "page in a minute.", status=503)
    category, message = SAVED[outcome.status]
    flash(message.format(card=outcome.card.label if outcome.card else ""), category)
    return redirect(url_for(".payment_methods"), code=303)


@bp.post("/payment-methods/<int:card_id>/default")
@contact_required
def default_card(card_id: int) -> Response:
    _checked()
    card = cards.set_default(current_contact().client_id, card_id, provider=current_gateway().name, actor=_actor(),
                             now=_now())
    flash(f"{card.label} is now your default card.", "success")
    return redirect(url_for(".payment_methods"), code=303)


@bp.post("/payment-methods/<int:card_id>/remove")
@contact_required
def remove_card(card_id: int) -> Response | Page:
    _checked()
    try:
        card = cards.remove_card(current_contact().client_id, card_id, gateway=current_gateway(), actor=_actor(),
                                 now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        return _cards_page(error=str(exc), status=409)
    except GatewayError as exc:
        return _cards_page(error=exc.message, status=503)
    flash(f"{card.label} was removed.", "success")
    return redirect(url_for(".payment_methods"), code=303)


def _autopay_page(form: AutopayForm | None = None, status: int = 200) -> Page:
    contact, gateway = current_contact(), current_gateway()
    form = form or AutopayForm(formdata=None)
    form.text_version.data = autopay.CONSENT_VERSION  # the terms shown are the ones agreed to
    state = autopay.autopay_state(contact.client_id, provider=gateway.name)
    if state.consent is not None and not form.mode.data:
        form.mode.data = state.consent.mode
    return render_template(
        "portal/autopay.html", organization=contact.organization, contact=contact, state=state, form=form,
        off_form=ConfirmForm(), terms=autopay.consent_text(contact.organization.name, contact.client.name),
        version=autopay.CONSENT_VERSION), status


@bp.get("/autopay")
@contact_required
def autopay_settings() -> Page:
    return _autopay_page()


@bp.post("/autopay")
@contact_required
def autopay_on() -> Response | Page:
    form, contact = AutopayForm(), current_contact()
    if not form.validate_on_submit():
        return _autopay_page(form, 400)
    try:
        autopay.enable_autopay(contact.client_id, contact.id, mode=form.mode.data or "",
                               text_version=form.text_version.data or "", ip=request.remote_addr or "",
                               provider=current_gateway().name, now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        form.form_errors.append(str(exc))
        return _autopay_page(form, 422)
    flash(f"Autopay is on: {autopay.MODES[form.mode.data or ''].lower()}.", "success")
    return redirect(url_for(".autopay_settings"), code=303)


@bp.post("/autopay/off")
@contact_required
def autopay_off() -> Response:
    _checked()
    autopay.turn_off(current_contact().client_id, actor=_actor(), now=_now())
    flash("Autopay is off: nothing will be charged automatically.", "success")
    return redirect(url_for(".autopay_settings"), code=303)
