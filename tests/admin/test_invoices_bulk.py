"""Bulk actions from the list's checkboxes (a plain form POST) and CSV export."""

import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import Invoice, OutboxEmail, Payment
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, login, make_client, make_invoice


@pytest.fixture
def five(world):
    """Two drafts, two open invoices and one paid one, all of client A."""
    drafts = [make_invoice(world.client_a) for _ in range(2)]
    opened = [make_invoice(world.client_a, status="open") for _ in range(2)]
    paid = make_invoice(world.client_a, status="open")
    record_manual_payment(paid.id, amount=27000, method="cash", paid_on=NOW.date(), reference="", actor=SYSTEM,
                          now=NOW)
    return drafts + opened + [paid]


def bulk(client, action, invoices, **extra):
    data = {"bulk_action": action, "ids": [str(i.id) for i in invoices], "batch_key": "k1", **extra}
    return client.post("/admin/invoices/bulk", data=data, headers={"Referer": "http://localhost/admin/invoices?q=x"})


def flashes(client):
    page = client.get("/admin/invoices").text
    return [line.strip() for line in page.split('role="status">')[1:] for line in [line.split("</p>")[0]]]


def count(model, *where):
    return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar()


def test_it_renders_a_plain_form_with_a_checkbox_per_row(client, world, five):
    login(client, world.alice)
    page = client.get("/admin/invoices").text
    assert '<form id="bulk" method="post" action="/admin/invoices/bulk"' in page
    assert page.count('type="checkbox" name="ids"') == 5 and 'name="batch_key"' in page


def test_it_sends_each_row_and_reports_what_it_skipped(client, world, five):
    login(client, world.alice)
    response = bulk(client, "send", five)
    assert response.status_code == 303 and response.location == "/admin/invoices?q=x"  # back to the same filters
    assert flashes(client) == ["4 sent, 1 skipped: already paid.", "2026-0003: already paid"]
    assert count(OutboxEmail, OutboxEmail.kind == "invoice") == 4
    assert count(Invoice, Invoice.status == "open", Invoice.sent_count == 1) == 4
    bulk(client, "send", five)  # the same form posted again (a double click): nobody is emailed twice
    assert count(OutboxEmail, OutboxEmail.kind == "invoice") == 4
    assert count(Invoice, Invoice.sent_count == 1) == 4


def test_it_reminds_once_a_day(client, world, five):
    login(client, world.alice)
    bulk(client, "remind", five)
    assert flashes(client)[0] == "2 reminded, 2 skipped: draft, not sent yet, 1 skipped: already paid."
    bulk(client, "remind", five[2:4])
    assert flashes(client)[0] == "0 reminded, 2 skipped: already reminded today."
    assert count(OutboxEmail, OutboxEmail.kind == "reminder") == 2


def test_it_marks_paid_through_the_money_door_once_per_form(client, world, five):
    login(client, world.alice)
    bulk(client, "mark_paid", five, method="cheque", reference="Batch 9")
    assert flashes(client)[0] == "2 marked paid, 2 skipped: draft, not sent yet, 1 skipped: already paid."
    bulk(client, "mark_paid", five, method="cheque", reference="Batch 9")  # the same form, posted again
    paid = db.session.execute(select(Payment).where(Payment.method == "cheque")).scalars().all()
    assert [(p.amount, p.reference, p.idempotency_key) for p in paid] == [
        (27000, "Batch 9", f"bulk:k1:{five[2].id}"), (27000, "Batch 9", f"bulk:k1:{five[3].id}")]
    assert count(Invoice, Invoice.status == "paid") == 3


def test_it_marks_paid_on_the_day_the_money_arrived(client, world, five, time_machine):
    time_machine.move_to(NOW)
    login(client, world.alice)
    assert f'name="paid_on" value="{NOW.date().isoformat()}"' in client.get("/admin/invoices").text  # today, preset
    bulk(client, "mark_paid", five, method="bank_transfer", paid_on="2026-03-02")
    assert flashes(client)[0] == "2 marked paid, 2 skipped: draft, not sent yet, 1 skipped: already paid."
    paid = db.session.execute(select(Payment).where(Payment.method == "bank_transfer")).scalars().all()
    assert [p.paid_on.isoformat() for p in paid] == ["2026-03-02", "2026-03-02"]


@pytest.mark.parametrize("paid_on", ["2999-01-01", "not-a-date", "1999-12-31"])
def test_it_refuses_a_date_money_cannot_have_arrived_on_and_records_nothing(client, world, five, paid_on):
    login(client, world.alice)
    response = bulk(client, "mark_paid", five, method="cash", paid_on=paid_on)
    assert response.status_code == 303
    assert flashes(client) == ["Enter the date the money arrived (not in the future)."]
    assert count(Payment, Payment.method == "cash") == 1 and count(Invoice, Invoice.status == "paid") == 1


def test_it_voids_with_a_required_reason(client, world, five):
    login(client, world.alice)
    bulk(client, "void", five)
    assert flashes(client) == ["Give a reason for voiding."] and count(Invoice, Invoice.status == "void") == 0
    bulk(client, "void", five, reason="Wrong client")
    assert flashes(client)[0] == ("2 voided, 2 skipped: draft (delete it instead), 1 skipped: already paid.")
    assert count(Invoice, Invoice.status == "void", Invoice.void_reason == "Wrong client") == 2


def test_it_exports_the_selected_rows_as_csv(client, world, five):
    tricky = make_client(world.org_a, "=HYPERLINK(evil)")
    make_invoice(tricky, status="open", project_ref="+1 project")
    login(client, world.alice)
    response = bulk(client, "export", five[2:])
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="invoices-')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["Number"] for r in rows] == ["2026-0003", "2026-0002", "2026-0001"]
    first = rows[-1]
    assert (first["Client"], first["Total"], first["Amount due"], first["Currency"], first["Status"]) == (
        "Client A", "270.00", "270.00", "USD", "open")
    assert rows[0]["Paid"] == "270.00" and rows[0]["Amount due"] == "0.00"
    everything = client.get("/admin/invoices/export.csv?status=open").text
    assert "'=HYPERLINK(evil)" in everything and "'+1 project" in everything  # formulas stay text
    assert len(list(csv.DictReader(io.StringIO(everything)))) == 3


def test_it_exports_every_invoice_matching_the_filters_not_just_one_page(client, world):
    for n in range(60):
        make_invoice(world.client_a, issue_date=NOW.date() - timedelta(days=n))
    login(client, world.alice)
    rows = list(csv.DictReader(io.StringIO(client.get("/admin/invoices/export.csv?status=draft").text)))
    assert len(rows) == 60


def test_it_refuses_a_selection_with_another_organizations_invoice(client, world, five):
    theirs = make_invoice(world.client_b, status="open")
    login(client, world.bob)
    for action in ("send", "export", "mark_paid"):
        assert bulk(client, action, [theirs, five[2]], method="cash").status_code == 404
    assert client.get(f"/admin/invoices/export.csv?client={world.client_a.id}").status_code == 404
    assert count(OutboxEmail) == 0 and count(Payment) == 1  # only the fixture's payment
    assert db.session.get(Invoice, theirs.id).sent_count == 0


def test_it_needs_an_action_and_a_selection(client, world, five):
    login(client, world.alice)
    bulk(client, "", [])
    assert flashes(client) == ["Choose an action. Select at least one invoice."]


def test_it_refuses_a_reason_or_reference_too_long_instead_of_cutting_it(client, world, five):
    login(client, world.alice)
    bulk(client, "void", five, reason="r" * 501)
    assert flashes(client) == ["The reason can have at most 500 characters."]
    bulk(client, "mark_paid", five, method="cash", reference="R" * 201)
    assert flashes(client) == ["The reference can have at most 200 characters."]
    assert count(Invoice, Invoice.status == "void") == 0 and count(Payment) == 1  # only the fixture's payment
