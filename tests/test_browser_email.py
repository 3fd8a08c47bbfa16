"""In a real browser against the served app: send an invoice, run the delivery job, and read what the SMTP
server received: the recipient, the subject, a pay link that opens the invoice, and the PDF."""

from __future__ import annotations

import io
import re
import urllib.request

from pypdf import PdfReader

from tests.conftest import PASSWORD, make_invoice


def test_it_sends_an_invoice_that_arrives_with_a_working_pay_link_and_its_pdf(
    app, live_server_factory, page, world, smtp, runner
):
    draft = make_invoice(world.client_a)
    server = live_server_factory(MAIL_SERVER=smtp.host, MAIL_PORT=str(smtp.port), MAIL_USE_TLS="0")
    base_url = app.config["BASE_URL"]
    app.config["BASE_URL"] = server.url  # the delivery job runs here: its PDF links to the served app
    try:
        page.goto(f"{server.url}/admin/login")
        page.get_by_label("Email").fill(world.alice.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{server.url}/admin/")
        page.goto(f"{server.url}/admin/invoices/{draft.id}")
        page.get_by_text("Send invoice…").click()
        page.get_by_role("button", name="Send invoice", exact=True).click()
        page.get_by_role("heading", name=re.compile(r"2026-0001")).wait_for()

        page.goto(f"{server.url}/admin/outbox")
        assert page.get_by_text("queued").first.is_visible()
        result = runner.invoke(args=["billing", "deliver-mail"])
        assert result.exit_code == 0 and "1 sent" in result.output, result.output

        [message] = smtp.wait_for(1)
        assert message["To"] == "clienta@clients.test"
        assert "2026-0001" in message["Subject"] and "Org A" in message["From"]
        text = message.get_body(("plain",)).get_content()
        [pay_url] = re.findall(r"https?://\S+/pay/[\w.-]+", text)
        assert pay_url.startswith(server.url)
        with urllib.request.urlopen(pay_url, timeout=10) as response:
            assert response.status == 200 and "2026-0001" in response.read().decode()
        assert pay_url in message.get_body(("html",)).get_content()

        [attachment] = list(message.iter_attachments())
        assert attachment.get_filename() == "invoice-2026-0001.pdf"
        pdf_text = PdfReader(io.BytesIO(attachment.get_content())).pages[0].extract_text()
        assert "2026-0001" in pdf_text and "$270.00" in pdf_text and "Client A" in pdf_text

        page.goto(f"{server.url}/admin/invoices/{draft.id}")
        assert page.get_by_text("Email delivered to clienta@clients.test").is_visible()  # the timeline
        assert page.get_by_role("heading", level=1).get_by_text("email delivered").is_visible()  # the badge
    finally:
        app.config["BASE_URL"] = base_url
