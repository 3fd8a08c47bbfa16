"""Subscription plans: list, create, edit (a changed price becomes a new price; subscribers keep theirs), archive,
and moving an old price's subscribers to a current one. Another organization's plan answers 404."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, flash, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from invoicing.admin import bp
from invoicing.admin.subscription_forms import MigrateForm, PlanForm
from invoicing.auth import staff_required
from invoicing.models import Organization, Plan
from invoicing.rendering import go, render
from invoicing.services import DomainError, NotFound, queries
from invoicing.services.audit import Actor
from invoicing.services.site import Site
from invoicing.services.subscriptions import plans
from invoicing.services.subscriptions import queries as subs

TEMPLATE_FORM = "admin/plan_form.html"


def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> Actor:
    return Actor.user(current_user)


def _acting_org() -> Organization:
    org_id = queries.org_scope(current_user)
    if org_id is None:
        abort(403, "Switch to an organization first: plans belong to one.")
    return queries.organization(org_id)


def _plan(plan_id: int) -> Plan:
    return plans.get_plan(plan_id, queries.org_scope(current_user))


def _form_page(form: PlanForm, plan: Plan | None, status: int = 200) -> ResponseReturnValue:
    action = url_for("admin.edit_plan", plan_id=plan.id) if plan else url_for("admin.new_plan")
    return render(TEMPLATE_FORM, None, form=form, plan=plan, action_url=action, failed=status == 422), status


def _save(form: PlanForm, plan: Plan | None) -> ResponseReturnValue:
    """Validate, call the service, or show every message beside its field (nothing saved)."""
    if not form.is_submitted():
        return _form_page(form, plan)
    form.validate()
    data = form.plan_data()
    if data is None:
        return _form_page(form, plan, 422)
    try:
        if plan is None:
            saved = plans.SavedPlan(plans.create_plan(_acting_org().id, data, actor=_actor(), now=_now()))
        else:
            saved = plans.update_plan(plan.id, queries.org_scope(current_user), data, actor=_actor(), now=_now())
    except plans.PlanInvalid as exc:
        form.show_errors(exc.errors)
        return _form_page(form, plan, 422)
    flash(f"Plan “{saved.plan.name}” saved." + (
        f" {len(saved.replaced)} price(s) replaced: subscribers keep the old price until you move them."
        if saved.replaced else ""), "success")
    return go(url_for("admin.plan", plan_id=saved.plan.id))


@bp.get("/plans")
@staff_required
def plan_list() -> str:
    archived = request.args.get("archived") == "1"
    return render("admin/plans.html", None, rows=subs.list_plans(queries.org_scope(current_user), archived=archived),
                  archived=archived, describe=plans.describe_price)


@bp.route("/plans/new", methods=["GET", "POST"])
@staff_required
def new_plan() -> ResponseReturnValue:
    org = _acting_org()
    form = PlanForm.of(None, default_currency=org.default_currency, formdata=request.form or None)
    return _save(form, None)


@bp.route("/plans/<int:plan_id>/edit", methods=["GET", "POST"])
@staff_required
def edit_plan(plan_id: int) -> ResponseReturnValue:
    plan = _plan(plan_id)
    form = PlanForm.of(plan, default_currency=plan.organization.default_currency, formdata=request.form or None)
    return _save(form, plan)


@bp.get("/plans/<int:plan_id>")
@staff_required
def plan(plan_id: int) -> str:
    plan = _plan(plan_id)
    return render("admin/plan.html", None, plan=plan, counts=plans.subscriber_counts(plan.id),
                  moving=plans.moving_counts(plan.id), tax=plans.tax_percent(plan.tax_rate_milli),
                  describe=plans.describe_price, targets=lambda old: plans.migration_targets(plan, old),
                  current=plans.current_prices(plan),
                  signup_url=Site.from_config(current_app.config).url(f"/subscribe/{plan.slug}", plan.organization))


@bp.post("/plans/<int:plan_id>/archive")
@staff_required
def archive_plan(plan_id: int) -> ResponseReturnValue:
    restore = request.form.get("restore") == "1"
    try:
        plan = plans.archive_plan(plan_id, queries.org_scope(current_user), restore=restore, actor=_actor(),
                                  now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        flash(str(exc), "error")
        return go(url_for("admin.plan", plan_id=plan_id))
    flash(f"“{plan.name}” is {'open for new subscribers again' if restore else 'archived: no new subscribers'}"
          f"{'' if restore else '; its subscribers keep billing'}.", "success")
    return go(url_for("admin.plan", plan_id=plan.id))


@bp.post("/plans/<int:plan_id>/prices/<int:price_id>/migrate")
@staff_required
def migrate_price(plan_id: int, price_id: int) -> ResponseReturnValue:
    plan = _plan(plan_id)
    form = MigrateForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        report = plans.migrate_subscribers(plan.id, plan.organization_id, from_price_id=price_id,
                                           to_price_id=form.to_price_id.data, actor=_actor(), now=_now(),
                                           site=Site.from_config(current_app.config))
    except NotFound:
        raise
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(report.message, "success" if not report.failed else "warning")
    return go(url_for("admin.plan", plan_id=plan.id))
