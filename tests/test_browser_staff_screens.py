"""The staff screens' layout and controls in a real browser (Playwright + Debian chromium, app under gunicorn):
the invoice list's filters and bulk bar (with and without JavaScript), the editor, the invoice page's actions
and the refund action beside its payment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Invoice, OutboxEmail, Refund
from invoicing.services.payments import record_manual_payment
from tests.conftest import SYSTEM, World, make_invoice
from tests.pay.support import real_now
from tests.test_browser_pages import log_in

ONE_LINE = """el => { const r = document.createRange(); r.selectNodeContents(el);
                      return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size === 1; }"""


@pytest.fixture
def server(live_server_factory: Any) -> Any:
    return live_server_factory(RATELIMIT_ENABLED="0")


@pytest.fixture
def no_js_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def wide_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def open_invoices(world: World, n: int = 2) -> list[Invoice]:
    now = real_now()
    return [make_invoice(world.client_a, status="open", now=now, issue_date=now.date()) for _ in range(n)]


def fresh(invoice_id: int) -> Invoice:
    db.session.rollback()  # end this process's read snapshot: the served app wrote since
    invoice = db.session.get(Invoice, invoice_id)
    assert invoice is not None
    return invoice


def test_it_keeps_only_the_filters_that_are_set_in_the_address(wide_page, server, world):
    page = wide_page
    open_invoices(world)
    log_in(page, server.url, world)
    page.goto(f"{server.url}/admin/invoices")
    page.get_by_label("Currency").select_option("USD")  # htmx: the rows change, the address follows
    page.wait_for_url(f"{server.url}/admin/invoices?currency=USD")
    page.get_by_role("button", name="Apply", exact=True).click()
    page.wait_for_url(f"{server.url}/admin/invoices?currency=USD")
    page.get_by_label("Sort").select_option(label="Oldest first")
    page.wait_for_url(f"{server.url}/admin/invoices?currency=USD&sort=issue_date")

    # One even grid: the first row of filters runs from the left edge of the area to its right edge.
    edges = page.evaluate("""() => {
        const area = document.querySelector('.filters').getBoundingClientRect();
        const cells = [...document.querySelectorAll('.filters > *')].map(el => el.getBoundingClientRect());
        const first = cells.filter(c => Math.abs(c.bottom - cells[0].bottom) < 2);
        return {left: area.left, right: area.right, rowLeft: first[0].left,
                rowRight: Math.max(...first.map(c => c.right))};
    }""")
    assert abs(edges["rowLeft"] - edges["left"]) < 2 and abs(edges["rowRight"] - edges["right"]) < 2, edges
    # Numbers and dates stay on one line at 1280 px.
    for cell in page.locator("#invoice-rows tr:first-child td").all()[1:7]:
        assert cell.evaluate(ONE_LINE), cell.inner_text()


def test_it_redirects_a_filter_submitted_without_javascript_to_a_clean_address(no_js_page, server, world):
    page = no_js_page
    open_invoices(world)
    log_in(page, server.url, world)
    page.goto(f"{server.url}/admin/invoices")
    page.get_by_label("Currency").select_option("USD")
    page.get_by_role("button", name="Apply", exact=True).click()
    page.wait_for_url(f"{server.url}/admin/invoices?currency=USD")
    assert page.locator("#invoice-rows tr").count() == 3  # two invoices and the "more" row


def test_it_shows_only_the_inputs_of_the_chosen_bulk_action_and_voids_without_javascript(no_js_page, server, world):
    page = no_js_page
    first, second = open_invoices(world)
    log_in(page, server.url, world)
    page.goto(f"{server.url}/admin/invoices")
    inputs = ["Method", "Received on", "Reference", "Reason"]

    def shown() -> list[str]:
        return [name for name in inputs if page.get_by_label(name, exact=True).is_visible()]

    assert shown() == []
    page.get_by_label("Action", exact=True).select_option(label="Mark paid")
    assert shown() == ["Method", "Received on", "Reference"]
    page.get_by_label("Action", exact=True).select_option(label="Void")
    assert shown() == ["Reason"]
    page.get_by_label(f"Select {second.number}").check()
    page.get_by_label("Reason", exact=True).fill("Duplicate")
    page.get_by_role("button", name="Apply to selected").click()
    page.get_by_text("1 voided").wait_for()
    assert (fresh(first.id).status, fresh(second.id).status) == ("open", "void")
    assert fresh(second.id).void_reason == "Duplicate"


def test_it_counts_the_selected_rows(wide_page, server, world):
    page = wide_page
    first, second = open_invoices(world)
    log_in(page, server.url, world)
    page.goto(f"{server.url}/admin/invoices")
    page.get_by_text("0 selected").wait_for()
    page.get_by_label(f"Select {first.number}").check()
    page.get_by_text("1 selected").wait_for()
    page.get_by_label("Select all shown").check()
    page.get_by_text("2 selected").wait_for()


def test_it_saves_and_sends_from_the_editor_with_a_tidy_form(wide_page, server, world):
    page = wide_page
    log_in(page, server.url, world)
    page.goto(f"{server.url}/admin/invoices/new?client={world.client_a.id}")
    search = page.get_by_placeholder("Name or email").bounding_box()
    find = page.get_by_role("button", name="Find").bounding_box()
    assert abs(search["y"] - find["y"]) < 4  # the Find button sits beside its box, not under it
    assert page.get_by_role("group", name="Discount").is_visible()
    page.get_by_label("Line 1 description").fill("Audit")
    page.get_by_label("Line 1 unit price").fill("100")
    page.locator("#total-total").filter(has_text="$100.00").wait_for()
    assert page.locator("#totals").get_by_text("Discount").count() == 0  # no "Discount −$0.00"
    page.get_by_label("Discount type").select_option("amount")
    page.get_by_label("Discount value").fill("5")
    page.locator("#total-discount").filter(has_text="−$5.00").wait_for()

    page.get_by_role("button", name="Save and send").click()
    page.get_by_text("saved and queued for email").wait_for()
    db.session.rollback()
    invoice = db.session.execute(select(Invoice).where(Invoice.client_id == world.client_a.id)).scalar_one()
    assert (invoice.status, invoice.total, invoice.number is not None) == ("open", 9500, True)
    [email] = db.session.execute(select(OutboxEmail).where(OutboxEmail.invoice_id == invoice.id)).scalars().all()
    assert email.to_addr == world.client_a.email


def test_it_lines_up_the_invoice_actions_and_marks_void_as_destructive(wide_page, server, world):
    page = wide_page
    [invoice] = open_invoices(world, 1)
    log_in(page, server.url, world)
    page.goto(f"{server.url}/admin/invoices/{invoice.id}")
    actions = page.locator(".action-list > details > summary, .action-list > form button")
    boxes = [a.bounding_box() for a in actions.all()]
    assert len(boxes) == 4  # send again, reminder, record a payment, void
    assert len({round(b["y"]) for b in boxes}) == 1 and len({round(b["height"]) for b in boxes}) == 1, boxes
    void = page.get_by_text("Void…")
    assert void.evaluate("el => getComputedStyle(el).color") == "rgb(185, 28, 28)"


def test_it_offers_a_refund_beside_the_payment(wide_page, server, world):
    page = wide_page
    [invoice] = open_invoices(world, 1)
    now = real_now()
    payment = record_manual_payment(invoice.id, amount=invoice.total, method="bank_transfer", paid_on=now.date(),
                                    reference="BANK-77", actor=SYSTEM, now=now).payment
    log_in(page, server.url, world)
    page.goto(f"{server.url}/admin/invoices/{invoice.id}")
    assert page.get_by_role("heading", name="Refunds").count() == 0  # nothing reads as if a refund happened
    row = page.locator("tr", has_text="BANK-77")
    refund = row.locator("xpath=following-sibling::tr[1]").get_by_text("Refund…")
    refund.click()
    page.get_by_label("Reason").fill("Paid twice")
    page.get_by_label("Amount").fill("20")
    page.get_by_role("button", name="Refund", exact=True).click()
    page.get_by_text("Refunded $20.00.").wait_for()
    db.session.rollback()
    [done] = db.session.execute(select(Refund).where(Refund.payment_id == payment.id)).scalars().all()
    assert (done.amount, done.reason) == (2000, "Paid twice")
