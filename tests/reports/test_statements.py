"""Client statements: running balance, PDF, email through the outbox, and the portal's own-company statement."""

from __future__ import annotations

import io
from datetime import date

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.mail import build_attachment
from invoicing.models import AuditEvent, OutboxEmail
from invoicing.services.reports import statements
from tests.conftest import NOW, login, portal_login
from tests.reports.dataset import build


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)


def test_it_runs_the_balance_from_opening_to_closing(world):
    data = build(world)
    s = statements.build(world.client_a.id, world.org_a.id, currency="USD", start=date(2026, 1, 1),
                         end=date(2026, 2, 28))
    # Before 1 January: U0 90 owed, U1 100 invoiced and paid on 31 December (New York) -> 90 owed
    assert s.opening == 9000
    assert [(line.day, line.kind, line.charge, line.credit, line.balance) for line in s.lines] == [
        (date(2026, 1, 5), "invoice", 20000, 0, 29000),
        (date(2026, 1, 8), "invoice", 8000, 0, 37000),
        (date(2026, 1, 10), "payment", 0, 5000, 32000),
        (date(2026, 1, 18), "payment", 0, 8000, 24000),
        (date(2026, 1, 20), "invoice", 30000, 0, 54000),
        (date(2026, 1, 25), "void", 0, 30000, 24000),
        (date(2026, 2, 10), "invoice", 40000, 0, 64000),
        (date(2026, 2, 15), "payment", 0, 40000, 24000),
        (date(2026, 2, 20), "refund", 10000, 0, 34000),
        (date(2026, 2, 28), "invoice", 50000, 0, 84000),
        (date(2026, 2, 28), "payment", 0, 15000, 69000),
    ]
    assert s.closing == 69000 == s.opening + s.charges - s.credits
    # The whole history ends where the aging does: what is owed now, less U6 (issued in March)
    everything = statements.build(world.client_a.id, world.org_a.id, currency="USD", start=date(2025, 1, 1),
                                  end=date(2026, 3, 10))
    assert everything.opening == 0 and everything.closing == 129000
    assert data.usd["U7"] not in {line.invoice_id for line in everything.lines}  # a draft is no charge


def test_it_shows_the_page_and_the_pdf_to_staff(client, world, frozen):
    build(world)
    login(client, world.alice)
    page = client.get(f"/admin/clients/{world.client_a.id}/statement?period=custom&from=2026-01-01&to=2026-02-28")
    assert page.status_code == 200 and "Opening balance" in page.text and "$690.00" in page.text
    pdf = client.get(f"/admin/clients/{world.client_a.id}/statement.pdf?period=custom&from=2026-01-01&to=2026-02-28")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "Statement" in text and "$690.00" in text and "Client A" in text
    assert client.get(f"/admin/clients/{world.client_b.id}/statement").status_code == 404  # org B's client


def test_it_emails_the_statement_through_the_outbox(client, world, frozen):
    build(world)
    login(client, world.alice)
    response = client.post(f"/admin/clients/{world.client_a.id}/statement/email",
                           data={"period": "custom", "from": "2026-01-01", "to": "2026-02-28", "currency": "USD"})
    assert response.status_code == 303, response.text[-3000:]
    email = db.session.execute(select(OutboxEmail).where(OutboxEmail.kind == "statement")).scalar_one()
    assert email.to_addr == "clienta@clients.test" and "Closing balance: $690.00" in email.text_body
    assert email.attachments == [{"kind": "statement_pdf", "client_id": world.client_a.id, "currency": "USD",
                                  "start": "2026-01-01", "end": "2026-02-28"}]
    attachment = build_attachment(email.attachments[0], email.organization_id)
    assert attachment.content_type == "application/pdf" and attachment.data.startswith(b"%PDF")
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "statement.emailed")).scalar_one()
    assert event.object_id == world.client_a.id and event.details["closing"] == 69000


def test_it_refuses_to_email_without_an_address(client, world, frozen):
    world.client_a.email = ""
    db.session.commit()
    login(client, world.alice)
    response = client.post(f"/admin/clients/{world.client_a.id}/statement/email", data={"recipient": ""})
    assert response.status_code == 422 and "has no billing email" in response.text
    assert db.session.execute(select(OutboxEmail)).first() is None


def test_a_portal_contact_sees_only_their_own_company(client, world, frozen):
    build(world)
    portal_login(client, world.client_a.contacts[0], now=NOW)
    page = client.get("/portal/statement?period=custom&from=2026-01-01&to=2026-02-28")
    assert page.status_code == 200 and "Client A" in page.text and "$690.00" in page.text
    assert "Kaiju" not in page.text and "Client B" not in page.text
    assert client.get("/portal/statement.pdf?period=custom&from=2026-01-01&to=2026-02-28").data.startswith(b"%PDF")
    client.post("/portal/logout")
    portal_login(client, world.client_b.contacts[0], now=NOW)
    theirs = client.get("/portal/statement?period=custom&from=2026-01-01&to=2026-02-28").text
    assert "Client B" in theirs and "¥99,999" in theirs and "Client A" not in theirs and "$" not in theirs
    asked = client.get(f"/portal/statement?client={world.client_a.id}&client_id={world.client_a.id}").text
    assert "Client B" in asked and "Client A" not in asked  # no parameter chooses the company


def test_the_portal_statement_needs_a_signed_in_contact(client, world):
    assert client.get("/portal/statement").status_code == 303
