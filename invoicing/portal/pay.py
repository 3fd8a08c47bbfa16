"""Paying in the portal: "Pay now" on one invoice, "pay several at once", the return page.

Pay in place: the pay forms post with htmx into the pay dialog (templates/portal/_pay_dialog.html). With Stripe
and a publishable key the dialog mounts Stripe's embedded Checkout; in the sandbox it loads the sandbox's card
form. Without JavaScript the same forms post normally and are redirected (303) to the hosted page (Stripe's,
or the sandbox's), which comes back to /portal/checkout/return; so does the embedded form.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectMultipleField

from invoicing.extensions import limiter
from invoicing.gateways import current_gateway
from invoicing.gateways.base import GatewayError
from invoicing.portal import bp
from invoicing.portal.access import contact_required, current_contact
from invoicing.rendering import go, wants_fragment
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor
from invoicing.services.checkout import CheckoutStart
from invoicing.services.portal import pay as portal_pay
from invoicing.services.site import Site

# Stripe.js of the API release the pinned SDK speaks (stripe 16: 2026-10-28.endive); createEmbeddedCheckoutPage
# is its embedded Checkout (notes/billing.md section 4). Loaded only by the pay dialog's script, on demand.
STRIPE_JS = "https://js.stripe.com/endive/stripe.js"
STRIPE_CHECKOUT = "invoicing.stripe_checkout"
LIMIT = "30 per minute"  # per IP: each start may call the provider
UNREACHABLE = "The payment provider could not be reached. Please try again in a minute."


class PayForm(FlaskForm):
    """The invoices to pay (checkboxes named "invoice"; Pay now posts to its invoice's URL instead) and, from
    the embedded form's fallback, ui=hosted."""

    invoice = SelectMultipleField(coerce=int, validate_choice=False)
    ui = HiddenField()


def _now() -> datetime:
    return datetime.now(UTC)


def _site() -> Site:
    return Site.from_config(current_app.config)


def _payer() -> portal_pay.Payer:
    contact = current_contact()
    return portal_pay.Payer(contact_id=contact.id, client_id=contact.client_id, email=contact.email,
                            organization=contact.organization, actor=Actor.contact(contact))


def _embedded_available() -> bool:
    config = current_app.config
    return bool(config.get("STRIPE_SECRET_KEY") and config.get("STRIPE_PUBLISHABLE_KEY"))


@bp.app_template_global()
def stripe_checkout() -> dict[str, str] | None:
    """For the pay dialog: Stripe.js and the publishable key when embedded Checkout can open in this page, and
    then this page's Content-Security-Policy lets Stripe's script and frames in (invoicing._headers)."""
    if not _embedded_available():
        return None
    request.environ[STRIPE_CHECKOUT] = True  # this request's page, read by invoicing._headers
    return {"js": STRIPE_JS, "key": current_app.config["STRIPE_PUBLISHABLE_KEY"]}


@bp.get("/pay")
@contact_required
def pay_page() -> str:
    return _pay_page()


def _pay_page(error: str | None = None, selected: list[int] | None = None) -> str:
    contact = current_contact()
    return render_template("portal/pay.html", contact=contact, organization=contact.organization,
                           invoices=portal_pay.payable_invoices(contact.client_id), error=error,
                           selected=set(selected or ()))


@bp.post("/pay")
@limiter.limit(LIMIT)
@contact_required
def pay_selected() -> Any:
    form = PayForm()
    if not form.validate_on_submit():
        return _refused("Choose the invoices to pay from this list.", 400)
    return _start(form.invoice.data or [], form.ui.data or "")


@bp.post("/invoices/<int:invoice_id>/pay")
@limiter.limit(LIMIT)
@contact_required
def pay_one(invoice_id: int) -> Any:
    form = PayForm()
    if not form.validate_on_submit():
        return _refused("Your page had expired: please try again.", 400)
    return _start([invoice_id], form.ui.data or "")


def _start(invoice_ids: list[int], ui: str) -> Any:
    embedded = wants_fragment() and ui != "hosted" and _embedded_available()
    try:
        started = portal_pay.start_payment(_payer(), invoice_ids, ui_mode="embedded" if embedded else "hosted",
                                           gateway=current_gateway(), site=_site(), now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        return _refused(str(exc), 422, invoice_ids)
    return _open(started, invoice_ids)


def _open(started: CheckoutStart, invoice_ids: list[int]) -> Any:
    """Where the payment happens: in the dialog (embedded Stripe form, or the sandbox's form), else the hosted
    page (a 303, or a client redirect for htmx); a checkout found paid already goes to the return page."""
    if not started.url and not started.client_secret:  # an embedded session not checked: the provider is away
        return _refused(UNREACHABLE, 503, invoice_ids)
    if wants_fragment() and not started.paid:
        if started.client_secret:
            return render_template("portal/_checkout_embedded.html", started=started, invoice_ids=invoice_ids)
        if current_gateway().name == "sandbox":
            return render_template("portal/_checkout_sandbox.html", session_id=started.session_id)
    return go(started.url)


def _refused(message: str, status: int, selected: list[int] | None = None) -> tuple[str, int]:
    if wants_fragment():
        return render_template("portal/_pay_refused.html", message=message), status
    return _pay_page(message, selected), status


@bp.get("/checkout/return")
@contact_required
def checkout_return() -> Any:
    """Back from the checkout (hosted, embedded or the sandbox's): confirm with the provider, show the outcome."""
    session_id = request.args.get("session_id", "")[:255]
    if not session_id:
        return go(url_for(".pay_page"))
    contact = current_contact()
    try:
        result = portal_pay.confirm_return(contact.client_id, session_id, gateway=current_gateway(), site=_site(),
                                           now=_now())
    except GatewayError:
        result, status = None, 503
    else:
        status = 200
    return render_template("portal/checkout_return.html", result=result, contact=contact,
                           organization=contact.organization, sandbox=current_gateway().name == "sandbox"), status
