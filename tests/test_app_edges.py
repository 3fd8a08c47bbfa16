"""What the app does at its edges for every page: refusing NUL characters, security headers, the favicon and
the error pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import Client, Invoice, User
from tests.conftest import NOW, login, make_invoice
from tests.pay.support import pay_path

NUL_MESSAGE = "The request contains a NUL character"


@pytest.fixture
def open_invoice(world, time_machine):
    time_machine.move_to(NOW + timedelta(hours=1), tick=True)  # the pay link is valid (it is dated from NOW)
    return make_invoice(world.client_a, status="open")


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_it_refuses_a_nul_character_on_public_pages_with_a_clear_400(client, world, open_invoice):
    """PostgreSQL cannot even compare text holding NUL: these answered 500 there."""
    for url in (pay_path(open_invoice, "%00"), pay_path(open_invoice, "/return?session_id=cs_%00"),
                pay_path(open_invoice, "/pdf?x=%00"), "/pay/%00"):
        response = client.get(url)
        assert response.status_code == 400 and NUL_MESSAGE in response.text, url
    response = client.post("/admin/login", data={"email": "alice@a.test\x00", "password": "x"})
    assert response.status_code == 400 and NUL_MESSAGE in response.text
    assert client.get("/admin/").status_code == 302  # not logged in
    assert db.session.get(User, world.alice.id).last_login_at is None


def test_it_refuses_a_nul_character_in_staff_searches_and_forms_and_writes_nothing(client, world, open_invoice):
    login(client, world.alice)
    for url in ("/admin/invoices?q=%00", "/admin/invoices?client_search=a%00", "/admin/clients?q=x%00y",
                "/admin/clients/options?client_search=%00", "/admin/invoices/export.csv?q=%00"):
        response = client.get(url)
        assert response.status_code == 400 and NUL_MESSAGE in response.text, url
    clients_before, invoices_before = count(Client), count(Invoice)
    response = client.post("/admin/clients/new", data={"name": "Ini\x00tech", "email": "", "currency": "USD"})
    assert response.status_code == 400 and NUL_MESSAGE in response.text
    line = {"client_id": str(world.client_a.id), "issue_date": "2026-03-10", "due_date": "2026-04-09",
            "lines-0-description": "Design", "lines-0-quantity": "1", "lines-0-unit_price": "10",
            "lines-0-tax_rate": "0", "notes": ""}
    for field, value in (("lines-0-description", "De\x00sign"), ("notes", "Thanks\x00")):
        response = client.post("/admin/invoices/new", data={**line, field: value})
        assert response.status_code == 400 and NUL_MESSAGE in response.text, field
    assert (count(Client), count(Invoice)) == (clients_before, invoices_before)
    assert client.post("/admin/invoices/new", data=line).status_code == 303  # the same form without it is fine


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>|\son[a-z]+\s*=|javascript:", re.IGNORECASE)


def test_it_sends_a_policy_that_allows_no_inline_script_and_the_pages_have_none(client, world, open_invoice):
    login(client, world.alice)
    pages = ["/admin/", "/admin/invoices", "/admin/invoices/new", f"/admin/invoices/{open_invoice.id}",
             "/admin/clients", f"/admin/clients/{world.client_a.id}", "/admin/settings", "/admin/outbox",
             "/admin/webhooks", "/admin/nowhere", pay_path(open_invoice)]
    for url in pages:
        response = client.get(url)
        policy = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'", url
        assert policy["frame-ancestors"] == "'none'" and "unsafe" not in policy["default-src"], url
        assert "camera=()" in response.headers["Permissions-Policy"], url
        assert "Strict-Transport-Security" not in response.headers, url  # BASE_URL is plain http here
        assert not INLINE_SCRIPT.findall(response.text), url


def test_it_sends_hsts_only_when_the_site_is_served_over_https(app, client, monkeypatch):
    assert "Strict-Transport-Security" not in client.get("/admin/login").headers
    monkeypatch.setitem(app.config, "BASE_URL", "https://billing.example.com")
    assert client.get("/admin/login").headers["Strict-Transport-Security"] == "max-age=31536000"
    assert client.get("/healthz").headers["Strict-Transport-Security"] == "max-age=31536000"


def test_it_serves_a_favicon_that_every_page_links(client, world, open_invoice):
    response = client.get("/favicon.ico")
    assert (response.status_code, response.location) == (301, "/static/favicon.svg")
    with client.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.data
    for url in ("/admin/login", pay_path(open_invoice), "/nowhere"):
        assert '<link rel="icon" href="/static/favicon.svg"' in client.get(url).text, url


def test_it_shows_staff_a_404_inside_the_admin_layout_with_its_navigation(client, world):
    login(client, world.alice)
    for url, message in (("/admin/nowhere", "We could not find anything at this address."),
                         ("/admin/invoices/999999", "Invoice not found."),
                         (f"/admin/clients/{world.client_b.id}", "Client not found.")):  # another organization's
        response = client.get(url)
        assert response.status_code == 404, url
        page = response.text
        assert "<h1>Page not found</h1>" in page and message in page, url
        assert 'class="topbar"' in page and 'href="/admin/invoices">Invoices</a>' in page and "Log out" in page
        assert "belong to another organization" in page and "requested URL was not found" not in page
    swapped = client.get("/admin/invoices/999999", headers={"HX-Request": "true"})  # htmx: the content, no layout
    assert swapped.status_code == 404 and "Invoice not found." in swapped.text and "topbar" not in swapped.text


def test_it_shows_the_public_a_helpful_404_without_staff_navigation(client, world):
    for url in ("/nowhere", "/admin/nowhere", "/portal/nowhere"):
        response = client.get(url)
        assert response.status_code == 404, url
        page = response.text
        assert "<h1>Page not found</h1>" in page and "We could not find anything at this address." in page, url
        assert "check that you copied the whole address" in page and 'class="topbar"' not in page, url
