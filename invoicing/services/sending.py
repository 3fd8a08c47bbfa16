"""Sending invoices and reminders: finalize, (re)issue the pay link, queue the email, all in one transaction.

Nothing here talks to SMTP: the email is an outbox row written in the same transaction as the change that
caused it (DESIGN rule 7), with the PDF as an attachment spec that the delivery job renders.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import Invoice, OutboxEmail
from invoicing.services import DomainError, client_texts
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic, lock_invoice
from invoicing.services.invoices import finalize, local_today
from invoicing.services.site import Site


def invoice_label(invoice: Invoice) -> str:
    return invoice.number or f"Draft #{invoice.id}"


def _refuse_unsendable(invoice: Invoice, what: str) -> None:
    label = invoice_label(invoice)
    if invoice.status == "void":
        raise DomainError(f"Invoice {label} is void; it cannot be {what}.")
    if invoice.status == "paid":
        raise DomainError(f"Invoice {label} is already paid; there is nothing to ask for.")
    if invoice.status == "processing":
        raise DomainError(f"A payment for invoice {label} is processing; wait for it to settle.")


def _recipient(invoice: Invoice, to: str | None) -> str:
    recipient = (to or "").strip() or (invoice.contact.email if invoice.contact else "") or invoice.client.email
    if not recipient:
        raise DomainError(f"{invoice.client.name} has no billing email and no contact was chosen: enter a recipient.")
    return recipient


def _keep_link_alive(invoice: Invoice, today: date, expiry_days: int) -> None:
    """An email must never carry a dead link: resending an old invoice gives its link expiry_days more."""
    floor = today + timedelta(days=expiry_days)
    if invoice.link_expires_on is None or invoice.link_expires_on < floor:
        invoice.link_expires_on = max(floor, invoice.due_date + timedelta(days=expiry_days))


def queue_invoice_email(invoice: Invoice, *, kind: str, to: str, dedupe_key: str, config: Site, now: datetime,
                        today: date) -> OutboxEmail | None:
    """The invoice or reminder email (the one renderer of both): the organization's subject and opening text
    in the app's layout, with the pay link and the PDF. In the caller's transaction; None if the key was used."""
    organization = invoice.organization
    pay_url = config.pay_url(invoice)
    texts = client_texts.for_sending(kind, invoice, client_texts.invoice_values(invoice, pay_url=pay_url, today=today),
                                     now=now)
    subject = texts["subject"]
    text, html = render_email(
        "invoice", subject=subject, organization=organization, invoice=invoice, client=invoice.client,
        lines=invoice.lines, pay_url=pay_url, amount_due=invoice.total - invoice.amount_paid, texts=texts,
    )
    from_addr, reply_to = sender_for(organization, config.mail_sender)
    return enqueue(
        kind=kind, to=to, subject=subject, text_body=text, html_body=html, from_addr=from_addr, reply_to=reply_to,
        now=now, organization_id=invoice.organization_id, invoice_id=invoice.id,
        attachments=[{"kind": "invoice_pdf", "invoice_id": invoice.id}], dedupe_key=dedupe_key,
    )


def send_invoice(
    invoice_id: int,
    *,
    actor: Actor,
    now: datetime,
    base_url: str,
    secret_key: str,
    default_sender: str,
    rotate_link: bool = False,
    expiry_days: int = 30,
    to: str | None = None,
    request_key: str | None = None,
) -> Invoice:
    """Finalize a draft (number assigned) or resend an open invoice, and queue its email with the pay link.

    `rotate_link` bumps the link version first, so every link sent before stops working (a forwarded email).
    Everything happens in one transaction: if the email cannot be queued, the invoice stays a draft.
    `request_key` (the send form's one-time key) makes a repeated submission of the same form a no-op.
    """
    config = Site(base_url, secret_key, default_sender, expiry_days)
    with atomic():
        invoice = lock_invoice(invoice_id)
        request_dedupe = f"invoice:{invoice.id}:send:{request_key}" if request_key else None
        if request_dedupe and db.session.execute(
            select(OutboxEmail.id).where(OutboxEmail.dedupe_key == request_dedupe)
        ).first():
            return invoice  # this very form was already submitted: one email, not two
        send_locked(invoice, actor=actor, now=now, config=config, rotate_link=rotate_link, to=to,
                    dedupe_key=request_dedupe)
    return invoice


def send_locked(invoice: Invoice, *, actor: Actor, now: datetime, config: Site, rotate_link: bool = False,
                to: str | None = None, dedupe_key: str | None = None) -> OutboxEmail:
    """Finalize a draft or resend an open invoice and queue its email, in the caller's transaction with the
    invoice row locked (send_invoice, and recurring profiles that send what they make)."""
    _refuse_unsendable(invoice, "sent")
    recipient = _recipient(invoice, to)
    today = local_today(invoice.organization, now)
    if invoice.status == "draft":
        finalize(invoice, actor=actor, now=now, expiry_days=config.paylink_expiry_days)
    elif rotate_link:
        invoice.link_version += 1
        record("invoice.link_rotated", invoice, actor=actor, now=now, details={"link_version": invoice.link_version})
    _keep_link_alive(invoice, today, config.paylink_expiry_days)
    invoice.sent_count += 1
    invoice.sent_at = now
    email = queue_invoice_email(invoice, kind="invoice", to=recipient, config=config, now=now, today=today,
                                dedupe_key=dedupe_key or f"invoice:{invoice.id}:send:{invoice.sent_count}")
    if email is None:  # another request sent this very version a moment ago
        raise DomainError(f"Invoice {invoice.number} was just sent; reload the page.")
    record("invoice.sent", invoice, actor=actor, now=now, details={
        "to": email.to_addr, "sent_count": invoice.sent_count, "email_id": email.id,
        "rotated": rotate_link and invoice.sent_count > 1, "link_expires_on": invoice.link_expires_on.isoformat()
        if invoice.link_expires_on else None,
    })
    return email


def send_reminder(
    invoice_id: int,
    *,
    actor: Actor,
    now: datetime,
    base_url: str,
    secret_key: str,
    default_sender: str,
    expiry_days: int = 30,
    to: str | None = None,
) -> OutboxEmail | None:
    """Queue a payment reminder for an open invoice; at most one per invoice per day (the organization's
    day). Returns None when today's reminder was already queued."""
    config = Site(base_url, secret_key, default_sender, expiry_days)
    with atomic():
        invoice = lock_invoice(invoice_id)
        today = local_today(invoice.organization, now)
        return remind_locked(invoice, actor=actor, now=now, config=config, to=to,
                             dedupe_key=f"invoice:{invoice.id}:reminder:{today.isoformat()}")


def remind_locked(invoice: Invoice, *, actor: Actor, now: datetime, config: Site, dedupe_key: str,
                  to: str | None = None, details: dict[str, Any] | None = None) -> OutboxEmail | None:
    """Queue a reminder of an open invoice in the caller's transaction (invoice row locked): staff's button and
    the automatic steps (services/billing/reminders.py, which add their step to the audit `details`)."""
    _refuse_unsendable(invoice, "reminded")
    if invoice.status == "draft":
        raise DomainError(f"Invoice {invoice_label(invoice)} has not been sent yet; send it first.")
    recipient = _recipient(invoice, to)
    today = local_today(invoice.organization, now)
    _keep_link_alive(invoice, today, config.paylink_expiry_days)
    email = queue_invoice_email(invoice, kind="reminder", to=recipient, config=config, now=now, today=today,
                                dedupe_key=dedupe_key)
    if email is None:
        return None
    record("invoice.reminded", invoice, actor=actor, now=now, details={
        "to": email.to_addr, "email_id": email.id, "overdue": invoice.is_overdue(today), **(details or {})})
    return email
