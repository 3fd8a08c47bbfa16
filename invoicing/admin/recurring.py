"""Recurring profiles: list, create, edit (future periods), pause, resume, end, and the invoices each made."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from flask import abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from invoicing.admin import bp
from invoicing.admin.forms import InvoiceEditor, LineRow, currency_choices, too_long
from invoicing.auth import staff_required
from invoicing.models import RECURRING_UNITS, Client, Organization, RecurringProfile
from invoicing.money import MoneyError, check_currency, format_plain
from invoicing.rendering import render
from invoicing.services import DomainError, NotFound, clients, queries
from invoicing.services.audit import Actor
from invoicing.services.billing import recurring
from invoicing.services.invoices import MAX_LINES, MAX_NOTES, LineData, local_today

TEMPLATE_FORM = "admin/recurring_form.html"
_LINE_KEY = re.compile(r"^lines-(\d{1,4})-(description|quantity|unit_price|tax_rate)$")
BLANK_ROWS = 2  # empty line rows offered below the filled ones (no JavaScript needed to add a few)


def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> Actor:
    return Actor.user(current_user)


def _acting_org() -> Organization:
    org_id = queries.org_scope(current_user)
    if org_id is None:
        abort(403, "Switch to an organization first: recurring profiles belong to one.")
    return queries.organization(org_id)


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) <= 6 else None


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


@dataclass
class ProfileForm:
    """The profile as typed; parse() gives ProfileData or field errors to show inline (nothing saved)."""

    client_id: str = ""
    client_search: str = ""
    title: str = ""
    currency: str = ""
    interval_count: str = "1"
    interval_unit: str = "month"
    start_date: str = ""
    end_date: str = ""
    max_invoices: str = ""
    payment_terms_days: str = "30"
    send: str = "auto"  # auto: sent when made; draft: left for staff
    autopay: bool = False
    notes: str = ""
    lines: list[LineRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def blank(cls, organization: Organization, today: date, client: Client | None) -> ProfileForm:
        return cls(client_id=str(client.id) if client else "", currency=client.currency if client else "",
                   start_date=(today + timedelta(days=1)).isoformat(),
                   payment_terms_days=str(organization.payment_terms_days)).padded()

    @classmethod
    def of(cls, profile: RecurringProfile) -> ProfileForm:
        cur = profile.currency
        return cls(
            client_id=str(profile.client_id), title=profile.title, currency=cur,
            interval_count=str(profile.interval_count), interval_unit=profile.interval_unit,
            start_date=profile.start_date.isoformat(),
            end_date=profile.end_date.isoformat() if profile.end_date else "",
            max_invoices=str(profile.max_invoices or ""), payment_terms_days=str(profile.payment_terms_days),
            send="auto" if profile.auto_send else "draft", autopay=profile.autopay, notes=profile.notes,
            lines=[LineRow(li.description, f"{li.quantity.normalize():f}", format_plain(li.unit_price, cur),
                           f"{li.tax_rate.normalize():f}") for li in recurring.line_data(profile)],
        ).padded()

    @classmethod
    def from_form(cls, form: MultiDict[str, str]) -> ProfileForm:
        rows: dict[int, dict[str, str]] = {}
        for key in form:
            if match := _LINE_KEY.match(key):
                rows.setdefault(int(match.group(1)), {})[match.group(2)] = form.get(key, "")
        lines = [LineRow(description=r.get("description", ""), quantity=r.get("quantity", "") or "1",
                         unit_price=r.get("unit_price", ""), tax_rate=r.get("tax_rate", "") or "0")
                 for _, r in sorted(rows.items())]
        def text(name: str) -> str:
            return form.get(name) or ""

        return cls(client_id=text("client_id"), title=text("title"), currency=text("currency"),
                   interval_count=text("interval_count"), interval_unit=text("interval_unit"),
                   start_date=text("start_date"), end_date=text("end_date"), max_invoices=text("max_invoices"),
                   payment_terms_days=text("payment_terms_days"), send=text("send"), notes=text("notes"),
                   client_search=text("client_search")[:100], autopay=form.get("autopay") == "y", lines=lines)

    def padded(self, more: int = 0) -> ProfileForm:
        """The filled lines, then a few empty ones to type in (`more` than usual after "More lines")."""
        filled = [row for row in self.lines if not row.blank]
        blanks = [row for row in self.lines if row.blank]
        count = min(max(len(blanks) + more, BLANK_ROWS), MAX_LINES - len(filled))
        self.lines = filled + [LineRow() for _ in range(max(count, 0))]
        return self

    def parse(self, client: Client | None) -> recurring.ProfileData | None:
        self.errors = {}
        currency = (self.currency or (client.currency if client else "")).upper()
        try:
            currency = check_currency(currency)
        except MoneyError as exc:
            self.errors["currency"] = str(exc)
        if client is None:
            self.errors["client_id"] = "Choose a client."
        count, terms, most = _int(self.interval_count), _int(self.payment_terms_days), _int(self.max_invoices)
        start, end = _date(self.start_date), _date(self.end_date)
        if count is None:
            self.errors["interval_count"] = "A whole number, e.g. 1 for every month."
        if self.interval_unit not in RECURRING_UNITS:
            self.errors["interval_unit"] = "Choose weeks, months, quarters or years."
        if start is None:
            self.errors["start_date"] = "Enter the date of the first invoice."
        if self.end_date.strip() and end is None:
            self.errors["end_date"] = "Enter a date, or leave it empty."
        if self.max_invoices.strip() and most is None:
            self.errors["max_invoices"] = "A whole number, or leave it empty."
        if terms is None:
            self.errors["payment_terms_days"] = "A number of days, e.g. 30."
        if message := too_long(self.notes, MAX_NOTES):
            self.errors["notes"] = message
        lines = self._lines(currency)
        if self.errors or client is None or count is None or start is None or terms is None or lines is None:
            return None
        return recurring.ProfileData(
            client_id=client.id, title=self.title, currency=currency, lines=lines, interval_unit=self.interval_unit,
            interval_count=count, start_date=start, end_date=end, max_invoices=most, payment_terms_days=terms,
            auto_send=self.send != "draft", autopay=self.autopay, notes=self.notes)

    def _lines(self, currency: str) -> tuple[LineData, ...] | None:
        parsed: list[LineData] = []
        for row in self.lines:
            if row.blank:
                row.errors = {}
                continue
            line, row.errors = InvoiceEditor._line(row, currency)  # the invoice editor's own rules
            if line is not None:
                parsed.append(line)
        if any(row.errors for row in self.lines):
            self.errors.setdefault("lines", "Please correct the highlighted lines.")
            return None
        if not parsed:
            self.errors["lines"] = "Add at least one line."
            return None
        return tuple(parsed)


def _client(form: ProfileForm) -> Client | None:
    if not form.client_id.isdigit():
        return None
    try:
        client = clients.get_client(current_user, int(form.client_id))
    except DomainError:
        return None
    return client if client.archived_at is None else None


def _form_page(form: ProfileForm, *, profile: RecurringProfile | None = None, status: int = 200) -> ResponseReturnValue:
    client = _client(form)
    org = _acting_org()
    return render(TEMPLATE_FORM, None, form=form, profile=profile, client=client, units=recurring.UNIT_LABELS,
                  client_options=clients.client_choices(current_user, q=form.client_search,
                                                        selected_id=client.id if client else None),
                  currencies=currency_choices(form.currency, client.currency if client else None,
                                              org.default_currency),
                  action_url=url_for("admin.edit_recurring", profile_id=profile.id) if profile
                  else url_for("admin.new_recurring")), status


def _to_profile(profile_id: int) -> Response:
    return redirect(url_for("admin.recurring_profile", profile_id=profile_id), code=303)


def _save(form: ProfileForm, profile: RecurringProfile | None) -> ResponseReturnValue:
    op = request.form.get("op", "save")
    if op in ("add_line", "find"):  # no JavaScript needed: the form comes back with more rows, or the search
        return _form_page(form.padded(more=3 if op == "add_line" else 0), profile=profile)
    data = form.parse(_client(form))
    try:
        if data is None:
            raise recurring.ProfileInvalid(form.errors)
        if profile is None:
            profile = recurring.create_profile(_acting_org().id, data, actor=_actor(), now=_now())
        else:
            profile = recurring.update_profile(profile.id, queries.org_scope(current_user), data, actor=_actor(),
                                               now=_now())
    except recurring.ProfileInvalid as exc:
        form.errors = {**form.errors, **exc.errors}
        return _form_page(form.padded(), profile=profile, status=422)
    flash(f"Recurring profile “{profile.title}” saved. Next invoice: "
          f"{profile.next_period_start.isoformat() if profile.next_period_start else 'none (ended)'}.", "success")
    return _to_profile(profile.id)


@bp.get("/recurring")
@staff_required
def recurring_profiles() -> str:
    org_id = queries.org_scope(current_user)
    status = request.args.get("status") if request.args.get("status") in ("active", "paused", "ended") else None
    return render("admin/recurring_list.html", None, profiles=recurring.list_profiles(org_id, status=status),
                  counts=recurring.count_profiles(org_id), status=status, total=recurring.profile_total,
                  describe=recurring.describe_interval)


@bp.route("/recurring/new", methods=["GET", "POST"])
@staff_required
def new_recurring() -> ResponseReturnValue:
    org = _acting_org()
    if request.method == "POST":
        return _save(ProfileForm.from_form(request.form), None)
    client = clients.get_client(current_user, int(request.args["client"])) \
        if request.args.get("client", "").isdigit() else None
    return _form_page(ProfileForm.blank(org, local_today(org, _now()), client))


@bp.get("/recurring/<int:profile_id>")
@staff_required
def recurring_profile(profile_id: int) -> str:
    profile = recurring.get_profile(profile_id, queries.org_scope(current_user))
    return render("admin/recurring.html", None, profile=profile, total=recurring.profile_total(profile),
                  lines=recurring.line_data(profile), made=recurring.invoices_made(profile),
                  upcoming=recurring.upcoming(profile), today=local_today(profile.organization, _now()),
                  every=recurring.describe_interval(profile.interval_unit, profile.interval_count, profile.anchor_day),
                  events=recurring.profile_events(profile))


@bp.route("/recurring/<int:profile_id>/edit", methods=["GET", "POST"])
@staff_required
def edit_recurring(profile_id: int) -> ResponseReturnValue:
    profile = recurring.get_profile(profile_id, queries.org_scope(current_user))
    if profile.status == "ended":
        flash("This profile has ended; start a new one.", "error")
        return _to_profile(profile.id)
    if request.method == "POST":
        return _save(ProfileForm.from_form(request.form), profile)
    return _form_page(ProfileForm.of(profile), profile=profile)


@bp.post("/recurring/<int:profile_id>/<any(pause, resume, end):action>")
@staff_required
def recurring_action(profile_id: int, action: str) -> ResponseReturnValue:
    service = {"pause": recurring.pause_profile, "resume": recurring.resume_profile, "end": recurring.end_profile}
    try:
        profile = service[action](profile_id, queries.org_scope(current_user), actor=_actor(), now=_now())
    except NotFound:
        raise
    except DomainError as exc:  # e.g. paused twice from two tabs: say so, change nothing
        flash(str(exc), "error")
        return _to_profile(profile_id)
    done = {"pause": "paused: it makes no invoices until resumed", "end": "ended: it makes no more invoices",
            "resume": f"active again; next invoice {profile.next_period_start}"}
    flash(f"“{profile.title}” is {done[action]}.", "success")
    return _to_profile(profile.id)

