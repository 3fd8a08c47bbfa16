"""Admin forms. Each returns domain types (minor units, dates, dataclasses) or field errors to show inline."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from invoicing.models import MANUAL_METHODS, MILLI, Client, Invoice, Organization
from invoicing.money import (
    COMMON_CURRENCIES,
    MAX_AMOUNT,
    MoneyError,
    check_currency,
    format_money,
    format_plain,
    parse_amount,
)
from invoicing.services import DomainError
from invoicing.services.attention import MAX_RESOLUTION
from invoicing.services.bulk import MAX_ROWS as MAX_BULK_ROWS
from invoicing.services.clients import ClientData, ContactData
from invoicing.services.invoices import (
    MAX_DESCRIPTION,
    MAX_LINES,
    MAX_NOTES,
    MAX_PROJECT_REF,
    DraftData,
    LineData,
)
from invoicing.services.queries import DEFAULT_SORT, SORT_CHOICES, STATUS_FILTERS, InvoiceFilters
from invoicing.services.reports.cards import CARDS
from invoicing.services.totals import (
    AMOUNT,
    MAX_QUANTITY,
    PERCENT,
    LineInput,
    Totals,
    compute_totals,
    limit_error,
)
from invoicing.services.users import normalize_email

METHOD_LABELS = {"cash": "Cash", "bank_transfer": "Bank transfer", "cheque": "Cheque", "other": "Other"}


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


def email_address(form: Any, field: Any) -> None:
    """The same email rules as the services (services.users.normalize_email), so the form never accepts what
    the service refuses, or the reverse."""
    if field.data:
        try:
            normalize_email(field.data)
        except DomainError:
            raise ValidationError("Invalid email address.") from None


def currency_choices(*extra: str | None) -> list[tuple[str, str]]:
    codes = list(dict.fromkeys([c for c in extra if c] + list(COMMON_CURRENCIES)))
    return [(c, c) for c in codes]


# --- clients ---------------------------------------------------------------------------------------------


class ClientForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    email = EmailField("Billing email", validators=[Optional(), email_address, Length(max=254)])
    address = TextAreaField("Address", validators=[Length(max=2000)])
    tax_id = StringField("Tax id (VAT number, EIN...)", validators=[Length(max=64)])
    currency = SelectField("Currency", validators=[DataRequired()])

    def __init__(self, *args: Any, default_currency: str = "USD", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.currency.choices = [SelectChoice(c, c) for c, _ in currency_choices(self.currency.data, default_currency)]
        if not self.currency.data:
            self.currency.data = default_currency

    def validate_currency(self, field: SelectField) -> None:
        try:
            check_currency(field.data or "")
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None

    def client_data(self) -> ClientData:
        return ClientData(name=self.name.data or "", email=self.email.data or "", address=self.address.data or "",
                          currency=self.currency.data or "", tax_id=self.tax_id.data or "")


class ContactForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    email = EmailField("Email", validators=[DataRequired(), email_address, Length(max=254)])
    portal_access = BooleanField("Can log in to the client portal")

    def contact_data(self) -> ContactData:
        return ContactData(name=self.name.data or "", email=self.email.data or "",
                           portal_access=bool(self.portal_access.data))


# --- invoice actions -------------------------------------------------------------------------------------


class PaymentForm(FlaskForm):
    """Record money received by hand. `amount_minor` holds the amount in the invoice's minor units."""

    amount = StringField("Amount", validators=[DataRequired(message="Enter an amount.")])
    method = SelectField("Method", choices=[SelectChoice(m, METHOD_LABELS[m]) for m in MANUAL_METHODS])
    paid_on = DateField("Received on", validators=[DataRequired(message="Enter the date it was received.")])
    reference = StringField("Reference", validators=[Length(max=200)])
    idempotency_key = HiddenField(validators=[DataRequired(message="The form expired; reload the page."),
                                              Length(max=100)])

    def __init__(self, *args: Any, currency: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.amount_minor = 0

    def validate_amount(self, field: StringField) -> None:
        try:
            self.amount_minor = parse_amount(field.data or "", self.currency)
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None
        if self.amount_minor <= 0:
            raise ValidationError("The amount must be above zero.")

    def validate_paid_on(self, field: DateField) -> None:
        if field.data and not plausible_paid_on(field.data):
            raise ValidationError(PAID_ON_MESSAGE)


PAID_ON_MESSAGE = "Enter the date the money arrived (not in the future)."


def plausible_paid_on(value: date) -> bool:
    """A date money was received on: not in the future (a day of slack for time zones), not before 2000."""
    return date(2000, 1, 1) <= value <= date.today() + timedelta(days=1)


class VoidForm(FlaskForm):
    reason = StringField("Reason", validators=[DataRequired(message="Give a reason for voiding."), Length(max=500)])


class SendForm(FlaskForm):
    to = EmailField("Send to", validators=[Optional(), email_address, Length(max=254)])
    # One key per rendered form: a double-submitted "Send" queues one email, not two.
    key = HiddenField(validators=[DataRequired(message="The form expired; reload the page."), Length(max=64)])
    rotate_link = BooleanField("Replace the pay link (earlier emails' links stop working)")


BULK_ACTIONS = {"send": "Send", "remind": "Send reminder", "mark_paid": "Mark paid", "void": "Void",
                "export": "Export CSV"}


@dataclass
class BulkRequest:
    action: str
    ids: list[int]
    method: str
    reason: str
    reference: str
    batch_key: str
    paid_on: date | None = None  # mark paid: the day the money arrived (None: today)
    errors: list[str] = field(default_factory=list)


def parse_bulk(form: MultiDict[str, str]) -> BulkRequest:
    ids = [int(v) for v in form.getlist("ids") if v.isdigit() and len(v) <= 18]
    bulk = BulkRequest(action=form.get("bulk_action", ""), ids=ids, method=form.get("method", ""),
                       reason=form.get("reason", "").strip(), reference=form.get("reference", "").strip(),
                       batch_key=form.get("batch_key", "")[:100], paid_on=_date_arg(form.get("paid_on")))
    if bulk.action not in BULK_ACTIONS:
        bulk.errors.append("Choose an action.")
    if not ids:
        bulk.errors.append("Select at least one invoice.")
    if len(ids) > MAX_BULK_ROWS:
        bulk.errors.append(f"Select at most {MAX_BULK_ROWS} invoices at a time.")
    for label, text, limit in (("The reason", bulk.reason, 500), ("The reference", bulk.reference, 200)):
        if len(text) > limit:
            bulk.errors.append(f"{label} can have at most {limit} characters.")
    if bulk.action == "void" and not bulk.reason:
        bulk.errors.append("Give a reason for voiding.")
    if bulk.action == "mark_paid" and bulk.method not in MANUAL_METHODS:
        bulk.errors.append("Choose how the money was received.")
    paid_on_given = bool(form.get("paid_on"))
    if bulk.action == "mark_paid" and paid_on_given and not (bulk.paid_on and plausible_paid_on(bulk.paid_on)):
        bulk.errors.append(PAID_ON_MESSAGE)
    return bulk


# --- invoice list filters --------------------------------------------------------------------------------


def _date_arg(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def parse_invoice_filters(args: MultiDict[str, str]) -> InvoiceFilters:
    """Filters from the query string; a value that makes no sense is ignored rather than refused."""
    status = args.get("status") or None
    client = args.get("client", "")
    currency = (args.get("currency") or "").strip().upper()
    sort = args.get("sort") or DEFAULT_SORT
    return InvoiceFilters(
        status=status if status in STATUS_FILTERS else None,
        q=(args.get("q") or "")[:100],
        client_id=int(client) if client.isdigit() else None,
        currency=currency if re.fullmatch(r"[A-Z]{3}", currency) else None,
        date_from=_date_arg(args.get("from")),
        date_to=_date_arg(args.get("to")),
        sort=sort if sort in SORT_CHOICES else DEFAULT_SORT,
        card=args.get("card") if args.get("card") in CARDS else None,
        card_from=_date_arg(args.get("card_from")),
        card_to=_date_arg(args.get("card_to")),
    )


# --- the invoice editor ----------------------------------------------------------------------------------

_LINE_KEY = re.compile(r"^lines-(\d{1,4})-(description|quantity|unit_price|tax_rate)$")


def _decimal(text: str) -> Decimal:
    cleaned = text.strip().replace(",", "").rstrip("%").strip()
    if not re.fullmatch(r"-?\d+(\.\d+)?|-?\.\d+", cleaned):
        raise InvalidOperation(text)
    return Decimal(cleaned)


def _plain_decimal(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text


@dataclass
class LineRow:
    description: str = ""
    quantity: str = "1"
    unit_price: str = ""
    tax_rate: str = "0"
    errors: dict[str, str] = field(default_factory=dict)
    amount: int | None = None  # shown beside the line, from the same calculator as the totals

    @property
    def blank(self) -> bool:
        return not self.description.strip() and not self.unit_price.strip()


def too_long(text: str, limit: int) -> str | None:
    """The message for text over its limit (it is refused, never cut), or None."""
    length = len(text.strip())
    return f"At most {limit:,} characters; this has {length:,}." if length > limit else None


@dataclass
class InvoiceEditor:
    """The create/edit form for a draft: raw text as typed, parsed into DraftData only on save.

    Operations ("add a line", "move line 2 up", "client changed") re-render the form server-side, with or
    without JavaScript; nothing is stored until "Save draft" parses cleanly and the service accepts it.
    Text is kept as posted: what is over a limit is refused with a message, never cut.
    """

    limits = {"lines": MAX_LINES, "description": MAX_DESCRIPTION, "notes": MAX_NOTES, "project_ref": MAX_PROJECT_REF}

    client_id: str = ""
    contact_id: str = ""
    currency: str = ""  # "" = the client's currency
    issue_date: str = ""
    due_date: str = ""
    discount_kind: str = ""
    discount_value: str = ""
    notes: str = ""
    project_ref: str = ""
    client_search: str = ""
    lines: list[LineRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    form_error: str = ""
    checked: bool = False  # parse() ran: "nothing was saved" is news only after a save

    @classmethod
    def blank(cls, organization: Organization | None, today: date, client: Client | None = None) -> InvoiceEditor:
        terms = organization.payment_terms_days if organization else 30
        return cls(
            client_id=str(client.id) if client else "",
            currency=client.currency if client else "",
            issue_date=today.isoformat(),
            due_date=(today + timedelta(days=terms)).isoformat(),
            lines=[LineRow()],
        )

    @classmethod
    def from_invoice(cls, invoice: Invoice) -> InvoiceEditor:
        cur = invoice.currency
        if invoice.discount_kind == PERCENT:
            discount = _plain_decimal(Decimal(invoice.discount_value) / 100)
        elif invoice.discount_kind == AMOUNT:
            discount = format_plain(invoice.discount_value, cur)
        else:
            discount = ""
        return cls(
            client_id=str(invoice.client_id), contact_id=str(invoice.contact_id or ""), currency=cur,
            issue_date=invoice.issue_date.isoformat(), due_date=invoice.due_date.isoformat(),
            discount_kind=invoice.discount_kind or "", discount_value=discount, notes=invoice.notes,
            project_ref=invoice.project_ref,
            lines=[LineRow(li.description, _plain_decimal(li.quantity), format_plain(li.unit_price, cur),
                           _plain_decimal(li.tax_rate)) for li in invoice.lines] or [LineRow()],
        )

    @classmethod
    def from_form(cls, form: MultiDict[str, str]) -> InvoiceEditor:
        rows: dict[int, dict[str, str]] = {}
        for key in form:
            match = _LINE_KEY.match(key)
            if match:
                rows.setdefault(int(match.group(1)), {})[match.group(2)] = form.get(key, "")
        lines = [
            LineRow(description=rows[i].get("description", ""), quantity=rows[i].get("quantity", "1"),
                    unit_price=rows[i].get("unit_price", ""), tax_rate=rows[i].get("tax_rate", "0"))
            for i in sorted(rows)
        ]

        def text(name: str) -> str:
            return form.get(name) or ""

        def ident(name: str) -> str:  # a row id, or "" (nothing chosen) for anything else
            value = text(name)
            return value if value.isdigit() and len(value) <= 18 else ""

        return cls(
            client_id=ident("client_id"), contact_id=ident("contact_id"), currency=text("currency").upper(),
            issue_date=text("issue_date"), due_date=text("due_date"),
            discount_kind=text("discount_kind"), discount_value=text("discount_value"),
            notes=text("notes"), project_ref=text("project_ref"),
            client_search=text("client_search")[:100],  # a search, not data: only what the picker uses
            lines=lines,
        )

    # -- operations ---------------------------------------------------------------------------------------

    def apply(self, op: str, *, terms_days: int, client: Client | None = None) -> str:
        """Change the form as asked; return which part of the page to re-render ("editor", "due", "totals")."""
        kind, _, arg = op.partition("-")
        index = int(arg) if arg.isdigit() else -1
        if kind == "add_line" and len(self.lines) >= MAX_LINES:
            self.form_error = f"An invoice can have at most {MAX_LINES} lines."
        elif kind == "add_line":
            self.lines.append(LineRow(tax_rate=self.lines[-1].tax_rate if self.lines else "0"))
        elif kind == "remove" and 0 <= index < len(self.lines):
            del self.lines[index]
            if not self.lines:
                self.lines.append(LineRow())
        elif kind in ("up", "down") and 0 <= index < len(self.lines):
            other = index - 1 if kind == "up" else index + 1
            if 0 <= other < len(self.lines):
                self.lines[index], self.lines[other] = self.lines[other], self.lines[index]
        elif kind == "client":
            self.contact_id = ""
            if client is not None:
                self.currency = client.currency
        elif kind == "issue_date":
            issued = _date_arg(self.issue_date)
            if issued is not None:
                self.due_date = (issued + timedelta(days=terms_days)).isoformat()
            return "due"
        elif kind == "totals":
            return "totals"
        return "editor"

    # -- parsing ------------------------------------------------------------------------------------------

    def effective_currency(self, client: Client | None, fallback: str) -> str:
        code = self.currency or (client.currency if client else "") or fallback
        try:
            return check_currency(code)
        except MoneyError:
            return fallback

    @staticmethod
    def _line(row: LineRow, currency: str) -> tuple[LineData | None, dict[str, str]]:
        errors: dict[str, str] = {}
        if not row.description.strip():
            errors["description"] = "Enter a description."
        elif message := too_long(row.description, MAX_DESCRIPTION):
            errors["description"] = message
        try:
            quantity = _decimal(row.quantity or "1")
            if not 0 < quantity <= MAX_QUANTITY or quantity * MILLI != int(quantity * MILLI):
                raise InvalidOperation
        except InvalidOperation:
            errors["quantity"] = f"A positive number up to {MAX_QUANTITY:,}, at most 3 decimals."
            quantity = Decimal(0)
        try:
            unit_price = parse_amount(row.unit_price, currency)
        except MoneyError as exc:
            errors["unit_price"] = str(exc)
            unit_price = 0
        try:
            tax_rate = _decimal(row.tax_rate or "0")
            if not 0 <= tax_rate <= 100 or tax_rate * MILLI != int(tax_rate * MILLI):
                raise InvalidOperation
        except InvalidOperation:
            errors["tax_rate"] = "0 to 100 %, at most 3 decimals."
            tax_rate = Decimal(0)
        return (None if errors else LineData(row.description.strip(), quantity, unit_price, tax_rate)), errors

    def _discount(self, currency: str) -> tuple[str | None, int]:
        kind = self.discount_kind if self.discount_kind in (PERCENT, AMOUNT) else None
        if kind is None or not self.discount_value.strip():
            return None, 0
        if kind == PERCENT:
            try:
                percent = _decimal(self.discount_value)
            except InvalidOperation:
                raise MoneyError("Enter a percentage, e.g. 10 or 12.5.") from None
            if not 0 <= percent <= 100 or percent * 100 != int(percent * 100):
                raise MoneyError("A percentage between 0 and 100, at most 2 decimals.")
            return kind, int(percent * 100)  # basis points
        return kind, parse_amount(self.discount_value, currency)

    def parse(self, *, client: Client | None, fallback_currency: str) -> DraftData | None:
        """DraftData if every field is valid, else None with the errors set for inline display."""
        self.errors, self.form_error, self.checked = {}, "", True
        if client is None:
            self.errors["client_id"] = "Choose a client."
        currency = self.effective_currency(client, fallback_currency)
        if self.currency:
            try:
                check_currency(self.currency)
            except MoneyError as exc:
                self.errors["currency"] = str(exc)
        issued, due = _date_arg(self.issue_date), _date_arg(self.due_date)
        if issued is None:
            self.errors["issue_date"] = "Enter the issue date."
        if due is None:
            self.errors["due_date"] = "Enter the due date."
        elif issued is not None and due < issued:
            self.errors["due_date"] = "The due date cannot be before the issue date."
        for name, limit in (("notes", MAX_NOTES), ("project_ref", MAX_PROJECT_REF)):
            if message := too_long(getattr(self, name), limit):
                self.errors[name] = message
        rows = [row for row in self.lines if not row.blank]
        lines = []
        for row in self.lines:
            line, row.errors = self._line(row, currency) if not row.blank else (None, {})
            if not row.blank:
                lines.append(line)
        if not rows:
            self.form_error = "Add at least one line."
        elif len(rows) > MAX_LINES:
            self.form_error = (f"An invoice can have at most {MAX_LINES} lines; this one has {len(rows)}. "
                               "Remove some, or split the work over two invoices.")
        try:
            kind, value = self._discount(currency)
        except MoneyError as exc:
            self.errors["discount_value"] = str(exc)
            kind, value = None, 0
        if all(lines) and not self.errors.get("discount_value"):
            totals = compute_totals([LineInput(li.quantity, li.unit_price, li.tax_rate) for li in lines if li],
                                    kind, value)
            if kind == AMOUNT and value > totals.subtotal:
                self.errors["discount_value"] = "The discount cannot be larger than the subtotal."
            self._check_amounts(totals, rows, currency)
        contact_id = int(self.contact_id) if self.contact_id.isdigit() else None
        if self.errors or self.form_error or not all(lines) or client is None or issued is None or due is None:
            return None
        return DraftData(
            client_id=client.id, contact_id=contact_id, currency=currency, issue_date=issued, due_date=due,
            lines=tuple(li for li in lines if li), discount_kind=kind, discount_value=value,
            notes=self.notes, project_ref=self.project_ref,
        )

    def _check_amounts(self, totals: Totals, rows: list[LineRow], currency: str) -> None:
        """Amounts above money.MAX_AMOUNT (services/totals.py rule 6): beside the line, and why at the top."""
        message = limit_error(totals, currency)
        if message is None:
            return
        self.form_error = self.form_error or message
        most = format_money(MAX_AMOUNT, currency)
        for row, line in zip(rows, totals.lines, strict=True):
            if line.amount > MAX_AMOUNT:
                row.errors["unit_price"] = f"Quantity × unit price is over {most}."

    def preview(self, *, client: Client | None, fallback_currency: str) -> tuple[Totals, str]:
        """Live totals from what is typed so far (lines that do not parse yet count as zero), computed by
        services.totals.compute_totals, the same code that stores them. Returns (totals, currency)."""
        currency = self.effective_currency(client, fallback_currency)
        inputs = []
        for row in self.lines:
            line, errors = (None, {}) if row.blank else self._line(row, currency)
            # A number that does not parse is shown at once; a missing description waits for "Save draft".
            row.errors = {**{k: v for k, v in errors.items() if k != "description"}, **row.errors}
            inputs.append(LineInput(line.quantity, line.unit_price, line.tax_rate) if line else
                          LineInput(Decimal(0), 0))
        try:
            kind, value = self._discount(currency)
        except MoneyError:
            kind, value = None, 0
        totals = compute_totals(inputs, kind, value)
        for row, line_totals, given in zip(self.lines, totals.lines, inputs, strict=True):
            row.amount = line_totals.amount if given.unit_price or given.quantity else None
        return totals, currency


class ResolveForm(FlaskForm):
    """Staff close a case of money that needs attention, saying what they did."""

    case_id = IntegerField(validators=[DataRequired()])
    note = StringField("What was done", validators=[
        DataRequired(message="Say what was done (refunded, kept as credit, dispute answered...)."),
        Length(max=MAX_RESOLUTION, message=f"Keep the note under {MAX_RESOLUTION} characters.")])
    back = HiddenField()  # "dashboard": come back to the dashboard's panel; else the invoice page
