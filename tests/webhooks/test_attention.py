"""Money that needs attention (services/attention.py): money arriving for a void invoice or above what was due,
delivered by webhook, opens one case, emails the admins once, shows in the invoice list's tab and badge and on
the dashboard, until staff mark it resolved (audited)."""

from __future__ import annotations

import re

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AttentionCase, AuditEvent, OutboxEmail
from invoicing.services.checkout import start_checkout
from invoicing.services.invoices import void_invoice
from tests.conftest import NOW, SYSTEM, login, make_invoice, make_user
from tests.pay.support import assert_invariants, fresh, payments_of, site, stripe_gateway, stripe_object
from tests.webhooks.test_stripe_webhook import deliver, paid_session


def alerts() -> list[OutboxEmail]:
    return list(db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "money_attention")
                                   .order_by(OutboxEmail.id)))


def tab_count(page: str, tab: str) -> str:
    return dict(re.findall(r'name="status" value="(\w*)"[^>]*> [^<]+ <span class="count">([\d,+]+)</span>', page))[tab]


def test_it_puts_money_on_a_void_invoice_in_front_of_staff_until_resolved(client, world, stripe_app, time_machine):
    time_machine.move_to(NOW)
    ops = make_user(world.org_a, "ops@a.test", "admin")
    make_user(world.org_a, "clerk@a.test", "staff")
    invoice = make_invoice(world.client_a, status="open")
    other = make_invoice(world.client_a, status="open")
    session = paid_session(stripe_app, invoice)  # paid at the provider...
    void_invoice(invoice.id, reason="Sent twice", actor=SYSTEM, now=NOW)  # ...while staff voided it
    assert deliver(client, "checkout.session.completed", session).status_code == 200
    deliver(client, "checkout.session.completed", session)  # a new event id for the same session: nothing twice

    payment, = payments_of(invoice)
    assert (payment.status, payment.overpayment, fresh(invoice).status) == ("succeeded", True, "void")
    case, = db.session.scalars(select(AttentionCase))
    assert (case.kind, case.amount, case.currency, case.payment_id, case.resolved_at) == (
        "void_payment", 27000, "USD", payment.id, None)
    sent = alerts()
    assert sorted(a.to_addr for a in sent) == sorted([world.alice.email, ops.email])  # admins, once each
    assert sent[0].subject == f"Money on a void invoice: $270.00 on invoice {invoice.number}, refund or resolve it"
    assert "paid an invoice that is void" in sent[0].text_body and f"/admin/invoices/{invoice.id}" in sent[0].text_body

    login(client, world.alice)
    listing = client.get("/admin/invoices").text
    assert 'badge-attention">attention' in listing and tab_count(listing, "attention") == "1"
    tab = client.get("/admin/invoices?status=attention").text
    assert invoice.number in tab and other.number not in tab
    dashboard = client.get("/admin/").text
    panel = dashboard.split('id="attention"', 1)[1].split("</section>", 1)[0]
    assert "Money on a void invoice" in panel and "$270.00" in panel and invoice.number in panel

    refused = client.post(f"/admin/invoices/{invoice.id}/attention/resolve",
                          data={"resolve-case_id": case.id, "resolve-note": "  ", "resolve-back": "dashboard"})
    assert refused.status_code == 422 and "Say what was done" in refused.text
    assert db.session.scalar(select(AttentionCase.resolved_at)) is None

    done = client.post(f"/admin/invoices/{invoice.id}/attention/resolve", data={
        "resolve-case_id": case.id, "resolve-note": "Refunded by bank transfer", "resolve-back": "dashboard"})
    assert done.status_code == 303 and done.headers["Location"] == "/admin/"
    db.session.expire_all()
    case = db.session.get(AttentionCase, case.id)
    assert (case.resolution, case.resolved_by_id, case.resolved_at is not None) == (
        "Refunded by bank transfer", world.alice.id, True)
    assert fresh(invoice).attention_since is None
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "attention.resolved"))
    assert (audit.actor_label, audit.details["kind"], audit.details["note"]) == (
        world.alice.email, "void_payment", "Refunded by bank transfer")
    assert "Nothing needs attention" in client.get("/admin/").text
    assert tab_count(client.get("/admin/invoices").text, "attention") == "0"
    page = client.get(f"/admin/invoices/{invoice.id}").text
    assert "Resolved: Money on a void invoice of $270.00: Refunded by bank transfer" in page
    assert "Mark resolved" not in page
    again = client.post(f"/admin/invoices/{invoice.id}/attention/resolve",
                        data={"resolve-case_id": case.id, "resolve-note": "twice"})
    assert again.status_code == 422 and "already resolved" in again.text
    assert len(alerts()) == 2
    assert_invariants()


def test_it_flags_only_the_excess_of_an_overpayment_and_hides_the_case_from_other_tenants(client, world,
                                                                                          stripe_app):
    invoice = make_invoice(world.client_a, status="open")  # org A takes partial payments
    gateway = stripe_gateway(stripe_app)
    part = start_checkout(invoice.id, amount=10000, gateway=gateway, site=site(), now=NOW)
    whole = paid_session(stripe_app, invoice)  # the client pays it all in a second tab...
    stripe_app.pay(part.session_id)  # ...and the part in the first
    deliver(client, "checkout.session.completed", whole)
    deliver(client, "checkout.session.completed", stripe_object(stripe_app, f"/v1/checkout/sessions/{part.session_id}"))

    assert fresh(invoice).status == "paid" and fresh(invoice).amount_paid == 37000
    case, = db.session.scalars(select(AttentionCase))
    assert (case.kind, case.amount) == ("overpayment", 10000)
    alert, = alerts()
    assert alert.to_addr == world.alice.email and alert.subject.startswith("Overpayment: $100.00 on invoice")

    login(client, world.bob)  # staff of org B
    assert invoice.number not in client.get("/admin/").text
    response = client.post(f"/admin/invoices/{invoice.id}/attention/resolve",
                           data={"resolve-case_id": case.id, "resolve-note": "Not mine"})
    assert response.status_code == 404
    assert db.session.scalar(select(AttentionCase.resolved_at)) is None
    assert_invariants()
