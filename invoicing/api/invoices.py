"""/api/v1/invoices: drafts (create, list, read, replace, change, delete) and their lifecycle (send, mark paid,
void, PDF), through the same services as the admin's invoice pages."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, url_for

from invoicing import pdf
from invoicing.api import answer, bp
from invoicing.api import schemas as s
from invoicing.api.auth import actor, api_key, now
from invoicing.api.docs import errors, example
from invoicing.api.idempotency import header as idempotency_header
from invoicing.api.idempotency import idempotent
from invoicing.gateways import current_gateway
from invoicing.services import checkout, sending
from invoicing.services.api import present
from invoicing.services.api import resources as res
from invoicing.services.invoices import create_draft, delete_draft, local_today, update_draft, void_invoice
from invoicing.services.payments import record_manual_payment
from invoicing.services.site import Site


def _org() -> Any:
    return api_key().organization


def _detail(invoice_id: int) -> dict[str, Any]:
    """The invoice as it is after a change (read again: the service committed)."""
    return present.invoice_dict(res.load_invoice(api_key().organization_id, invoice_id), now=now())


def _created(invoice_id: int) -> Response:
    body = _detail(invoice_id)
    return answer(body, 201, {"Location": url_for("api.get_invoice", invoice_id=body["id"])})


@bp.post("/invoices")
@idempotent
@bp.arguments(s.InvoiceIn, example=example("create_invoice"))
@bp.response(201, s.InvoiceOut, description="The draft, with its totals computed.")
@errors(401, 403, 409, 422)
def create_invoice(body: dict[str, Any]) -> Any:
    """Create a draft invoice."""
    data = res.draft_data(_org(), body, now=now())
    invoice = create_draft(_org(), data, actor=actor(), now=now())
    return _created(invoice.id)


@bp.get("/invoices")
@bp.arguments(s.InvoiceQuery, location="query", unknown="raise")
@bp.response(200, s.InvoiceListOut)
@errors(401, 422)
def list_invoices(query: dict[str, Any]) -> Any:
    """List invoices, newest first, with filters."""
    moment = now()
    page = res.list_invoices(api_key().organization_id, query, now=moment)
    return answer({"object": "list", "data": [present.invoice_summary(i, now=moment) for i in page.items],
                   "has_more": page.next_cursor is not None, "next_cursor": page.next_cursor})


@bp.get("/invoices/<invoice_id>")
@bp.response(200, s.InvoiceOut)
@errors(401, 404)
def get_invoice(invoice_id: str) -> Any:
    """Get an invoice with its lines, totals, payments, refunds and pay link."""
    return answer(present.invoice_dict(res.get_invoice(api_key().organization_id, invoice_id), now=now()))


def _change(invoice_id: str, body: dict[str, Any]) -> Response:
    invoice = res.get_invoice(api_key().organization_id, invoice_id)
    res.require_draft(invoice, "changed")
    data = res.draft_data(_org(), body, now=now(), current=invoice)
    return answer(_detail(update_draft(invoice.id, _org(), data, actor=actor(), now=now()).id))


@bp.put("/invoices/<invoice_id>")
@bp.arguments(s.InvoiceIn, example=example("create_invoice"))
@bp.response(200, s.InvoiceOut)
@errors(401, 403, 404, 409, 422)
def replace_invoice(body: dict[str, Any], invoice_id: str) -> Any:
    """Replace a draft (every field; omitted optional fields take their defaults). Only drafts: 409 otherwise."""
    defaults = {"contact": None, "discount": None, "notes": "", "project_ref": ""}
    return _change(invoice_id, {**defaults, **body})


@bp.patch("/invoices/<invoice_id>")
@bp.arguments(s.InvoicePatch, example={"due_date": "2026-04-30", "notes": "Thank you!"})
@bp.response(200, s.InvoiceOut)
@errors(401, 403, 404, 409, 422)
def update_invoice(body: dict[str, Any], invoice_id: str) -> Any:
    """Change some fields of a draft (`lines`, when given, replaces every line). Only drafts: 409 otherwise."""
    return _change(invoice_id, body)


@bp.delete("/invoices/<invoice_id>")
@bp.response(204)
@errors(401, 403, 404, 409)
def delete_invoice(invoice_id: str) -> Any:
    """Delete a draft. Finalized invoices are voided instead: 409."""
    invoice = res.get_invoice(api_key().organization_id, invoice_id)
    res.require_draft(invoice, "deleted")
    delete_draft(invoice.id, _org(), actor=actor(), now=now())
    return Response(status=204)


@bp.post("/invoices/<invoice_id>/send")
@idempotent
@bp.arguments(s.SendIn, required=False, example={"to": "ap@client.example"})
@bp.response(200, s.InvoiceOut, description="The invoice, finalized (numbered) if it was a draft.")
@errors(401, 403, 404, 409, 422)
def send_invoice(body: dict[str, Any], invoice_id: str) -> Any:
    """Send the invoice by email: a draft is finalized (numbered) first; an open one is sent again."""
    invoice = res.get_invoice(api_key().organization_id, invoice_id)
    res.require_status(invoice, ("draft", "open"), "sent")
    site = Site.from_config(current_app.config)
    sending.send_invoice(invoice.id, actor=actor(), now=now(), base_url=site.base_url, secret_key=site.secret_key,
                         default_sender=site.mail_sender, expiry_days=site.paylink_expiry_days,
                         rotate_link=body.get("rotate_link", False), to=body.get("to"),
                         request_key=res.request_key(api_key().id, idempotency_header()))
    return answer(_detail(invoice.id))


@bp.post("/invoices/<invoice_id>/mark-paid")
@idempotent
@bp.arguments(s.MarkPaidIn, example={"amount": 12550, "paid_on": "2026-03-12", "method": "bank_transfer",
                                     "reference": "BANK-2026-0312"})
@bp.response(201, s.PaymentOut, description="The payment recorded.")
@errors(401, 403, 404, 409, 422)
def mark_paid(body: dict[str, Any], invoice_id: str) -> Any:
    """Record money received outside the app (bank transfer, cash, cheque); less than due is a partial payment."""
    invoice = res.get_invoice(api_key().organization_id, invoice_id)
    res.require_status(invoice, ("open", "processing"), "paid")
    key = res.request_key(api_key().id, idempotency_header())
    result = record_manual_payment(invoice.id, amount=body["amount"], method=body["method"],
                                   paid_on=body.get("paid_on") or local_today(_org(), now()),
                                   reference=body["reference"], actor=actor(), now=now(), idempotency_key=key)
    checkout.expire_stale_sessions(invoice.id, gateway=current_gateway(), site=Site.from_config(current_app.config),
                                   now=now())  # DESIGN rule 4, as the admin's "Record payment" does
    return answer(present.payment_dict(result.payment, invoice=res.load_invoice(api_key().organization_id, invoice.id)),
                  201)


@bp.post("/invoices/<invoice_id>/void")
@idempotent
@bp.arguments(s.VoidIn, example={"reason": "Issued to the wrong client"})
@bp.response(200, s.InvoiceOut)
@errors(401, 403, 404, 409, 422)
def void(body: dict[str, Any], invoice_id: str) -> Any:
    """Void an open invoice that received nothing; its pay link stops working."""
    invoice = res.get_invoice(api_key().organization_id, invoice_id)
    res.require_status(invoice, ("open",), "voided")
    void_invoice(invoice.id, reason=body["reason"], actor=actor(), now=now())
    checkout.expire_stale_sessions(invoice.id, gateway=current_gateway(), site=Site.from_config(current_app.config),
                                   now=now())
    return answer(_detail(invoice.id))


@bp.get("/invoices/<invoice_id>/pdf")
@bp.response(200, {"type": "string", "contentMediaType": "application/pdf"}, content_type="application/pdf",
             description="The invoice as a PDF.")
@errors(401, 404)
def invoice_pdf(invoice_id: str) -> Any:
    """Download the invoice as a PDF."""
    invoice = res.get_invoice(api_key().organization_id, invoice_id)
    return Response(pdf.invoice_pdf(invoice), mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{pdf.filename_for(invoice)}"'})
