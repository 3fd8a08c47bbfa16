"""Subscriptions for staff: the list with its filters and headline figures per currency, and the client page's
panel: subscribe a client, change plan or seats (preview, then confirm), cancel (at period end, undo, or now with
an optional prorated refund), pause, resume. Every change goes through the engine (services/subscriptions/
lifecycle.py, changes.py); another organization's subscription answers 404."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import abort, current_app, flash, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import RadioField
from wtforms.fields.choices import SelectChoice

from invoicing.admin import bp
from invoicing.admin.clients import _client_page
from invoicing.admin.subscription_forms import CancelNowForm, ChangeForm
from invoicing.admin.subscription_panel import change_form, subscribe_form
from invoicing.auth import role_required, staff_required
from invoicing.models import SUBSCRIPTION_STATUSES, Subscription
from invoicing.rendering import go, render
from invoicing.services import DomainError, clients, queries
from invoicing.services.audit import Actor
from invoicing.services.settings import current_organization
from invoicing.services.site import Site
from invoicing.services.subscriptions import changes, figures, lifecycle
from invoicing.services.subscriptions import queries as subs
from invoicing.services.subscriptions.plans import describe_price


def _now() -> datetime:
    return datetime.now(UTC)


def _filters() -> subs.SubscriptionFilters:
    """Filters from the query string; a value that makes no sense is ignored."""
    status, plan, currency = (request.args.get(k, "") for k in ("status", "plan", "currency"))
    return subs.SubscriptionFilters(status=status if status in SUBSCRIPTION_STATUSES else None,
                                    plan_id=int(plan) if plan.isdigit() and len(plan) < 12 else None,
                                    currency=currency.upper() if currency.isalpha() and len(currency) == 3 else None)


class UnpaidActionForm(FlaskForm):
    action = RadioField("When the retries end unpaid", choices=[
        SelectChoice("cancel", "canceled (no more invoices)"),
        SelectChoice("leave_unpaid", "left past due, its invoice unpaid (paying it makes it active again)")])


def _unpaid_form() -> UnpaidActionForm | None:
    """The organization's setting, for admins acting in one organization."""
    org = current_organization(current_user) if current_user.role == "admin" or current_user.is_superadmin else None
    return UnpaidActionForm(action=org.subscription_unpaid) if org is not None else None


@bp.post("/subscriptions/unpaid-action")
@role_required("admin")
def subscription_unpaid_action() -> ResponseReturnValue:
    org, form = current_organization(current_user), UnpaidActionForm()
    if org is None or not form.validate_on_submit():
        abort(400)
    lifecycle.set_unpaid_action(org.id, form.action.data or "", actor=_actor(), now=_now())
    flash("Saved: what happens when a subscription's charges fail for good.", "success")
    return go(url_for("admin.subscriptions") + "#unpaid-setting")


@bp.get("/subscriptions")
@staff_required
def subscriptions() -> str:
    org_id, filters = queries.org_scope(current_user), _filters()
    after = request.args.get("after", "")
    page = subs.list_subscriptions(org_id, filters, after=int(after) if after.isdigit() and len(after) < 12 else None)
    return render("admin/subscriptions.html", "results", page=page, filters=filters, statuses=SUBSCRIPTION_STATUSES,
                  counts=subs.status_counts(org_id), plans=subs.list_plans(org_id, archived=None),
                  currencies=subs.currencies(org_id), describe=describe_price,
                  figures=figures.headline(org_id, now=_now()) if org_id is not None else [],
                  unpaid_form=_unpaid_form())


# --- the client page's panel: subscribe, change, cancel, pause, resume ---------------------------------------


def _site() -> Site:
    return Site.from_config(current_app.config)


def _actor() -> Actor:
    return Actor.user(current_user)


def _to_panel(subscription: Subscription) -> Response:
    return go(url_for("admin.client", client_id=subscription.client_id) + f"#subscription-{subscription.id}")


@bp.post("/clients/<int:client_id>/subscriptions")
@staff_required
def subscribe_client(client_id: int) -> ResponseReturnValue:
    client = clients.get_client(current_user, client_id)
    form = subscribe_form(client, request.form)
    if form.validate_on_submit():
        try:
            subscription = lifecycle.create_subscription(
                client.organization_id, client_id=client.id, price_id=form.price_id.data,
                quantity=int(form.quantity.data or "1"), trial_days=None if form.trial.data == "plan" else 0,
                charge_now=form.charge.data == "now", signup_key=f"staff:{form.key.data}", actor=_actor(),
                now=_now(), site=_site())
        except DomainError as exc:
            form.form_errors.append(str(exc))
        else:
            flash(f"{client.name} is subscribed to {subscription.plan.name} ({subscription.status}).", "success")
            return _to_panel(subscription)
    return _client_page(client, status=422, subscribe_form=form)


@bp.post("/subscriptions/<int:subscription_id>/change")
@staff_required
def change_subscription(subscription_id: int) -> ResponseReturnValue:
    subscription = subs.get_subscription(subscription_id, queries.org_scope(current_user))
    form = change_form(subscription, request.form)
    preview, error = None, ""
    if form.validate_on_submit():
        try:
            preview = changes.preview_change(subscription.id, subscription.organization_id, now=_now(),
                                             price_id=form.price_id.data, quantity=int(form.quantity.data or "1"))
            if request.form.get("op") == "confirm":
                return _changed(subscription, form)
        except DomainError as exc:
            error = str(exc)
    return render("admin/subscription_change.html", "preview", subscription=subscription, form=form,
                  preview=preview, error=error), 200 if preview else 422


def _changed(subscription: Subscription, form: ChangeForm) -> Response:
    change = changes.change_subscription(subscription.id, subscription.organization_id,
                                         price_id=form.price_id.data, quantity=int(form.quantity.data or "1"),
                                         request_key=f"staff:{form.key.data}", actor=_actor(), now=_now(),
                                         site=_site())
    when = "from today" if change.status == "applied" else f"on {change.effective_on.isoformat()}, at period end"
    flash(f"Subscription changed ({change.kind}) {when}. The client was emailed.", "success")
    return _to_panel(subscription)


ACTIONS: dict[str, Callable[..., Subscription]] = {
    "cancel": lifecycle.cancel_subscription, "undo-cancel": lifecycle.undo_cancel,
    "pause": lifecycle.pause_subscription, "resume": lifecycle.resume_subscription,
    "keep-plan": changes.cancel_pending_change}
DONE = {"cancel": "set to cancel at the end of its period (undo until then)", "undo-cancel": "kept: it renews",
        "pause": "paused: no invoices until resumed", "resume": "active again",
        "keep-plan": "staying on its current plan: the scheduled change is dropped"}


@bp.post("/subscriptions/<int:subscription_id>/<any(cancel, 'undo-cancel', pause, resume, 'keep-plan'):action>")
@staff_required
def subscription_action(subscription_id: int, action: str) -> ResponseReturnValue:
    subscription = subs.get_subscription(subscription_id, queries.org_scope(current_user))
    if not FlaskForm().validate_on_submit():  # the CSRF token
        abort(400)
    try:
        ACTIONS[action](subscription.id, subscription.organization_id, actor=_actor(), now=_now(), site=_site())
    except DomainError as exc:  # e.g. paused twice from two tabs: say so, change nothing
        flash(str(exc), "error")
    else:
        flash(f"{subscription.plan.name} for {subscription.client.name}: {DONE[action]}. The client was emailed.",
              "success")
    return _to_panel(subscription)


@bp.post("/subscriptions/<int:subscription_id>/cancel-now")
@staff_required
def cancel_now(subscription_id: int) -> ResponseReturnValue:
    subscription = subs.get_subscription(subscription_id, queries.org_scope(current_user))
    form = CancelNowForm()
    if not form.validate_on_submit():
        flash("; ".join(e for errors in form.errors.values() for e in errors), "error")
        return _to_panel(subscription)
    try:
        lifecycle.cancel_subscription(subscription.id, subscription.organization_id, at_period_end=False,
                                      refund_unused=bool(form.refund_unused.data), reason=form.reason.data or "",
                                      actor=_actor(), now=_now(), site=_site())
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(f"{subscription.plan.name} for {subscription.client.name} is canceled"
              f"{' and the unused part refunded' if form.refund_unused.data else ''}. The client was emailed.",
              "success")
    return _to_panel(subscription)
