"""Staff invoicing: the list (filters, tabs, bulk actions, CSV), the draft editor with live totals, the invoice
page and its actions (send, remind, record a payment, void, duplicate, delete)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import abort, current_app, flash, redirect, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.wrappers import Response

from invoicing.admin import bp
from invoicing.admin.forms import (
    BULK_ACTIONS,
    METHOD_LABELS,
    InvoiceEditor,
    PaymentForm,
    ResolveForm,
    SendForm,
    VoidForm,
    currency_choices,
    parse_bulk,
    parse_invoice_filters,
)
from invoicing.admin.listing import list_rows
from invoicing.auth import staff_required
from invoicing.gateways import current_gateway
from invoicing.models import Client, Invoice, Organization
from invoicing.money import format_money, format_plain
from invoicing.rendering import render, wants_fragment
from invoicing.services import DomainError, attention, bulk, checkout, clients, exports, queries, sending
from invoicing.services.audit import Actor
from invoicing.services.invoices import (
    create_draft,
    delete_draft,
    duplicate_invoice,
    finalize_invoice,
    local_today,
    update_draft,
    void_invoice,
)
from invoicing.services.payments import record_manual_payment
from invoicing.services.reports import exports as report_exports
from invoicing.services.reports import figures
from invoicing.services.reports.cards import CARDS
from invoicing.services.site import Site

TEMPLATE_LIST, TEMPLATE_DETAIL, TEMPLATE_EDITOR = "admin/invoices.html", "admin/invoice.html", "admin/invoice_form.html"
SAVE_SEND = "save_send"
SAVES = ("save", SAVE_SEND)  # the editor's buttons that store the draft; the others only redraw it


def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> Actor:
    return Actor.user(current_user)


def _acting_org() -> Organization | None:
    """The organization new things are created in: the user's, or the one a superadmin switched to."""
    org_id = queries.org_scope(current_user)
    return queries.organization(org_id) if org_id is not None else None


def _today(now: datetime, organization: Organization | None = None) -> date:
    org = organization or _acting_org()
    return local_today(org, now) if org is not None else now.date()


def _default_currency() -> str | None:
    org = _acting_org()
    return org.default_currency if org else None


def _mail_config() -> Site:
    return Site.from_config(current_app.config)


def _to_detail(invoice_id: int) -> Response:
    return redirect(url_for("admin.invoice", invoice_id=invoice_id), code=303)


# --- the list --------------------------------------------------------------------------------------------


@bp.get("/invoices")
@staff_required
def invoices() -> ResponseReturnValue:
    if (clean := _without_empty_args()) is not None and not wants_fragment():
        return redirect(clean)  # a form submitted without JavaScript sends every field, set or not
    now = _now()
    filters = parse_invoice_filters(request.args)
    client = clients.get_client(current_user, filters.client_id) if filters.client_id else None  # foreign: 404
    page = queries.list_invoices(current_user, now=now, filters=filters, cursor=request.args.get("after"), rows=True)
    today = _today(now)
    rows = dict(page=page, rows=list_rows(page.invoices, today), filters=filters, today=today, fmt_money=format_money,
                card=_card(filters, page, now))
    if wants_fragment():  # a keystroke or "older invoices": the rows only, no counts, no pickers
        return render(TEMPLATE_LIST, "rows", **rows)
    return render(TEMPLATE_LIST, "rows", **rows, **_list_page_context(filters, client, now))


def _card(filters: queries.InvoiceFilters, page: queries.InvoicePage, now: datetime) -> dict[str, Any] | None:
    """A reports card's invoices: the card (its count and sum, from the list's own query: on a full page only,
    not for "older invoices") and each row's part."""
    if not filters.card or queries.card_period(current_user, filters, now=now) is None:
        return None  # no card, or a superadmin who has not switched to an organization: the plain list
    total = figures.card_total(current_user, filters, now=now) if not wants_fragment() else None
    return dict(card=CARDS[filters.card], count=total[0] if total else None, amount=total[1] if total else None,
                period=queries.card_period(current_user, filters, now=now),
                parts=figures.measures(current_user, filters, [row.id for row in page.invoices], now=now))


def _without_empty_args() -> str | None:
    """The list's address with only the parameters that hold a value, or None when it is that already."""
    args = list(request.args.items(multi=True))
    kept = [(name, value) for name, value in args if value.strip()]
    if len(kept) == len(args):
        return None
    return url_for("admin.invoices") + (f"?{urlencode(kept)}" if kept else "")


def _list_page_context(filters: queries.InvoiceFilters, client: Client | None, now: datetime) -> dict[str, Any]:
    """What only the full list page shows: tab counts, pickers, the bulk form's one-time key."""
    search = request.args.get("client_search", "")[:100]
    return dict(
        client=client, counts=queries.status_counts(current_user, now=now), count_cap=queries.COUNT_CAP,
        statuses=queries.STATUS_FILTERS, sorts=SORT_LABELS, default_sort=queries.DEFAULT_SORT,
        bulk_actions=BULK_ACTIONS, methods=METHOD_LABELS,
        client_options=clients.client_choices(current_user, q=search, selected_id=filters.client_id),
        currencies=[c for c, _ in currency_choices(filters.currency, _default_currency())],
        batch_key=uuid.uuid4().hex,
    )


SORT_LABELS = {"-issue_date": "Newest first", "issue_date": "Oldest first", "due_date": "Due soonest",
               "-due_date": "Due latest", "-total": "Largest total", "total": "Smallest total",
               "-number": "Number, high to low", "number": "Number, low to high"}


def _csv_response(rows: Any, today: date) -> Response:
    name = f"invoices-{today.isoformat()}.csv"
    return Response(stream_with_context(exports.invoices_csv(rows, today=today)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/invoices/export.csv")
@staff_required
def export_invoices() -> Response:
    """Every invoice matching the list's filters (not just the page shown), streamed."""
    now = _now()
    filters = parse_invoice_filters(request.args)
    if filters.client_id:
        clients.get_client(current_user, filters.client_id)  # another organization's client: 404
    report_exports.record_export(queries.org_scope(current_user), "invoice list", "csv", filters.params(),
                                 actor=_actor(), now=now)
    return _csv_response(queries.iter_invoices(current_user, filters, now=now), _today(now))


def _back_to_list() -> str:
    """Where the bulk form came from (the list with its filters), never another site."""
    parts = urlsplit(request.referrer or "")
    if parts.path == url_for("admin.invoices") and parts.netloc in ("", request.host):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return url_for("admin.invoices")


@bp.post("/invoices/bulk")
@staff_required
def bulk_invoices() -> ResponseReturnValue:
    """Bulk actions from the list's checkboxes (a plain form POST; works without JavaScript)."""
    now, form = _now(), parse_bulk(request.form)
    if form.errors:
        flash(" ".join(form.errors), "error")
        return redirect(_back_to_list(), code=303)
    if queries.visible_invoice_ids(current_user, form.ids) != form.ids:
        abort(404)  # any invoice of another organization in the selection: nothing is done
    if form.action == "export":
        report_exports.record_export(queries.org_scope(current_user), "selected invoices", "csv", {},
                                     actor=_actor(), now=now, rows=len(form.ids))
        return _csv_response(queries.selected_invoices(current_user, form.ids), _today(now))
    try:
        result = _run_bulk(form, now)
    except DomainError as exc:
        flash(str(exc), "error")
        return redirect(_back_to_list(), code=303)
    flash(result.summary() + ".", "success" if not result.skipped else "warning")
    for row in result.skipped[:20]:
        flash(f"{row.label}: {row.reason}", "detail")
    return redirect(_back_to_list(), code=303)


def _run_bulk(form: Any, now: datetime) -> bulk.BulkResult:
    actor = _actor()
    if form.action == "send":
        return bulk.bulk_send(form.ids, config=_mail_config(), actor=actor, now=now, batch_key=form.batch_key)
    if form.action == "remind":
        return bulk.bulk_remind(form.ids, config=_mail_config(), actor=actor, now=now)
    if form.action == "mark_paid":
        return bulk.bulk_mark_paid(form.ids, method=form.method, paid_on=form.paid_on or _today(now),
                                   reference=form.reference, batch_key=form.batch_key, actor=actor, now=now,
                                   site=_mail_config())
    return bulk.bulk_void(form.ids, reason=form.reason, actor=actor, now=now)


# --- the editor ------------------------------------------------------------------------------------------


def _editor_client(editor: InvoiceEditor) -> Client | None:
    if not editor.client_id.isdigit():
        return None
    try:
        client = clients.get_client(current_user, int(editor.client_id))
    except DomainError:
        return None
    return client if client.archived_at is None else None


def _editor_page(editor: InvoiceEditor, *, invoice: Invoice | None = None, block: str | None = None,
                 status: int = 200, oob: bool = False) -> ResponseReturnValue:
    client = _editor_client(editor)
    org = client.organization if client else (invoice.organization if invoice else _acting_org())
    fallback = org.default_currency if org else "USD"
    totals, currency = editor.preview(client=client, fallback_currency=fallback)
    context: dict[str, Any] = dict(editor=editor, invoice=invoice, client=client, totals=totals, currency=currency,
                                   oob=oob, action_url=url_for("admin.edit_invoice", invoice_id=invoice.id)
                                   if invoice else url_for("admin.new_invoice"))
    if block in (None, "editor"):
        context.update(
            client_options=clients.client_choices(current_user, q=editor.client_search,
                                                  selected_id=client.id if client else None),
            currencies=currency_choices(editor.currency, client.currency if client else None, fallback),
        )
    return render(TEMPLATE_EDITOR, block, **context), status


def _save_draft(editor: InvoiceEditor, invoice: Invoice | None, *, send: bool = False) -> ResponseReturnValue:
    """Parse, then create or update through the service (atomic); errors are shown inline, 422. With `send`,
    the saved draft then goes out as the invoice page's "Send invoice" sends it."""
    client = _editor_client(editor)
    org = client.organization if client else _acting_org()
    data = editor.parse(client=client, fallback_currency=org.default_currency if org else "USD")
    if data is None or org is None:
        return _editor_page(editor, invoice=invoice, status=422)
    try:
        if invoice is None:
            invoice = create_draft(org, data, actor=_actor(), now=_now())
        else:
            invoice = update_draft(invoice.id, invoice.organization, data, actor=_actor(), now=_now())
    except DomainError as exc:
        editor.form_error = str(exc)
        return _editor_page(editor, invoice=invoice, status=422)
    if send:
        return _send_saved_draft(invoice)
    flash(f"Draft saved: {format_money(invoice.total, invoice.currency)}.", "success")
    return _to_detail(invoice.id)


def _send(invoice_id: int, **options: Any) -> Invoice:
    """The invoice page's "Send invoice" and the editor's "Save and send": one call of the send service."""
    config = _mail_config()
    return sending.send_invoice(invoice_id, actor=_actor(), now=_now(), base_url=config.base_url,
                                secret_key=config.secret_key, default_sender=config.mail_sender,
                                expiry_days=config.paylink_expiry_days, **options)


def _send_saved_draft(invoice: Invoice) -> Response:
    try:
        sent = _send(invoice.id)
    except DomainError as exc:  # e.g. no email address: the draft is saved, the page says why it did not go
        flash(f"Draft saved but not sent: {exc}", "error")
        return _to_detail(invoice.id)
    flash(f"Invoice {sent.number} saved and queued for email.", "success")
    return _to_detail(invoice.id)


def _editor_op(editor: InvoiceEditor, op: str, invoice: Invoice | None) -> ResponseReturnValue:
    client = _editor_client(editor)
    org = client.organization if client else (invoice.organization if invoice else _acting_org())
    block = editor.apply(op, terms_days=org.payment_terms_days if org else 30, client=client)
    return _editor_page(editor, invoice=invoice, block=block, oob=block == "totals")


@bp.route("/invoices/new", methods=["GET", "POST"])
@staff_required
def new_invoice() -> ResponseReturnValue:
    if request.method == "GET":
        client = clients.get_client(current_user, int(request.args["client"])) \
            if request.args.get("client", "").isdigit() else None
        org = client.organization if client else _acting_org()
        return _editor_page(InvoiceEditor.blank(org, _today(_now(), org), client))
    editor, op = InvoiceEditor.from_form(request.form), request.form.get("op", "save")
    return _save_draft(editor, None, send=op == SAVE_SEND) if op in SAVES else _editor_op(editor, op, None)


@bp.post("/invoices/preview")
@staff_required
def preview_invoice() -> ResponseReturnValue:
    """Live editor updates over HTMX: totals on every keystroke (from services.totals.compute_totals, the code
    that stores them), the due date when the issue date changes, the lines when one is added or moved."""
    return _editor_op(InvoiceEditor.from_form(request.form), request.form.get("op", "totals"), None)


@bp.route("/invoices/<int:invoice_id>/edit", methods=["GET", "POST"])
@staff_required
def edit_invoice(invoice_id: int) -> ResponseReturnValue:
    invoice = queries.get_invoice_detail(current_user, invoice_id)
    if not invoice.is_editable:
        return _detail_page(invoice, status=409, error=(
            f"Invoice {sending.invoice_label(invoice)} is {invoice.status}; only drafts can be edited. "
            "Void it, or duplicate it into a new draft."))
    if request.method == "GET":
        return _editor_page(InvoiceEditor.from_invoice(invoice), invoice=invoice)
    editor, op = InvoiceEditor.from_form(request.form), request.form.get("op", "save")
    return _save_draft(editor, invoice, send=op == SAVE_SEND) if op in SAVES else _editor_op(editor, op, invoice)


# --- the invoice page ------------------------------------------------------------------------------------


def _detail_page(invoice: Invoice, *, status: int = 200, error: str = "", **forms: Any) -> ResponseReturnValue:
    now = _now()
    today = local_today(invoice.organization, now)
    pay_link = _mail_config().pay_url(invoice) if invoice.status == "open" else None
    payment_form = forms.get("payment_form") or PaymentForm(
        currency=invoice.currency, formdata=None, prefix="payment", method="bank_transfer", paid_on=today,
        amount=format_plain(max(invoice.total - invoice.amount_paid, 0), invoice.currency),
        idempotency_key=uuid.uuid4().hex)
    timeline = _timeline(invoice)
    response = current_app.make_response((render(
        TEMPLATE_DETAIL, None, invoice=invoice, today=today, timeline=timeline, pay_link=pay_link,
        overpaid_by=_overpaid_by(timeline), email_states=queries.email_states([invoice.id]),
        error=error, payment_form=payment_form,
        void_form=forms.get("void_form") or VoidForm(formdata=None, prefix="void"),
        send_form=forms.get("send_form") or SendForm(formdata=None, prefix="send", key=uuid.uuid4().hex),
        methods=METHOD_LABELS,
        has_pdf="admin.invoice_pdf" in current_app.view_functions,
    ), status))
    if status >= 400:  # a boosted form POST that failed: keep the address bar on the invoice, not the action
        response.headers["HX-Push-Url"] = url_for("admin.invoice", invoice_id=invoice.id)
    return response


def _timeline(invoice: Invoice) -> list[tuple[datetime, str, Any]]:
    """The invoice's audit events (created, sent, delivered, viewed, paid, reminded...) and its emails still
    waiting in the outbox, in one time line."""
    entries: list[tuple[datetime, str, Any]] = [(e.created_at, "event", e) for e in queries.timeline(invoice)]
    # Delivery and failure are audit events of their own; an email still waiting shows as such.
    waiting = [m for m in queries.invoice_emails(invoice) if m.status not in ("sent", "failed")]
    entries += [(m.created_at, "email", m) for m in waiting]
    return sorted(entries, key=lambda entry: entry[0])


def _overpaid_by(timeline: list[tuple[datetime, str, Any]]) -> dict[int, int]:
    """payment id -> how much of it was more than the invoice asked for (its latest overpayment flag)."""
    return {item.details["payment_id"]: item.details["excess"] for _, kind, item in timeline
            if kind == "event" and item.action == "payment.overpayment_flagged" and "excess" in (item.details or {})}


@bp.get("/invoices/<int:invoice_id>")
@staff_required
def invoice(invoice_id: int) -> ResponseReturnValue:
    return _detail_page(queries.get_invoice_detail(current_user, invoice_id))


@bp.post("/invoices/<int:invoice_id>/send")
@staff_required
def send_invoice(invoice_id: int) -> ResponseReturnValue:
    invoice = queries.get_invoice_detail(current_user, invoice_id)
    form = SendForm(prefix="send")  # each form of the invoice page has its own prefix: unique ids
    if not form.validate_on_submit():
        return _detail_page(invoice, status=422, send_form=form)
    try:
        sent = _send(invoice.id, rotate_link=bool(form.rotate_link.data), to=form.to.data or None,
                     request_key=form.key.data)
    except DomainError as exc:
        return _detail_page(invoice, status=422, error=str(exc), send_form=form)
    rotated = " with a new pay link" if form.rotate_link.data and sent.sent_count > 1 else ""
    flash(f"Invoice {sent.number} queued for email{rotated}.", "success")
    return _to_detail(invoice.id)


@bp.post("/invoices/<int:invoice_id>/remind")
@staff_required
def remind_invoice(invoice_id: int) -> ResponseReturnValue:
    invoice = queries.get_invoice_detail(current_user, invoice_id)
    config = _mail_config()
    try:
        email = sending.send_reminder(invoice.id, actor=_actor(), now=_now(), base_url=config.base_url,
                                      secret_key=config.secret_key, default_sender=config.mail_sender,
                                      expiry_days=config.paylink_expiry_days)
    except DomainError as exc:
        return _detail_page(invoice, status=422, error=str(exc))
    flash(f"Reminder queued to {email.to_addr}." if email else "A reminder already went out today.",
          "success" if email else "warning")
    return _to_detail(invoice.id)


@bp.post("/invoices/<int:invoice_id>/finalize")
@staff_required
def finalize(invoice_id: int) -> ResponseReturnValue:
    """Assign the number and open the invoice without emailing it (e.g. it goes out by post)."""
    invoice = queries.get_invoice_detail(current_user, invoice_id)
    try:
        done = finalize_invoice(invoice.id, actor=_actor(), now=_now(),
                                expiry_days=current_app.config["PAYLINK_EXPIRY_DAYS"])
    except DomainError as exc:
        return _detail_page(invoice, status=422, error=str(exc))
    flash(f"Invoice {done.number} is open. It was not emailed.", "success")
    return _to_detail(invoice.id)


@bp.post("/invoices/<int:invoice_id>/payments")
@staff_required
def record_payment(invoice_id: int) -> ResponseReturnValue:
    invoice = queries.get_invoice_detail(current_user, invoice_id)
    form = PaymentForm(currency=invoice.currency, prefix="payment")
    if not form.validate_on_submit():
        return _detail_page(invoice, status=422, payment_form=form)
    try:
        result = record_manual_payment(
            invoice.id, amount=form.amount_minor, method=form.method.data or "", paid_on=form.paid_on.data,
            reference=form.reference.data or "", actor=_actor(), now=_now(),
            idempotency_key=f"manual:{invoice.id}:{form.idempotency_key.data}", site=_mail_config())
    except DomainError as exc:  # overpaid, partial not allowed, void or paid meanwhile
        form.amount.errors = [*form.amount.errors, str(exc)]
        # Said once: beside the amount, or at the top when the invoice no longer shows the form (now void, paid).
        form_shown = invoice.status in ("open", "processing")
        return _detail_page(invoice, status=422, payment_form=form, error="" if form_shown else str(exc))
    _close_checkouts(invoice.id)
    amount = format_money(result.payment.amount, result.payment.currency)
    flash(f"Payment of {amount} recorded." if result.created else "That payment was already recorded.", "success")
    return _to_detail(invoice.id)


def _close_checkouts(invoice_id: int) -> None:
    """DESIGN rule 4: once paid or void by hand, the invoice's open checkouts are expired at the provider
    (after the commit, best effort; `flask billing reconcile` catches what this misses)."""
    checkout.expire_stale_sessions(invoice_id, gateway=current_gateway(), site=_mail_config(), now=_now())


@bp.post("/invoices/<int:invoice_id>/void")
@staff_required
def void(invoice_id: int) -> ResponseReturnValue:
    invoice = queries.get_invoice_detail(current_user, invoice_id)
    form = VoidForm(prefix="void")
    if not form.validate_on_submit():
        return _detail_page(invoice, status=422, void_form=form)
    try:
        void_invoice(invoice.id, reason=form.reason.data or "", actor=_actor(), now=_now())
    except DomainError as exc:
        return _detail_page(invoice, status=422, error=str(exc), void_form=form)
    _close_checkouts(invoice.id)
    flash(f"Invoice {invoice.number} is void; its pay link no longer works.", "success")
    return _to_detail(invoice.id)


@bp.post("/invoices/<int:invoice_id>/attention/resolve")
@staff_required
def resolve_attention(invoice_id: int) -> ResponseReturnValue:
    """Close a case of money that needs attention, saying what was done (audited on the timeline)."""
    invoice = queries.get_invoice_detail(current_user, invoice_id)
    form = ResolveForm(prefix="resolve")
    if not form.validate_on_submit():
        return _detail_page(invoice, status=422, error=" ".join(e for errs in form.errors.values() for e in errs))
    try:
        case = attention.resolve_case(form.case_id.data or 0, invoice_id=invoice.id, note=form.note.data or "",
                                      actor=_actor(), now=_now())
    except DomainError as exc:
        return _detail_page(invoice, status=422, error=str(exc))
    flash(f"{attention.KIND_LABELS[case.kind]} on {sending.invoice_label(invoice)} marked resolved.", "success")
    if form.back.data == "dashboard":
        return redirect(url_for("admin.dashboard"), code=303)
    return _to_detail(invoice.id)


@bp.post("/invoices/<int:invoice_id>/duplicate")
@staff_required
def duplicate(invoice_id: int) -> ResponseReturnValue:
    invoice = queries.get_invoice(current_user, invoice_id)
    copy = duplicate_invoice(invoice.id, invoice.organization, actor=_actor(), now=_now())
    flash(f"New draft copied from {sending.invoice_label(invoice)}: check the dates and lines.", "success")
    return redirect(url_for("admin.edit_invoice", invoice_id=copy.id), code=303)


@bp.post("/invoices/<int:invoice_id>/delete")
@staff_required
def delete(invoice_id: int) -> ResponseReturnValue:
    invoice = queries.get_invoice_detail(current_user, invoice_id)
    try:
        delete_draft(invoice.id, invoice.organization, actor=_actor(), now=_now())
    except DomainError as exc:
        return _detail_page(invoice, status=422, error=str(exc))
    flash(f"Draft #{invoice_id} deleted.", "success")
    return redirect(url_for("admin.invoices"), code=303)
