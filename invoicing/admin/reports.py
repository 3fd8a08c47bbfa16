"""Reports: the money dashboard (cards per currency, monthly revenue, payment methods and channels, aging, top
clients), its exports, and client statements (page, PDF, email). Figures come from services/reports only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import abort, current_app, flash, redirect, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.wrappers import Response

from invoicing import pdf
from invoicing.admin import bp, charts
from invoicing.admin.forms import currency_choices
from invoicing.auth import staff_required
from invoicing.models import Organization
from invoicing.rendering import render
from invoicing.services import DomainError, clients, queries
from invoicing.services.audit import Actor
from invoicing.services.reports import aging, exports, figures, statements
from invoicing.services.reports.cards import CARDS
from invoicing.services.reports.period import PRESETS, ReportFilters, parse_filters

TEMPLATE, STATEMENT = "admin/reports.html", "admin/statement.html"


def _now() -> datetime:
    return datetime.now(UTC)


def _org() -> Organization:
    """Reports are one organization's: a superadmin switches to one first."""
    org_id = queries.org_scope(current_user)
    if org_id is None:
        abort(403, "Switch to an organization first: reports are one organization's figures.")
    return queries.organization(org_id)


def _filters() -> ReportFilters:
    filters = parse_filters(request.args)
    if filters.client_id is not None:
        clients.get_client(current_user, filters.client_id)  # another organization's client: 404
    return filters


def card_url(filters: ReportFilters, report: figures.Report, key: str, currency: str) -> str:
    """The invoice list showing exactly the invoices a card counts."""
    period = report.period
    return url_for("admin.invoices", card=key, currency=currency, client=filters.client_id,
                   card_from=period.start.isoformat(), card_to=period.end.isoformat())


@bp.get("/reports")
@staff_required
def reports() -> ResponseReturnValue:
    org, filters = _org(), _filters()
    sort = request.args.get("aging_sort", "total")
    report = figures.compute(org.id, filters, tz=org.timezone, now=_now(), aging_sort=sort,
                             aging_descending=request.args.get("aging_dir") != "asc")
    return render(TEMPLATE, "report", **_context(org, filters, report, sort))


def _context(org: Organization, filters: ReportFilters, report: figures.Report, sort: str) -> dict[str, Any]:
    return dict(
        org=org, filters=filters, report=report, cards=CARDS, presets=PRESETS, charts=charts,
        card_url=card_url, buckets=aging.BUCKETS, aging_sort=sort, datasets=exports.DATASETS,
        aging_desc=request.args.get("aging_dir") != "asc",
        currencies=[c for c, _ in currency_choices(filters.currency, org.default_currency)],
        client_options=clients.client_choices(current_user, q="", selected_id=filters.client_id),
    )


@bp.get("/reports/export/<dataset>.<fmt>")
@staff_required
def export_report(dataset: str, fmt: str) -> Response:
    if dataset not in exports.DATASETS or fmt not in exports.FORMATS:
        abort(404)
    done = exports.export(_org(), dataset, fmt, _filters(), actor=Actor.user(current_user), now=_now())
    return Response(stream_with_context(done.body), mimetype=done.mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{done.filename}"'})


# --- client statements -----------------------------------------------------------------------------------


def statement_for(client_id: int, organization_id: int, args: Any, now: datetime,
                  tz: str) -> statements.Statement:
    """The statement the query string asks for (period as on the reports page; currency)."""
    period = parse_filters(args).period(tz, now)
    return statements.build(client_id, organization_id, currency=(args.get("currency") or "").upper() or None,
                            start=period.start, end=period.end)


@bp.get("/clients/<int:client_id>/statement")
@staff_required
def client_statement(client_id: int) -> ResponseReturnValue:
    org = _org()
    statement = statement_for(client_id, org.id, request.args, _now(), org.timezone)
    return render(STATEMENT, None, statement=statement, params=statement_params(statement), presets=PRESETS,
                  error="")


@bp.get("/clients/<int:client_id>/statement.pdf")
@staff_required
def client_statement_pdf(client_id: int) -> Response:
    org = _org()
    statement = statement_for(client_id, org.id, request.args, _now(), org.timezone)
    return pdf_response(statement)


def pdf_response(statement: statements.Statement) -> Response:
    name = statements.filename_for(statement)
    return Response(pdf.statement_pdf(statement), mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{name}"'})


@bp.post("/clients/<int:client_id>/statement/email")
@staff_required
def email_statement(client_id: int) -> ResponseReturnValue:
    org, now = _org(), _now()
    statement = statement_for(client_id, org.id, request.form, now, org.timezone)
    try:
        to = statements.email_statement(client_id, org.id, currency=statement.currency, start=statement.start,
                                        end=statement.end, to=request.form.get("recipient") or None,
                                        actor=Actor.user(current_user), now=now,
                                        default_sender=current_app.config["MAIL_DEFAULT_SENDER"])
    except DomainError as exc:
        return render(STATEMENT, None, statement=statement, params=statement_params(statement),
                      presets=PRESETS, error=str(exc)), 422
    flash(f"Statement queued for email to {to}.", "success")
    target = url_for("admin.client_statement", client_id=client_id, **statement_params(statement))  # type: ignore[arg-type]
    return redirect(target, 303)


statement_params = statements.query_params
