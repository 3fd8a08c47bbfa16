"""The invoice PDF, downloaded from the admin (the stored rendering of the invoice's current version)."""

from __future__ import annotations

from flask import Response
from flask_login import current_user

from invoicing import pdf
from invoicing.admin import bp
from invoicing.auth import staff_required
from invoicing.services import queries


@bp.get("/invoices/<int:invoice_id>/pdf")
@staff_required
def invoice_pdf(invoice_id: int) -> Response:
    invoice = queries.get_invoice(current_user, invoice_id)  # another organization's invoice: 404
    filename = pdf.filename_for(invoice)
    content = pdf.invoice_pdf(invoice)
    return Response(content, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
