"""services/refunds.py: staff refunds go through the provider (idempotency key), then the money door."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Refund
from invoicing.services import DomainError
from invoicing.services.audit import Actor
from invoicing.services.checkout import apply_checkout, start_checkout
from invoicing.services.payments import record_manual_payment
from invoicing.services.refunds import refund_payment
from tests.conftest import NOW, SYSTEM, make_invoice
from tests.pay.support import assert_invariants, fresh, payments_of, sandbox, site, stripe_gateway


@pytest.fixture
def stripe(stripe_server: Any) -> Any:
    stripe_server.reset()
    yield stripe_server
    stripe_server.reset()


def card_payment(stripe_server: Any, invoice: Any) -> Any:
    gateway = stripe_gateway(stripe_server)
    started = start_checkout(invoice.id, amount=invoice.amount_due, gateway=gateway, site=site(), now=NOW)
    stripe_server.pay(started.session_id)
    return apply_checkout(gateway.retrieve_checkout(started.session_id), gateway=gateway, site=site(), now=NOW)


def provider_refunds(stripe_server: Any, payment: Any) -> list[int]:
    charge = stripe_gateway(stripe_server).retrieve_charge(
        stripe_gateway(stripe_server).retrieve_payment_intent(payment.payment_intent_id).charge_id)
    # The provider lists refunds in no guaranteed order (two in the same second tie), so compare as sorted.
    return sorted(r.amount for r in charge.refunds)


def test_it_refunds_in_part_then_in_full_and_the_invoice_follows(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = card_payment(stripe, invoice)
    actor = Actor.user(world.alice)
    first = refund_payment(invoice.id, payment.id, amount=7000, reason="Late delivery", key="a" * 16, actor=actor,
                           gateway=stripe_gateway(stripe), now=NOW)
    assert first.provider_refund_id.startswith("re_") and first.created_by_id == world.alice.id
    assert (fresh(invoice).status, fresh(invoice).amount_paid) == ("open", 20000)
    refund_payment(invoice.id, payment.id, amount=20000, reason="Cancelled", key="b" * 16, actor=actor,
                   gateway=stripe_gateway(stripe), now=NOW)
    assert provider_refunds(stripe, payment) == [7000, 20000]
    assert (payments_of(invoice)[0].status, fresh(invoice).amount_paid) == ("refunded", 0)
    assert_invariants()


def test_it_refunds_once_when_the_form_is_submitted_twice(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = card_payment(stripe, invoice)
    for _ in range(2):
        refund_payment(invoice.id, payment.id, amount=5000, reason="Twice?", key="same-key-1234567", actor=SYSTEM,
                       gateway=stripe_gateway(stripe), now=NOW)
    assert provider_refunds(stripe, payment) == [5000]
    assert db.session.scalars(select(Refund.amount)).all() == [5000]


def test_it_refuses_more_than_is_left_before_calling_the_provider(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = card_payment(stripe, invoice)
    with pytest.raises(DomainError, match=r"at most \$270.00"):
        refund_payment(invoice.id, payment.id, amount=27001, reason="x", key="k" * 16, actor=SYSTEM,
                       gateway=stripe_gateway(stripe), now=NOW)
    with pytest.raises(DomainError, match="Give a reason"):
        refund_payment(invoice.id, payment.id, amount=100, reason=" ", key="k" * 16, actor=SYSTEM,
                       gateway=stripe_gateway(stripe), now=NOW)
    assert provider_refunds(stripe, payment) == [] and db.session.scalars(select(Refund)).all() == []


def test_it_reports_a_provider_refusal_and_records_nothing(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = card_payment(stripe, invoice)
    stripe.fault(path_prefix="/v1/refunds", mode="error_500", count=5)
    with pytest.raises(DomainError, match="The refund was not made"):
        refund_payment(invoice.id, payment.id, amount=100, reason="x", key="k" * 16, actor=SYSTEM,
                       gateway=stripe_gateway(stripe), now=NOW)
    assert db.session.scalars(select(Refund)).all() == [] and fresh(invoice).status == "paid"


def test_it_records_refunds_of_manual_payments_without_a_provider(world):
    invoice = make_invoice(world.client_a, status="open")
    payment = record_manual_payment(invoice.id, amount=27000, method="bank_transfer", paid_on=NOW.date(),
                                    reference="TRF", actor=SYSTEM, now=NOW).payment
    refund = refund_payment(invoice.id, payment.id, amount=2000, reason="Discount agreed", key="m" * 16,
                            actor=SYSTEM, gateway=sandbox(), now=NOW)
    assert refund.provider_refund_id is None and fresh(invoice).amount_paid == 25000


def test_it_refuses_to_refund_through_a_provider_that_did_not_take_the_payment(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = card_payment(stripe, invoice)
    with pytest.raises(DomainError, match="not the configured provider"):
        refund_payment(invoice.id, payment.id, amount=100, reason="x", key="k" * 16, actor=SYSTEM,
                       gateway=sandbox(), now=NOW)


def test_it_reports_a_refund_the_provider_refuses_at_once_and_records_nothing(stripe, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = card_payment(stripe, invoice)
    stripe.fault(refunds_fail=1)
    with pytest.raises(DomainError, match=r"did not make the refund \(expired or canceled card\)"):
        refund_payment(invoice.id, payment.id, amount=5000, reason="Damaged", key="c" * 16,
                       actor=Actor.user(world.alice), gateway=stripe_gateway(stripe), now=NOW)
    assert db.session.scalars(select(Refund)).all() == []
    assert (fresh(invoice).status, fresh(invoice).amount_paid) == ("paid", 27000)
    assert [(p.status, p.amount_refunded) for p in payments_of(invoice)] == [("succeeded", 0)]
