"""Another company's invoice, fragment, PDF, payment or receipt answers 404 with exactly the body of a missing one;
so does a draft of the contact's own company."""

from __future__ import annotations

import re
from typing import Any

import pytest

from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, World, make_invoice, portal_login

HX = {"HX-Request": "true"}
MISSING_INVOICE = "0" * 32
MISSING_PAYMENT = 987654


def body(response: Any) -> str:
    """The page without its per-request CSRF token (signed with the time, so it differs between requests)."""
    return re.sub(r'"X-CSRFToken": "[^"]*"', "", response.text)


@pytest.fixture
def foreign(world: World, time_machine: Any) -> dict[str, Any]:
    """Client B's open invoice with a payment; client A's own draft."""
    time_machine.move_to(NOW)
    invoice = make_invoice(world.client_b, status="open")
    payment = record_manual_payment(invoice.id, amount=invoice.total, method="bank_transfer", paid_on=NOW.date(),
                                    reference="", actor=SYSTEM, now=NOW).payment
    return {"invoice": invoice, "payment": payment, "draft": make_invoice(world.client_a)}


@pytest.mark.parametrize(("path", "missing", "headers"), [
    ("/portal/invoices/{invoice}", f"/portal/invoices/{MISSING_INVOICE}", {}),
    ("/portal/invoices/{invoice}", f"/portal/invoices/{MISSING_INVOICE}", HX),  # the fragment an htmx swap asks for
    ("/portal/invoices/{invoice}/pdf", f"/portal/invoices/{MISSING_INVOICE}/pdf", {}),
    ("/portal/payments/{payment}/receipt", f"/portal/payments/{MISSING_PAYMENT}/receipt", {}),
    ("/portal/payments/{payment}/receipt", f"/portal/payments/{MISSING_PAYMENT}/receipt", HX),
    ("/portal/payments/{payment}/receipt.pdf", f"/portal/payments/{MISSING_PAYMENT}/receipt.pdf", {}),
    ("/portal/invoices/{draft}", f"/portal/invoices/{MISSING_INVOICE}", {}),
    ("/portal/invoices/{draft}/pdf", f"/portal/invoices/{MISSING_INVOICE}/pdf", {}),
])
def test_it_answers_another_companys_objects_like_missing_ones(client, world, foreign, path, missing, headers):
    portal_login(client, world.client_a.contacts[0])
    url = path.format(invoice=foreign["invoice"].public_id, payment=foreign["payment"].id,
                      draft=foreign["draft"].public_id)
    theirs, absent = client.get(url, headers=headers), client.get(missing, headers=headers)
    assert theirs.status_code == absent.status_code == 404
    assert body(theirs) == body(absent)
    assert foreign["invoice"].number not in theirs.text and "Client B" not in theirs.text


def test_the_other_company_sees_its_own(client, world, foreign):
    portal_login(client, world.client_b.contacts[0])
    assert client.get(f"/portal/invoices/{foreign['invoice'].public_id}").status_code == 200
    assert client.get(f"/portal/payments/{foreign['payment'].id}/receipt").status_code == 200
    page = client.get("/portal/?tab=all").text
    assert foreign["invoice"].public_id in page and foreign["draft"].public_id not in page


def test_a_search_never_reaches_another_company(client, world, foreign):
    portal_login(client, world.client_a.contacts[0])
    page = client.get("/portal/?tab=all&q=2026", headers=HX).text
    assert foreign["invoice"].public_id not in page and "No invoices match" in page


@pytest.mark.parametrize("path", ["/portal/invoices/{invoice}", "/portal/invoices/{invoice}/pdf",
                                  "/portal/payments/{payment}/receipt", "/portal/payments/{payment}/receipt.pdf",
                                  "/portal/company-profile"])
def test_it_signs_nobody_in_by_itself(client, world, foreign, path):
    url = path.format(invoice=foreign["invoice"].public_id, payment=foreign["payment"].id)
    response = client.get(url)
    assert response.status_code == 303 and "/portal/login" in response.location
