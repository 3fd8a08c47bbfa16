"""Money that needs a person: an overpayment, money received on a void invoice, a dispute, a refund the
provider could not complete. The money door (services/payments.py) and the dispute handler open a case once
per case key, in the same transaction as the money change and under the invoice row lock, and queue one
email per admin of the organization (outbox dedupe key). The invoice carries `attention_since` while it has an
open case: the invoice list's "attention" tab, its badge and the dashboard's panel read it.

Staff resolve a case with a note saying what they did (refunded by bank transfer, kept as credit, won the
dispute...): the case is closed, not deleted, and the resolution is audited on the invoice's timeline.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from invoicing.extensions import db
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import AttentionCase, Invoice, Organization, Payment, User
from invoicing.money import format_money
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic, lock_invoice
from invoicing.services.site import Site

log = logging.getLogger(__name__)

KIND_LABELS = {
    "overpayment": "Overpayment",
    "void_payment": "Money on a void invoice",
    "dispute": "Disputed payment",
    "refund_failed": "Refund failed",
}
MAX_RESOLUTION = 500


def organization_admins(organization: Organization) -> list[str]:
    """Who hears what staff must know: the organization's active admins, else its reply-to address."""
    admins = db.session.execute(select(User.email).where(
        User.organization_id == organization.id, User.role == "admin", User.active.is_(True)).order_by(User.id)
    ).scalars().all()  # in a stable order: the emails are queued (and their ids given) in it
    return [e for e in (list(admins) or [organization.sender_email or ""]) if e]


def admin_emails(invoice: Invoice) -> list[str]:
    """Who hears about money problems on an invoice: its organization's active admins, else its sender address."""
    return organization_admins(invoice.organization)


def email_admins(invoice: Invoice, *, kind: str, subject: str, key: str, now: datetime, site: Site | None = None,
                 **context: Any) -> int:
    """Queue templates/emails/<kind> to each admin in the current transaction, once per `key` and admin."""
    site = site or Site.from_config(current_app.config)
    return email_organization_admins(invoice.organization, kind=kind, subject=subject, key=key, now=now, site=site,
                                     admin_path=f"/admin/invoices/{invoice.id}", invoice=invoice, **context)


def email_organization_admins(organization: Organization, *, kind: str, subject: str, key: str, now: datetime,
                              site: Site, admin_path: str, invoice: Invoice | None = None, **context: Any) -> int:
    """Queue templates/emails/<kind> to each admin of the organization in the current transaction, once per `key`
    and admin; `admin_path` is the staff page the email links to."""
    text, html = render_email(kind, organization=organization, invoice=invoice, subject=subject,
                              admin_url=site.url(admin_path, organization), **context)
    sender, reply_to = sender_for(organization, site.mail_sender)
    invoice_id = invoice.id if invoice is not None else None
    queued = 0
    for to in organization_admins(organization):
        try:
            enqueue(kind=kind, to=to, subject=subject, text_body=text, html_body=html, from_addr=sender,
                    reply_to=reply_to, now=now, organization_id=organization.id, invoice_id=invoice_id,
                    dedupe_key=f"{key}:{to}")
            queued += 1
        except DomainError as exc:  # a bad address must not undo the change: log it
            log.warning("%s email not queued: %s", kind, exc, extra={"invoice_id": invoice_id})
    return queued


def open_case(invoice: Invoice, *, kind: str, key: str, amount: int, currency: str, now: datetime,
              payment: Payment | None = None, detail: str = "", notify: bool = True) -> AttentionCase:
    """Open the case `key` once (the caller holds the invoice row lock, inside its transaction) and email the
    admins about it; `notify=False` when the caller sends its own email (disputes, failed refunds)."""
    case = db.session.execute(select(AttentionCase).where(AttentionCase.case_key == key)).scalar_one_or_none()
    if case is not None:
        return case
    case = AttentionCase(organization_id=invoice.organization_id, invoice_id=invoice.id, kind=kind, case_key=key,
                         payment_id=payment.id if payment else None, amount=amount, currency=currency,
                         detail=detail[:200], opened_at=now)
    db.session.add(case)
    if invoice.attention_since is None:
        invoice.attention_since = now
    log.warning("money needs attention: %s", kind, extra={"invoice_id": invoice.id, "case_key": key})
    if notify:
        label = invoice.number or f"#{invoice.id}"
        subject = f"{KIND_LABELS[kind]}: {format_money(amount, currency)} on invoice {label}, refund or resolve it"
        email_admins(invoice, kind="money_attention", subject=subject, key=f"attention:{key}", now=now,
                     case=case, case_label=KIND_LABELS[kind], payment=payment)
    return case


def resolve_case(case_id: int, *, invoice_id: int, note: str, actor: Actor, now: datetime) -> AttentionCase:
    """Staff close a case, saying what they did; the invoice leaves the attention view with its last open case."""
    note = note.strip()
    if not note:
        raise DomainError("Say what was done (refunded, kept as credit, dispute answered...).")
    if len(note) > MAX_RESOLUTION:
        raise DomainError(f"Keep the note under {MAX_RESOLUTION} characters.")
    case = db.session.get(AttentionCase, case_id)
    if case is None or case.invoice_id != invoice_id:  # the view checked the user may see this invoice
        raise NotFound("Case not found.")
    with atomic():
        invoice = lock_invoice(case.invoice_id)
        db.session.refresh(case)
        if case.resolved_at is not None:
            raise DomainError("This case was already resolved.")
        case.resolved_at, case.resolution = now, note
        case.resolved_by_id = actor.id if actor.type == "user" else None
        others = db.session.execute(select(AttentionCase.id).where(
            AttentionCase.invoice_id == invoice.id, AttentionCase.resolved_at.is_(None),
            AttentionCase.id != case.id)).first()
        if others is None:
            invoice.attention_since = None
        record("attention.resolved", invoice, actor=actor, now=now, details={
            "case_id": case.id, "kind": case.kind, "amount": case.amount, "currency": case.currency, "note": note})
    return case


def open_cases(organization_id: int | None, *, invoice_id: int | None = None, limit: int = 50
               ) -> list[AttentionCase]:
    """Open cases, oldest first (what has waited longest), of one organization (None: all) or one invoice."""
    query = (select(AttentionCase).where(AttentionCase.resolved_at.is_(None)).order_by(AttentionCase.id).limit(limit)
             .options(joinedload(AttentionCase.invoice).joinedload(Invoice.client)))
    if organization_id is not None:
        query = query.where(AttentionCase.organization_id == organization_id)
    if invoice_id is not None:
        query = query.where(AttentionCase.invoice_id == invoice_id)
    return list(db.session.execute(query).scalars())
