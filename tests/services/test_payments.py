from datetime import timedelta

import pytest
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Invoice, OutboxEmail, Payment, Refund
from invoicing.services import DomainError
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import apply_payment, apply_refund, record_manual_payment, reverse_refund
from tests.conftest import NOW, SYSTEM, make_invoice, make_user
from tests.pay.support import assert_invariants, site


def manual(invoice, amount, **kw):
    kw.setdefault("method", "bank_transfer")
    return record_manual_payment(invoice.id, amount=amount, paid_on=NOW.date(), reference="TRF-1",
                                 actor=SYSTEM, now=NOW, **kw)


def fresh(invoice):
    db.session.expire_all()
    return db.session.get(Invoice, invoice.id)


def test_it_records_a_partial_then_the_rest(world):
    invoice = make_invoice(world.client_a, status="open")  # total 270.00
    manual(invoice, 10000)
    assert (fresh(invoice).status, fresh(invoice).amount_paid, fresh(invoice).amount_due) == ("open", 10000, 17000)
    assert "partial" in fresh(invoice).badges(NOW.date())
    manual(invoice, 17000)
    invoice = fresh(invoice)
    assert (invoice.status, invoice.amount_paid, invoice.paid_at) == ("paid", 27000, NOW)


def test_it_refuses_an_overpayment_with_a_clear_message(world):
    invoice = make_invoice(world.client_a, status="open")
    with pytest.raises(DomainError, match="more than the amount due"):
        manual(invoice, 27001)
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 0


def test_it_refuses_a_partial_payment_when_the_organization_does_not_allow_it(world):
    invoice = make_invoice(world.client_b, status="open")
    with pytest.raises(DomainError, match="Partial payments are turned off"):
        manual(invoice, 100)
    assert fresh(invoice).amount_paid == 0


@pytest.mark.parametrize("state", ["draft", "void", "paid"])
def test_it_refuses_manual_payments_unless_open(world, state):
    invoice = make_invoice(world.client_a, status="draft" if state == "draft" else "open")
    if state == "void":
        void_invoice(invoice.id, reason="x", actor=SYSTEM, now=NOW)
    if state == "paid":
        manual(invoice, invoice.total)
    with pytest.raises(DomainError, match="cannot take a payment|more than the amount due"):
        manual(invoice, 100)


def test_it_records_a_double_submitted_form_once(world):
    invoice = make_invoice(world.client_a, status="open")
    first = manual(invoice, 5000, idempotency_key="form-123")
    second = manual(invoice, 5000, idempotency_key="form-123")
    assert first.created and not second.created and first.payment.id == second.payment.id
    assert fresh(invoice).amount_paid == 5000


def test_it_applies_a_provider_payment_once_per_reference_and_moves_state_forward_only(world):
    invoice = make_invoice(world.client_a, status="open")
    kwargs = dict(amount=invoice.total, currency="USD", method="card", actor=SYSTEM, now=NOW,
                  checkout_session_id="cs_1")
    apply_payment(invoice.id, status="succeeded", payment_intent_id="pi_1", **kwargs)
    late = apply_payment(invoice.id, status="processing", **kwargs)  # an older event arriving late
    assert not late.created and late.payment.status == "succeeded"
    assert late.payment.payment_intent_id == "pi_1"
    assert fresh(invoice).status == "paid"
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 1


def test_it_keeps_an_invoice_processing_until_an_async_payment_settles(world):
    invoice = make_invoice(world.client_a, status="open")
    kwargs = dict(amount=invoice.total, currency="USD", method="card", actor=SYSTEM, now=NOW,
                  checkout_session_id="cs_async")
    apply_payment(invoice.id, status="processing", **kwargs)
    assert (fresh(invoice).status, fresh(invoice).amount_paid) == ("processing", 0)
    apply_payment(invoice.id, status="failed", failure_code="insufficient_funds", **kwargs)
    assert fresh(invoice).status == "open"


def test_it_flags_provider_money_beyond_the_amount_due_instead_of_losing_it(world):
    invoice = make_invoice(world.client_a, status="open")
    common = dict(currency="USD", method="card", status="succeeded", actor=SYSTEM, now=NOW)
    apply_payment(invoice.id, amount=invoice.total, checkout_session_id="cs_a", **common)
    second = apply_payment(invoice.id, amount=invoice.total, checkout_session_id="cs_b", **common)
    assert second.created and second.payment.overpayment
    assert fresh(invoice).status == "paid" and fresh(invoice).amount_paid == 2 * invoice.total


def test_it_refuses_a_payment_in_another_currency(world):
    invoice = make_invoice(world.client_a, status="open")
    with pytest.raises(DomainError, match="in USD, not EUR"):
        apply_payment(invoice.id, amount=100, currency="EUR", method="card", status="succeeded", actor=SYSTEM,
                      now=NOW, checkout_session_id="cs_x")


def test_it_refunds_in_part_then_in_full_and_the_balance_follows(world):
    invoice = make_invoice(world.client_a, status="open")
    payment = manual(invoice, invoice.total).payment
    apply_refund(payment.id, amount=4500, actor=SYSTEM, now=NOW, provider_refund_id="re_1", reason="discount")
    apply_refund(payment.id, amount=4500, actor=SYSTEM, now=NOW, provider_refund_id="re_1")  # replayed event
    invoice = fresh(invoice)
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("open", 22500, 4500)
    assert db.session.get(Payment, payment.id).status == "partially_refunded"
    apply_refund(payment.id, amount=22500, actor=SYSTEM, now=NOW + timedelta(hours=1), provider_refund_id="re_2")
    assert db.session.get(Payment, payment.id).status == "refunded"
    assert fresh(invoice).amount_paid == 0
    with pytest.raises(DomainError, match="at most what is left"):
        apply_refund(payment.id, amount=1, actor=SYSTEM, now=NOW, provider_refund_id="re_3")


def test_it_lets_a_declined_session_be_retried_with_a_slower_method(world):
    invoice = make_invoice(world.client_a, status="open")
    kwargs = dict(amount=invoice.total, currency="USD", method="card", actor=SYSTEM, now=NOW,
                  checkout_session_id="cs_retry", payment_intent_id="pi_retry")
    apply_payment(invoice.id, status="failed", failure_code="card_declined", **kwargs)
    assert fresh(invoice).status == "open"
    apply_payment(invoice.id, status="processing", **kwargs)  # same session, now a bank debit
    assert fresh(invoice).status == "processing"  # no second checkout while the debit is pending
    apply_payment(invoice.id, status="succeeded", **kwargs)
    apply_payment(invoice.id, status="failed", **kwargs)  # a stale event after success changes nothing
    payment = db.session.execute(select(Payment)).scalar_one()
    assert (payment.status, payment.overpayment, fresh(invoice).status) == ("succeeded", False, "paid")


def test_it_refuses_a_reference_that_belongs_to_another_invoice(world):
    first = make_invoice(world.client_a, status="open")
    second = make_invoice(world.client_a, status="open")
    common = dict(currency="USD", method="card", status="succeeded", actor=SYSTEM, now=NOW, payment_intent_id="pi_1")
    apply_payment(first.id, amount=first.total, **common)
    with pytest.raises(DomainError, match="another invoice"):
        apply_payment(second.id, amount=second.total, **common)
    assert fresh(second).amount_paid == 0


def test_it_decides_on_committed_rows_not_on_objects_this_session_loaded_earlier(world):
    from sqlalchemy.orm import Session

    from invoicing.models import AuditEvent

    invoice = make_invoice(world.client_a, status="open")
    kwargs = dict(amount=invoice.total, currency="USD", method="card", actor=SYSTEM, now=NOW,
                  checkout_session_id="cs_race")
    held = apply_payment(invoice.id, status="processing", **kwargs).payment  # this session keeps it loaded
    assert held.status == "processing"
    with Session(db.engine) as other:  # another worker's webhook settles it meanwhile
        apply_other = other.get(Payment, held.id)
        apply_other.status, apply_other.succeeded_at = "succeeded", NOW
        other.get(Invoice, invoice.id).amount_paid = invoice.total
        other.get(Invoice, invoice.id).status = "paid"
        other.commit()
    result = apply_payment(invoice.id, status="succeeded", **kwargs)
    assert not result.created and result.payment.status == "succeeded" and not result.payment.overpayment
    succeeded_events = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "payment.succeeded"))
    assert succeeded_events == 0  # the other worker wrote the state; this call changed nothing


def card_payment(invoice, ref: str = "pi_card"):
    return apply_payment(invoice.id, amount=invoice.total, currency="USD", method="card", status="succeeded",
                         actor=SYSTEM, now=NOW, payment_intent_id=ref).payment


def reverse(payment, refund_id: str, amount: int = 0, status: str = "failed", **kw):
    return reverse_refund(payment.id, provider_refund_id=refund_id, status=status, amount=amount, actor=SYSTEM,
                          now=NOW + timedelta(days=3), site=site(), **kw)


def state(invoice, payment):
    db.session.expire_all()
    payment, invoice = db.session.get(Payment, payment.id), db.session.get(Invoice, invoice.id)
    return invoice.status, invoice.amount_paid, payment.status, payment.amount_refunded


def test_it_gives_a_failed_refund_back_to_the_payment_and_the_invoice_once(world):
    ops = make_user(world.org_a, "ops@a.test", "admin")
    invoice = make_invoice(world.client_a, status="open")  # total 270.00
    payment = card_payment(invoice)
    apply_refund(payment.id, amount=7000, actor=SYSTEM, now=NOW, provider_refund_id="re_1", reason="Late")
    apply_refund(payment.id, amount=20000, actor=SYSTEM, now=NOW, provider_refund_id="re_2")
    assert state(invoice, payment) == ("open", 0, "refunded", 27000)

    failed = reverse(payment, "re_1", failure_reason="expired_or_canceled_card")
    assert (failed.status, failed.failure_reason, failed.failed_at) == ("failed", "expired_or_canceled_card",
                                                                        NOW + timedelta(days=3))
    assert state(invoice, payment) == ("open", 7000, "partially_refunded", 20000)
    assert reverse(payment, "re_1", failure_reason="unknown").id == failed.id  # the same failure, heard again
    assert state(invoice, payment) == ("open", 7000, "partially_refunded", 20000)
    reverse(payment, "re_2", status="canceled")
    invoice_after = db.session.get(Invoice, invoice.id)
    assert state(invoice, payment) == ("paid", 27000, "succeeded", 0) and invoice_after.paid_at is not None

    reversals = ("payment.refund_failed", "payment.refund_canceled")
    audits = db.session.scalars(select(AuditEvent).where(AuditEvent.action.in_(reversals))
                                .order_by(AuditEvent.id)).all()
    assert [(a.action, a.details["restored"]) for a in audits] == [("payment.refund_failed", 7000),
                                                                   ("payment.refund_canceled", 20000)]
    alerts = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "refund_failed")
                                .order_by(OutboxEmail.id)).all()
    assert [(a.to_addr, a.dedupe_key) for a in alerts] == [
        (world.alice.email, f"refund_failed:re_1:{world.alice.email}"), (ops.email, f"refund_failed:re_1:{ops.email}"),
        (world.alice.email, f"refund_failed:re_2:{world.alice.email}"), (ops.email, f"refund_failed:re_2:{ops.email}")]
    first = alerts[0]
    assert first.subject == "Refund failed: $70.00 on invoice 2026-0001, refund the client another way"
    assert "has not received this money back" in first.text_body and "expired or canceled card" in first.text_body
    assert "Refund the client another way" in first.html_body and "/admin/invoices/" in first.text_body
    assert "was canceled" in alerts[2].text_body
    assert_invariants()


def test_it_records_a_failure_heard_before_its_refund_and_the_refund_then_changes_nothing(world):
    invoice = make_invoice(world.client_a, status="open")
    payment = card_payment(invoice)
    early = reverse(payment, "re_early", amount=5000, reason="Goodwill", failure_reason="lost_or_stolen_card")
    assert (early.status, early.amount, early.reason, early.failure_reason) == (
        "failed", 5000, "Goodwill", "lost_or_stolen_card")
    assert state(invoice, payment) == ("paid", 27000, "succeeded", 0)  # it never counted, so nothing comes back
    late = apply_refund(payment.id, amount=5000, actor=SYSTEM, now=NOW, provider_refund_id="re_early",
                        idempotency_key="refund:form-key")  # the staff form's record, or charge.refunded, after it
    assert late.id == early.id and late.status == "failed"
    assert state(invoice, payment) == ("paid", 27000, "succeeded", 0)
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 1
    assert db.session.scalar(select(AuditEvent.details).where(AuditEvent.action == "payment.refund_failed")) \
        == {"payment_id": payment.id, "refund_id": early.id, "amount": 5000, "currency": "USD", "restored": 0,
            "failure_reason": "lost_or_stolen_card", "reason": "Goodwill"}
    assert db.session.scalar(select(func.count()).select_from(OutboxEmail)) == 1  # the admins still must know
    assert_invariants()


def test_it_flags_an_overpayment_when_a_refund_fails_after_the_client_was_paid_back_otherwise(world):
    invoice = make_invoice(world.client_a, status="open")
    payment = card_payment(invoice)
    apply_refund(payment.id, amount=27000, actor=SYSTEM, now=NOW, provider_refund_id="re_full")
    manual(invoice, 27000)  # the client paid the reopened invoice again by bank transfer
    reverse(payment, "re_full", failure_reason="expired_or_canceled_card")
    assert state(invoice, payment) == ("paid", 54000, "succeeded", 0)
    assert db.session.get(Payment, payment.id).overpayment
    flagged = db.session.scalar(select(AuditEvent.details).where(AuditEvent.action == "payment.overpayment_flagged"))
    assert (flagged["payment_id"], flagged["amount"]) == (payment.id, 27000)
    assert_invariants()


def test_it_refuses_to_reverse_a_refund_that_did_not_fail_or_is_another_payments(world):
    invoice = make_invoice(world.client_a, status="open")
    payment = card_payment(invoice)
    other = card_payment(make_invoice(world.client_a, status="open"), ref="pi_other")
    apply_refund(payment.id, amount=1000, actor=SYSTEM, now=NOW, provider_refund_id="re_1")
    with pytest.raises(DomainError, match="has not failed"):
        reverse(payment, "re_1", status="succeeded")
    with pytest.raises(DomainError, match="another payment"):
        reverse(other, "re_1")
    assert state(invoice, payment) == ("open", 26000, "partially_refunded", 1000)
    assert db.session.scalar(select(Refund.status)) == "succeeded"
    assert db.session.scalar(select(func.count()).select_from(OutboxEmail)) == 0


def test_it_flags_the_excess_when_a_pending_payment_settles_after_another_was_paid(world):
    invoice = make_invoice(world.client_a, status="open")  # 270.00
    common = dict(currency="USD", method="card", actor=SYSTEM, now=NOW)
    apply_payment(invoice.id, amount=15000, status="processing", checkout_session_id="cs_later", **common)
    apply_payment(invoice.id, amount=17000, status="succeeded", checkout_session_id="cs_card", **common)
    settled = apply_payment(invoice.id, amount=15000, status="succeeded", checkout_session_id="cs_later", **common)
    assert settled.payment.overpayment and fresh(invoice).amount_paid == 32000
    flagged, = db.session.scalars(select(AuditEvent.details).where(AuditEvent.action == "payment.overpayment_flagged"))
    assert (flagged["payment_id"], flagged["amount"], flagged["excess"]) == (settled.payment.id, 15000, 5000)
    assert flagged["receipt_number"] == settled.payment.receipt_number


def test_it_refuses_a_manual_reference_longer_than_its_column(world):
    invoice = make_invoice(world.client_a, status="open")
    with pytest.raises(DomainError, match="at most 200 characters"):
        record_manual_payment(invoice.id, amount=100, method="cash", paid_on=NOW.date(), reference="R" * 201,
                              actor=SYSTEM, now=NOW)
    assert fresh(invoice).amount_paid == 0
