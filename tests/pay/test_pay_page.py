"""GET /pay/<token>: the client's view of an invoice. GET never acts, except marking the invoice viewed."""

from __future__ import annotations

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, CheckoutSession, Payment
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, login, make_invoice
from tests.pay.support import fresh, pay_path, token


def test_it_shows_the_invoice_with_its_brand_and_a_pay_button(client, world):
    invoice = make_invoice(world.client_a, status="open", project_ref="Website")
    response = client.get(pay_path(invoice))
    assert response.status_code == 200
    page = response.text
    assert f"Invoice {invoice.number}" in page and "Org A" in page and "Client A" in page
    assert "Consulting" in page and "Travel" in page and "$270.00" in page and "Website" in page
    assert "Pay now" in page and "Download PDF" in page and "Apr 9, 2026" in page  # due date
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert 'name="robots" content="noindex' in page


def test_it_marks_the_invoice_viewed_on_the_first_open_and_counts_the_others(client, world):
    invoice = make_invoice(world.client_a, status="open")
    client.get(pay_path(invoice))
    first = fresh(invoice).viewed_at
    client.get(pay_path(invoice))
    invoice = fresh(invoice)
    assert first is not None and invoice.viewed_at == first and invoice.view_count == 2
    assert "viewed" in invoice.badges(NOW.date())
    views = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "invoice.viewed")).all()
    assert [(v.object_id, v.actor_type) for v in views] == [(invoice.id, "anonymous")]


def test_it_does_not_mark_viewed_on_a_head_request(client, world):
    """Mail scanners check links with HEAD; only a GET (a person opening the page) is a view."""
    invoice = make_invoice(world.client_a, status="open")
    response = client.head(pay_path(invoice))
    assert (response.status_code, response.data) == (200, b"")
    assert (fresh(invoice).viewed_at, fresh(invoice).view_count) == (None, 0)
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "invoice.viewed")) == 0
    client.get(pay_path(invoice))
    assert fresh(invoice).view_count == 1


def test_it_does_not_mark_viewed_when_staff_open_the_link(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    assert client.get(pay_path(invoice)).status_code == 200
    assert (fresh(invoice).viewed_at, fresh(invoice).view_count) == (None, 0)


def test_it_never_acts_on_get(client, world):
    invoice = make_invoice(world.client_a, status="open")
    for _ in range(3):
        client.get(pay_path(invoice))
    assert db.session.scalar(select(func.count()).select_from(CheckoutSession)) == 0
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 0


def test_it_answers_404_with_a_friendly_page_for_an_unknown_or_forged_link(client, world):
    invoice = make_invoice(world.client_a, status="open")
    real = token(invoice)
    for bad in (real[:-2] + ("AA" if not real.endswith("AA") else "BB"), "nonsense", "a" * 32 + ".x", "x" * 150):
        response = client.get(f"/pay/{bad}")
        assert response.status_code == 404, bad
        assert "We could not find this invoice" in response.text and "Traceback" not in response.text
    draft = make_invoice(world.client_a)
    assert client.get(pay_path(draft)).status_code == 404


def test_it_answers_410_with_the_senders_contact_for_a_void_invoice(client, world):
    world.org_a.sender_email = "billing@org-a.test"
    db.session.commit()
    invoice = make_invoice(world.client_a, status="open")
    path = pay_path(invoice)
    void_invoice(invoice.id, reason="Issued in error", actor=SYSTEM, now=NOW)
    response = client.get(path)
    assert response.status_code == 410
    assert "was cancelled" in response.text and "mailto:billing@org-a.test" in response.text
    assert fresh(invoice).view_count == 0


def test_it_answers_410_for_an_expired_link(client, world):
    invoice = make_invoice(world.client_a, status="open")
    invoice.link_expires_on = NOW.date().replace(year=2025)
    db.session.commit()
    response = client.get(pay_path(invoice))
    assert response.status_code == 410 and "has expired" in response.text


def test_it_rate_limits_guessing(client, world):
    statuses = [client.get(f"/pay/{'0' * 32}.guess{n}").status_code for n in range(31)]
    assert statuses[:30] == [404] * 30 and statuses[30] == 429


def test_it_shows_the_receipt_and_no_pay_button_once_paid(client, world):
    invoice = make_invoice(world.client_a, status="open")
    record_manual_payment(invoice.id, amount=invoice.total, method="bank_transfer", paid_on=NOW.date(),
                          reference="TRF-9", actor=SYSTEM, now=NOW)
    page = client.get(pay_path(invoice)).text
    assert "Paid, thank you" in page and "R-" in page and "Bank transfer" in page
    assert "Pay now" not in page


def test_it_offers_a_chosen_amount_only_when_partial_payments_are_allowed(client, world):
    partial = make_invoice(world.client_a, status="open")  # org A allows partial payments
    full = make_invoice(world.client_b, status="open")
    assert 'name="amount"' in client.get(pay_path(partial)).text
    assert 'name="amount"' not in client.get(pay_path(full)).text


def test_it_serves_the_invoice_pdf(client, world):
    invoice = make_invoice(world.client_a, status="open")
    response = client.get(pay_path(invoice, "/pdf"))
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    assert response.headers["Content-Type"] == "application/pdf"
    assert client.get(f"/pay/{'0' * 32}.nope/pdf").status_code == 404
