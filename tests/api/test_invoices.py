"""/api/v1/invoices: every endpoint's success, validation, cross-organization 404, state conflicts (409), and that
each change went through the admin's services (numbers, audit with the key as actor, outbox, money door)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, CheckoutSession, Invoice, LineItem, OutboxEmail, Payment
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import record_manual_payment
from tests.api.conftest import cid, iid, problem_fields
from tests.conftest import NOW, SYSTEM, make_client, make_invoice

BODY = {"lines": [{"description": "Design sprint", "quantity": "3", "unit_price": 45000, "tax_rate": "20"},
                  {"description": "Hosting", "unit_price": 2500}],
        "discount": {"percent": "10"}, "due_date": "2026-04-30", "project_ref": "PRJ-42"}


@pytest.fixture(autouse=True)
def _at_now(time_machine):
    time_machine.move_to(NOW, tick=False)


def invoices() -> list[Invoice]:
    return list(db.session.execute(select(Invoice).order_by(Invoice.id)).scalars())


def test_it_creates_a_draft_with_totals_computed_by_the_service(api, world):
    response = api.post("/api/v1/invoices", json={**BODY, "client": cid(world.client_a)})
    assert response.status_code == 201
    body = response.json
    [invoice] = invoices()
    assert body["id"] == iid(invoice) and response.headers["Location"] == f"/api/v1/invoices/{body['id']}"
    # 3 x 450.00 + 25.00 = 1,375.00; 10 % off = 137.50; tax 20 % of the design line after its share of the discount
    assert (body["subtotal"], body["discount_total"], body["total"]) == (137500, 13750, invoice.total)
    assert body["status"] == "draft" and body["number"] is None and body["pay_url"] is None
    assert body["currency"] == "USD" and body["issue_date"] == "2026-03-10" and body["due_date"] == "2026-04-30"
    assert [line["quantity"] for line in body["lines"]] == ["3", "1"]
    assert invoice.discount_kind == "percent" and invoice.discount_value == 1000 and invoice.project_ref == "PRJ-42"
    audit = db.session.execute(select(AuditEvent).where(AuditEvent.action == "invoice.created")).scalar_one()
    assert audit.actor_type == "api_key" and audit.actor_label.startswith("API key test (inv_test_")


def test_it_takes_the_organizations_terms_and_the_clients_currency_by_default(api, world):
    world.org_a.payment_terms_days = 14
    db.session.commit()
    response = api.post("/api/v1/invoices", json={"client": cid(world.client_a), "lines": BODY["lines"]})
    assert response.status_code == 201
    # NOW is 2026-03-10 15:00 UTC: still the 10th in New York
    assert (response.json["issue_date"], response.json["due_date"]) == ("2026-03-10", "2026-03-24")


@pytest.mark.parametrize("change, field", [
    ({"lines": [{"description": "x", "unit_price": 10.0}]}, "lines.0.unit_price"),
    ({"lines": [{"description": "x", "unit_price": "1000"}]}, "lines.0.unit_price"),
    ({"lines": [{"description": "x", "unit_price": True}]}, "lines.0.unit_price"),
    ({"lines": [{"description": "x", "unit_price": -1}]}, "lines.0.unit_price"),
    ({"lines": [{"description": "x", "unit_price": 100, "quantity": "1.2345"}]}, "lines.0.quantity"),
    ({"lines": [{"description": "x", "unit_price": 100, "colour": "red"}]}, "lines.0.colour"),
    ({"lines": []}, "lines"),
    ({"unknown": 1}, "unknown"),
    ({"due_date": "next week"}, "due_date"),
    ({"discount": {"percent": "10", "amount": 5}}, "discount"),
    ({"client": "cli_" + "0" * 32}, "client"),
])
def test_it_refuses_invalid_fields_with_a_field_list_and_writes_nothing(api, world, change, field):
    response = api.post("/api/v1/invoices", json={**BODY, "client": cid(world.client_a), **change})
    assert response.status_code == 422
    assert field in problem_fields(response)
    assert invoices() == []


def test_it_answers_a_rule_of_the_domain_with_a_problem(api, world):
    response = api.post("/api/v1/invoices", json={**BODY, "client": cid(world.client_a), "issue_date": "2026-05-01"})
    assert response.status_code == 422 and response.json["code"] == "rejected"
    assert "due date cannot be before the issue date" in response.json["detail"]
    assert invoices() == []


def test_it_refuses_a_body_that_is_not_json(api, world):
    response = api.post("/api/v1/invoices", data="{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.mimetype == "application/problem+json"


def test_it_treats_another_organizations_client_as_unknown(api, world):
    response = api.post("/api/v1/invoices", json={**BODY, "client": cid(world.client_b)})
    assert response.status_code == 422 and "client" in problem_fields(response)
    assert invoices() == []


def test_it_gets_an_invoice_with_lines_payments_refunds_and_pay_url(api, world):
    invoice = make_invoice(world.client_a, status="open")
    record_manual_payment(invoice.id, amount=1000, method="cash", paid_on=NOW.date(), reference="R1", actor=SYSTEM,
                          now=NOW)
    body = api.get(f"/api/v1/invoices/{iid(invoice)}").json
    assert body["number"] == "2026-0001" and body["statuses"] == ["open", "partial"]
    assert body["amount_paid"] == 1000 and body["amount_due"] == invoice.total - 1000
    assert [p["amount"] for p in body["payments"]] == [1000] and body["payments"][0]["refunds"] == []
    assert body["pay_url"].startswith("http://billing.test/pay/" + invoice.public_id)
    assert len(body["lines"]) == 2


def test_it_answers_404_for_another_organizations_invoice_everywhere(api, world):
    other = make_invoice(world.client_b, status="open")
    draft = make_invoice(world.client_b)
    path = f"/api/v1/invoices/{iid(other)}"
    for method, url, kwargs in [("GET", path, {}), ("PUT", f"/api/v1/invoices/{iid(draft)}", {"json": {
            **BODY, "client": cid(world.client_a)}}), ("PATCH", f"/api/v1/invoices/{iid(draft)}", {"json": {}}),
            ("DELETE", f"/api/v1/invoices/{iid(draft)}", {}), ("POST", f"{path}/send", {"json": {}}),
            ("POST", f"{path}/mark-paid", {"json": {"amount": 1}}), ("POST", f"{path}/void", {"json": {"reason": "x"}}),
            ("GET", f"{path}/pdf", {})]:
        response = api.request(method, url, **kwargs)
        assert response.status_code == 404, (method, url)
        assert response.json["code"] == "not_found"
    assert api.get("/api/v1/invoices/inv_nonsense").status_code == 404
    assert db.session.get(Invoice, draft.id) is not None and other.status == "open"


def test_it_replaces_and_patches_a_draft(api, world):
    draft = make_invoice(world.client_a)
    response = api.put(f"/api/v1/invoices/{iid(draft)}", json={**BODY, "client": cid(world.client_a)})
    assert response.status_code == 200 and response.json["project_ref"] == "PRJ-42"
    response = api.patch(f"/api/v1/invoices/{iid(draft)}", json={"notes": "Thanks", "discount": None})
    assert response.status_code == 200
    assert response.json["notes"] == "Thanks" and response.json["discount"] is None
    assert response.json["project_ref"] == "PRJ-42" and len(response.json["lines"]) == 2  # kept
    db.session.expire_all()
    assert draft.notes == "Thanks" and draft.discount_kind is None and draft.total == 137500 + 45000 * 3 * 20 // 100
    actions = db.session.execute(select(AuditEvent.action).where(AuditEvent.object_id == draft.id)).scalars().all()
    assert actions.count("invoice.updated") == 2


def test_it_refuses_to_change_or_delete_an_invoice_that_is_not_a_draft(api, world):
    invoice = make_invoice(world.client_a, status="open")
    for response in (api.put(f"/api/v1/invoices/{iid(invoice)}", json={**BODY, "client": cid(world.client_a)}),
                     api.patch(f"/api/v1/invoices/{iid(invoice)}", json={"notes": "x"}),
                     api.delete(f"/api/v1/invoices/{iid(invoice)}")):
        assert response.status_code == 409
        assert response.json["code"] == "conflict" and "only drafts" in response.json["detail"]
    db.session.expire_all()
    assert invoice.notes == "" and invoice.status == "open"


def test_it_deletes_a_draft(api, world):
    draft = make_invoice(world.client_a)
    assert api.delete(f"/api/v1/invoices/{iid(draft)}").status_code == 204
    assert invoices() == [] and db.session.execute(select(func.count()).select_from(LineItem)).scalar() == 0


def test_it_sends_a_draft_numbering_it_and_queueing_the_email(api, world):
    draft = make_invoice(world.client_a)
    response = api.post(f"/api/v1/invoices/{iid(draft)}/send", json={})
    assert response.status_code == 200
    assert response.json["number"] == "2026-0001" and response.json["statuses"] == ["open", "sent"]
    [email] = db.session.execute(select(OutboxEmail)).scalars().all()
    assert email.kind == "invoice" and email.to_addr == "clienta@clients.test"
    assert response.json["pay_url"] in email.text_body


def test_it_sends_to_the_address_given_and_refuses_a_paid_invoice(api, world):
    invoice = make_invoice(world.client_a, status="open")
    assert api.post(f"/api/v1/invoices/{iid(invoice)}/send", json={"to": "ap@a.test"}).status_code == 200
    assert db.session.execute(select(OutboxEmail.to_addr)).scalar_one() == "ap@a.test"
    record_manual_payment(invoice.id, amount=invoice.total, method="cash", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW)
    response = api.post(f"/api/v1/invoices/{iid(invoice)}/send", json={})
    assert response.status_code == 409 and "paid" in response.json["detail"]
    assert api.post(f"/api/v1/invoices/{iid(invoice)}/send", json={"to": "nope"}).status_code == 422


def test_it_marks_an_invoice_paid_in_part_then_in_full_through_the_money_door(api, world):
    invoice = make_invoice(world.client_a, status="open")
    response = api.post(f"/api/v1/invoices/{iid(invoice)}/mark-paid",
                        json={"amount": 5000, "paid_on": "2026-03-09", "method": "bank_transfer", "reference": "T-1"})
    assert response.status_code == 201
    assert response.json["amount"] == 5000 and response.json["receipt_number"] == "R-000001"
    assert response.json["paid_on"] == "2026-03-09" and response.json["method_label"] == "Bank transfer"
    rest = invoice.total - 5000
    response = api.post(f"/api/v1/invoices/{iid(invoice)}/mark-paid", json={"amount": rest})
    assert response.status_code == 201 and response.json["method"] == "bank_transfer"
    db.session.expire_all()
    assert invoice.status == "paid" and invoice.amount_paid == invoice.total
    assert db.session.execute(select(func.count()).select_from(Payment)).scalar() == 2
    response = api.post(f"/api/v1/invoices/{iid(invoice)}/mark-paid", json={"amount": 1})
    assert response.status_code == 409


def test_it_refuses_an_overpayment_and_a_partial_payment_where_the_organization_forbids_it(api, world, keys):
    invoice = make_invoice(world.client_a, status="open")
    response = api.post(f"/api/v1/invoices/{iid(invoice)}/mark-paid", json={"amount": invoice.total + 1})
    assert response.status_code == 422 and "more than the amount due" in response.json["detail"]
    japan = make_invoice(world.client_b, status="open")
    response = api.as_key(keys.other).post(f"/api/v1/invoices/{iid(japan)}/mark-paid", json={"amount": 1})
    assert response.status_code == 422 and "Partial payments are turned off" in response.json["detail"]
    assert db.session.execute(select(func.count()).select_from(Payment)).scalar() == 0


def test_it_voids_an_open_invoice_and_expires_its_checkouts(api, world):
    invoice = make_invoice(world.client_a, status="open")
    db.session.add(CheckoutSession(organization_id=world.org_a.id, invoice_id=invoice.id, provider="sandbox",
                                   session_id="cs_sbx_unknown", amount=invoice.total, currency="USD", url="x",
                                   expires_at=NOW + timedelta(hours=1)))
    db.session.commit()
    response = api.post(f"/api/v1/invoices/{iid(invoice)}/void", json={"reason": "Wrong client"})
    assert response.status_code == 200
    assert response.json["status"] == "void" and response.json["pay_url"] is None
    db.session.expire_all()
    assert invoice.void_reason == "Wrong client" and invoice.link_version == 2
    assert api.post(f"/api/v1/invoices/{iid(invoice)}/void", json={"reason": "again"}).status_code == 409
    assert api.post(f"/api/v1/invoices/{iid(invoice)}/void", json={}).status_code == 422


def test_it_serves_the_pdf(api, world):
    invoice = make_invoice(world.client_a, status="open")
    response = api.get(f"/api/v1/invoices/{iid(invoice)}/pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")


def test_it_lists_with_filters_including_the_derived_statuses(api, world):
    client_2 = make_client(world.org_a, "Second Studio", currency="EUR")
    draft = make_invoice(world.client_a, issue_date=NOW.date() - timedelta(days=40))  # due 10 days ago
    overdue = make_invoice(world.client_a, status="open", issue_date=NOW.date() - timedelta(days=40))
    fresh = make_invoice(client_2, status="open")
    void = make_invoice(world.client_a, status="open")
    void_invoice(void.id, reason="x", actor=SYSTEM, now=NOW)
    make_invoice(world.client_b, status="open", issue_date=NOW.date() - timedelta(days=40))  # org B: never listed

    def ids(query: str) -> list[str]:
        response = api.get(f"/api/v1/invoices?{query}")
        assert response.status_code == 200, response.json
        return [i["id"] for i in response.json["data"]]

    assert ids("") == [iid(void), iid(fresh), iid(overdue), iid(draft)]
    assert ids("status=overdue") == [iid(overdue)]
    assert ids("status=draft") == [iid(draft)]
    assert ids(f"client={cid(client_2)}") == [iid(fresh)]
    assert ids("currency=eur") == [iid(fresh)]
    assert ids("issued_to=2026-02-01") == [iid(overdue), iid(draft)]
    assert ids("due_from=2026-04-01") == [iid(void), iid(fresh)]
    assert ids("q=Second") == [iid(fresh)]
    assert ids("q=2026-0002") == [iid(fresh)]
    overdue_row = api.get("/api/v1/invoices?status=overdue").json["data"][0]
    assert overdue_row["statuses"] == ["open", "overdue"]
    bad = api.get("/api/v1/invoices?status=late&colour=red&limit=500")
    assert bad.status_code == 422 and set(problem_fields(bad)) == {"status", "colour", "limit"}
    assert api.get(f"/api/v1/invoices?client={cid(world.client_b)}").status_code == 422


def test_it_pages_with_a_cursor_that_new_invoices_do_not_disturb(api, world):
    made = [make_invoice(world.client_a, issue_date=NOW.date() - timedelta(days=n)) for n in range(5)]
    first = api.get("/api/v1/invoices?limit=2").json
    assert [i["id"] for i in first["data"]] == [iid(made[0]), iid(made[1])] and first["has_more"]
    make_invoice(world.client_a)  # a new one, newest of all: it must not shift what comes next
    make_invoice(world.client_a, issue_date=NOW.date() - timedelta(days=1))  # one between pages
    seen = [i["id"] for i in first["data"]]
    cursor = first["next_cursor"]
    while cursor:
        page = api.get(f"/api/v1/invoices?limit=2&cursor={cursor}").json
        seen += [i["id"] for i in page["data"]]
        cursor = page["next_cursor"]
    assert seen[:2] + seen[2:] == seen and len(seen) == len(set(seen))
    assert [i for i in seen if i in {iid(m) for m in made}] == [iid(m) for m in made]
