"""Shared steps of the reliability scenarios (each scenario ends with support.assert_invariants())."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Invoice, Payment, WebhookEvent
from invoicing.services.checkout import CheckoutStart, start_checkout
from tests.pay.support import live_site, payments_of, real_now, stripe_gateway, wait_until


def open_checkout(stripe_server: Any, live: Any, invoice: Invoice, amount: int | None = None) -> CheckoutStart:
    """Pay now, as the served app does it (its success URL points at the live server)."""
    return start_checkout(invoice.id, amount=amount or invoice.amount_due, gateway=stripe_gateway(stripe_server),
                          site=live_site(live), now=real_now())


def settled_payments(invoice: Invoice, count: int = 1, status: str = "succeeded") -> list[Payment]:
    return wait_until(lambda: (found if len(found := [p for p in payments_of(invoice) if p.status == status]) >= count
                               else None), what=f"{count} {status} payment(s)")


def event_rows() -> list[WebhookEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def wait_for_event(type_: str, status: str = "processed", count: int = 1) -> list[WebhookEvent]:
    return wait_until(lambda: (rows if len(rows := [e for e in event_rows() if e.type == type_
                                                    and e.status == status]) >= count else None),
                      what=f"{count} {type_} event(s) {status}")
