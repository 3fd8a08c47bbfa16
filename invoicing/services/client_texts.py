"""What clients read, in the organization's own words: the subject and opening text of the invoice, reminder,
receipt and payment-failed emails, and the invoice PDF's notes, edited by admins with placeholders.

Staff write plain text with `{{ placeholders }}` and simple `{% if %}`/`{% for %}`; the app keeps the email's
layout, button, amounts table and PDF attachment. Rendering runs in Jinja's immutable sandbox with only the
documented variables, all plain strings (formatted money and dates) or booleans: never an ORM object or the
config. The language is cut down further so that a template always ends quickly and small: no macros, `set`,
imports or includes; a short list of filters and string methods; `range` and every loop share one budget of
iterations and a deadline; repeating text (`"x" * n`), `%`-formatting and huge powers are refused; the output
has a size cap.

Versions: each save adds a TemplateOverride row (the latest per organization and template is the active one),
and "Reset to default" adds a row marked `is_default`, so every earlier version stays on record and the reset
is itself a version. Syntax errors (and templates that fail on the demo values) are refused when saving. A
saved template that fails at send time (it only fails on some invoice's values) gives way to the app's default
text, and the organization's admins get one email about it per template version; the client's email is
never held back.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from flask import current_app
from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError, safe_range
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Invoice, Organization, Payment, TemplateOverride
from invoicing.money import format_money
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.site import Site
from invoicing.templating import _datetime

log = logging.getLogger(__name__)

MAX_SOURCE = 5000  # characters of one part as typed
MAX_OUTPUT = 20000  # characters one part may render to
MAX_SUBJECT = 200
LOOP_BUDGET = 2000  # items all the loops (and ranges) of one rendering may go through together
DEADLINE_SECONDS = 0.5
GUARD = "_loop_guard"


@dataclass(frozen=True)
class Part:
    name: str
    label: str
    default: str
    multiline: bool = True


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    parts: tuple[Part, ...]
    variables: tuple[str, ...]


COMMON = ("client_name", "contact_name", "organization_name", "invoice_number", "amount_due", "total",
          "due_date", "issue_date", "pay_link", "project")
VARIABLES: dict[str, str] = {
    "client_name": "The client's name (the company)",
    "contact_name": "The person the invoice is addressed to (the client's name when there is no contact)",
    "organization_name": "Your organization's name",
    "invoice_number": "The invoice number",
    "amount_due": "What is still due, formatted (\"$1,250.00\")",
    "total": "The invoice total, formatted",
    "due_date": "The due date (\"Apr 9, 2026\")",
    "issue_date": "The issue date",
    "pay_link": "The client's personal pay link",
    "project": "The project reference (empty when there is none)",
    "overdue": "True when the due date has passed (use {% if overdue %}...{% endif %})",
    "when": "How the due date stands today: \"due in 7 days\", \"due tomorrow\", \"due today\", \"overdue by 3 days\"",
    "payment_amount": "The amount of the payment, formatted",
    "payment_method": "How it was paid (\"Visa •••• 4242\")",
    "receipt_number": "The receipt number",
    "payment_date": "When the payment was received",
    "failure_reason": "Why the payment did not go through",
    "payment_instructions": "The payment instructions from Settings",
    "payment_terms_days": "The payment terms from Settings, in days",
}
GREETING = "Hello {{ contact_name }},\n\n"
KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("invoice", "Invoice email", (
        Part("subject", "Subject",
             "Invoice {{ invoice_number }} from {{ organization_name }} — {{ amount_due }} due {{ due_date }}",
             multiline=False),
        Part("body", "Opening text", GREETING + "{{ organization_name }} has sent you invoice {{ invoice_number }}"
             "{% if project %} for {{ project }}{% endif %}."),
    ), COMMON),
    Kind("reminder", "Reminder email", (
        Part("subject", "Subject", "Reminder: invoice {{ invoice_number }} from {{ organization_name }} is "
             "{{ when }} — {{ amount_due }}", multiline=False),
        Part("body", "Opening text", GREETING + "This is a friendly reminder that invoice {{ invoice_number }} "
             "{% if overdue %}was due on {{ due_date }} and is now {{ when }}{% else %}is {{ when }} "
             "({{ due_date }}){% endif %}.\nIf you have already paid, thank you, and please ignore this message."),
    ), (*COMMON, "overdue", "when")),
    Kind("receipt", "Receipt email", (
        Part("subject", "Subject",
             "Receipt {{ receipt_number }} for invoice {{ invoice_number }} from {{ organization_name }}",
             multiline=False),
        Part("body", "Opening text",
             GREETING + "Thank you: we received your payment for invoice {{ invoice_number }}."),
    ), (*COMMON, "payment_amount", "payment_method", "receipt_number", "payment_date")),
    Kind("payment_failed", "Payment failed email", (
        Part("subject", "Subject", "Your payment for invoice {{ invoice_number }} did not go through",
             multiline=False),
        Part("body", "Opening text", GREETING + "Your payment of {{ payment_amount }} by {{ payment_method }} for "
             "invoice {{ invoice_number }} did not go through: {{ failure_reason }}.\n"
             "Nothing was taken. Amount still due: {{ amount_due }}."),
    ), (*COMMON, "payment_amount", "payment_method", "failure_reason")),
    Kind("pdf", "Invoice PDF", (
        Part("header_note", "Note under the header", ""),
        Part("payment_instructions", "Payment instructions", "{{ payment_instructions }}"),
        Part("terms", "Terms", ""),
        Part("footer", "Footer", ""),
    ), (*COMMON, "payment_instructions", "payment_terms_days")),
)}

DEMO: dict[str, str | bool] = {
    "client_name": "Northwind Traders", "contact_name": "Dana Fields", "organization_name": "Your organization",
    "invoice_number": "2026-0042", "amount_due": "$1,250.00", "total": "$1,500.00", "due_date": "Apr 9, 2026",
    "issue_date": "Mar 10, 2026", "pay_link": "https://billing.example/pay/demo", "project": "Website redesign",
    "overdue": False, "when": "due in 7 days",
    "payment_amount": "$250.00", "payment_method": "Visa •••• 4242", "receipt_number": "R-0007",
    "payment_date": "10 Mar 2026, 15:00 UTC", "failure_reason": "your bank refused it",
    "payment_instructions": "Bank transfer: IBAN DE00 0000 0000 0000 0000 00", "payment_terms_days": "30",
}


class TemplateProblem(DomainError):
    """A staff template that does not parse, uses something not allowed, or fails to render."""


# --- the sandbox -----------------------------------------------------------------------------------------


@dataclass
class _Budget:
    items: int
    deadline: float

    def tick(self) -> None:
        self.items -= 1
        if self.items < 0:
            raise SecurityError(f"The loops go through more than {LOOP_BUDGET} items in all.")
        self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError("The template takes too long to fill in.")


_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("client_texts_budget")


def _guarded(items: Iterable[Any]) -> Iterator[Any]:
    budget = _budget.get()
    for item in items:
        budget.tick()
        yield item


def _range(*args: int) -> Iterator[int]:
    return _guarded(safe_range(*args))  # safe_range refuses more than MAX_RANGE items up front


STRING_METHODS = frozenset({"upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith",
                            "endswith"})
FILTERS = ("upper", "lower", "title", "capitalize", "trim", "default", "d", "length", "count", "first", "last",
           "join", "truncate", "striptags", "int", "string", "round", "abs", "list")
FORBIDDEN = {nodes.Macro: "macros", nodes.CallBlock: "call blocks", nodes.Assign: "set", nodes.AssignBlock: "set",
             nodes.Import: "import", nodes.FromImport: "import", nodes.Include: "include",
             nodes.Extends: "extends", nodes.FilterBlock: "filter blocks", nodes.Block: "blocks",
             nodes.Scope: "with", nodes.ScopedEvalContextModifier: "autoescape"}


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str):
            return attr in STRING_METHODS  # no str.format (its field widths allocate at will), no replace
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format and format_map are refused (is_safe_attribute), not sandboxed

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (left, right))
        if operator == "**" and not (numbers and abs(right) <= 64 and abs(left) <= 10**6):
            raise SecurityError("Powers are limited to small numbers.")
        if operator == "*" and not (numbers and abs(left) <= 10**12 and abs(right) <= 10**12):
            raise SecurityError("Repeating text or multiplying large numbers is not allowed.")
        if operator == "%" and not numbers:
            raise SecurityError("%-formatting is not allowed: write the placeholders in the text.")
        return super().call_binop(context, operator, left, right)


def _environment() -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    base = env.filters
    env.filters = {name: base[name] for name in FILTERS}
    env.filters[GUARD] = _guarded
    env.globals = {"range": _range}  # no dict, lipsum, cycler, joiner or namespace
    return env


_ENV = _environment()


@lru_cache(maxsize=512)
def _compile(source: str) -> Any:
    """The template of `source`: every loop's items go through the budget. TemplateProblem if not allowed."""
    if len(source) > MAX_SOURCE:
        raise TemplateProblem(f"Keep it under {MAX_SOURCE} characters.")
    try:
        tree = _ENV.parse(source)
        for node_type, label in FORBIDDEN.items():
            if tree.find(node_type) is not None:
                raise TemplateProblem(f"{{% {label} %}} is not available here: use placeholders, if and for.")
        for loop in tree.find_all(nodes.For):
            if loop.recursive:
                raise TemplateProblem("Recursive loops are not available here.")
            loop.iter = nodes.Filter(loop.iter, GUARD, [], [], None, None, lineno=loop.lineno)
        code = _ENV.compile(tree)  # an unknown filter or test is found here
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise TemplateProblem(f"Syntax error{f' on line {line}' if line else ''}: {exc.message}") from exc
    return _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None), None)


def render_part(source: str, values: Mapping[str, Any], *, limit: int = MAX_OUTPUT) -> str:
    """Fill in one part; TemplateProblem (with a message for staff) when it cannot be, within the bounds."""
    template = _compile(source)
    token = _budget.set(_Budget(LOOP_BUDGET, time.monotonic() + DEADLINE_SECONDS))
    out: list[str] = []
    size = 0
    try:
        for chunk in template.generate(dict(values)):
            size += len(chunk)
            if size > limit:
                raise TemplateProblem(f"The text comes out longer than {limit} characters.")
            _budget.get().check_time()
            out.append(chunk)
    except TemplateProblem:
        raise
    except SecurityError as exc:
        raise TemplateProblem(f"Not allowed: {exc}") from exc
    except TemplateError as exc:
        raise TemplateProblem(f"It cannot be filled in: {exc.message}") from exc
    except (ArithmeticError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise TemplateProblem(f"It cannot be filled in: {exc}") from exc
    finally:
        _budget.reset(token)
    return "".join(out).strip()


def render_parts(kind: Kind, parts: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, str]:
    """Every part of `kind` filled in (a part missing from `parts` uses its default)."""
    rendered: dict[str, str] = {}
    for part in kind.parts:
        text = render_part(parts.get(part.name, part.default), values)
        if not part.multiline:
            text = " ".join(text.split())  # a subject is one line: a line break would be header injection
            if len(text) > MAX_SUBJECT:
                raise TemplateProblem(f"The {part.label.lower()} comes out longer than {MAX_SUBJECT} characters.")
        rendered[part.name] = text
    return rendered


def defaults(kind: Kind) -> dict[str, str]:
    return {part.name: part.default for part in kind.parts}


def kind_of(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None:
        raise NotFound("No such template.")
    return kind


# --- versions --------------------------------------------------------------------------------------------


def active(organization_id: int, kind: str) -> TemplateOverride | None:
    """The latest saved version, or None when there is none (a reset version counts: it is the latest)."""
    return db.session.execute(
        select(TemplateOverride).where(TemplateOverride.organization_id == organization_id,
                                       TemplateOverride.template == kind)
        .order_by(TemplateOverride.id.desc()).limit(1)
    ).scalar_one_or_none()


def versions(organization_id: int, kind: str, limit: int = 20) -> list[TemplateOverride]:
    return list(db.session.execute(
        select(TemplateOverride).where(TemplateOverride.organization_id == organization_id,
                                       TemplateOverride.template == kind)
        .order_by(TemplateOverride.id.desc()).limit(limit)
    ).scalars())


def current_parts(organization_id: int, kind: Kind) -> dict[str, str]:
    """What the editor shows: the active version's text, or the defaults."""
    override = active(organization_id, kind.name)
    if override is None or override.is_default:
        return defaults(kind)
    return {**defaults(kind), **override.parts}


@dataclass(frozen=True)
class Preview:
    parts: dict[str, str]  # as typed
    rendered: dict[str, str]  # filled in with the demo values (parts with an error are missing)
    errors: dict[str, str]  # part name -> what is wrong, for staff


def preview(kind_name: str, parts: Mapping[str, str], *, organization_name: str) -> Preview:
    """Each part filled in with demo values, or the reason it cannot be (a syntax error, something refused)."""
    kind = kind_of(kind_name)
    clean = {part.name: (parts.get(part.name) or "").replace("\r\n", "\n").strip() for part in kind.parts}
    demo = {**DEMO, "organization_name": organization_name}
    rendered: dict[str, str] = {}
    errors: dict[str, str] = {}
    for part in kind.parts:
        try:
            rendered.update(render_parts(Kind(kind.name, kind.label, (part,), kind.variables), clean, demo))
        except TemplateProblem as exc:
            errors[part.name] = str(exc)
    return Preview(clean, rendered, errors)


def _save(organization_id: int, kind: Kind, parts: dict[str, str], *, is_default: bool, action: str,
          actor: Actor, now: datetime) -> TemplateOverride:
    with atomic():
        organization = db.session.get(Organization, organization_id)
        if organization is None:
            raise NotFound("Organization not found.")
        previous = active(organization_id, kind.name)
        override = TemplateOverride(organization_id=organization_id, template=kind.name, parts=parts,
                                    is_default=is_default, created_at=now,
                                    created_by_id=actor.id if actor.type == "user" else None)
        db.session.add(override)
        db.session.flush()
        record(action, override, actor=actor, now=now, details={
            "template": kind.name, "parts": parts, "previous_id": previous.id if previous else None,
            "previous_parts": None if previous is None or previous.is_default else previous.parts})
    return override


def save_texts(organization_id: int, kind_name: str, parts: Mapping[str, str], *, organization_name: str,
               actor: Actor, now: datetime) -> TemplateOverride:
    """Save a new version, once every part parses and fills in with the demo values; else TextsInvalid."""
    checked = preview(kind_name, parts, organization_name=organization_name)
    if checked.errors:
        raise TextsInvalid(checked)
    return _save(organization_id, kind_of(kind_name), checked.parts, is_default=False, action="template.saved",
                 actor=actor, now=now)


def reset_texts(organization_id: int, kind_name: str, *, actor: Actor, now: datetime) -> TemplateOverride:
    """Back to the app's text: a new version marked default (the earlier ones stay on record)."""
    return _save(organization_id, kind_of(kind_name), {}, is_default=True, action="template.reset", actor=actor,
                 now=now)


class TextsInvalid(DomainError):
    def __init__(self, checked: Preview):
        super().__init__("; ".join(checked.errors.values()))
        self.preview = checked


# --- at send time ----------------------------------------------------------------------------------------


def for_sending(kind_name: str, invoice: Invoice, values: Mapping[str, Any], *, now: datetime,
                alert_in_own_transaction: bool = False) -> dict[str, str]:
    """The parts to send: the active version filled in, or the defaults when it fails (admins hear once)."""
    kind = kind_of(kind_name)
    override = active(invoice.organization_id, kind.name)
    if override is not None and not override.is_default:
        try:
            return render_parts(kind, override.parts, values)
        except TemplateProblem as exc:
            log.warning("client text %s version %s failed, the default was used: %s", kind.name, override.id, exc,
                        extra={"invoice_id": invoice.id})
            _alert(invoice, kind, override, str(exc), now=now, own_transaction=alert_in_own_transaction)
    return render_parts(kind, defaults(kind), values)


def _alert(invoice: Invoice, kind: Kind, override: TemplateOverride, error: str, *, now: datetime,
           own_transaction: bool) -> None:
    from invoicing.services.attention import email_admins  # attention -> mail; keep this module importable alone

    subject = f"Your {kind.label.lower()} text could not be used; the default went out instead"
    site = Site.from_config(current_app.config)
    with atomic() if own_transaction else nullcontext():  # the PDF renders outside any write transaction
        email_admins(invoice, kind="template_failed", subject=subject, key=f"template_failed:{override.id}",
                     now=now, site=site, kind_label=kind.label, error=error,
                     editor_url=site.url(f"/admin/settings/texts/{kind.name}", invoice.organization))


def _date(value: date | None) -> str:
    return value.strftime("%b %-d, %Y") if value else ""


def due_phrase(due_date: date, today: date) -> str:
    """"due in 7 days", "due tomorrow", "due today", "overdue by 1 day", "overdue by 12 days"."""
    days = (due_date - today).days
    if days > 1:
        return f"due in {days} days"
    if days == 1:
        return "due tomorrow"
    if days == 0:
        return "due today"
    return f"overdue by {-days} day{'s' if days < -1 else ''}"


def invoice_values(invoice: Invoice, *, pay_url: str | None, today: date | None = None) -> dict[str, Any]:
    """The documented variables of an invoice, as plain strings (and `overdue`)."""
    organization, client = invoice.organization, invoice.client
    return {
        "client_name": client.name, "contact_name": invoice.contact.name if invoice.contact else client.name,
        "organization_name": organization.name, "invoice_number": invoice.number or f"Draft #{invoice.id}",
        "amount_due": format_money(invoice.total - invoice.amount_paid, invoice.currency),
        "total": format_money(invoice.total, invoice.currency), "due_date": _date(invoice.due_date),
        "issue_date": _date(invoice.issue_date), "pay_link": pay_url or "", "project": invoice.project_ref or "",
        "overdue": invoice.is_overdue(today) if today else False,
        "when": due_phrase(invoice.due_date, today) if today else "",
        "payment_instructions": organization.payment_instructions or "",
        "payment_terms_days": str(organization.payment_terms_days),
    }


def payment_values(payment: Payment, *, pay_url: str) -> dict[str, Any]:
    invoice = payment.invoice
    return {
        **invoice_values(invoice, pay_url=pay_url),
        "payment_amount": format_money(payment.amount, payment.currency), "payment_method": payment.method_label,
        "receipt_number": payment.receipt_number or "",
        "payment_date": _datetime(payment.succeeded_at or payment.created_at, invoice.organization.timezone),
        "failure_reason": (payment.failure_message or "your bank refused it").rstrip(". "),
    }
