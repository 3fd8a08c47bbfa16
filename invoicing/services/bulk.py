"""Bulk actions on selected invoices: each row in its own transaction, each with its own outcome.

One invoice that cannot be sent (already paid, void, no email address) never stops the others, and the
result says what happened to every row: "4 sent, 1 skipped: already paid".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from invoicing.extensions import db
from invoicing.models import MANUAL_METHODS, Invoice
from invoicing.services import DomainError
from invoicing.services.audit import Actor
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import record_manual_payment
from invoicing.services.sending import invoice_label, send_invoice, send_reminder
from invoicing.services.site import Site

MAX_ROWS = 500


@dataclass(frozen=True)
class RowResult:
    invoice_id: int
    label: str
    done: bool
    reason: str = ""  # why it was skipped, short enough to group ("already paid")


@dataclass
class BulkResult:
    verb: str  # "sent", "reminded", "marked paid", "voided"
    rows: list[RowResult] = field(default_factory=list)

    @property
    def done(self) -> list[RowResult]:
        return [r for r in self.rows if r.done]

    @property
    def skipped(self) -> list[RowResult]:
        return [r for r in self.rows if not r.done]

    def summary(self) -> str:
        """"4 sent, 1 skipped: already paid" (reasons grouped, most frequent first)."""
        parts = [f"{len(self.done)} {self.verb}"]
        for reason, n in Counter(r.reason for r in self.skipped).most_common():
            parts.append(f"{n} skipped: {reason}")
        return ", ".join(parts)


def _state_reason(invoice: Invoice, action: str) -> str | None:
    """The short reason a row is skipped before trying, so the summary groups well."""
    if invoice.status == "paid":
        return "already paid"
    if invoice.status == "void":
        return "void" if action != "void" else "already void"
    if invoice.status == "processing":
        return "payment processing"
    if invoice.status == "draft" and action == "void":
        return "draft (delete it instead)"
    if invoice.status == "draft" and action in ("remind", "mark_paid"):
        return "draft, not sent yet"
    return None


def _run(
    invoice_ids: Iterable[int], action: str, verb: str, work: Callable[[Invoice], bool | None]
) -> BulkResult:
    """Apply `work` to each invoice; it returns False (or raises DomainError) to skip the row."""
    ids = list(dict.fromkeys(invoice_ids))
    if len(ids) > MAX_ROWS:  # refused whole: doing the first MAX_ROWS and dropping the rest would go unnoticed
        raise DomainError(f"Select at most {MAX_ROWS} invoices at a time.")
    result = BulkResult(verb)
    for invoice_id in ids:
        invoice = db.session.get(Invoice, invoice_id)
        if invoice is None:
            result.rows.append(RowResult(invoice_id, f"#{invoice_id}", False, "not found"))
            continue
        label = invoice_label(invoice)
        reason = _state_reason(invoice, action)
        if reason is None:
            try:
                if work(invoice) is False:
                    reason = "already done today"
            except DomainError as exc:
                db.session.rollback()
                reason = str(exc).rstrip(".")
        result.rows.append(RowResult(invoice_id, label, reason is None, reason or ""))
    return result


def bulk_send(invoice_ids: Iterable[int], *, config: Site, actor: Actor, now: datetime,
              batch_key: str | None = None) -> BulkResult:
    """Send drafts (finalizing them) and resend open invoices; paid, void and processing ones are skipped.

    `batch_key` is the form's one-time key: submitting the same form twice emails each invoice once."""
    def work(invoice: Invoice) -> None:
        send_invoice(invoice.id, actor=actor, now=now, base_url=config.base_url, secret_key=config.secret_key,
                     default_sender=config.mail_sender, expiry_days=config.paylink_expiry_days,
                     request_key=f"bulk-{batch_key}" if batch_key else None)

    return _run(invoice_ids, "send", "sent", work)


def bulk_remind(invoice_ids: Iterable[int], *, config: Site, actor: Actor, now: datetime) -> BulkResult:
    """Queue one reminder per open invoice per day (the dedupe key makes a second click harmless)."""
    def work(invoice: Invoice) -> bool:
        email = send_reminder(invoice.id, actor=actor, now=now, base_url=config.base_url,
                              secret_key=config.secret_key, default_sender=config.mail_sender,
                              expiry_days=config.paylink_expiry_days)
        return email is not None

    result = _run(invoice_ids, "remind", "reminded", work)
    result.rows = [r if r.reason != "already done today" else RowResult(r.invoice_id, r.label, False,
                                                                         "already reminded today")
                   for r in result.rows]
    return result


def bulk_mark_paid(
    invoice_ids: Iterable[int], *, method: str, paid_on: date, reference: str, batch_key: str, actor: Actor,
    now: datetime, site: Site | None = None,
) -> BulkResult:
    """Record a manual payment of the amount due on each open invoice, through the one money door.

    `batch_key` is the form's one-time key: submitting the same form twice records each payment once. With
    `site`, each client gets its receipt (unless the organization turned receipts for manual payments off).
    """
    if method not in MANUAL_METHODS:
        raise DomainError("Choose cash, bank transfer, cheque or other.")
    if not batch_key or len(batch_key) > 100:
        raise DomainError("The form expired; reload the page and try again.")

    def work(invoice: Invoice) -> bool:
        due = invoice.total - invoice.amount_paid
        if due <= 0:
            return False
        payment = record_manual_payment(invoice.id, amount=due, method=method, paid_on=paid_on, reference=reference,
                                        actor=actor, now=now, idempotency_key=f"bulk:{batch_key}:{invoice.id}",
                                        site=site)
        return payment.created

    result = _run(invoice_ids, "mark_paid", "marked paid", work)
    result.rows = [r if r.reason != "already done today" else RowResult(r.invoice_id, r.label, False,
                                                                         "already recorded")
                   for r in result.rows]
    return result


def bulk_void(invoice_ids: Iterable[int], *, reason: str, actor: Actor, now: datetime) -> BulkResult:
    if not reason.strip():
        raise DomainError("Give a reason for voiding.")

    def work(invoice: Invoice) -> None:
        void_invoice(invoice.id, reason=reason, actor=actor, now=now)

    return _run(invoice_ids, "void", "voided", work)
