"""Receipts for money staff record by hand (cash, bank transfer, cheque, other): the client gets the receipt
email a card payer gets (services/checkout.enqueue_receipt: the same template, texts and dedupe key
`receipt:{payment_id}`), queued in the payment's own transaction, unless the organization turned it off in
Settings (`Organization.manual_payment_receipts`, on by default)."""

from __future__ import annotations

import logging
from datetime import datetime

from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import MANUAL_METHODS, Payment
from invoicing.services import DomainError, client_texts
from invoicing.services.site import Site

log = logging.getLogger(__name__)


def queue_manual_receipt(payment: Payment, *, site: Site, now: datetime) -> bool:
    """Queue the receipt of a manual payment in the caller's transaction, once; True if queued now."""
    invoice = payment.invoice
    organization = invoice.organization
    if not organization.manual_payment_receipts or payment.method not in MANUAL_METHODS \
            or payment.status != "succeeded":
        return False
    to = (invoice.contact.email if invoice.contact else None) or invoice.client.email
    if not to:
        return False
    pay_url = site.pay_url(invoice)
    texts = client_texts.for_sending("receipt", invoice, client_texts.payment_values(payment, pay_url=pay_url),
                                     now=now)
    text, html = render_email("receipt", organization=organization, invoice=invoice, subject=texts["subject"],
                              pay_url=pay_url, payment=payment, texts=texts)
    sender, reply_to = sender_for(organization, site.mail_sender)
    try:
        return enqueue(kind="receipt", to=to, subject=texts["subject"], text_body=text, html_body=html,
                       from_addr=sender, reply_to=reply_to, now=now, organization_id=invoice.organization_id,
                       invoice_id=invoice.id, dedupe_key=f"receipt:{payment.id}") is not None
    except DomainError as exc:  # a bad address must not undo the payment: log it
        log.warning("receipt email not queued: %s", exc, extra={"invoice_id": invoice.id})
        return False
