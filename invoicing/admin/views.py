from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from invoicing.admin import bp, charts
from invoicing.admin.forms import LoginForm
from invoicing.auth import staff_required
from invoicing.extensions import limiter
from invoicing.services import attention, queries, users
from invoicing.services.invoices import local_today
from invoicing.services.reports import figures


def _now() -> datetime:
    return datetime.now(UTC)


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("admin.dashboard")


def _login_email_key() -> str:
    return "login:" + (request.form.get("email") or "").strip().lower()


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("20 per minute", methods=["POST"])
@limiter.limit("5 per minute", methods=["POST"], key_func=_login_email_key)
def login() -> Response | tuple[str, int]:
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = users.authenticate(form.email.data or "", form.password.data or "", now=_now())
        except users.OrganizationArchived as exc:
            form.form_errors.append(str(exc))
            return render_template("admin/login.html", form=form), 403
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")), code=303)
        form.password.errors.append("Wrong email or password.")
    return render_template("admin/login.html", form=form), 200 if request.method == "GET" else 400


@bp.post("/logout")
def logout() -> Response:
    logout_user()
    return redirect(url_for("admin.login"), code=303)


@bp.get("/")
@staff_required
def dashboard() -> str:
    now = _now()
    page = queries.list_invoices(current_user, now=now, limit=10)
    overdue = queries.list_invoices(current_user, now=now, status="overdue", limit=10)
    cases = attention.open_cases(queries.org_scope(current_user), limit=20)
    states = queries.email_states(invoice.id for invoice in [*page.invoices, *overdue.invoices])
    org_id = queries.org_scope(current_user)
    figures_now = figures.dashboard(org_id, tz=queries.organization(org_id).timezone, now=now) \
        if org_id is not None else None
    return render_template("admin/dashboard.html", page=page, overdue=overdue, cases=cases, today=_today(now),
                           email_states=states, figures=figures_now, charts=charts)


def _today(now: datetime):  # noqa: ANN202 - date in the user's organization, UTC for superadmin
    org = current_user.organization
    return local_today(org, now) if org is not None else now.date()


