"""Helpers for the autopay tests: a card saved at the Stripe test server, autopay on, the charge job run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.jobs import load_jobs, run_job
from invoicing.models import ChargeAttempt, Client, InvoiceAutopay, PaymentMethod
from invoicing.services.db import atomic
from tests.pay.support import stripe_gateway
from tests.services.billing.helpers import autopay_on


def stripe_card(stripe_server: Any, client: Client, number: str = "4242424242424242", *,
                mode: str = "due_date", now: datetime | None = None) -> PaymentMethod:
    """A customer and a card attached to it at the Stripe test server, made the client's default, autopay on."""
    api = stripe_gateway(stripe_server)._client
    customer = api.v1.customers.create({"name": client.name})
    method = api.v1.payment_methods.create({"type": "card", "card": {
        "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    api.v1.payment_methods.attach(method.id, {"customer": customer.id})
    with atomic():
        stored = db.session.get(Client, client.id)
        assert stored is not None
        stored.stripe_customer_id = customer.id
    return autopay_on(client, provider="stripe", provider_id=method.id, customer_id=customer.id, mode=mode,
                      now=now, last4=number[-4:])


def charge_now(now: datetime | None = None) -> str | None:
    """One tick of the charge job, as the scheduler runs it (its lease, then the work)."""
    load_jobs()
    return run_job("process-recurring-charges", now=now or datetime.now(UTC))


def attempts(invoice_id: int | None = None) -> list[ChargeAttempt]:
    db.session.rollback()
    query = select(ChargeAttempt).order_by(ChargeAttempt.invoice_id, ChargeAttempt.attempt_number)
    if invoice_id is not None:
        query = query.where(ChargeAttempt.invoice_id == invoice_id)
    return list(db.session.scalars(query))


def autopay_of(invoice_id: int) -> InvoiceAutopay:
    db.session.rollback()
    state = db.session.get(InvoiceAutopay, invoice_id)
    assert state is not None
    return state
