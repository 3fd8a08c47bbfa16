"""The invoice page's money panel and its refund form (POST /admin/invoices/<id>/refund)."""

from __future__ import annotations

import re

from flask import render_template
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import OutboxEmail, Refund, WebhookEvent
from invoicing.services.checkout import start_checkout
from tests.conftest import NOW, login, make_invoice
from tests.pay.support import assert_invariants, fresh, payments_of, sandbox, site


def sandbox_payment(invoice):
    gateway = sandbox()
    started = start_checkout(invoice.id, amount=invoice.amount_due, gateway=gateway, site=site(), now=NOW)
    gateway.pay(started.session_id, card="4242424242424242", email="")
    return payments_of(invoice)[0]


def test_it_refunds_part_of_a_card_payment_through_the_provider(client, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = sandbox_payment(invoice)
    login(client, world.alice)
    form = {"payment_id": payment.id, "amount": "20.00", "reason": "Late delivery", "key": "k" * 20}
    response = client.post(f"/admin/invoices/{invoice.id}/refund", data=form)
    assert response.status_code == 303 and response.headers["Location"] == f"/admin/invoices/{invoice.id}"
    assert client.post(f"/admin/invoices/{invoice.id}/refund", data=form).status_code == 303  # double submit
    refund, = db.session.scalars(select(Refund))
    assert (refund.amount, refund.reason, refund.provider_refund_id[:7]) == (2000, "Late delivery", "re_sbx_")
    assert refund.created_by_id == world.alice.id  # the sandbox's event is applied first; who asked is kept
    assert (fresh(invoice).status, fresh(invoice).amount_paid) == ("open", 25000)


def test_it_refuses_a_bad_refund_with_a_clear_message_and_no_write(client, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = sandbox_payment(invoice)
    login(client, world.alice)
    too_much = client.post(f"/admin/invoices/{invoice.id}/refund",
                           data={"payment_id": payment.id, "amount": "300", "reason": "x", "key": "k" * 20})
    no_reason = client.post(f"/admin/invoices/{invoice.id}/refund",
                            data={"payment_id": payment.id, "amount": "3", "reason": "", "key": "k" * 20})
    assert too_much.status_code == 422 and "at most $270.00" in too_much.text
    assert no_reason.status_code == 422 and "Give a reason for the refund." in no_reason.text
    assert db.session.scalars(select(Refund)).all() == []


def test_it_answers_404_for_another_organizations_invoice(client, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = sandbox_payment(invoice)
    login(client, world.bob)
    response = client.post(f"/admin/invoices/{invoice.id}/refund",
                           data={"payment_id": payment.id, "amount": "1", "reason": "x", "key": "k" * 20})
    assert response.status_code == 404 and db.session.scalars(select(Refund)).all() == []


def test_the_money_panel_shows_refunds_sessions_and_a_dispute(app, world):
    invoice = make_invoice(world.client_a, status="open")
    sandbox_payment(invoice)
    invoice = fresh(invoice)
    invoice.disputed_at = NOW
    db.session.commit()
    with app.test_request_context():
        html = render_template("admin/_invoice_money.html", invoice=invoice)
    assert "Disputed" in html and "Refunds" not in html  # the refund action sits beside its payment instead
    assert "Card checkouts" in html and "cs_sbx_" in html and "complete" in html


def test_the_invoice_page_offers_the_refund_form_and_it_works_with_csrf_on(app, client, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = sandbox_payment(invoice)
    login(client, world.alice)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        page = client.get(f"/admin/invoices/{invoice.id}").text
        assert f'Refund…<span class="offscreen"> {payment.receipt_number}</span>' in page
        fields = dict(re.findall(r'name="(csrf_token|key)"[^>]*value="([^"]+)"', page))
        assert set(fields) == {"csrf_token", "key"}
        forged = client.post(f"/admin/invoices/{invoice.id}/refund",
                             data={"payment_id": payment.id, "amount": "1", "reason": "x", "key": fields["key"]})
        assert forged.status_code == 400 and db.session.scalars(select(Refund)).all() == []
        done = client.post(f"/admin/invoices/{invoice.id}/refund", data={**fields, "payment_id": payment.id,
                                                                          "amount": "270", "reason": "Cancelled"})
        assert done.status_code == 303
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert (fresh(invoice).status, fresh(invoice).amount_paid) == ("open", 0)


def test_it_reveals_nothing_about_another_organizations_payment(client, world):
    theirs = sandbox_payment(make_invoice(world.client_a, status="open"))
    ours = make_invoice(world.client_b, status="open")
    login(client, world.bob)
    form = {"payment_id": theirs.id, "amount": "1", "reason": "probe", "key": "k" * 20}
    response = client.post(f"/admin/invoices/{ours.id}/refund", data=form)
    assert response.status_code == 422 and "Choose a payment of this invoice." in response.text
    assert "USD" not in response.text and "at most" not in response.text
    assert db.session.scalars(select(Refund)).first() is None


def test_it_shows_a_sandbox_refund_that_failed_and_counts_the_invoice_paid_again(client, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = sandbox_payment(invoice)
    login(client, world.alice)
    form = {"payment_id": payment.id, "amount": "270", "reason": "Order cancelled", "key": "f" * 20}
    assert client.post(f"/admin/invoices/{invoice.id}/refund", data=form).status_code == 303
    refund = db.session.scalar(select(Refund))
    assert (fresh(invoice).status, fresh(invoice).amount_paid) == ("open", 0)

    sandbox().fail_refund(refund.provider_refund_id)  # its signed events reach the inbox in-process

    refund = db.session.scalar(select(Refund))
    assert (refund.status, refund.failure_reason) == ("failed", "expired_or_canceled_card")
    assert (fresh(invoice).status, fresh(invoice).amount_paid, payments_of(invoice)[0].status) == (
        "paid", 27000, "succeeded")
    assert sorted((e.type, e.status) for e in db.session.scalars(select(WebhookEvent))
                  if e.type.startswith(("refund.", "charge.refund."))) == [
        ("charge.refund.updated", "processed"), ("refund.failed", "processed"), ("refund.updated", "processed")]
    alert, = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "refund_failed"))
    assert alert.to_addr == world.alice.email
    page = client.get(f"/admin/invoices/{invoice.id}")
    assert page.status_code == 200
    assert "refund failed" in page.text and "Failed at the provider" in page.text
    assert "expired or canceled card" in page.text and "refund them another way" in page.text
    assert "did not reach the client" in page.text  # the timeline entry
    assert_invariants()


def test_it_refuses_a_refund_above_the_largest_amount_with_the_limit_in_money(client, world):
    invoice = make_invoice(world.client_a, status="open")
    payment = sandbox_payment(invoice)
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{invoice.id}/refund", data={
        "payment_id": payment.id, "amount": "99999999999999999999", "reason": "x", "key": "k" * 20})
    assert response.status_code == 422 and "The amount is too large: at most $9,999,999,999,999.99." in response.text
    assert db.session.scalars(select(Refund)).all() == [] and fresh(invoice).amount_paid == 27000
