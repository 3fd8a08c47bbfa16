"""Subscriptions for staff: the list with its filters and headline figures per currency, and the client page's
panel: subscribe a client, change plan or seats (preview, then confirm), cancel (at period end, undo, or now with
an optional prorated refund), pause, resume. Every change goes through the engine (services/subscriptions/
lifecycle.py, changes.py); another organization's subscription answers 404."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import request
from flask_login import current_user

from invoicing.admin import bp
from invoicing.auth import staff_required
from invoicing.models import SUBSCRIPTION_STATUSES
from invoicing.rendering import render
from invoicing.services import queries
from invoicing.services.subscriptions import figures
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


@bp.get("/subscriptions")
@staff_required
def subscriptions() -> str:
    org_id, filters = queries.org_scope(current_user), _filters()
    after = request.args.get("after", "")
    page = subs.list_subscriptions(org_id, filters, after=int(after) if after.isdigit() and len(after) < 12 else None)
    return render("admin/subscriptions.html", "results", page=page, filters=filters, statuses=SUBSCRIPTION_STATUSES,
                  counts=subs.status_counts(org_id), plans=subs.list_plans(org_id, archived=None),
                  currencies=subs.currencies(org_id), describe=describe_price,
                  figures=figures.headline(org_id, now=_now()) if org_id is not None else [])
