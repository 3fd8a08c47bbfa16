"""The served app, in a real browser: log in and see the invoice list."""

from tests.conftest import PASSWORD, make_invoice


def test_it_logs_in_and_lists_invoices_in_a_real_browser(live_server_factory, page, world):
    make_invoice(world.client_a, status="open")
    server = live_server_factory()
    page.goto(f"{server.url}/admin/login")
    page.get_by_label("Email").fill(world.alice.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/admin/")
    page.get_by_role("link", name="Invoices", exact=True).click()
    page.wait_for_url(f"{server.url}/admin/invoices")
    assert page.get_by_role("link", name="2026-0001").is_visible()
    # Typed key by key, as a person types: right after a boosted visit htmx wires the search box up as the
    # new content settles, and a single instant fill() can land before that (its input event then goes unheard).
    page.get_by_placeholder("Number or client").press_sequentially("nothing-matches", delay=20)
    page.get_by_text("No invoices match.").wait_for()
    assert "q=nothing-matches" in page.url  # the filter lives in the URL
