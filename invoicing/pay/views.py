"""Public pay pages: /pay/<token> (the token is the capability; no login) and the sandbox's hosted checkout.

GET never acts (mail scanners open links), except that a client's first open marks the invoice viewed, and
the return page records what the provider confirms (the same idempotent door as the webhook, rule 6).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm

from invoicing import pdf as pdf_module
from invoicing.auth import is_staff
from invoicing.extensions import csrf, limiter
from invoicing.gateways import current_gateway
from invoicing.gateways.base import GatewayError
from invoicing.gateways.sandbox import ACCOUNTS, CARDS, SandboxGateway
from invoicing.models import Invoice
from invoicing.pay import bp, cache
from invoicing.pay.forms import PayForm, SandboxCardForm
from invoicing.rendering import go, render, wants_fragment
from invoicing.services import DomainError, NotFound, checkout, paylinks
from invoicing.services.paylinks import LinkGone, LinkNotFound, resolve

LIMIT = "30 per minute"  # per IP, against guessing tokens


def _now() -> datetime:
    return datetime.now(UTC)


def _site() -> checkout.Site:
    return checkout.Site.from_config(current_app.config)


def _invoice(token: str) -> Invoice:
    return resolve(token, secret_key=current_app.config["SECRET_KEY"], today=_now().date())


def _render_invoice(token: str, invoice: Invoice, form: PayForm, status: int = 200) -> tuple[str, int]:
    key = paylinks.form_key(token, current_app.config["SECRET_KEY"])  # the form's CSRF token: the link's own
    return render_template("pay/invoice.html", page=checkout.pay_page(invoice), form=form, token=token,
                           sandbox=current_gateway().name == "sandbox", csrf_token=lambda: key), status


def _fresh_page(token: str) -> tuple[str, int]:
    invoice = _invoice(token)
    return _render_invoice(token, invoice, _pay_form(invoice))


def _pay_form(invoice: Invoice) -> PayForm:
    return PayForm(currency=invoice.currency, amount_due=invoice.amount_due, meta={"csrf": False})


def _form_key_ok(token: str) -> bool:
    given = request.form.get("csrf_token", "")
    return not current_app.config.get("WTF_CSRF_ENABLED", True) or paylinks.form_key_ok(
        token, current_app.config["SECRET_KEY"], given)


@bp.errorhandler(pdf_module.PdfUnavailable)
def _no_pdf(_exc: pdf_module.PdfUnavailable) -> tuple[str, int]:
    # The operator's fix (which libraries to install) is for staff pages and the log, not for clients.
    return render_template("errors/error.html", code=503,
                           message="The PDF of this invoice cannot be made right now. Everything it says is on the "
                                   "invoice page; please try the download again later."), 503


@bp.errorhandler(LinkNotFound)
def _link_not_found(_exc: LinkNotFound) -> tuple[str, int]:
    return render_template("pay/link_error.html", code=404, invoice=None), 404


@bp.errorhandler(LinkGone)
def _link_gone(exc: LinkGone) -> tuple[str, int]:
    return render_template("pay/link_error.html", code=410, invoice=exc.invoice, reason=exc.reason), 410


@bp.get("/<token>")
@limiter.limit(LIMIT)
def invoice(token: str) -> tuple[str, int]:
    """Served from the page kept for this invoice's version (cache.py). Staff opening the link and HEAD requests
    (mail scanners checking links) are not the client looking at it: only other GETs count as opens."""
    head = paylinks.head(token, secret_key=current_app.config["SECRET_KEY"], today=_now().date())
    if head is None:
        return _fresh_page(token)  # a 404 or 410 page, mostly
    page = cache.serve(head, lambda: _fresh_page(token)[0])
    if not is_staff() and request.method == "GET":
        cache.count_open(head.invoice_id, _now())
    return page, 200


@bp.post("/<token>")
@csrf.exempt  # its CSRF token is the link's own (paylinks.form_key), checked here
@limiter.limit(LIMIT)
def pay(token: str) -> Any:
    """Pay now: open (or reuse) a hosted checkout for the amount and send the client there."""
    invoice = _invoice(token)
    if not _form_key_ok(token):
        abort(400, description="This page is out of date: open the link again and pay from there.")
    form = _pay_form(invoice)
    if not form.validate_on_submit():
        return _render_invoice(token, invoice, form, 400)
    try:
        started = checkout.start_checkout(invoice.id, amount=form.minor, gateway=current_gateway(), site=_site(),
                                          now=_now())
    except DomainError as exc:
        form.amount.errors = [str(exc)]
        return _render_invoice(token, _invoice(token), form, 422)
    return redirect(started.url, code=303)


@bp.get("/<token>/return")
@limiter.limit(LIMIT)
def returned(token: str) -> Any:
    """Back from the hosted page: confirm with the provider and show the outcome."""
    invoice = _invoice(token)
    session_id = request.args.get("session_id", "")[:255]
    if not session_id:
        return redirect(url_for(".invoice", token=token), code=303)
    try:
        result = checkout.confirm_return(invoice.id, session_id, gateway=current_gateway(), site=_site(), now=_now())
    except GatewayError:
        return render_template("pay/confirmation.html", invoice=invoice, token=token, result=None), 503
    return render_template("pay/confirmation.html", invoice=_invoice(token), token=token, result=result,
                           sandbox=current_gateway().name == "sandbox")


@bp.get("/<token>/pdf")
@limiter.limit(LIMIT)
def pdf(token: str) -> Response:
    invoice = _invoice(token)
    return Response(pdf_module.invoice_pdf(invoice), mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{pdf_module.filename_for(invoice)}"'})


@bp.get("/<token>/logo")
@limiter.limit(LIMIT)
def logo(token: str) -> Response:
    organization = _invoice(token).organization
    if not organization.logo:
        abort(404)
    return Response(organization.logo, mimetype=organization.logo_mime or "image/png")


# --- the sandbox provider's hosted pages (only while it is the configured gateway) -----------------------


def _sandbox() -> SandboxGateway:
    gateway = current_gateway()
    if not isinstance(gateway, SandboxGateway):
        abort(404)
    return gateway


def _session_page(sandbox: SandboxGateway, session_id: str) -> dict[str, Any]:
    try:
        return sandbox.session_page(session_id[:64])
    except GatewayError:
        raise NotFound("Checkout not found.") from None


@bp.route("/sandbox/<session_id>", methods=["GET", "POST"])
@limiter.limit(LIMIT)
def sandbox_checkout(session_id: str) -> Any:
    """The sandbox's hosted page; for an htmx request (the portal's pay dialog) its form alone, whose outcome
    swaps in place (a decline answers 200 so htmx shows it) or moves the whole page on (HX-Redirect)."""
    sandbox = _sandbox()
    page, form, status = _session_page(sandbox, session_id), SandboxCardForm(), 200
    if form.validate_on_submit():
        outcome = sandbox.pay(session_id, card=form.number, account=form.account.data or "",
                              email=form.email.data or "")
        if outcome.redirect_url:
            return go(outcome.redirect_url)
        if outcome.kind == "authenticate":
            return go(url_for(".sandbox_authenticate", session_id=session_id))
        field = form.account if (form.account.data or "").strip() else form.card
        field.errors = [outcome.message or "The payment did not go through."]
        page, status = _session_page(sandbox, session_id), 402
    fragment = wants_fragment()
    return render("pay/sandbox_checkout.html", "checkout", page=page, form=form, cards=CARDS.values(),
                  accounts=ACCOUNTS.values(), in_dialog=fragment), 200 if fragment else status


@bp.route("/sandbox/<session_id>/authenticate", methods=["GET", "POST"])
@limiter.limit(LIMIT)
def sandbox_authenticate(session_id: str) -> Any:
    sandbox = _sandbox()
    page, form = _session_page(sandbox, session_id), FlaskForm()
    if form.validate_on_submit():
        outcome = sandbox.authenticate(session_id, approve=request.form.get("decision") == "approve")
        if outcome.redirect_url:
            return redirect(outcome.redirect_url, code=303)
        flash(outcome.message or "The payment did not go through.", "error")
        return redirect(url_for(".sandbox_checkout", session_id=session_id), code=303)
    return render_template("pay/sandbox_authenticate.html", page=page, form=form)


@bp.post("/sandbox/<session_id>/settle")
@limiter.limit(LIMIT)
def sandbox_settle(session_id: str) -> Any:
    """The sandbox's bank answers now for a settles-later payment (a demo control, labelled as such)."""
    sandbox, form = _sandbox(), FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        sandbox.settle(session_id[:64], succeeded=request.form.get("outcome") == "succeeded")
    except GatewayError as exc:
        flash(exc.message, "error")
    back = request.form.get("next", "")
    return redirect(back if back.startswith(("/pay/", "/portal/")) else url_for(".sandbox_checkout",
                                                                               session_id=session_id), code=303)
