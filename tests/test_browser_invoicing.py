"""Staff invoicing in a real browser against the app under gunicorn (CSRF on): create a client, write an
invoice with three lines and a discount while the totals update live (no page reload), send it, find the
email with its pay link in the outbox, and record the payment."""

import csv
import io
import re
from decimal import Decimal
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Client, Invoice, LineItem, OutboxEmail
from invoicing.services.paylinks import resolve
from tests.conftest import PASSWORD, make_invoice


def log_in(page, server, user):
    page.goto(f"{server.url}/admin/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/admin/")


def test_it_creates_a_client_and_an_invoice_with_live_totals_and_sends_it(live_server_factory, page, world):
    server = live_server_factory()
    log_in(page, server, world.alice)

    page.get_by_role("link", name="Clients", exact=True).click()
    page.wait_for_url(f"{server.url}/admin/clients")
    page.get_by_role("link", name="New client").click()
    page.wait_for_url(f"{server.url}/admin/clients/new")
    page.get_by_label("Name").fill("Initech")
    page.get_by_label("Billing email").fill("ap@initech.test")
    page.get_by_role("button", name="Create client").click()
    page.get_by_role("heading", name="Initech", exact=True).wait_for()

    page.get_by_role("link", name="New invoice").click()
    page.wait_for_url(re.compile(r".*/admin/invoices/new\?client=\d+$"))
    page.get_by_role("heading", name="New invoice").wait_for()
    page.evaluate("window.stillTheSamePage = true")  # a full reload would lose this
    lines = [("Design", "2", "1,250.50", "8.875"), ("Hosting", "12", "9.99", "0"), ("Domain", "1", "15", "0")]
    for n, (description, quantity, price, tax) in enumerate(lines, 1):
        if n > 1:
            page.get_by_role("button", name="+ Add line").click()
        page.get_by_label(f"Line {n} description").fill(description)
        page.get_by_label(f"Line {n} quantity").fill(quantity)
        page.get_by_label(f"Line {n} unit price").fill(price)
        page.get_by_label(f"Line {n} tax rate").fill(tax)
    page.locator("#total-subtotal").filter(has_text="$2,635.88").wait_for()  # live, from the server
    page.get_by_label("Discount type").select_option("percent")
    page.get_by_label("Discount value").fill("10")
    page.locator("#total-total").filter(has_text="$2,572.06").wait_for()
    assert page.locator("#total-discount").inner_text() == "−$263.59"
    assert page.locator("#line-amount-0").inner_text() == "$2,501.00"
    assert page.evaluate("window.stillTheSamePage") is True

    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url(re.compile(rf"{server.url}/admin/invoices/\d+$"))
    page.get_by_text("Send invoice…").click()
    page.get_by_role("button", name="Send invoice", exact=True).click()
    page.get_by_text("queued for email").wait_for()
    assert re.search(r"\d{4}-0001", page.get_by_role("heading", level=1).inner_text())  # numbered when sent
    pay_link = page.get_by_role("textbox", name="Pay link").input_value()
    page.get_by_text("Record a payment…").click()  # a prefixed form with its own CSRF token, over htmx
    page.get_by_role("button", name="Record payment").click()
    page.get_by_text("Payment of $2,572.06 recorded.").wait_for()

    db.session.rollback()  # end this process's read snapshot: the served app wrote since
    client = db.session.execute(select(Client).where(Client.name == "Initech")).scalar_one()
    invoice = db.session.execute(select(Invoice).where(Invoice.client_id == client.id)).scalar_one()
    assert (invoice.status, invoice.total, invoice.discount_total, len(invoice.lines)) == ("paid", 257206, 26359, 3)
    email, receipt = db.session.execute(select(OutboxEmail).where(OutboxEmail.invoice_id == invoice.id)
                                        .order_by(OutboxEmail.id)).scalars().all()
    assert (receipt.kind, receipt.to_addr) == ("receipt", "ap@initech.test")  # the bank transfer's receipt
    assert email.to_addr == "ap@initech.test" and email.attachments == [{"kind": "invoice_pdf",
                                                                         "invoice_id": invoice.id}]
    token = re.search(rf"{re.escape(server.url)}/pay/(\S+)", email.text_body).group(1)
    assert pay_link == f"{server.url}/pay/{token}"  # the invoice page shows the link that was emailed
    assert resolve(token, secret_key=current_app.config["SECRET_KEY"], today=invoice.issue_date).id == invoice.id
    assert [(p.amount, p.method) for p in invoice.payments] == [(257206, "bank_transfer")]


def test_it_exports_the_ticked_rows_as_csv_from_the_list(live_server_factory, page, world):
    """Under gunicorn the request's session closes before the CSV is streamed: the rows must be loaded first."""
    first, second = make_invoice(world.client_a, status="open"), make_invoice(world.client_a, project_ref="Roof")
    make_invoice(world.client_a, status="open")  # not ticked: not exported
    server = live_server_factory()
    log_in(page, server, world.alice)
    page.goto(f"{server.url}/admin/invoices")
    page.get_by_label(f"Select {first.number}").check()
    page.get_by_label(f"Select Draft #{second.id}").check()
    page.get_by_label("Action", exact=True).select_option("export")
    with page.expect_download() as download:
        page.get_by_role("button", name="Apply to selected").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(r["Number"], r["Project"], r["Total"]) for r in rows] == [("", "Roof", "270.00"),
                                                                      (first.number, "", "270.00")]
    assert download.value.suggested_filename.startswith("invoices-")


def line_rows(page):
    """(description, quantity, unit price, amount shown) of each editor line, as the browser shows them."""
    return page.locator("#editor table.lines tbody tr").evaluate_all("""rows => rows.map(r => [
        ...[...r.querySelectorAll("input")].slice(0, 3).map(i => i.value),
        r.querySelector("[id^=line-amount-]").textContent])""")


def test_it_keeps_each_line_amount_beside_its_line_when_a_move_follows_typing(live_server_factory, page, world):
    """Type a price and click "Move up" at once, eight times, while the live totals answer slowly: the click
    waits for the totals in flight, so no amount lands on the wrong line."""
    invoice = make_invoice(world.client_a)  # Consulting 2 x 100.00, Travel 1 x 50.00
    server = live_server_factory()
    log_in(page, server, world.alice)
    held = []  # the live-totals requests, answered only after the click (a slow network)

    def hold_totals(route):
        if "op=totals" in (route.request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    page.route("**/admin/invoices/preview", hold_totals)
    in_flight = set()
    page.on("request", lambda r: in_flight.add(r) if "/preview" in r.url else None)
    page.on("requestfinished", lambda r: in_flight.discard(r))
    page.on("requestfailed", lambda r: in_flight.discard(r))
    page.goto(f"{server.url}/admin/invoices/{invoice.id}/edit")
    for n in range(8):
        typed = f"{n + 11}.00"
        page.get_by_label("Line 2 unit price").fill(typed)
        page.get_by_role("button", name="Move up line 2").click()
        page.wait_for_timeout(400)  # the move, unless it waits its turn, has landed by now
        while held:
            held.pop(0).continue_()
        for _ in range(200):  # every answer in, the move shown, and a moment for htmx to swap the last one
            page.wait_for_timeout(100)
            while held:  # a totals request sent after the click (a slow click lets the typing's own one go last)
                held.pop(0).continue_()
            if not in_flight and not held and page.get_by_label("Line 1 unit price").input_value() == typed:
                break
        page.wait_for_timeout(200)
        rows = line_rows(page)
        assert rows[0][2] == typed, (n, rows)  # the line just typed in moved up
        assert [amount for *_, amount in rows] == [
            f"${Decimal(qty) * Decimal(price):,.2f}" for _, qty, price, _ in rows], (n, rows)
    page.unroute("**/admin/invoices/preview")
    db.session.rollback()
    assert [li.description for li in db.session.execute(
        select(LineItem).where(LineItem.invoice_id == invoice.id).order_by(LineItem.position)).scalars()] == [
        "Consulting", "Travel"]  # moving lines in the editor stores nothing until "Save draft"


def test_it_shows_a_mistyped_price_at_once_and_keeps_the_other_lines(live_server_factory, page, world):
    invoice = make_invoice(world.client_a)  # Consulting 2 x 100.00 (10 % tax), Travel 1 x 50.00
    server = live_server_factory()
    log_in(page, server, world.alice)
    page.goto(f"{server.url}/admin/invoices/{invoice.id}/edit")
    page.get_by_label("Line 2 unit price").fill("12,5O")
    page.locator("#lines-1-unit_price-error").filter(has_text="not an amount").wait_for()
    assert page.locator("#line-amount-0").inner_text() == "$200.00"
    assert page.locator("#total-subtotal").inner_text() == "$200.00"
    assert page.locator("#total-total").inner_text() == "$220.00"
    page.get_by_label("Line 2 unit price").fill("12.50")
    page.locator("#total-subtotal").filter(has_text="$212.50").wait_for()
    assert page.locator("#lines-1-unit_price-error").inner_text() == ""
    assert page.locator("#line-amount-1").inner_text() == "$12.50"
