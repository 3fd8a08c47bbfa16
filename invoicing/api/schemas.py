"""The API's request and response shapes (marshmallow): they validate input and generate the OpenAPI document.

Input schemas refuse unknown fields (marshmallow's default, RAISE; query strings too). Amounts are JSON integers
of minor units: 10.0, "10" and true are refused. Quantities and tax rates are decimals, given as strings
("1.5") or numbers, returned as strings. Output schemas describe exactly what services/api/present.py returns
(the contract tests validate every response against them).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate, validates_schema

from invoicing.models import MANUAL_METHODS, PAYMENT_METHODS, PAYMENT_STATUSES
from invoicing.money import MAX_AMOUNT
from invoicing.services.invoices import MAX_DESCRIPTION, MAX_LINES, MAX_NOTES, MAX_PROJECT_REF
from invoicing.services.queries import SORT_CHOICES, STATUS_FILTERS

MAX_PAGE = 100


def _id(kind: str, prefix: str, **kwargs: Any) -> fields.String:
    metadata = {"description": f"The {kind}'s id.", "pattern": f"^{prefix}[0-9a-f]{{32}}$",
                "example": prefix + "0" * 32, **kwargs.pop("metadata", {})}
    return fields.String(validate=validate.Length(max=64), metadata=metadata, **kwargs)


def _when(**kwargs: Any) -> fields.String:
    """An output timestamp: ISO 8601 in UTC, e.g. 2026-03-10T15:00:00Z (present.py formats it)."""
    return fields.String(metadata={"format": "date-time"}, **kwargs)


def _day(**kwargs: Any) -> fields.String:
    return fields.String(metadata={"format": "date"}, **kwargs)


class Amount(fields.Integer):
    """Minor units of the currency, as a JSON integer between 0 and 999,999,999,999,999."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("metadata", {}).setdefault("description", "Minor units of the currency (cents).")
        super().__init__(strict=True, validate=validate.Range(0, MAX_AMOUNT), **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return int(super()._deserialize(value, attr, data, **kwargs))


class DecimalText(fields.Field):
    """A decimal number with at most `places` decimals: "1.5" or 1.5 in, "1.5" out."""

    default_error_messages = {"invalid": "Not a valid number.", "places": "At most {places} decimals."}

    def __init__(self, places: int = 3, **kwargs: Any):
        metadata = {"type": ["string", "number"], "pattern": r"^-?\d+(\.\d+)?$", **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)
        self.places = places

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.make_error("invalid")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise self.make_error("invalid") from None
        if not number.is_finite():
            raise self.make_error("invalid")
        exponent = number.normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -self.places:
            raise self.make_error("places", places=self.places)
        return number

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else str(value)


class Query(ma.Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_PAGE),
                           metadata={"description": "How many objects a page holds (1 to 100)."})
    cursor = fields.String(validate=validate.Length(max=200),
                           metadata={"description": "The `next_cursor` of the previous page."})


# --- invoices ---------------------------------------------------------------------------------------------


class LineIn(ma.Schema):
    description = fields.String(required=True, validate=validate.Length(1, MAX_DESCRIPTION))
    quantity = DecimalText(load_default=Decimal(1), metadata={"description": "Default 1; at most 3 decimals."})
    unit_price = Amount(required=True)
    tax_rate = DecimalText(load_default=Decimal(0), metadata={"description": "Percent, e.g. \"8.875\"; default 0."})


class DiscountIn(ma.Schema):
    percent = DecimalText(places=2, metadata={"description": "A percentage of the subtotal, e.g. \"12.5\"."})
    amount = Amount(metadata={"description": "A fixed amount off the subtotal, in minor units."})

    @validates_schema
    def _one(self, data: dict[str, Any], **_: Any) -> None:
        if ("percent" in data) == ("amount" in data):
            raise ma.ValidationError("Give either percent or amount.")


class InvoiceIn(ma.Schema):
    client = _id("client", "cli_", required=True)
    contact = _id("contact", "con_", allow_none=True,
                  metadata={"description": "Who receives it (a contact of the client); else the client's email."})
    currency = fields.String(validate=validate.Length(equal=3),
                             metadata={"description": "ISO 4217 code; default: the client's currency."})
    issue_date = fields.Date(metadata={"description": "Default: today in the organization's time zone."})
    due_date = fields.Date(metadata={"description": "Default: the issue date plus the organization's terms."})
    lines = fields.List(fields.Nested(LineIn), required=True, validate=validate.Length(1, MAX_LINES))
    discount = fields.Nested(DiscountIn, allow_none=True)
    notes = fields.String(validate=validate.Length(max=MAX_NOTES))
    project_ref = fields.String(validate=validate.Length(max=MAX_PROJECT_REF))


class InvoicePatch(InvoiceIn):
    client = _id("client", "cli_")
    lines = fields.List(fields.Nested(LineIn), validate=validate.Length(1, MAX_LINES),
                        metadata={"description": "Replaces every line."})


class InvoiceQuery(Query):
    status = fields.String(validate=validate.OneOf(STATUS_FILTERS), metadata={
        "description": "A stored status (draft, open, processing, paid, void) or a derived one (sent, viewed, "
                       "partial, overdue, attention)."})
    client = _id("client", "cli_")
    currency = fields.String(validate=validate.Length(equal=3))
    issued_from = fields.Date(metadata={"description": "Issue date on or after."})
    issued_to = fields.Date(metadata={"description": "Issue date on or before."})
    due_from = fields.Date(metadata={"description": "Due date on or after."})
    due_to = fields.Date(metadata={"description": "Due date on or before."})
    q = fields.String(validate=validate.Length(max=200),
                      metadata={"description": "Search: the start of a number, or part of the client's name or email."})
    sort = fields.String(validate=validate.OneOf(SORT_CHOICES), metadata={
        "description": "Order (default -issue_date: newest first); \"-\" means descending."})


class SendIn(ma.Schema):
    to = fields.Email(validate=validate.Length(max=254), metadata={
        "description": "Recipient; default: the invoice's contact, else the client's billing email."})
    rotate_link = fields.Boolean(load_default=False, metadata={
        "description": "On a resend: links sent before stop working."})


class MarkPaidIn(ma.Schema):
    amount = Amount(required=True, metadata={"description": "Minor units; less than the amount due is a partial "
                                                            "payment (when the organization allows them)."})
    paid_on = fields.Date(metadata={"description": "When the money arrived; default: today."})
    method = fields.String(load_default="bank_transfer", validate=validate.OneOf(MANUAL_METHODS))
    reference = fields.String(load_default="", validate=validate.Length(max=200))


class VoidIn(ma.Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 2000))


class LineOut(ma.Schema):
    description = fields.String(required=True)
    quantity = fields.String(required=True)
    unit_price = fields.Integer(required=True)
    tax_rate = fields.String(required=True)
    amount = fields.Integer(required=True)
    discount = fields.Integer(required=True, metadata={"description": "This line's share of the invoice discount."})
    tax = fields.Integer(required=True)


class RefundOut(ma.Schema):
    object = fields.String(required=True, metadata={"enum": ["refund"]})
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    status = fields.String(required=True)
    reason = fields.String(required=True)
    created_at = _when(required=True)


class PaymentOut(ma.Schema):
    id = fields.String(required=True, metadata={"example": "pay_" + "0" * 32})
    object = fields.String(required=True, metadata={"enum": ["payment"]})
    invoice = fields.String(required=True)
    client = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    amount_refunded = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": list(PAYMENT_STATUSES)})
    method = fields.String(required=True, metadata={"enum": list(PAYMENT_METHODS)})
    method_label = fields.String(required=True)
    reference = fields.String(required=True)
    receipt_number = fields.String(required=True, allow_none=True)
    paid_on = _day(required=True, allow_none=True)
    created_at = _when(required=True)
    succeeded_at = _when(required=True, allow_none=True)
    failure_code = fields.String(required=True, allow_none=True)
    failure_message = fields.String(required=True, allow_none=True)
    refunds = fields.List(fields.Nested(RefundOut), required=True)


class InvoiceSummaryOut(ma.Schema):
    id = fields.String(required=True, metadata={"example": "inv_" + "0" * 32})
    object = fields.String(required=True, metadata={"enum": ["invoice"]})
    number = fields.String(required=True, allow_none=True, metadata={"description": "Given when it is finalized."})
    status = fields.String(required=True, metadata={"enum": ["draft", "open", "processing", "paid", "void"]})
    statuses = fields.List(fields.String(), required=True, metadata={
        "description": "The status and the derived ones: sent, viewed, partial, overdue, disputed, attention."})
    client = fields.String(required=True)
    contact = fields.String(required=True, allow_none=True)
    currency = fields.String(required=True)
    issue_date = _day(required=True)
    due_date = _day(required=True)
    subtotal = fields.Integer(required=True)
    discount_total = fields.Integer(required=True)
    tax_total = fields.Integer(required=True)
    total = fields.Integer(required=True)
    amount_paid = fields.Integer(required=True)
    amount_due = fields.Integer(required=True)
    project_ref = fields.String(required=True)
    created_at = _when(required=True)
    finalized_at = _when(required=True, allow_none=True)
    sent_at = _when(required=True, allow_none=True)
    viewed_at = _when(required=True, allow_none=True)
    paid_at = _when(required=True, allow_none=True)
    voided_at = _when(required=True, allow_none=True)


class DiscountOut(ma.Schema):
    percent = fields.String()
    amount = fields.Integer()


class InvoiceOut(InvoiceSummaryOut):
    lines = fields.List(fields.Nested(LineOut), required=True)
    discount = fields.Nested(DiscountOut, required=True, allow_none=True)
    notes = fields.String(required=True)
    void_reason = fields.String(required=True, allow_none=True)
    payments = fields.List(fields.Nested(PaymentOut), required=True, metadata={
        "description": "Every payment (succeeded, processing or failed), each with its refunds."})
    pay_url = fields.String(required=True, allow_none=True, metadata={
        "description": "The client's pay link (finalized invoices that are not void)."})


class ListOut(ma.Schema):
    object = fields.String(required=True, metadata={"enum": ["list"]})
    has_more = fields.Boolean(required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class InvoiceListOut(ListOut):
    data = fields.List(fields.Nested(InvoiceSummaryOut), required=True)


class PaymentListOut(ListOut):
    data = fields.List(fields.Nested(PaymentOut), required=True)


class PaymentQuery(Query):
    client = _id("client", "cli_")
    invoice = _id("invoice", "inv_")
    method = fields.String(validate=validate.OneOf(PAYMENT_METHODS))
    status = fields.String(validate=validate.OneOf(PAYMENT_STATUSES))
    created_from = fields.Date(metadata={"description": "Recorded on or after (the organization's time zone)."})
    created_to = fields.Date(metadata={"description": "Recorded on or before."})


# --- clients and contacts -----------------------------------------------------------------------------------


class ContactNew(ma.Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    email = fields.Email(required=True, validate=validate.Length(max=254))
    portal_access = fields.Boolean(load_default=False)


class ContactIn(ContactNew):
    client = _id("client", "cli_", required=True)


class ContactPatch(ma.Schema):
    name = fields.String(validate=validate.Length(1, 200))
    email = fields.Email(validate=validate.Length(max=254))
    portal_access = fields.Boolean()


class ClientIn(ma.Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    email = fields.String(load_default="", validate=validate.Length(max=254), metadata={
        "description": "Billing email: where invoices go when no contact is chosen (empty: none)."})
    address = fields.String(load_default="", validate=validate.Length(max=2000))
    currency = fields.String(validate=validate.Length(equal=3),
                             metadata={"description": "Default: the organization's currency."})
    contacts = fields.List(fields.Nested(ContactNew), load_default=list, validate=validate.Length(max=50))


class ClientPatch(ma.Schema):
    name = fields.String(validate=validate.Length(1, 200))
    email = fields.String(validate=validate.Length(max=254))
    address = fields.String(validate=validate.Length(max=2000))
    currency = fields.String(validate=validate.Length(equal=3))


class ClientQuery(Query):
    q = fields.String(validate=validate.Length(max=200), metadata={"description": "Part of the name or email."})
    archived = fields.Boolean(load_default=False, metadata={"description": "Archived clients instead of active."})


class ContactQuery(Query):
    client = _id("client", "cli_")


class ContactOut(ma.Schema):
    id = fields.String(required=True, metadata={"example": "con_" + "0" * 32})
    object = fields.String(required=True, metadata={"enum": ["contact"]})
    client = fields.String(required=True)
    name = fields.String(required=True)
    email = fields.String(required=True)
    portal_access = fields.Boolean(required=True)
    created_at = _when(required=True)


class ClientOut(ma.Schema):
    id = fields.String(required=True, metadata={"example": "cli_" + "0" * 32})
    object = fields.String(required=True, metadata={"enum": ["client"]})
    name = fields.String(required=True)
    email = fields.String(required=True)
    address = fields.String(required=True)
    currency = fields.String(required=True)
    archived = fields.Boolean(required=True)
    created_at = _when(required=True)
    contacts = fields.List(fields.Nested(ContactOut), required=True)


class ClientListOut(ListOut):
    data = fields.List(fields.Nested(ClientOut), required=True)


class ContactListOut(ListOut):
    data = fields.List(fields.Nested(ContactOut), required=True)


# --- errors ---------------------------------------------------------------------------------------------


class FieldProblem(ma.Schema):
    field = fields.String(required=True, allow_none=True, metadata={"description": "e.g. lines.0.quantity"})
    message = fields.String(required=True)
    in_ = fields.String(data_key="in", metadata={"enum": ["body", "query", "header"]})


class ProblemOut(ma.Schema):
    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    code = fields.String(required=True, metadata={"description": "Machine-readable: validation_error, not_found, "
                                                                  "conflict, idempotency_key_reused, rate_limited..."})
    errors = fields.List(fields.Nested(FieldProblem), required=True)


# --- statistics (services/reports: the same figures as the admin's reports page) ---------------------------


class StatsQuery(ma.Schema):
    period = fields.String(load_default="12m", validate=validate.OneOf(
        ("12m", "month", "last_month", "quarter", "year", "last_year", "custom")), metadata={
        "description": "A preset (the reports page's), or `custom` with `from` and `to`. Days are the "
                       "organization's, in its time zone."})
    date_from = fields.Date(data_key="from", metadata={"description": "First day (custom period)."})
    date_to = fields.Date(data_key="to", metadata={"description": "Last day (custom period)."})
    currency = fields.String(validate=validate.Length(equal=3), metadata={"description": "Only this currency."})
    client = _id("client", "cli_")


class StatsOut(ma.Schema):
    object = fields.String(required=True, metadata={"enum": ["stats"]})
    period = fields.Dict(required=True, metadata={
        "description": "`from`, `to`, `time_zone` and `today` (ISO dates): what the figures cover."})
    currencies = fields.List(fields.Dict(), required=True, metadata={
        "description": "Per currency (never summed across currencies): `cards` (invoiced, collected, "
                       "outstanding, overdue, refunded, average days to pay, collection rate, paid late), `months` "
                       "(invoiced and collected), `methods` and `channels` (shares of collected money), "
                       "`top_collected` and `top_outstanding` clients. Money in minor units."})
    aging = fields.List(fields.Dict(), required=True, metadata={
        "description": "Accounts receivable aging per client and currency: current, 1-30, 31-60, 61-90, 90+ "
                       "days past due, and the total."})
