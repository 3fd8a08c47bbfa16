"""Exports parsed back (csv and openpyxl) and compared with the database; injection probes; the audit."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Invoice, LineItem, Payment
from invoicing.services.reports import exports
from invoicing.services.reports.exports import neutralize
from tests.conftest import NOW, login, make_client
from tests.reports.dataset import PERIOD, build, card, invoice

QUERY = "period=custom&from=2026-01-01&to=2026-02-28"
PROBES = ["=HYPERLINK(\"http://evil\")", "+1+2", "-3+4", "@SUM(A1)", "\tTabbed", "\rReturn"]


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)


def get_csv(client, path: str) -> list[dict[str, str]]:
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/csv", response.text[:200]
    return list(csv.DictReader(io.StringIO(response.text)))


def get_xlsx(client, path: str) -> tuple[list[str], list[tuple]]:
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(response.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    return list(rows[0]), rows[1:]


def test_it_exports_invoices_as_csv_and_xlsx_that_match_the_database(client, world, frozen):
    data = build(world)
    login(client, world.alice)
    rows = get_csv(client, f"/admin/reports/export/invoices.csv?{QUERY}")
    ours = db.session.execute(select(Invoice).where(
        Invoice.organization_id == world.org_a.id, Invoice.issue_date >= date(2026, 1, 1),
        Invoice.issue_date <= date(2026, 2, 28), Invoice.status != "draft")
        .order_by(Invoice.issue_date, Invoice.id)).scalars().all()
    assert [int(r["Invoice id"]) for r in rows] == [i.id for i in ours]  # by issue date; no drafts, no other period
    by_id = {int(r["Invoice id"]): r for r in rows}
    k1 = by_id[data.kwd["K1"]]
    assert (k1["Currency"], k1["Total"], k1["Paid"], k1["Amount due"]) == ("KWD", "1234.567", "1234.333", "0.234")
    assert by_id[data.jpy["J2"]]["Total"] == "5000" and by_id[data.usd["U3"]]["Status"] == "void"
    assert by_id[data.usd["U3"]]["Voided at (America/New_York)"] == "2026-01-25 12:00:00"  # 17:00 UTC
    header, values = get_xlsx(client, f"/admin/reports/export/invoices.xlsx?{QUERY}")
    assert header == list(rows[0].keys())
    sheet = {row[0]: dict(zip(header, row, strict=True)) for row in values}
    k1x = sheet[data.kwd["K1"]]
    assert k1x["Total"] == pytest.approx(1234.567) and k1x["Issue date"] == datetime(2026, 1, 31)
    assert isinstance(sheet[data.jpy["J2"]]["Total"], int | float) and sheet[data.jpy["J2"]]["Total"] == 5000
    assert len(sheet) == len(ours)


def test_it_formats_excel_money_with_the_currencys_decimals(client, world, frozen):
    data = build(world)
    login(client, world.alice)
    response = client.get(f"/admin/reports/export/invoices.xlsx?{QUERY}")
    sheet = load_workbook(io.BytesIO(response.data)).active
    header = [c.value for c in sheet[1]]
    total = header.index("Total")
    formats = {row[0].value: (row[total].number_format, row[total].data_type) for row in sheet.iter_rows(min_row=2)}
    assert formats[data.kwd["K1"]] == ("#,##0.000", "n")
    assert formats[data.jpy["J1"]] == ("#,##0", "n")
    assert formats[data.usd["U2"]] == ("#,##0.00", "n")


def test_it_exports_payments_with_payer_method_channel_and_provider_reference(client, world, frozen):
    data = build(world)
    login(client, world.alice)
    rows = get_csv(client, f"/admin/reports/export/payments.csv?{QUERY}&currency=USD")
    expected = db.session.execute(select(Payment.id, Payment.amount).join(Invoice).where(
        Invoice.organization_id == world.org_a.id, Payment.currency == "USD",
        Payment.payment_intent_id.is_distinct_from("pi_u1"))).all()  # U1's card payment was December's
    assert sorted((int(r["Payment id"]), Decimal(r["Amount"])) for r in rows) == sorted(
        (pid, Decimal(amount) / 100) for pid, amount in expected)
    portal = next(r for r in rows if r["Provider reference"] == "pi_u2")
    assert (portal["Channel"], portal["Payer"], portal["Method"], portal["Paid on"]) == (
        "Portal", "Client A contact 1", "Card", "2026-02-28")  # 04:00 UTC on 1 March, in New York
    u4 = next(r for r in rows if r["Invoice id"] == str(data.usd["U4"]))
    assert (u4["Refunded"], u4["Net"], u4["Channel"], u4["Method"]) == ("100.00", "300.00", "Manual", "Bank transfer")
    header, values = get_xlsx(client, f"/admin/reports/export/payments.xlsx?{QUERY}&currency=USD")
    assert len(values) == len(rows) and header[-2] == "Provider reference"


def test_it_exports_line_items_refunds_and_aging(client, world, frozen):
    data = build(world)
    login(client, world.alice)
    lines = get_csv(client, f"/admin/reports/export/lines.csv?{QUERY}&client={world.client_a.id}")
    ours = db.session.execute(select(LineItem.id).join(Invoice).where(
        Invoice.client_id == world.client_a.id, Invoice.status != "draft", Invoice.issue_date >= date(2026, 1, 1),
        Invoice.issue_date <= date(2026, 2, 28))).scalars().all()
    assert sorted(int(r["Line id"]) for r in lines) == sorted(ours)
    assert {r["Quantity"] for r in lines} == {"1"}
    refunds = get_csv(client, f"/admin/reports/export/refunds.csv?{QUERY}")
    assert [(r["Invoice id"], r["Amount"], r["Currency"]) for r in refunds] == [(str(data.usd["U4"]), "100.00", "USD")]
    aging = get_csv(client, f"/admin/reports/export/aging.csv?{QUERY}")
    assert [(r["Client"], r["Currency"], r["Total"]) for r in aging] == [
        ("Client A", "USD", "1290.00"), ("Kaiju KK", "JPY", "3000"), ("Kuwait Co", "KWD", "0.234"),
        ("Total", "JPY", "3000"), ("Total", "KWD", "0.234"), ("Total", "USD", "1290.00")]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_it_neutralizes_formulas_in_every_text_cell(client, world, frozen, fmt):
    for n, probe in enumerate(PROBES):
        tricky = make_client(world.org_a, f"Probe{n}")
        tricky.name, tricky.email = probe, probe
        db.session.commit()
        inv = invoice(tricky, date(2026, 2, 1), date(2026, 3, 1), 1000)
        inv.project_ref = probe
        db.session.commit()
        card(inv, 1000, NOW.replace(month=2, day=3), intent=f"{probe}-{n}")
    login(client, world.alice)
    texts: list[str] = []
    for dataset in ("invoices", "payments", "lines", "aging"):
        path = f"/admin/reports/export/{dataset}.{fmt}?{QUERY}"
        if fmt == "csv":
            texts += [v for row in get_csv(client, path) for v in row.values()]
        else:
            response = client.get(path)
            sheet = load_workbook(io.BytesIO(response.data)).active
            for row in sheet.iter_rows(min_row=2):
                for c in row:
                    assert c.data_type != "f"  # never a formula
                    if isinstance(c.value, str):
                        texts.append(c.value)
    for probe in PROBES:
        assert "'" + probe in texts or "'" + probe.replace("\r", "\n") in texts, probe
        assert probe not in texts
    assert not [t for t in texts if t and t[:1] in "=+-@\t\r"]
    assert neutralize("plain") == "plain" and neutralize("-5") == "'-5"


def test_it_audits_who_exported_what_with_which_filters(client, world, frozen):
    build(world)
    login(client, world.alice)
    client.get(f"/admin/reports/export/payments.xlsx?{QUERY}&currency=USD")
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "report.exported")).scalar_one()
    assert (event.actor_label, event.organization_id, event.details["report"], event.details["format"]) == (
        "alice@a.test", world.org_a.id, "payments", "xlsx")
    assert event.details["filters"] == {"period": "custom", "from": "2026-01-01", "to": "2026-02-28",
                                        "currency": "USD"}
    assert client.get(f"/admin/reports/export/secrets.csv?{QUERY}").status_code == 404


def test_it_audits_the_invoice_list_export_too(client, world):
    client_ = world.client_a
    invoice(client_, date(2026, 2, 1), date(2026, 3, 1), 1000)
    login(client, world.alice)
    assert client.get("/admin/invoices/export.csv?status=open").status_code == 200
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "report.exported")).scalar_one()
    assert event.details["report"] == "invoice list" and event.details["filters"] == {"status": "open"}


def test_it_reads_every_row_across_batches_in_order(world, monkeypatch):
    """More rows than one batch: keyset pages pick up exactly where the last one ended (no row twice, none lost)."""
    monkeypatch.setattr(exports, "BATCH", 2)
    data = build(world)
    period = PERIOD.period(world.org_a.timezone, NOW)
    invoices = [row[0] for row in exports.invoice_rows(world.org_a.id, PERIOD, period)]
    assert len(invoices) == len(set(invoices)) == 8  # U2, U3 (void), U4, U5, U8, J1, J2, K1 (not the draft U7)
    payments = [(row[14], row[0]) for row in exports.payment_rows(world.org_a.id, PERIOD, period)]
    # U2 twice, U4, U8, J1, J2, K1: in the order the money came in, the two halves (by date, by instant) merged
    assert payments == sorted(payments) and len(payments) == len(set(payments)) == 7
    lines = [row[1] for row in exports.line_rows(world.org_a.id, PERIOD, period)]
    assert sorted(lines) == sorted(invoices) and data.usd["U7"] not in lines
