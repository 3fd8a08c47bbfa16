"""Shared helpers for the scheduler's billing tests (plain functions; fixtures live in the conftests)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Client, Invoice, OutboxEmail, PaymentMethod
from invoicing.services.db import atomic
from invoicing.services.site import Site
from tests.conftest import make_invoice


def site() -> Site:
    return Site.from_config(current_app.config)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def open_invoice(client: Client, *, due: date, opened: datetime | None = None, **overrides: Any) -> Invoice:
    """An open (finalized) invoice due on `due`, opened at `opened` (default: 30 days before it is due)."""
    opened = opened or utc(due.year, due.month, due.day, 12) - timedelta(days=30)
    return make_invoice(client, status="open", now=opened, issue_date=opened.date(), due_date=due, **overrides)


def emails(kind: str | None = None, invoice: Invoice | None = None) -> list[OutboxEmail]:
    query = select(OutboxEmail).order_by(OutboxEmail.id)
    if kind:
        query = query.where(OutboxEmail.kind == kind)
    if invoice is not None:
        query = query.where(OutboxEmail.invoice_id == invoice.id)
    db.session.expire_all()
    return list(db.session.execute(query).scalars())


def events(action: str, object_id: int | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    if object_id is not None:
        query = query.where(AuditEvent.object_id == object_id)
    return list(db.session.execute(query).scalars())


def fresh(model: Any, row_id: int) -> Any:
    db.session.expire_all()
    return db.session.get(model, row_id)


def hours(start: datetime, end: datetime, step: timedelta = timedelta(hours=1)) -> list[datetime]:
    """Every tick from start to end (inclusive), like a scheduler that never stops."""
    ticks, at = [], start
    while at <= end:
        ticks.append(at)
        at += step
    return ticks


def autopay_on(client: Client, *, provider: str = "sandbox", provider_id: str = "pm_sandbox_visa",
               customer_id: str | None = "cus_sandbox", mode: str = "due_date", now: datetime | None = None,
               last4: str = "4242", exp_year: int = 2034) -> PaymentMethod:
    """Give the client a saved default card and turn autopay on with a contact's consent (the portal's services)."""
    from invoicing.services.portal.autopay import CONSENT_VERSION, enable_autopay

    now = now or utc(2026, 3, 1)
    with atomic():
        card = PaymentMethod(organization_id=client.organization_id, client_id=client.id, provider=provider,
                             provider_id=provider_id, customer_id=customer_id, brand="visa", last4=last4,
                             exp_month=12, exp_year=exp_year, created_at=now)
        db.session.add(card)
        stored = db.session.get(Client, client.id)
        assert stored is not None
        stored.autopay_payment_method = provider_id
    contact = client.contacts[0]
    enable_autopay(client.id, contact.id, mode=mode, text_version=CONSENT_VERSION, ip="203.0.113.9",
                   provider=provider, now=now)
    return card
