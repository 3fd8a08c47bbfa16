"""The sandbox provider's save-a-card page (/pay/sandbox/setup/<session id>): its look-alike of Stripe Checkout
in setup mode, for the portal's "Add a card" while no Stripe key is configured. Nothing is charged; the card
is kept by the sandbox (brand, last 4, expiry) and the client is sent back to the portal's return page."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template

from invoicing.extensions import limiter
from invoicing.gateways import current_gateway
from invoicing.gateways.base import GatewayError
from invoicing.gateways.sandbox import SETUP_CARDS, SandboxGateway
from invoicing.pay import bp
from invoicing.pay.forms import SandboxSetupForm
from invoicing.pay.views import LIMIT
from invoicing.services import NotFound


def _sandbox() -> SandboxGateway:
    gateway = current_gateway()
    if not isinstance(gateway, SandboxGateway):
        abort(404)
    return gateway


def _page(sandbox: SandboxGateway, session_id: str) -> dict[str, Any]:
    try:
        return sandbox.setup_page(session_id[:64])
    except GatewayError:
        raise NotFound("Card setup not found.") from None


@bp.route("/sandbox/setup/<session_id>", methods=["GET", "POST"])
@limiter.limit(LIMIT)
def sandbox_setup(session_id: str) -> Any:
    sandbox = _sandbox()
    page, form, status = _page(sandbox, session_id), SandboxSetupForm(), 200
    if form.validate_on_submit():
        outcome = sandbox.save_card(session_id, number=form.number, exp_month=form.exp_month,
                                    exp_year=form.exp_year)
        if outcome.redirect_url:
            return redirect(outcome.redirect_url, code=303)
        form.card.errors = [outcome.message or "The card was not saved."]
        page, status = _page(sandbox, session_id), 402
    elif form.is_submitted():
        status = 400
    return render_template("pay/sandbox_setup.html", page=page, form=form, cards=SETUP_CARDS.values()), status
