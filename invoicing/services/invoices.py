"""Invoice lifecycle: drafts, finalization (numbering), void, duplicate. Only drafts are editable."""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import MILLI, Client, Contact, CreditEntry, Invoice, InvoiceCounter, LineItem, Organization
from invoicing.money import MAX_AMOUNT, MoneyError, check_currency, format_money
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic, lock_invoice, take_next
from invoicing.services.totals import AMOUNT, MAX_QUANTITY, PERCENT, LineInput, compute_totals, limit_error

DEFAULT_NUMBER_FORMAT = "{year}-{seq:04d}"
# What a draft can hold; more is refused with a message, never cut (the editor's fields carry them as maxlength).
MAX_LINES = 200
MAX_DESCRIPTION = 2000  # characters per line
MAX_NOTES = 5000
MAX_PROJECT_REF = 120  # Invoice.project_ref's column size


@dataclass(frozen=True)
class LineData:
    description: str
    quantity: Decimal
    unit_price: int  # minor units
    tax_rate: Decimal = Decimal(0)  # percent


@dataclass(frozen=True)
class DraftData:
    client_id: int
    currency: str
    issue_date: date
    due_date: date
    lines: tuple[LineData, ...]
    discount_kind: str | None = None
    discount_value: int = 0  # basis points for percent, minor units for amount
    notes: str = ""
    project_ref: str = ""
    contact_id: int | None = None


def local_today(organization: Organization, now: datetime) -> date:
    """Today's date where the organization is; "overdue" and invoice years are decided in its zone."""
    return now.astimezone(ZoneInfo(organization.timezone)).date()


def check_number_format(fmt: str) -> str:
    """Accept formats like "{year}-{seq:04d}" or "INV-{seq:05d}": only {year} and {seq}, seq required."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None]
        sample = fmt.format(year=2026, seq=1)
    except (ValueError, KeyError, IndexError):
        raise DomainError("The number format must use {year} and {seq}, e.g. {year}-{seq:04d}.") from None
    if "seq" not in fields or set(fields) - {"year", "seq"}:
        raise DomainError("The number format must contain {seq} and may contain {year}; nothing else.")
    if len(sample) > 40:
        raise DomainError("The number format makes numbers that are too long.")
    return fmt


def check_draft(data: DraftData, organization: Organization, *, credit_lines: bool = False) -> Client:
    """The client of a valid draft; DomainError saying what is wrong otherwise (recurring profiles check theirs).

    `credit_lines`: negative unit prices are allowed (the system's credit lines, services/subscriptions: unused
    time of a plan, credit applied from a balance); _apply_draft still refuses a total below zero. Staff
    drafts never pass it."""
    client = db.session.get(Client, data.client_id)
    if client is None or client.organization_id != organization.id:
        raise DomainError("Choose a client.")
    if client.archived_at is not None:
        raise DomainError("This client is archived.")
    if data.contact_id is not None:
        contact = db.session.get(Contact, data.contact_id)
        if contact is None or contact.client_id != client.id:
            raise DomainError("The contact does not belong to this client.")
    try:
        check_currency(data.currency)
    except MoneyError as exc:
        raise DomainError(str(exc)) from None
    if data.due_date < data.issue_date:
        raise DomainError("The due date cannot be before the issue date.")
    if not data.lines:
        raise DomainError("Add at least one line.")
    if len(data.lines) > MAX_LINES:
        raise DomainError(f"An invoice can have at most {MAX_LINES} lines.")
    if len(data.notes.strip()) > MAX_NOTES:
        raise DomainError(f"The notes can have at most {MAX_NOTES:,} characters.")
    if len(data.project_ref.strip()) > MAX_PROJECT_REF:
        raise DomainError(f"The project reference can have at most {MAX_PROJECT_REF} characters.")
    most = format_money(MAX_AMOUNT, data.currency)
    for n, line in enumerate(data.lines, 1):
        if not line.description.strip():
            raise DomainError(f"Line {n}: enter a description.")
        if len(line.description.strip()) > MAX_DESCRIPTION:
            raise DomainError(f"Line {n}: the description can have at most {MAX_DESCRIPTION:,} characters.")
        if not 0 < line.quantity <= MAX_QUANTITY or line.quantity * MILLI != int(line.quantity * MILLI):
            raise DomainError(f"Line {n}: the quantity must be above zero and at most {MAX_QUANTITY:,}, "
                              "with at most 3 decimals.")
        if line.unit_price < 0 and not credit_lines:
            raise DomainError(f"Line {n}: the unit price cannot be negative.")
        if line.unit_price > MAX_AMOUNT:
            raise DomainError(f"Line {n}: the unit price can be at most {most}.")
        if not 0 <= line.tax_rate <= 100 or line.tax_rate * MILLI != int(line.tax_rate * MILLI):
            raise DomainError(f"Line {n}: the tax rate must be between 0 and 100 %, with at most 3 decimals.")
    if data.discount_kind not in (None, PERCENT, AMOUNT):
        raise DomainError("Unknown discount type.")
    if data.discount_kind == PERCENT and not 0 <= data.discount_value <= 10_000:
        raise DomainError("A percent discount must be between 0 and 100 %.")
    if data.discount_kind == AMOUNT and not 0 <= data.discount_value <= MAX_AMOUNT:
        raise DomainError(f"The discount must be between zero and {most}.")
    return client


def _apply_draft(invoice: Invoice, data: DraftData) -> None:
    """Write the draft's fields, its lines and its totals (computed in services/totals.py only)."""
    totals = compute_totals(
        [LineInput(line.quantity, line.unit_price, line.tax_rate) for line in data.lines],
        data.discount_kind,
        data.discount_value,
    )
    too_large = limit_error(totals, data.currency)
    if too_large:
        raise DomainError(too_large)
    if data.discount_kind == AMOUNT and data.discount_value > totals.subtotal:
        raise DomainError("The discount cannot be larger than the subtotal.")
    if totals.total < 0:  # only credit lines can be negative (check_draft)
        raise DomainError("The credit lines cannot be larger than what is invoiced.")
    invoice.client_id = data.client_id
    invoice.contact_id = data.contact_id
    invoice.currency = data.currency.upper()
    invoice.issue_date = data.issue_date
    invoice.due_date = data.due_date
    invoice.notes = data.notes.strip()
    invoice.project_ref = data.project_ref.strip()
    invoice.discount_kind = data.discount_kind if data.discount_value else None
    invoice.discount_value = data.discount_value if data.discount_kind else 0
    invoice.lines = [
        LineItem(
            position=n,
            description=line.description.strip(),
            quantity_milli=int(line.quantity * MILLI),
            unit_price=line.unit_price,
            tax_rate_milli=int(line.tax_rate * MILLI),
            amount=lt.amount,
            discount=lt.discount,
            tax=lt.tax,
        )
        for n, (line, lt) in enumerate(zip(data.lines, totals.lines, strict=True))
    ]
    invoice.subtotal = totals.subtotal
    invoice.discount_total = totals.discount
    invoice.tax_total = totals.tax
    invoice.total = totals.total


def new_draft(organization: Organization, data: DraftData, *, actor: Actor, now: datetime,
              credit_lines: bool = False) -> Invoice:
    """A new draft inside the caller's transaction (recurring profiles make theirs with the period's work;
    subscriptions theirs with `credit_lines`, see check_draft)."""
    check_draft(data, organization, credit_lines=credit_lines)
    invoice = Invoice(organization_id=organization.id, created_by_id=actor.id if actor.type == "user" else None)
    invoice.created_at = now
    _apply_draft(invoice, data)
    db.session.add(invoice)
    db.session.flush()
    record("invoice.created", invoice, actor=actor, now=now, details={"total": invoice.total})
    return invoice


def create_draft(organization: Organization, data: DraftData, *, actor: Actor, now: datetime) -> Invoice:
    with atomic():
        invoice = new_draft(organization, data, actor=actor, now=now)
    return invoice


def update_draft(
    invoice_id: int, organization: Organization, data: DraftData, *, actor: Actor, now: datetime
) -> Invoice:
    with atomic():
        invoice = lock_invoice(invoice_id, organization.id)
        if not invoice.is_editable:
            raise DomainError(f"Invoice {invoice.number} is {invoice.status}; only drafts can be edited.")
        check_draft(data, organization)
        _apply_draft(invoice, data)
        record("invoice.updated", invoice, actor=actor, now=now, details={"total": invoice.total})
    return invoice


def _next_number(organization: Organization, year: int) -> tuple[int, str]:
    """Take the next sequence number under a row lock; a rollback gives it back, so there are no gaps."""
    fmt = organization.number_format or DEFAULT_NUMBER_FORMAT
    key_year = year if "{year" in fmt else 0  # a format without the year numbers on forever
    seq = take_next(InvoiceCounter, organization_id=organization.id, year=key_year)
    return seq, fmt.format(year=year, seq=seq)


def finalize(invoice: Invoice, *, actor: Actor, now: datetime, expiry_days: int, allow_zero: bool = False) -> None:
    """Draft -> open inside the caller's transaction (the invoice row must already be locked). `allow_zero`: a
    subscription period entirely paid by the client's credit is numbered too (the caller marks it paid)."""
    if invoice.status != "draft":
        raise DomainError(f"Invoice {invoice.number} is already {invoice.status}.")
    if invoice.total < 0 or (invoice.total == 0 and not allow_zero):
        raise DomainError("An invoice must have a total above zero to be finalized.")
    organization = invoice.organization
    year = local_today(organization, now).year
    seq, number = _next_number(organization, year)
    invoice.number, invoice.number_year, invoice.number_seq = number, year, seq
    invoice.status = "open"
    invoice.finalized_at = now
    invoice.link_expires_on = invoice.due_date + timedelta(days=expiry_days)
    db.session.flush()
    record("invoice.finalized", invoice, actor=actor, now=now, details={"number": number, "total": invoice.total})
    from invoicing.services.billing.autopay import schedule_invoice  # autopay reads invoices' services

    schedule_invoice(invoice, now=now)  # the client's autopay (if on) charges it on the due date or now


def finalize_invoice(invoice_id: int, *, actor: Actor, now: datetime, expiry_days: int = 30) -> Invoice:
    with atomic():
        invoice = lock_invoice(invoice_id)
        finalize(invoice, actor=actor, now=now, expiry_days=expiry_days)
    return invoice


def void_invoice(invoice_id: int, *, reason: str, actor: Actor, now: datetime) -> Invoice:
    """Open -> void. Voiding revokes the pay link. An invoice that received money must be refunded first."""
    reason = reason.strip()
    if not reason:
        raise DomainError("Give a reason for voiding.")
    with atomic():
        invoice = lock_invoice(invoice_id)
        if invoice.status == "draft":
            raise DomainError("Drafts are deleted, not voided.")
        if invoice.status != "open":
            raise DomainError(f"Invoice {invoice.number} is {invoice.status} and cannot be voided.")
        if invoice.amount_paid > 0:
            raise DomainError("This invoice has received payments: refund them before voiding.")
        invoice.status = "void"
        invoice.voided_at = now
        invoice.void_reason = reason
        invoice.link_version += 1  # the old pay link stops working at once
        record("invoice.voided", invoice, actor=actor, now=now, details={"reason": reason})
        _restore_credit(invoice, now=now)
    return invoice


def _restore_credit(invoice: Invoice, *, now: datetime) -> None:
    """Client credit the voided invoice used (a subscription's "Credit from your balance" line) goes back to the
    client's balance: a "restored" entry, once per invoice (UNIQUE(invoice, reason))."""
    applied = db.session.execute(select(CreditEntry).where(CreditEntry.invoice_id == invoice.id,
                                                           CreditEntry.reason == "applied")).scalar_one_or_none()
    if applied is not None:
        db.session.add(CreditEntry(organization_id=applied.organization_id, client_id=applied.client_id,
                                   currency=applied.currency, amount=-applied.amount, reason="restored",
                                   description=f"Invoice {invoice.number} voided: its credit is back",
                                   subscription_id=applied.subscription_id, invoice_id=invoice.id, created_at=now))


def delete_draft(invoice_id: int, organization: Organization, *, actor: Actor, now: datetime) -> None:
    with atomic():
        invoice = lock_invoice(invoice_id, organization.id)
        if invoice.status != "draft":
            raise DomainError("Only drafts can be deleted; void an open invoice instead.")
        record("invoice.deleted", invoice, actor=actor, now=now)
        db.session.delete(invoice)


def duplicate_invoice(invoice_id: int, organization: Organization, *, actor: Actor, now: datetime) -> Invoice:
    """Copy any invoice into a new draft dated today with the organization's payment terms."""
    source = db.session.get(Invoice, invoice_id)
    if source is None or source.organization_id != organization.id:
        raise NotFound("Invoice not found.")
    today = local_today(organization, now)
    data = DraftData(
        client_id=source.client_id,
        contact_id=source.contact_id,
        currency=source.currency,
        issue_date=today,
        due_date=today + timedelta(days=organization.payment_terms_days),
        lines=tuple(LineData(li.description, li.quantity, li.unit_price, li.tax_rate) for li in source.lines),
        discount_kind=source.discount_kind,
        discount_value=source.discount_value,
        notes=source.notes,
        project_ref=source.project_ref,
    )
    invoice = create_draft(organization, data, actor=actor, now=now)
    with atomic():
        record("invoice.duplicated", invoice, actor=actor, now=now, details={"from": source.number or source.id})
    return invoice
