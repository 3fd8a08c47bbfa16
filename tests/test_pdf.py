"""Invoice PDFs: what they say, the per-version cache, branding, and who may download them."""

from __future__ import annotations

import html
import io
import re
import subprocess
from decimal import Decimal

import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import func, select

from invoicing import pdf
from invoicing.extensions import db
from invoicing.models import InvoicePdf
from invoicing.services.invoices import LineData, void_invoice
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, login, make_invoice


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def page_count(content: bytes) -> int:
    return len(PdfReader(io.BytesIO(content)).pages)


def stored_versions(invoice_id: int) -> int:
    return db.session.execute(
        select(func.count()).select_from(InvoicePdf).where(InvoicePdf.invoice_id == invoice_id)
    ).scalar_one()


def test_it_renders_the_number_client_lines_totals_and_pay_link(app, world):
    world.org_a.payment_instructions = "Bank transfer to IBAN DE00 1234"
    world.client_a.address = "12 Client Road\nBoston"
    db.session.commit()
    invoice = make_invoice(world.client_a, status="open", project_ref="PRJ-7")
    content = pdf.invoice_pdf(invoice)
    assert content.startswith(b"%PDF-")
    text = pdf_text(content)
    for expected in ("2026-0001", "Client A", "12 Client Road", "Org A", "Consulting", "Travel", "PRJ-7",
                     "$270.00", "$20.00", "Bank transfer to IBAN DE00 1234", "Page 1 of 1"):
        assert expected in text, expected
    link = pdf.pay_url_for(invoice)
    assert link is not None and link.startswith("http://billing.test/pay/")
    assert link in text.replace("\n", "")


def test_it_serves_the_stored_bytes_for_the_same_version_without_rendering_again(app, world):
    invoice = make_invoice(world.client_a, status="open")
    first = pdf.invoice_pdf(invoice)
    assert stored_versions(invoice.id) == 1
    assert pdf.invoice_pdf(db.session.get_one(type(invoice), invoice.id)) == first
    # Mark the stored bytes: a second call that rendered again could not return the mark.
    row = db.session.execute(select(InvoicePdf).where(InvoicePdf.invoice_id == invoice.id)).scalar_one()
    row.content = b"%PDF-stored"
    db.session.commit()
    assert pdf.invoice_pdf(db.session.get_one(type(invoice), invoice.id)) == b"%PDF-stored"
    assert stored_versions(invoice.id) == 1


def test_it_renders_a_new_version_when_what_it_shows_changes_and_drops_the_old_one(app, world):
    invoice = make_invoice(world.client_a, status="open")
    before = pdf.invoice_pdf(invoice)
    record_manual_payment(invoice.id, amount=7000, method="cash", paid_on=NOW.date(), reference="", actor=SYSTEM,
                          now=NOW)
    after = pdf.invoice_pdf(db.session.get_one(type(invoice), invoice.id))
    assert after != before
    text = pdf_text(after)
    assert "Amount paid" in text and "$70.00" in text and "$200.00" in text
    assert stored_versions(invoice.id) == 1

    world.org_a.brand_color = "#112233"
    db.session.commit()
    assert pdf.invoice_pdf(db.session.get_one(type(invoice), invoice.id)) != after  # branding is in the version


def test_it_marks_void_and_paid_invoices_and_prints_no_pay_link(app, world):
    voided = make_invoice(world.client_a, status="open")
    void_invoice(voided.id, reason="Sent twice", actor=SYSTEM, now=NOW)
    text = pdf_text(pdf.invoice_pdf(db.session.get_one(type(voided), voided.id)))
    assert "VOID" in text.upper() and "Sent twice" in text and "/pay/" not in text

    paid = make_invoice(world.client_a, status="open")
    record_manual_payment(paid.id, amount=27000, method="cash", paid_on=NOW.date(), reference="", actor=SYSTEM,
                          now=NOW)
    text = pdf_text(pdf.invoice_pdf(db.session.get_one(type(paid), paid.id)))
    assert "paid in full" in text and "/pay/" not in text


def test_it_embeds_the_logo_and_runs_long_invoices_over_numbered_pages(app, world):
    image = io.BytesIO()
    Image.new("RGB", (300, 80), "#1f4e79").save(image, "PNG")
    world.org_a.logo, world.org_a.logo_mime = image.getvalue(), "image/png"
    db.session.commit()
    lines = tuple(LineData(f"Work item {n}", Decimal(1), 1000) for n in range(1, 81))
    invoice = make_invoice(world.client_a, status="open", lines=lines)
    content = pdf.invoice_pdf(invoice)
    pages = page_count(content)
    assert pages >= 2
    text = pdf_text(content)
    assert f"Page {pages} of {pages}" in text and "Work item 80" in text and "$800.00" in text
    assert b"/Subtype /Image" in content or b"/Subtype/Image" in content


def test_it_never_fetches_outside_resources_while_rendering(app, world):
    html = '<img src="file:///etc/hostname"><link rel="stylesheet" href="http://127.0.0.1:9/x.css"><p>ok</p>'
    content = pdf.html_to_pdf(html)
    assert pdf_text(content).strip() == "ok"


def test_it_downloads_the_pdf_from_the_admin(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    response = client.get(f"/admin/invoices/{invoice.id}/pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert 'filename="invoice-2026-0001.pdf"' in response.headers["Content-Disposition"]
    assert "2026-0001" in pdf_text(response.data)
    assert stored_versions(invoice.id) == 1


def test_it_names_a_draft_pdf_after_its_id(client, world):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    response = client.get(f"/admin/invoices/{draft.id}/pdf")
    assert response.status_code == 200
    assert f"invoice-draft-{draft.id}.pdf" in response.headers["Content-Disposition"]
    assert "DRAFT" in pdf_text(response.data).upper()


@pytest.mark.parametrize("who", ["bob", "anonymous"])
def test_it_hides_another_organizations_pdf(client, world, who):
    invoice = make_invoice(world.client_a, status="open")
    if who == "bob":
        login(client, world.bob)
        assert client.get(f"/admin/invoices/{invoice.id}/pdf").status_code == 404
    else:
        response = client.get(f"/admin/invoices/{invoice.id}/pdf")
        assert response.status_code == 302 and "/admin/login" in response.location
    assert stored_versions(invoice.id) == 0


def test_it_lets_a_superadmin_download_any_pdf(client, world):
    invoice = make_invoice(world.client_b, status="open")
    login(client, world.root)
    response = client.get(f"/admin/invoices/{invoice.id}/pdf")
    assert response.status_code == 200 and re.search(r"¥\s?\d", pdf_text(response.data))


def test_it_wraps_a_long_unbroken_project_reference_inside_the_page(app, world, tmp_path):
    reference = "PRJ-" + "7" * 116  # as long as a reference may be, without a single break opportunity
    invoice = make_invoice(world.client_a, status="open", project_ref=reference)
    path = tmp_path / "invoice.pdf"
    path.write_bytes(pdf.invoice_pdf(invoice))
    boxes = subprocess.run(["pdftotext", "-bbox", str(path), "-"], check=True, capture_output=True, text=True).stdout
    page_width = float(re.search(r'<page width="([\d.]+)"', boxes).group(1))
    words = [(float(x_min), float(x_max), html.unescape(word)) for x_min, x_max, word in
             re.findall(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>', boxes)]
    outside = [word for x_min, x_max, word in words if x_min < 0 or x_max > page_width]
    assert outside == []
    labels = {word for _, _, word in words}
    assert {"Project", "Issue", "Due", "Currency", "Amount"} <= labels
    pieces = [word for _, _, word in words if word.startswith("PRJ-") or set(word) == {"7"}]
    assert len(pieces) > 1 and "".join(pieces) == reference  # wrapped onto lines, nothing cut off
