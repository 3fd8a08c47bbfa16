from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Invoice
from invoicing.services import DomainError
from invoicing.services.invoices import (
    LineData,
    check_number_format,
    delete_draft,
    duplicate_invoice,
    finalize_invoice,
    update_draft,
    void_invoice,
)
from tests.conftest import NOW, SYSTEM, draft_data, make_client, make_invoice, make_org


def actions(invoice):
    return [e.action for e in db.session.execute(
        select(AuditEvent).where(AuditEvent.object_type == "invoice", AuditEvent.object_id == invoice.id)
        .order_by(AuditEvent.id)).scalars()]


def test_it_creates_a_draft_with_totals_from_the_one_calculator(world):
    invoice = make_invoice(world.client_a, discount_kind="percent", discount_value=1000)
    db.session.expire_all()
    invoice = db.session.get(Invoice, invoice.id)
    # 2 x 100.00 at 10 % tax + 50.00 untaxed; 10 % discount = 25.00 spread 20.00 / 5.00
    assert (invoice.subtotal, invoice.discount_total, invoice.tax_total, invoice.total) == (25000, 2500, 1800, 24300)
    assert [(li.amount, li.discount, li.tax) for li in invoice.lines] == [(20000, 2000, 1800), (5000, 500, 0)]
    assert invoice.status == "draft" and invoice.number is None
    assert actions(invoice) == ["invoice.created"]


def test_it_finalizes_with_the_next_number_and_an_audit_event(world):
    first = make_invoice(world.client_a, status="open")
    second = make_invoice(world.client_a, status="open")
    assert (first.number, second.number) == ("2026-0001", "2026-0002")
    assert first.status == "open" and first.finalized_at == NOW
    assert first.link_expires_on == first.due_date + timedelta(days=30)
    assert actions(first) == ["invoice.created", "invoice.finalized"]


def test_it_numbers_each_organization_separately(world):
    a = make_invoice(world.client_a, status="open")
    b = make_invoice(world.client_b, status="open")
    assert a.number == b.number == "2026-0001"


def test_it_takes_the_year_in_the_organizations_time_zone(world):
    # 2027-01-01 03:00 UTC is still 2026 in New York (org A) but already 2027 in Tokyo (org B).
    new_year = datetime(2027, 1, 1, 3, 0, tzinfo=UTC)
    assert make_invoice(world.client_a, status="open", now=new_year).number == "2026-0001"
    assert make_invoice(world.client_b, status="open", now=new_year).number == "2027-0001"


def test_it_restarts_the_sequence_each_year_and_honours_a_custom_format(world):
    world.org_a.number_format = "INV-{year}/{seq:05d}"
    db.session.commit()
    assert make_invoice(world.client_a, status="open").number == "INV-2026/00001"
    assert make_invoice(world.client_a, status="open", now=NOW.replace(year=2027)).number == "INV-2027/00001"


def test_it_numbers_on_forever_without_a_year_in_the_format(world):
    world.org_a.number_format = "A{seq:03d}"
    db.session.commit()
    assert make_invoice(world.client_a, status="open").number == "A001"
    assert make_invoice(world.client_a, status="open", now=NOW.replace(year=2027)).number == "A002"


@pytest.mark.parametrize("fmt", ["{year}", "{seq:04d}-{client}", "{seq", "{0}", "x" * 50 + "{seq}"])
def test_it_rejects_bad_number_formats(fmt):
    with pytest.raises(DomainError):
        check_number_format(fmt)


def test_it_edits_only_drafts(world):
    invoice = make_invoice(world.client_a, status="open")
    with pytest.raises(DomainError, match="only drafts can be edited"):
        update_draft(invoice.id, world.org_a, draft_data(world.client_a), actor=SYSTEM, now=NOW)
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).total == 27000


def test_it_refuses_to_finalize_twice(world):
    invoice = make_invoice(world.client_a, status="open")
    with pytest.raises(DomainError, match="already open"):
        finalize_invoice(invoice.id, actor=SYSTEM, now=NOW)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lines": ()}, "at least one line"),
        ({"lines": (LineData("", Decimal(1), 100),)}, "description"),
        ({"lines": (LineData("x", Decimal(0), 100),)}, "quantity"),
        ({"lines": (LineData("x", Decimal("0.0001"), 100),)}, "quantity"),
        ({"lines": (LineData("x", Decimal(1), -1),)}, "negative"),
        ({"lines": (LineData("x", Decimal(1), 1, Decimal(101)),)}, "tax rate"),
        ({"currency": "XXQ"}, "ISO 4217"),
        ({"due_date": NOW.date() - timedelta(days=1)}, "due date"),
        ({"discount_kind": "amount", "discount_value": 10**9}, "larger than the subtotal"),
        ({"discount_kind": "percent", "discount_value": 10_001}, "between 0 and 100"),
        # over the documented limits (services/totals.py): refused, never cut, never a database overflow
        ({"lines": (LineData("x" * 2001, Decimal(1), 100),)}, "at most 2,000 characters"),
        ({"lines": (LineData("x", Decimal(1), 1),) * 201}, "at most 200 lines"),
        ({"notes": "n" * 5001}, "at most 5,000 characters"),
        ({"project_ref": "p" * 121}, "at most 120 characters"),
        ({"lines": (LineData("x", Decimal(10**12), 0),)}, "at most 1,000,000,000"),
        ({"lines": (LineData("x", Decimal(1), 10**15),)}, r"at most \$9,999,999,999,999\.99"),
        ({"lines": (LineData("x", Decimal(10**8), 10**14),)}, r"Line 1: quantity × unit price comes to"),
        ({"lines": (LineData("x", Decimal(1), 9 * 10**14),) * 2}, r"an invoice can be at most"),
    ],
)
def test_it_rejects_bad_drafts_and_writes_nothing(world, overrides, message):
    with pytest.raises(DomainError, match=message):
        make_invoice(world.client_a, **overrides)
    assert db.session.execute(select(Invoice)).first() is None
    assert db.session.execute(select(AuditEvent).where(AuditEvent.object_type == "invoice")).first() is None


def test_it_refuses_another_organizations_client(world):
    with pytest.raises(DomainError, match="Choose a client"):
        make_invoice(world.client_a, client_id=world.client_b.id)


def test_it_voids_an_open_invoice_and_revokes_its_link(world):
    invoice = make_invoice(world.client_a, status="open")
    void_invoice(invoice.id, reason="Sent twice", actor=SYSTEM, now=NOW)
    db.session.expire_all()
    invoice = db.session.get(Invoice, invoice.id)
    assert (invoice.status, invoice.void_reason, invoice.link_version) == ("void", "Sent twice", 2)
    assert actions(invoice)[-1] == "invoice.voided"
    with pytest.raises(DomainError, match="void and cannot be voided"):
        void_invoice(invoice.id, reason="again", actor=SYSTEM, now=NOW)


def test_it_requires_a_reason_to_void(world):
    invoice = make_invoice(world.client_a, status="open")
    with pytest.raises(DomainError, match="reason"):
        void_invoice(invoice.id, reason="  ", actor=SYSTEM, now=NOW)
    assert db.session.get(Invoice, invoice.id).status == "open"


def test_it_deletes_drafts_but_not_open_invoices(world):
    draft = make_invoice(world.client_a)
    open_invoice = make_invoice(world.client_a, status="open")
    delete_draft(draft.id, world.org_a, actor=SYSTEM, now=NOW)
    with pytest.raises(DomainError, match="Only drafts"):
        delete_draft(open_invoice.id, world.org_a, actor=SYSTEM, now=NOW)
    assert [i.id for i in db.session.execute(select(Invoice)).scalars()] == [open_invoice.id]


def test_it_duplicates_an_invoice_into_a_new_draft(world):
    source = make_invoice(world.client_a, status="open", discount_kind="amount", discount_value=500)
    copy = duplicate_invoice(source.id, world.org_a, actor=SYSTEM, now=NOW + timedelta(days=3))
    assert copy.status == "draft" and copy.number is None and copy.total == source.total
    assert copy.issue_date == (NOW + timedelta(days=3)).date()
    assert [li.description for li in copy.lines] == [li.description for li in source.lines]


def test_it_derives_overdue_in_the_organizations_time_zone(world):
    org = make_org("Kiritimati", timezone="Pacific/Kiritimati")  # UTC+14
    client = make_client(org, "Island")
    invoice = make_invoice(client, status="open", issue_date=NOW.date() - timedelta(days=31))
    # NOW is 15:00 UTC on the 10th: already the 11th in Kiritimati, so due date (the 9th) + 1 has passed.
    assert invoice.due_date == NOW.date() - timedelta(days=1)
    assert invoice.badges(NOW.date()) == ["open", "overdue"]
    assert invoice.badges(invoice.due_date) == ["open"]
