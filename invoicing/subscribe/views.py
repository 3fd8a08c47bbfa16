"""The public sign-up: /subscribe/<slug> (the plan and its form), then the provider's card page, then
/subscribe/signup/<token> (the return page: verify the card, subscribe, confirm). The form's POST is
rate-limited per IP and per email and carries its CSRF token; its hidden token makes a resubmit one sign-up.
The service (services/subscriptions/signup.py) does the work; these views only translate."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from invoicing.extensions import limiter
from invoicing.gateways import current_gateway
from invoicing.gateways.base import GatewayError
from invoicing.models import Plan, SubscriptionSignup
from invoicing.portal.forms import ConfirmForm
from invoicing.services import DomainError
from invoicing.services.site import Site
from invoicing.services.subscriptions import signup
from invoicing.subscribe import bp
from invoicing.subscribe.forms import SignupForm

PER_IP = "10 per minute;30 per hour"  # each new sign-up makes a client: a flood is spam
PER_EMAIL = "5 per hour"
CARD_PAGE_LIMIT = "10 per minute"  # each press opens a page (and maybe a customer) at the provider
RELOAD = "We could not confirm your card with the payment provider yet. Reload this page in a minute."
Page = tuple[str, int]


def _now() -> datetime:
    return datetime.now(UTC)


def _site() -> Site:
    return Site.from_config(current_app.config)


def _email_key() -> str:
    return "subscribe:" + (request.form.get("email") or "").strip().lower()[:254]


def _plan_page(plan: Plan, form: SignupForm, status: int) -> Page:
    return render_template("subscribe/plan.html", organization=plan.organization, plan=plan, form=form,
                           offer=signup.offer(plan), terms=signup.consent_text(plan)), status


@bp.route("/<slug>", methods=["GET", "POST"])
@limiter.limit(PER_IP, methods=["POST"])
@limiter.limit(PER_EMAIL, key_func=_email_key, methods=["POST"])
def plan_page(slug: str) -> Response | Page:
    plan = signup.public_plan(slug)
    form = SignupForm(plan)
    if not form.validate_on_submit():
        return _plan_page(plan, form, 400 if form.is_submitted() else 200)
    try:
        started = signup.start_signup(slug, form.signup_data(), signup_key=form.signup_key.data or "",
                                      ip=request.remote_addr or "", now=_now())
    except signup.SignupInvalid as exc:
        form.add_errors(exc.errors)
        return _plan_page(plan, form, 422)
    return _to_card_page(started)


def _to_card_page(started: SubscriptionSignup) -> Response | Page:
    """The provider's page for the card, or (subscribed already: a resubmit) the confirmation."""
    if started.status == "done":
        return redirect(url_for(".signup_state", key=started.signup_key), code=303)
    try:
        return redirect(signup.open_card_page(started.signup_key, gateway=current_gateway(), site=_site()), code=303)
    except (GatewayError, DomainError) as exc:
        return _state_page(started, error=getattr(exc, "message", None) or str(exc), status=503)


def _state_page(started: SubscriptionSignup, *, error: str = "", status: int = 200) -> Page:
    return render_template("subscribe/signup.html", organization=started.client.organization, signup=started,
                           view=signup.signup_view(started, now=_now()), form=ConfirmForm(), error=error), status


@bp.get("/signup/<key>")
def signup_state(key: str) -> Response | Page:
    """The sign-up's page; with `session_id`, the provider's return: finish the sign-up, then show it."""
    session_id = request.args.get("session_id", "")[:255]
    if not session_id:
        return _state_page(signup.signup_by_key(key))
    try:
        signup.finish_signup(key, session_id, gateway=current_gateway(), site=_site(), now=_now())
    except GatewayError:
        return _state_page(signup.signup_by_key(key), error=RELOAD, status=503)
    return redirect(url_for(".signup_state", key=key), code=303)


@bp.post("/signup/<key>/card")
@limiter.limit(CARD_PAGE_LIMIT)
def signup_card(key: str) -> Response | Page:
    started = signup.signup_by_key(key)
    if not ConfirmForm().validate_on_submit():  # the CSRF token
        abort(400)
    return _to_card_page(started)
