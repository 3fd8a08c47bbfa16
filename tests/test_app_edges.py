"""What the app does at its edges for every page: refusing NUL characters, security headers, the favicon and
the error pages."""

from __future__ import annotations

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
