"""Receipts for manual payments: when staff record cash, a bank transfer or a cheque, the client gets the receipt a
card payer gets (once per payment), unless the organization turned it off in Settings."""

from __future__ import annotations

import re

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Organization, OutboxEmail, Payment
from invoicing.services.payments import record_manual_payment
from invoicing.services.site import Site
from tests.admin.test_settings import VALID, post
from tests.conftest import NOW, SYSTEM, login, make_invoice


def payment_form(**extra: str) -> dict[str, str]:
    data = {"amount": "270.00", "method": "bank_transfer", "paid_on": "2026-03-10", "reference": "TRF-77",
            "idempotency_key": "form-key-1", **extra}
    return {f"payment-{name}": value for name, value in data.items()}


def receipts() -> list[OutboxEmail]:
    return list(db.session.execute(select(OutboxEmail).where(OutboxEmail.kind == "receipt")
                                   .order_by(OutboxEmail.id)).scalars())


def turn_receipts_off(org_id: int) -> None:
    org = db.session.get_one(Organization, org_id)
    org.manual_payment_receipts = False
    db.session.commit()


def test_it_emails_the_client_a_receipt_once(client, world, time_machine):
    time_machine.move_to(NOW)
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    assert client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form()).status_code == 303
    assert client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form()).status_code == 303  # again
    payment = db.session.execute(select(Payment)).scalar_one()
    [email] = receipts()
    assert (email.to_addr, email.dedupe_key, email.invoice_id) == ("clienta@clients.test", f"receipt:{payment.id}",
                                                                   invoice.id)
    assert email.subject == f"Receipt {payment.receipt_number} for invoice 2026-0001 from Org A"
    assert "Method:         Bank transfer" in email.text_body and "$270.00" in email.text_body
    assert "Invoice 2026-0001 is now paid in full." in email.text_body
    assert "http://billing.test/pay/" in email.text_body


def test_a_partial_payment_receipt_says_what_is_still_due(client, world, time_machine):
    time_machine.move_to(NOW)
    invoice = make_invoice(world.client_a, status="open", contact_id=world.client_a.contacts[1].id)
    login(client, world.alice)
    client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form(amount="70.00", method="cheque"))
    [email] = receipts()
    assert email.to_addr == world.client_a.contacts[1].email  # the invoice's contact, like a card receipt
    assert "Method:         Cheque" in email.text_body and "Still due:      $200.00" in email.text_body


def test_no_receipt_when_the_organization_turned_them_off(client, world, time_machine):
    time_machine.move_to(NOW)
    turn_receipts_off(world.org_a.id)
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    assert client.post(f"/admin/invoices/{invoice.id}/payments", data=payment_form()).status_code == 303
    assert db.session.execute(select(Payment)).scalar_one().amount == 27000
    assert receipts() == []


def test_marking_several_paid_sends_each_client_its_receipt(client, world, time_machine):
    time_machine.move_to(NOW)
    invoices = [make_invoice(world.client_a, status="open") for _ in range(2)]
    login(client, world.alice)
    data = {"bulk_action": "mark_paid", "ids": [str(i.id) for i in invoices], "batch_key": "k1", "method": "cash"}
    client.post("/admin/invoices/bulk", data=data)
    client.post("/admin/invoices/bulk", data=data)  # the same form twice: each payment and receipt once
    assert sorted(e.invoice_id for e in receipts()) == sorted(i.id for i in invoices)


def test_the_setting_is_on_by_default_and_saved_from_the_settings_page(client, world):
    login(client, world.alice)
    page = client.get("/admin/settings").text
    box = re.search(r'<input[^>]*name="manual_payment_receipts"[^>]*>', page)
    assert box is not None and "checked" in box.group(0)
    assert post(client, VALID).status_code == 303  # the box left unticked
    db.session.expire_all()
    assert db.session.get_one(Organization, world.org_a.id).manual_payment_receipts is False
    assert post(client, {**VALID, "manual_payment_receipts": "y"}).status_code == 303
    db.session.expire_all()
    assert db.session.get_one(Organization, world.org_a.id).manual_payment_receipts is True


def test_a_payment_recorded_without_a_site_sends_nothing(app, world):
    invoice = make_invoice(world.client_a, status="open")
    record_manual_payment(invoice.id, amount=invoice.total, method="cash", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW)  # demo data and scripts
    assert receipts() == []
    other = make_invoice(world.client_a, status="open")
    record_manual_payment(other.id, amount=other.total, method="cash", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW, site=Site.from_config(app.config))
    assert [e.invoice_id for e in receipts()] == [other.id]
