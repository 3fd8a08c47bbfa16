"""When WeasyPrint's system libraries (Pango, HarfBuzz) are missing, every PDF path says so plainly.

pip installs WeasyPrint but not the libraries it loads when imported; without them the import raises
OSError("cannot load library 'libgobject-2.0-0' ..."). `missing_libraries` makes the import fail the same way
(the machine running the tests has the libraries), and puts everything back when it ends.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

import invoicing.mail as mail
from invoicing.extensions import db
from invoicing.models import InvoicePdf, OutboxEmail
from invoicing.services.paylinks import token_for
from tests.conftest import NOW, login, make_invoice
from tests.test_mail import queue, row

LOAD_ERROR = ("cannot load library 'libgobject-2.0-0': libgobject-2.0-0: cannot open shared object file: "
              "No such file or directory")


class _NoSystemLibraries(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "weasyprint" or name.startswith("weasyprint."):
            raise OSError(LOAD_ERROR)  # what weasyprint/text/ffi.py raises at import without Pango
        return None


@contextmanager
def missing_libraries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        for name in [m for m in sys.modules if m == "weasyprint" or m.startswith("weasyprint.")]:
            patch.delitem(sys.modules, name)
        patch.setattr(sys, "meta_path", [_NoSystemLibraries(), *sys.meta_path])
        yield


def stored_pdfs() -> int:
    return db.session.execute(select(func.count()).select_from(InvoicePdf)).scalar_one()


def test_it_tells_staff_which_libraries_to_install_instead_of_a_server_error(client, world, monkeypatch):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    with missing_libraries(monkeypatch):
        response = client.get(f"/admin/invoices/{invoice.id}/pdf")
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert "Invoice PDFs cannot be made on this server" in response.text
    assert "libpango-1.0-0" in response.text and "restart the app" in response.text
    assert stored_pdfs() == 0
    # Once the libraries are there, the same download works.
    assert client.get(f"/admin/invoices/{invoice.id}/pdf").mimetype == "application/pdf"
    assert stored_pdfs() == 1


def test_it_tells_a_client_the_pdf_is_unavailable_without_server_details(app, client, world, monkeypatch,
                                                                        time_machine):
    time_machine.move_to(NOW, tick=True)  # the pay link is valid until 30 days after the due date
    invoice = make_invoice(world.client_a, status="open")
    with missing_libraries(monkeypatch):
        response = client.get(f"/pay/{token_for(invoice, app.config['SECRET_KEY'])}/pdf")
    assert response.status_code == 503
    assert "The PDF of this invoice cannot be made right now" in response.text
    assert "libpango" not in response.text and "WeasyPrint" not in response.text
    assert stored_pdfs() == 0


def test_it_explains_an_outbox_attachment_that_cannot_be_made(client, world, monkeypatch):
    invoice = make_invoice(world.client_a, status="open")
    email = queue(world, invoice=invoice)
    assert email is not None
    login(client, world.alice)
    with missing_libraries(monkeypatch):
        response = client.get(f"/admin/outbox/{email.id}/attachments/0")
    assert response.status_code == 503 and "libpango-1.0-0" in response.text


def test_it_keeps_a_sent_invoice_waiting_with_the_reason_and_delivers_the_rest(client, world, smtp, monkeypatch):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    response = client.post(f"/admin/invoices/{draft.id}/send", data={"send-to": "", "send-key": "no-pdf"})
    assert response.status_code == 303
    invoice_email = db.session.execute(select(OutboxEmail).where(OutboxEmail.invoice_id == draft.id)).scalar_one()
    other = queue(world, to="c2@clienta.test", subject="No attachment", pdf=False)
    assert other is not None

    with missing_libraries(monkeypatch):
        report = mail.deliver_due(now=datetime.now(UTC))

    assert (report.sent, report.retrying, report.failed) == (1, 1, 0)  # the email without a PDF still went out
    [message] = smtp.wait_for(1)
    assert message["Subject"] == "No attachment"
    waiting = row(invoice_email.id)
    assert waiting.status == "queued" and waiting.attempts == 1
    assert "Invoice PDFs cannot be made on this server" in (waiting.last_error or "")
    page = client.get(f"/admin/outbox/{invoice_email.id}")
    assert "libpango-1.0-0" in page.text

    # The operator installed the libraries: "Retry now" sends it with its PDF.
    assert client.post(f"/admin/outbox/{invoice_email.id}/retry").status_code == 303
    assert mail.deliver_due(now=datetime.now(UTC)).sent == 1
    sent = smtp.wait_for(2)[1]
    [attachment] = list(sent.iter_attachments())
    assert attachment.get_content_type() == "application/pdf" and attachment.get_content().startswith(b"%PDF-")
    assert row(invoice_email.id).status == "sent"


def test_it_warns_at_demo_start_that_pdfs_will_not_work(runner, monkeypatch):
    with missing_libraries(monkeypatch):
        result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert "admin@example.com" in result.output
    assert "Note: Invoice PDFs cannot be made on this server" in result.output
    assert "Note:" not in runner.invoke(args=["demo"]).output
