"""Invoice PDFs, rendered with WeasyPrint from templates/pdf/invoice.html and stored per version.

WeasyPrint is slow (about 0.25 s a page, 0.7 s just to import: notes/stack.md), so each rendering is kept in
the InvoicePdf table under a hash of everything the PDF shows (the invoice and its lines, the client, the
organization's branding, the pay link, the template itself). Asking again for the same version serves the
stored bytes; any change makes a new version and the older one is deleted.

The stored PDF of an open invoice contains its pay link, as the outbox's email bodies do; a revoked link
(void, rotation) changes the version, and the old PDF is dropped with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from datetime import datetime
from functools import cache
from typing import Any

from flask import current_app, render_template
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from invoicing.extensions import db
from invoicing.models import Invoice, InvoicePdf, Payment, utcnow
from invoicing.services import client_texts
from invoicing.services.db import atomic
from invoicing.services.site import Site

log = logging.getLogger(__name__)

TEMPLATE = "pdf/invoice.html"
# WeasyPrint loads Pango, HarfBuzz and fontconfig from the system when it is imported; pip cannot install them.
MISSING_LIBRARIES = (
    "Invoice PDFs cannot be made on this server: WeasyPrint's system libraries (Pango, HarfBuzz) are missing. "
    "Install them (Debian/Ubuntu: apt-get install libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0; "
    "macOS: brew install pango) and restart the app."
)


class PdfUnavailable(Exception):
    """WeasyPrint cannot run here (its system libraries are missing); the message says what to install."""

    def __init__(self, message: str = MISSING_LIBRARIES):
        super().__init__(message)
        self.message = message


def filename_for(invoice: Invoice) -> str:
    """invoice-2026-0001.pdf; a number format may hold any text, so only safe characters are kept."""
    if not invoice.number:
        return f"invoice-draft-{invoice.id}.pdf"
    return f"invoice-{re.sub(r'[^A-Za-z0-9._-]+', '-', invoice.number).strip('-.') or invoice.id}.pdf"


def pay_url_for(invoice: Invoice) -> str | None:
    """The pay link printed on the PDF: only while the invoice can be paid."""
    if invoice.status != "open":
        return None
    return Site.from_config(current_app.config).pay_url(invoice)


def logo_data_uri(logo: bytes | None, mime: str | None) -> str | None:
    if not logo or mime not in ("image/png", "image/jpeg", "image/webp"):
        return None
    return f"data:{mime};base64,{base64.b64encode(logo).decode()}"


@cache
def _template_digest(name: str) -> str:
    """Editing the template (or a partial it includes) makes new versions of every PDF."""
    loader = current_app.jinja_env.loader
    assert loader is not None
    digest = hashlib.sha256()
    for template in (name, "pdf/_invoice_document.html"):
        source, _, _ = loader.get_source(current_app.jinja_env, template)
        digest.update(source.encode())
    return digest.hexdigest()


def texts_for(invoice: Invoice, pay_url: str | None) -> dict[str, str]:
    """The organization's PDF texts (header note, payment instructions, terms, footer) filled in."""
    values = client_texts.invoice_values(invoice, pay_url=pay_url)
    return client_texts.for_sending("pdf", invoice, values, now=utcnow(), alert_in_own_transaction=True)


def version_of(invoice: Invoice, pay_url: str | None, texts: dict[str, str] | None = None) -> str:
    """A hash of everything the PDF shows."""
    org, client = invoice.organization, invoice.client
    shown: dict[str, Any] = {
        "template": _template_digest(TEMPLATE),
        "invoice": [invoice.id, invoice.number, invoice.status, invoice.currency, invoice.issue_date,
                    invoice.due_date, invoice.notes, invoice.project_ref, invoice.subtotal, invoice.discount_total,
                    invoice.discount_kind, invoice.discount_value, invoice.tax_total, invoice.total,
                    invoice.amount_paid, invoice.link_version, invoice.link_expires_on, invoice.void_reason],
        "lines": [[li.description, li.quantity_milli, li.unit_price, li.tax_rate_milli, li.amount, li.tax]
                  for li in invoice.lines],
        "client": [client.name, client.email, client.address, client.tax_id],
        "contact": [invoice.contact.name, invoice.contact.email] if invoice.contact else None,
        "org": [org.name, org.address, org.sender_email, org.phone, org.website, org.brand_color, org.accent_color,
                org.payment_instructions, org.logo_mime,
                hashlib.sha256(org.logo).hexdigest() if org.logo else None],
        # The link itself is a capability: only its hash goes into the version.
        "pay_url": hashlib.sha256(pay_url.encode()).hexdigest() if pay_url else None,
        "texts": texts if texts is not None else texts_for(invoice, pay_url),
    }
    return hashlib.sha256(json.dumps(shown, default=str, sort_keys=True).encode()).hexdigest()


def render_html(invoice: Invoice, pay_url: str | None, texts: dict[str, str] | None = None) -> str:
    org = invoice.organization
    return render_template(TEMPLATE, invoice=invoice, organization=org, client=invoice.client, pay_url=pay_url,
                           logo_uri=logo_data_uri(org.logo, org.logo_mime),
                           texts=texts if texts is not None else texts_for(invoice, pay_url))


def _weasyprint() -> Any:
    """The weasyprint module, imported on first use (0.7 s); PdfUnavailable when its libraries are missing."""
    try:
        import weasyprint
        import weasyprint.urls
    except (OSError, ImportError) as exc:  # OSError: "cannot load library 'libgobject-2.0-0'" and the like
        log.error("WeasyPrint cannot load its libraries: %s", exc)
        raise PdfUnavailable() from exc
    return weasyprint


def unavailable_reason() -> str | None:
    """Why PDFs cannot be made here, or None when WeasyPrint loads (for start-up messages)."""
    try:
        _weasyprint()
    except PdfUnavailable as exc:
        return exc.message
    return None


def html_to_pdf(html: str) -> bytes:
    """WeasyPrint, allowed to read data: URIs only: no file or network access."""
    weasyprint = _weasyprint()
    fetcher = weasyprint.urls.URLFetcher(allowed_protocols={"data"})
    return bytes(weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf())


def statement_pdf(statement: Any) -> bytes:
    """A client statement (services/reports/statements.py) as a PDF: the same WeasyPrint path, not stored
    (a statement is a moment's view of the ledger, rebuilt each time)."""
    org = statement.organization
    return html_to_pdf(render_template("pdf/statement.html", statement=statement, organization=org,
                                       logo_uri=logo_data_uri(org.logo, org.logo_mime)))


def invoice_pdf(invoice: Invoice, *, pay_url: str | None = None, now: datetime | None = None) -> bytes:
    """The invoice as a PDF: the stored rendering of this version, or a fresh one (then stored).

    `pay_url` defaults to the invoice's current pay link when it is open. Call it outside a write
    transaction: storing the rendering commits its own.
    """
    url = pay_url if pay_url is not None else pay_url_for(invoice)
    texts = texts_for(invoice, url)
    version = version_of(invoice, url, texts)
    stored = db.session.execute(
        select(InvoicePdf.content).where(InvoicePdf.invoice_id == invoice.id, InvoicePdf.version == version)
    ).scalar_one_or_none()
    if stored is not None:
        return bytes(stored)
    content = html_to_pdf(render_html(invoice, url, texts))
    invoice_id = invoice.id
    try:
        with atomic():
            db.session.execute(
                delete(InvoicePdf).where(InvoicePdf.invoice_id == invoice_id, InvoicePdf.version != version)
            )
            db.session.add(InvoicePdf(invoice_id=invoice_id, version=version, content=content,
                                      created_at=now or utcnow()))
    except IntegrityError:  # another worker stored the same version first: same bytes, keep theirs
        log.info("pdf of invoice %s version %s stored concurrently", invoice_id, version[:12])
    return content


# --- receipts ---------------------------------------------------------------------------------------------

RECEIPT_TEMPLATE = "pdf/receipt.html"


def receipt_filename(payment: Payment) -> str:
    """receipt-R-000012.pdf"""
    return f"receipt-{re.sub(r'[^A-Za-z0-9._-]+', '-', payment.receipt_number or str(payment.id)).strip('-.')}.pdf"


def receipt_pdf(payment: Payment) -> bytes:
    """The receipt of money received, as a PDF. Rendered on each download, not stored: clients fetch one rarely,
    and it changes when the payment is refunded."""
    invoice = payment.invoice
    org = invoice.organization
    html = render_template(RECEIPT_TEMPLATE, payment=payment, invoice=invoice, organization=org,
                           client=invoice.client, logo_uri=logo_data_uri(org.logo, org.logo_mime))
    return html_to_pdf(html)
