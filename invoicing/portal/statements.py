"""The signed-in contact's own company statement: /portal/statement (page) and /portal/statement.pdf. Scoped
to `current_contact().client_id` only: no id in the URL, so another company's statement cannot be asked for."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import render_template, request
from werkzeug.wrappers import Response

from invoicing import pdf
from invoicing.portal import bp
from invoicing.portal.access import contact_required, current_contact
from invoicing.services.reports import statements
from invoicing.services.reports.period import parse_filters


def _statement() -> statements.Statement:
    contact = current_contact()
    org = contact.organization
    period = parse_filters(request.args).period(org.timezone, datetime.now(UTC))
    return statements.build(contact.client_id, contact.organization_id, start=period.start, end=period.end,
                            currency=(request.args.get("currency") or "").upper() or None)


@bp.get("/statement")
@contact_required
def statement() -> str:
    found = _statement()
    return render_template("portal/statement.html", statement=found, organization=found.organization,
                           params=statements.query_params(found))


@bp.get("/statement.pdf")
@contact_required
def statement_pdf() -> Response:
    found = _statement()
    return Response(pdf.statement_pdf(found), mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{statements.filename_for(found)}"'})
