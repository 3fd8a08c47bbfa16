"""Autopay where people see it, with the sandbox provider: `flask billing process-recurring-charges --dry-run`
lists what the Scheduler page previews (the same plan), the run charges; the invoice page shows the autopay
state and each attempt on the timeline; the client page shows what is scheduled and the last failure."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import ChargeAttempt, Invoice, Payment, WebhookEvent
from invoicing.services.billing.autopay import charges_preview
from tests.conftest import login, portal_login
from tests.services.billing.autopay_support import autopay_of
from tests.services.billing.helpers import autopay_on, open_invoice, utc


def test_dry_run_lists_what_the_scheduler_page_shows_then_the_run_charges(client, runner, world, time_machine: Any):
    autopay_on(world.client_a)  # sandbox card that succeeds
    invoice = open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))
    time_machine.move_to(utc(2026, 3, 20, 2), tick=False)

    login(client, world.alice)
    page = client.get("/admin/scheduler").text  # 13:00 UTC is within the next 24 hours
    assert f">{invoice.number}</a>" in page and "Visa •••• 4242" in page and "Cards to charge (1)" in page
    assert charges_preview(now=utc(2026, 3, 20, 2), until=utc(2026, 3, 21, 2))[0].amount == invoice.total

    time_machine.move_to(utc(2026, 3, 20, 13, 30), tick=False)
    dry = runner.invoke(args=["billing", "process-recurring-charges", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "process-recurring-charges would charge 1 card(s)" in dry.output
    assert f"{invoice.number} (Client A): $270.00 to Visa •••• 4242, attempt 1" in dry.output
    assert db.session.scalar(select(ChargeAttempt.id)) is None

    done = runner.invoke(args=["billing", "process-recurring-charges"])
    assert done.exit_code == 0 and "process-recurring-charges: 1 succeeded" in done.output, done.output
    db.session.rollback()
    assert db.session.get(Invoice, invoice.id).status == "paid"
    payment, = db.session.scalars(select(Payment)).all()
    assert (payment.method, payment.method_label) == ("sandbox", "Visa •••• 4242 (sandbox, no money moved)")
    # The sandbox's signed event reached the inbox too, and was recorded by the same code: nothing twice.
    event = db.session.scalars(select(WebhookEvent).where(WebhookEvent.type == "payment_intent.succeeded")).one()
    assert (event.status, event.invoice_id) == ("processed", invoice.id)
    assert len(db.session.scalars(select(ChargeAttempt)).all()) == 1
    time_machine.move_to(utc(2026, 3, 20, 13, 45), tick=False)
    again = runner.invoke(args=["billing", "process-recurring-charges"])
    assert "nothing due" in again.output


def test_invoice_and_client_pages_show_the_autopay_state_and_the_last_failure(client, world, time_machine: Any):
    autopay_on(world.client_a, provider_id="pm_sandbox_decline")
    invoice = open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))
    time_machine.move_to(utc(2026, 3, 20, 13, 30), tick=False)
    login(client, world.alice)
    page = client.get(f"/admin/invoices/{invoice.id}").text
    assert "Autopay:</strong>" in page and "charge scheduled" in page and "card Visa •••• 4242" in page

    client.application.test_cli_runner().invoke(args=["billing", "process-recurring-charges"])
    assert autopay_of(invoice.id).status == "scheduled"  # a soft decline: retried in 3 days
    page = client.get(f"/admin/invoices/{invoice.id}").text
    assert "retry scheduled" in page and "Last failure: card_declined" in page
    assert "Autopay attempt 1 declined (card_declined)" in page and "next try Mar 23, 2026" in page
    client_page = client.get(f"/admin/clients/{world.client_a.id}").text
    assert "1 invoice(s) scheduled for autopay" in client_page
    assert f"invoice {invoice.number}</a>" in client_page and "card_declined" in client_page


def test_the_client_sees_when_autopay_will_charge_the_invoice_in_the_portal(client, world, time_machine: Any):
    autopay_on(world.client_a, provider_id="pm_sandbox_decline")
    invoice = open_invoice(world.client_a, due=date(2026, 3, 20), opened=utc(2026, 3, 5, 15))
    time_machine.move_to(utc(2026, 3, 10, 12), tick=False)
    portal_login(client, world.client_a.contacts[0], now=utc(2026, 3, 10, 12))
    page = client.get(f"/portal/invoices/{invoice.public_id}").text
    assert "Visa •••• 4242 will be charged 20 Mar 2026, 09:00 EDT" in page
    time_machine.move_to(utc(2026, 3, 20, 13, 30), tick=False)
    client.application.test_cli_runner().invoke(args=["billing", "process-recurring-charges"])
    page = client.get(f"/portal/invoices/{invoice.public_id}").text
    assert "will be charged 23 Mar 2026, 09:30 EDT (the last try was declined)" in page
