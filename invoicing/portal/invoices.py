"""A contact's invoices: the list at /portal/ (tabs, search, pages; HTMX swaps a block of the same template), an
invoice with its payment history, its PDF, and the receipt (page and PDF) of each payment that received money.
Every lookup is scoped to the signed-in contact's company: anything else answers the same 404 as a missing one.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime

from flask import render_template, request
from werkzeug.wrappers import Response

from invoicing import pdf as pdf_module
from invoicing.models import Contact
from invoicing.money import format_money
from invoicing.portal import bp
from invoicing.portal.access import contact_required, current_contact
from invoicing.rendering import render, wants_fragment
from invoicing.services.invoices import local_today
from invoicing.services.portal import invoices as portal_invoices

TEMPLATE_LIST = "portal/invoices.html"
TAB_LABELS = {"open": "Open", "overdue": "Overdue", "paid": "Paid", "all": "All"}


def _today(contact: Contact) -> date:
    return local_today(contact.organization, datetime.now(UTC))


@functools.lru_cache(maxsize=4096)
def _date(value: date) -> str:
    """The `date` filter's format, memoized (a page shows the same few dates again and again)."""
    return value.strftime("%b %-d, %Y")


def _pdf(content: bytes, filename: str) -> Response:
    return Response(content, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.errorhandler(pdf_module.PdfUnavailable)
def _no_pdf(_exc: pdf_module.PdfUnavailable) -> tuple[str, int]:
    # What to install is for the operator (logged); the client only needs to know to try later.
    return render_template("errors/error.html", code=503,
                           message="The PDF cannot be made right now. Everything it says is on the invoice page; "
                                   "please try the download again later."), 503


@bp.get("/")
@contact_required
def index() -> str:
    """The company's invoices. A tab or a search swaps the list block; "Older invoices" appends the rows block."""
    contact = current_contact()
    today, after = _today(contact), request.args.get("after")
    filters = portal_invoices.Filters.parse(request.args.get("tab"), request.args.get("q"))
    page = portal_invoices.list_invoices(contact.client_id, today=today, filters=filters, cursor=after)
    context = dict(page=page, filters=filters, today=today, tabs=TAB_LABELS, organization=contact.organization,
                   company=contact.client.name, default_tab=portal_invoices.DEFAULT_TAB, fmt_money=format_money,
                   fmt_date=_date)
    if not wants_fragment():  # the amounts due head the full page only, never a keystroke's fragment
        context["due"] = portal_invoices.amounts_due(contact.client_id, today=today)
    return render(TEMPLATE_LIST, "rows" if after else "list", **context)


@bp.get("/invoices/<public_id>")
@contact_required
def invoice(public_id: str) -> str:
    contact = current_contact()
    found = portal_invoices.get_invoice(contact.client_id, public_id)
    return render_template("portal/invoice.html", invoice=found, organization=contact.organization,
                           badges=portal_invoices.client_badges(found, _today(contact)),
                           history=portal_invoices.payment_history(found))


@bp.get("/invoices/<public_id>/pdf")
@contact_required
def invoice_pdf(public_id: str) -> Response:
    found = portal_invoices.get_invoice(current_contact().client_id, public_id)
    return _pdf(pdf_module.invoice_pdf(found), pdf_module.filename_for(found))


@bp.get("/payments/<int:payment_id>/receipt")
@contact_required
def receipt(payment_id: int) -> str:
    contact = current_contact()
    payment = portal_invoices.get_receipt(contact.client_id, payment_id)
    return render_template("portal/receipt.html", payment=payment, invoice=payment.invoice,
                           organization=contact.organization)


@bp.get("/payments/<int:payment_id>/receipt.pdf")
@contact_required
def receipt_pdf(payment_id: int) -> Response:
    payment = portal_invoices.get_receipt(current_contact().client_id, payment_id)
    return _pdf(pdf_module.receipt_pdf(payment), pdf_module.receipt_filename(payment))
