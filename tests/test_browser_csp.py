"""The main pages under their Content-Security-Policy in a real browser (the app under gunicorn, chromium):
everything they do still works, and the browser reports no violation and no other console error."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import PASSWORD
from tests.pay.support import fresh, live_invoice, token

# Chromium fires this event for every blocked script, handler, style or image; kept across navigations.
RECORD_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  const seen = JSON.parse(sessionStorage.getItem("csp") || "[]");
  seen.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
  sessionStorage.setItem("csp", JSON.stringify(seen));
});
"""


def watch(page: Any) -> list[str]:
    """Console errors and warnings, and uncaught exceptions, as they happen."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.add_init_script(RECORD_VIOLATIONS)
    return errors


def faults(errors: list[str]) -> list[str]:
    """The errors, less htmx's log of requests that the next keystroke replaced (hx-sync): an aborted request
    logs an afterRequest and a sendAbort error, by design."""
    left, aborted = [], sum(e.startswith("error: htmx:sendAbort,") for e in errors)
    for error in errors:
        if error.startswith("error: htmx:sendAbort,"):
            continue
        if error.startswith("error: htmx:afterRequest,") and aborted:
            aborted -= 1
            continue
        left.append(error)
    return left


def violations(page: Any) -> list[str]:
    return page.evaluate("JSON.parse(sessionStorage.getItem('csp') || '[]')")  # type: ignore[no-any-return]


def test_it_runs_the_staff_pages_under_the_policy_without_a_violation(live_server_factory, page, world):
    invoice = live_invoice(world.client_a)
    live_invoice(world.client_a)
    server = live_server_factory()
    errors = watch(page)
    response = page.goto(f"{server.url}/admin/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_label("Email").fill(world.alice.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/admin/")

    page.get_by_role("link", name="Invoices", exact=True).click()  # boosted by htmx
    page.wait_for_url(f"{server.url}/admin/invoices")
    page.get_by_label("Select all shown").check()  # static/js/admin.js, no inline handler
    assert page.locator("#invoice-rows input[name=ids]:checked").count() == 2
    # An htmx search (its indicator style), typed key by key: right after a boosted visit the box is wired up
    # as the new content settles, and one instant fill() can come before that.
    page.get_by_placeholder("Number or client").press_sequentially("nothing-matches", delay=20)
    page.get_by_text("No invoices match.").wait_for()

    page.goto(f"{server.url}/admin/invoices/new?client={world.client_a.id}")
    page.get_by_label("Line 1 description").fill("Design")
    page.get_by_label("Line 1 quantity").fill("2")
    page.get_by_label("Line 1 unit price").fill("100")
    page.locator("#total-total").filter(has_text="$200.00").wait_for()  # live totals from the server

    page.goto(f"{server.url}/admin/invoices/{invoice.id}")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == page.get_by_role("textbox", name="Pay link").input_value()

    assert faults(errors) == []  # nothing blocked, no missing favicon
    page.goto(f"{server.url}/admin/nowhere")
    page.get_by_role("heading", name="Page not found").wait_for()
    page.get_by_role("link", name="Clients", exact=True).wait_for()  # the admin navigation, on the 404 too
    assert violations(page) == []
    assert faults(errors) == ["error: Failed to load resource: the server responded with a status of 404 (NOT FOUND)"]


def test_it_runs_the_pay_page_and_the_sandbox_checkout_under_the_policy_without_a_violation(
        live_server_factory, page, world):
    invoice = live_invoice(world.client_a)
    server = live_server_factory()
    errors = watch(page)
    page.goto(f"{server.url}/pay/{token(invoice)}")
    page.get_by_role("button", name="Pay now").click()
    page.wait_for_url(re.compile(rf"{re.escape(server.url)}/pay/sandbox/cs_sbx_\w+"))
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_role("button", name="Pay", exact=True).click()
    page.get_by_text("Payment received, thank you").wait_for()
    assert fresh(invoice).status == "paid"
    assert violations(page) == [] and faults(errors) == []
