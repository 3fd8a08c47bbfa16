"""Staff side of card payments: the webhook inbox (/admin/webhooks, re-apply a failed event), refunds from
the invoice page, money that needs attention (resolve a case), and the invoice page's money panel
(templates/admin/_invoice_money.html)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import HiddenField, IntegerField, StringField
from wtforms.validators import DataRequired, Length

from invoicing.admin import bp
from invoicing.admin.forms import ResolveForm
from invoicing.auth import staff_required
from invoicing.extensions import db
from invoicing.gateways import current_gateway
from invoicing.gateways.base import REFUND_REVERSED
from invoicing.models import AttentionCase, CheckoutSession, Invoice, Payment
from invoicing.money import MoneyError, format_money, format_plain, parse_amount
from invoicing.services import DomainError, attention, inbox, queries, refunds
from invoicing.services.audit import Actor
from invoicing.services.checkout import Site

STATUSES = ("failed", "received", "processed", "ignored")


def _now() -> datetime:
    return datetime.now(UTC)


class RefundForm(FlaskForm):
    payment_id = IntegerField("Payment", validators=[DataRequired()])
    amount = StringField("Amount", validators=[DataRequired(message="Enter the amount to refund."), Length(max=32)])
    reason = StringField("Reason", validators=[DataRequired(message="Give a reason for the refund."),
                                               Length(max=500)])
    key = HiddenField(validators=[DataRequired(), Length(min=16, max=64)])  # one per form: a double submit refunds once

    def minor(self, currency: str) -> int | None:
        try:
            return parse_amount(self.amount.data or "", currency)
        except MoneyError as exc:
            self.amount.errors = [str(exc)]
            return None


@dataclass(frozen=True)
class MoneyPanel:
    refundable: list[tuple[Payment, RefundForm]]
    sessions: list[CheckoutSession]
    provider: str
    cases: list[AttentionCase]


@bp.app_template_global("resolve_form")
def resolve_form(case: AttentionCase, back: str = "") -> ResolveForm:
    return ResolveForm(formdata=None, prefix="resolve", case_id=case.id, back=back)


@bp.app_template_global("attention_label")
def attention_label(kind: str) -> str:
    return attention.KIND_LABELS.get(kind, kind)


@bp.app_template_global("invoice_money_panel")
def invoice_money_panel(invoice: Invoice) -> MoneyPanel:
    """What the invoice page's money panel shows: refund forms, checkout sessions, the provider in use."""
    forms = []
    for payment in refunds.refundable_payments(invoice.id):
        form = RefundForm(formdata=None, payment_id=payment.id, key=secrets.token_urlsafe(16),
                          amount=format_plain(payment.amount - payment.amount_refunded, payment.currency))
        forms.append((payment, form))
    sessions = list(db.session.execute(select(CheckoutSession).where(CheckoutSession.invoice_id == invoice.id)
                                       .order_by(CheckoutSession.id.desc()).limit(10)).scalars())
    cases = attention.open_cases(invoice.organization_id, invoice_id=invoice.id)
    return MoneyPanel(forms, sessions, current_gateway().name, cases)


@bp.post("/invoices/<int:invoice_id>/refund")
@staff_required
def payments_refund(invoice_id: int) -> Any:
    invoice = queries.get_invoice(current_user, invoice_id)
    form = RefundForm()
    # Only this invoice's payments: another tenant's payment id must reveal nothing (rule 9).
    payment = db.session.execute(select(Payment).where(
        Payment.id == (form.payment_id.data or 0), Payment.invoice_id == invoice.id)).scalar_one_or_none()
    amount = form.minor(payment.currency) if form.validate_on_submit() and payment else None
    if payment is None:
        form.payment_id.errors = ["Choose a payment of this invoice."]
    elif amount is not None:
        try:
            refund = refunds.refund_payment(invoice.id, payment.id, amount=amount, reason=form.reason.data or "",
                                            key=form.key.data or "", actor=Actor.user(current_user),
                                            gateway=current_gateway(), now=_now())
        except DomainError as exc:
            form.amount.errors = [str(exc)]
        else:
            if refund.status in REFUND_REVERSED:  # the provider already said it failed (its event came first)
                flash(f"The provider could not refund {format_money(refund.amount, refund.currency)}: "
                      f"{(refund.failure_reason or refund.status).replace('_', ' ')}. Refund the client another way.",
                      "error")
            else:
                flash(f"Refunded {format_money(refund.amount, refund.currency)}.", "success")
            return redirect(url_for("admin.invoice", invoice_id=invoice.id), code=303)
    return render_template("admin/webhooks_refund.html", invoice=invoice, payment=payment, form=form), 422


@bp.get("/webhooks")
@staff_required
def payments_inbox() -> str:
    status = request.args.get("status") if request.args.get("status") in STATUSES else None
    rows = inbox.list_events(queries.org_scope(current_user), status=status)
    return render_template("admin/webhooks.html", rows=rows, status=status, statuses=STATUSES,
                           provider=current_gateway().name)


@bp.get("/webhooks/<int:event_id>")
@staff_required
def payments_event(event_id: int) -> str:
    row = inbox.get_event(queries.org_scope(current_user), event_id)
    payload = json.dumps(inbox.payload_of(row.event), indent=2, sort_keys=True)
    return render_template("admin/webhooks_event.html", row=row, payload=payload)


@bp.post("/webhooks/<int:event_id>/reapply")
@staff_required
def payments_reapply(event_id: int) -> Response:
    if not FlaskForm().validate_on_submit():
        flash("The form expired: try again.", "error")
        return redirect(url_for("admin.payments_inbox"), code=303)
    row = inbox.get_event(queries.org_scope(current_user), event_id)
    try:
        delivery = inbox.reapply(row.event.id, gateway=current_gateway(), site=Site.from_config(current_app.config),
                                 now=_now())
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Event {delivery.event_id}: {delivery.status}" + (f" ({delivery.note})" if delivery.note else ""),
              "error" if delivery.status == "failed" else "success")
    return redirect(url_for("admin.payments_event", event_id=event_id), code=303)
