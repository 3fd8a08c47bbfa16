"""The client page's subscription panel: what it shows (each subscription with its next invoice and history)
and the forms it offers. Built here so the client page (admin/clients.py) and the subscription actions
(admin/subscriptions.py) render the same panel."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from invoicing.admin.subscription_forms import CancelNowForm, ChangeForm, SubscribeForm, choices, new_key
from invoicing.models import AuditEvent, Client, Subscription
from invoicing.services.subscriptions import lifecycle
from invoicing.services.subscriptions import queries as subs
from invoicing.services.subscriptions.plans import describe_price

FINAL = ("canceled", "ended")


@dataclass(frozen=True)
class SubscriptionRow:
    subscription: Subscription
    next_invoice: tuple[date, int] | None  # (date, amount with tax and credit), None: none coming
    history: list[AuditEvent]
    change_form: ChangeForm | None  # None: it can no longer change (canceled, ended)
    change_choices: list[tuple[int, str]]


@dataclass
class SubscriptionPanel:
    rows: list[SubscriptionRow]
    subscribe_form: SubscribeForm
    has_prices: bool
    cancel_form: CancelNowForm = field(default_factory=lambda: CancelNowForm(formdata=None))


def subscribe_form(client: Client, formdata: object = None) -> SubscribeForm:
    form = SubscribeForm(formdata=None, key=new_key()) if formdata is None else SubscribeForm()
    form.price_id.choices = choices(subs.price_choices(client.organization_id, prefer=client.currency))
    return form


def change_choices(subscription: Subscription) -> list[tuple[int, str]]:
    """The prices it can move to (same currency, offered now), the current one first even if no longer offered."""
    current = (subscription.price_id, f"{subscription.plan.name} — "
               f"{describe_price(subscription.price, per_seat=subscription.plan.per_seat)} (current)")
    others = [c for c in subs.price_choices(subscription.organization_id, currency=subscription.currency)
              if c[0] != subscription.price_id]
    return [current, *others]


def change_form(subscription: Subscription, formdata: object = None) -> ChangeForm:
    form = ChangeForm(formdata=None, price_id=subscription.price_id, quantity=str(subscription.quantity),
                      key=new_key()) if formdata is None else ChangeForm()
    form.price_id.choices = choices(change_choices(subscription))
    return form


def subscription_panel(client: Client, *, form: SubscribeForm | None = None) -> SubscriptionPanel:
    now = datetime.now(UTC)
    subscriptions = subs.client_subscriptions(client.id, client.organization_id)
    history = subs.history(s.id for s in subscriptions)
    rows = [SubscriptionRow(s, lifecycle.next_invoice_preview(s, now=now), history[s.id],
                            change_form(s) if s.status not in FINAL else None,
                            change_choices(s) if s.status not in FINAL else [])
            for s in subscriptions]
    form = form or subscribe_form(client)
    return SubscriptionPanel(rows, form, bool(form.price_id.choices))
