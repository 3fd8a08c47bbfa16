"""services/checkout_groups.py: one checkout for several invoices (portal "pay several at once"): what may be
paid together, one session for the sum handed out again on a double click, the shares recorded through the
door, stale groups expired, refunds of a share against the shared PaymentIntent."""

from __future__ import annotations

from typing import Any

import pytest
from flask import current_app
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.gateways.sandbox import SandboxGateway
from invoicing.models import AuditEvent, CheckoutGroup, Refund, SandboxObject
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor
from invoicing.services.checkout import start_checkout
from invoicing.services.checkout_groups import GroupRequest, apply_group_checkout, start_group_checkout
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import apply_payment, record_manual_payment
from invoicing.services.reconcile import reconcile
from invoicing.services.refunds import refund_payment
from tests.conftest import NOW, SYSTEM, make_client, make_invoice
from tests.pay.support import assert_invariants, fresh, payments_of, receipts, sandbox, site, stripe_gateway

RETURN = "http://billing.test/portal/checkout/return?session_id={CHECKOUT_SESSION_ID}"


def request(world: Any, *invoices: Any, contact: Any = None, **overrides: Any) -> GroupRequest:
    contact = contact or world.client_a.contacts[0]
    values: dict[str, Any] = dict(client_id=contact.client_id, invoice_ids=[i.id for i in invoices],
                                  contact_id=contact.id, return_url=RETURN, cancel_url="http://billing.test/portal/pay",
                                  payer_email=contact.email, actor=Actor.contact(contact))
    values.update(overrides)
    return GroupRequest(**values)


def quiet_sandbox() -> SandboxGateway:
    """The sandbox with its events lost (no webhook ever arrives)."""
    return SandboxGateway(secret_key=current_app.config["SECRET_KEY"], base_url="http://billing.test")


def groups() -> list[CheckoutGroup]:
    db.session.rollback()
    return list(db.session.scalars(select(CheckoutGroup).order_by(CheckoutGroup.id)))


def test_it_opens_one_checkout_for_the_sum_and_hands_it_out_again(world):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    contact = world.client_a.contacts[1]
    started = start_group_checkout(request(world, b, a, contact=contact), gateway=sandbox(), site=site(), now=NOW)
    assert started.url == f"http://billing.test/pay/sandbox/{started.session_id}" and not started.reused
    group, = groups()
    assert (group.session_id, group.amount, group.currency, group.status, group.contact_id) == (
        started.session_id, 54000, "USD", "open", contact.id)
    assert [(i.invoice_id, i.amount) for i in group.items] == [(a.id, 27000), (b.id, 27000)]
    remote = sandbox().retrieve_checkout(started.session_id)
    assert (remote.amount, remote.currency) == (54000, "USD")
    assert remote.metadata == {"checkout_group": group.ref, "client_id": str(world.client_a.id),
                               "invoice_ids": f"{a.id},{b.id}", "contact_id": str(contact.id)}
    assert remote.payer_email == contact.email  # prefilled at the provider
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "checkout.started")).all()
    assert sorted(e.object_id for e in audit) == [a.id, b.id]
    assert {(e.actor_type, e.actor_id, e.details["amount"]) for e in audit} == {("contact", contact.id, 27000)}

    again = start_group_checkout(request(world, a, b, contact=contact), gateway=sandbox(), site=site(), now=NOW)
    assert (again.session_id, again.reused) == (started.session_id, True)  # a double click, a second tab
    assert len(groups()) == 1
    other = start_group_checkout(request(world, a, contact=contact, invoice_ids=[a.id, b.id, a.id]),
                                 gateway=sandbox(), site=site(), now=NOW)
    assert other.session_id == started.session_id  # the same selection, however it was sent


def test_it_makes_a_new_checkout_for_another_selection(world):
    a, b, c = (make_invoice(world.client_a, status="open") for _ in range(3))
    first = start_group_checkout(request(world, a, b), gateway=sandbox(), site=site(), now=NOW)
    second = start_group_checkout(request(world, a, b, c), gateway=sandbox(), site=site(), now=NOW)
    assert first.session_id != second.session_id and [g.amount for g in groups()] == [54000, 81000]


@pytest.mark.parametrize("case, error, message", [
    ("mixed currencies", DomainError, "Choose invoices in one currency: you chose EUR and USD"),
    ("paid", DomainError, "is already paid"),
    ("processing", DomainError, "is still being processed"),
    ("void", DomainError, "was cancelled (void)"),
    ("draft", NotFound, "Invoice not found"),
    ("another company's", NotFound, "Invoice not found"),
    ("missing", NotFound, "Invoice not found"),
    ("none", DomainError, "Choose at least one invoice"),
])
def test_it_refuses_what_cannot_be_paid_together_and_writes_nothing(world, case, error, message):
    a = make_invoice(world.client_a, status="open")
    other = make_invoice(world.client_a, status="open")
    if case == "mixed currencies":
        other = make_invoice(world.client_a, status="open", currency="EUR")
    elif case == "paid":
        record_manual_payment(other.id, amount=other.total, method="cash", paid_on=NOW.date(), reference="",
                              actor=SYSTEM, now=NOW)
    elif case == "processing":
        apply_payment(other.id, amount=other.total, currency="USD", method="card", status="processing",
                      actor=SYSTEM, now=NOW, checkout_session_id="cs_elsewhere")
    elif case == "void":
        void_invoice(other.id, reason="issued twice", actor=SYSTEM, now=NOW)
    elif case == "draft":
        other = make_invoice(world.client_a)
    elif case == "another company's":
        other = make_invoice(make_client(world.org_a, "Client Z"), status="open")
    ids = {"missing": [a.id, 999_999], "none": []}.get(case, [a.id, other.id])
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        start_group_checkout(request(world, invoice_ids=ids), gateway=sandbox(), site=site(), now=NOW)
    assert groups() == []
    assert db.session.scalar(select(func.count()).select_from(SandboxObject)) == 0  # the provider was not asked


def test_it_refuses_an_amount_cards_cannot_take(world):
    kwd = make_client(world.org_b, "Gulf Co", currency="KWD")
    contact = kwd.contacts[0]
    odd = make_invoice(kwd, status="open", discount_kind="amount", discount_value=5)  # 26.995 KWD
    even = make_invoice(kwd, status="open")
    with pytest.raises(DomainError, match="steps of KWD"):
        start_group_checkout(request(world, odd, even, contact=contact), gateway=sandbox(), site=site(), now=NOW)
    assert groups() == []


def test_it_records_a_paid_session_it_finds_when_asked_to_hand_it_out_again(world):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    gateway = quiet_sandbox()
    started = start_group_checkout(request(world, a, b), gateway=gateway, site=site(), now=NOW)
    gateway.pay(started.session_id, card="4242424242424242", email="")  # its events are lost
    assert payments_of(a) == []
    again = start_group_checkout(request(world, a, b), gateway=gateway, site=site(), now=NOW)
    assert again.paid and again.url == RETURN.replace("{CHECKOUT_SESSION_ID}", started.session_id)
    assert [(fresh(i).status, len(payments_of(i))) for i in (a, b)] == [("paid", 1), ("paid", 1)]
    assert groups()[0].status == "complete"
    assert len(receipts()) == 2
    assert_invariants()


def test_it_expires_a_group_once_one_of_its_invoices_is_paid_another_way(world):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    started = start_group_checkout(request(world, a, b), gateway=sandbox(), site=site(), now=NOW)
    single = start_checkout(b.id, amount=b.amount_due, gateway=sandbox(), site=site(), now=NOW)  # its pay link
    sandbox().pay(single.session_id, card="4242424242424242", email="")  # b paid on its own, through the inbox
    assert fresh(b).status == "paid"
    assert groups()[0].status == "expired" and sandbox().retrieve_checkout(started.session_id).status == "expired"
    with pytest.raises(DomainError, match="already paid"):
        start_group_checkout(request(world, a, b), gateway=sandbox(), site=site(), now=NOW)
    assert_invariants()


def test_reconcile_records_a_group_paid_without_any_event(world):
    a, b = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, status="open")
    gateway = quiet_sandbox()
    started = start_group_checkout(request(world, a, b), gateway=gateway, site=site(), now=NOW)
    gateway.pay(started.session_id, card="4242424242424242", email="")
    report = reconcile(gateway=gateway, site=site(), now=NOW.replace(hour=NOW.hour + 1))
    assert report.errors == [] and report.sessions == 1
    assert [fresh(i).status for i in (a, b)] == ["paid", "paid"]
    assert sorted(r.dedupe_key for r in receipts()) == sorted(f"receipt:{p.id}" for i in (a, b)
                                                             for p in payments_of(i))
    assert_invariants()


@pytest.fixture
def stripe(stripe_server: Any) -> Any:
    stripe_server.reset()
    yield stripe_server
    stripe_server.reset()


def test_a_share_is_refunded_on_the_shared_payment_intent_for_its_own_amount(stripe, world):
    a = make_invoice(world.client_a, status="open")
    b = make_invoice(world.client_a, status="open", discount_kind="amount", discount_value=7000)
    gateway = stripe_gateway(stripe)
    started = start_group_checkout(request(world, a, b), gateway=gateway, site=site(), now=NOW)
    stripe.pay(started.session_id)
    apply_group_checkout(gateway.retrieve_checkout(started.session_id), gateway=gateway, site=site(), now=NOW,
                         retrieved=True)
    share_b, = payments_of(b)
    group = groups()[0]
    assert group.payment_intent_id and group.charge_id and share_b.provider_intent_id == group.payment_intent_id
    assert (share_b.method_brand, share_b.method_last4) == ("visa", "4242")  # asked once for the shared intent
    refund = refund_payment(b.id, share_b.id, amount=share_b.amount, reason="Cancelled", key="k" * 16,
                            actor=Actor.user(world.alice), gateway=gateway, now=NOW)
    remote = gateway.retrieve_charge(group.charge_id)
    assert [(r.id, r.amount, r.payment_ref) for r in remote.refunds] == [
        (refund.provider_refund_id, 19440, str(share_b.id))]
    assert remote.payment_intent_id == group.payment_intent_id
    assert (fresh(b).status, fresh(b).amount_paid, fresh(a).status) == ("open", 0, "paid")
    with pytest.raises(DomainError, match="nothing left to refund"):
        refund_payment(b.id, share_b.id, amount=1, reason="again", key="j" * 16, actor=SYSTEM, gateway=gateway,
                       now=NOW)
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 1
    assert_invariants()
