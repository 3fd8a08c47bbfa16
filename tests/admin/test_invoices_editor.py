"""The draft editor: live totals from the one calculator, line operations with and without JavaScript, inline
validation, nothing saved half-way, only drafts editable."""

import re

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Invoice
from tests.conftest import NOW, login, make_client, make_invoice

HX = {"HX-Request": "true"}


def form(client_id, **extra):
    """Three lines (one taxed) and a 10 % discount, as the editor posts them."""
    data = {
        "client_id": str(client_id), "contact_id": "", "currency": "", "issue_date": "2026-03-10",
        "due_date": "2026-04-09", "discount_kind": "percent", "discount_value": "10", "notes": "Thanks!",
        "project_ref": "Website", "client_search": "",
        "lines-0-description": "Design", "lines-0-quantity": "2", "lines-0-unit_price": "1,250.50",
        "lines-0-tax_rate": "8.875",
        "lines-1-description": "Hosting", "lines-1-quantity": "12", "lines-1-unit_price": "9.99",
        "lines-1-tax_rate": "0",
        "lines-2-description": "Domain", "lines-2-quantity": "1", "lines-2-unit_price": "15", "lines-2-tax_rate": "0",
    }
    data.update(extra)
    return data


def totals(html):
    return {name: re.search(rf'id="total-{name}">([^<]+)<', html).group(1).replace("&minus;", "-")
            for name in ("subtotal", "discount", "tax", "total")}


def descriptions(html):
    return re.findall(r'name="lines-\d+-description" value="([^"]*)"', html)


def invoice_count():
    return db.session.execute(select(func.count()).select_from(Invoice)).scalar()


def test_it_presets_the_due_date_from_the_payment_terms_and_the_client_currency(client, world, time_machine):
    time_machine.move_to(NOW)
    world.org_a.payment_terms_days = 14
    db.session.commit()
    eur = make_client(world.org_a, "Globex", currency="EUR")
    login(client, world.alice)
    page = client.get(f"/admin/invoices/new?client={eur.id}").text
    assert 'name="issue_date" value="2026-03-10"' in page and 'name="due_date" value="2026-03-24"' in page
    assert f'<option value="{eur.id}" selected>Globex</option>' in page and "Client's currency (EUR)" in page


def test_it_recomputes_the_due_date_when_the_issue_date_changes(client, world):
    login(client, world.alice)
    response = client.post("/admin/invoices/preview", headers=HX,
                           data=form(world.client_a.id, op="issue_date", issue_date="2026-05-01"))
    assert response.status_code == 200 and "<html" not in response.text
    assert response.text.strip().startswith('<input type="date" name="due_date" value="2026-05-31"')


def test_it_previews_live_totals_that_are_exactly_what_saving_stores(client, world):
    login(client, world.alice)
    preview = client.post("/admin/invoices/preview", headers=HX, data=form(world.client_a.id, op="totals"))
    assert preview.status_code == 200 and "<form" not in preview.text
    shown = totals(preview.text)
    # line amounts travel out of band, beside the totals
    assert re.findall(r'id="line-amount-(\d)" hx-swap-oob="true">([^<]+)<', preview.text) == [
        ("0", "$2,501.00"), ("1", "$119.88"), ("2", "$15.00")]
    saved = client.post("/admin/invoices/new", data=form(world.client_a.id, op="save"))
    assert saved.status_code == 303
    invoice = db.session.execute(select(Invoice)).scalar_one()
    money = "${:,.2f}".format
    assert shown == {"subtotal": money(invoice.subtotal / 100), "discount": "-" + money(invoice.discount_total / 100),
                     "tax": money(invoice.tax_total / 100), "total": money(invoice.total / 100)}
    assert (invoice.subtotal, invoice.discount_total, invoice.total) == (263588, 26359, 257206)
    assert [li.description for li in invoice.lines] == ["Design", "Hosting", "Domain"]
    assert (invoice.discount_kind, invoice.discount_value, invoice.project_ref) == ("percent", 1000, "Website")
    assert saved.location.endswith(f"/admin/invoices/{invoice.id}")


def test_it_adds_removes_and_reorders_lines_with_htmx(client, world):
    login(client, world.alice)
    added = client.post("/admin/invoices/preview", headers=HX, data=form(world.client_a.id, op="add_line")).text
    assert descriptions(added) == ["Design", "Hosting", "Domain", ""] and "<html" not in added
    moved = client.post("/admin/invoices/preview", headers=HX, data=form(world.client_a.id, op="up-2")).text
    assert descriptions(moved) == ["Design", "Domain", "Hosting"]
    removed = client.post("/admin/invoices/preview", headers=HX, data=form(world.client_a.id, op="remove-0")).text
    assert descriptions(removed) == ["Hosting", "Domain"] and totals(removed)["subtotal"] == "$134.88"
    assert invoice_count() == 0  # editing the form never stores anything


def test_it_works_without_javascript_by_re_rendering_the_whole_form(client, world):
    login(client, world.alice)
    page = client.post("/admin/invoices/new", data=form(world.client_a.id, op="down-0"))
    assert page.status_code == 200 and "<html" in page.text
    assert descriptions(page.text) == ["Hosting", "Design", "Domain"]
    found = client.post("/admin/invoices/new", data=form("", op="find_client", client_search="client")).text
    assert f'<option value="{world.client_a.id}"' in found
    assert invoice_count() == 0


def test_it_takes_the_clients_currency_when_the_client_changes(client, world):
    eur = make_client(world.org_a, "Globex", currency="EUR")
    login(client, world.alice)
    page = client.post("/admin/invoices/preview", headers=HX, data=form(eur.id, op="client", currency="USD")).text
    assert "<option selected>EUR</option>" in page and "€" in page


def test_it_shows_every_error_inline_and_saves_nothing(client, world):
    login(client, world.alice)
    bad = form(world.client_a.id, op="save", **{"lines-1-description": "", "lines-2-unit_price": "abc",
                                                "lines-0-tax_rate": "150", "due_date": "2026-01-01",
                                                "discount_value": "x"})
    response = client.post("/admin/invoices/new", data=bad)
    assert response.status_code == 422 and "nothing was saved" in response.text
    for message in ("Enter a description.", "is not an amount", "0 to 100 %", "cannot be before the issue date",
                    "Enter a percentage"):
        assert message in response.text
    assert descriptions(response.text) == ["Design", "", "Domain"]  # what was typed is kept
    assert invoice_count() == 0


def test_it_refuses_a_discount_above_the_subtotal(client, world):
    login(client, world.alice)
    response = client.post("/admin/invoices/new",
                           data=form(world.client_a.id, op="save", discount_kind="amount", discount_value="99999"))
    assert response.status_code == 422 and "larger than the subtotal" in response.text and invoice_count() == 0


def test_it_edits_a_draft(client, world):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    page = client.get(f"/admin/invoices/{draft.id}/edit").text
    assert descriptions(page) == ["Consulting", "Travel"] and 'value="100.00"' in page
    response = client.post(f"/admin/invoices/{draft.id}/edit", data=form(world.client_a.id, op="save"))
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Invoice, draft.id).total == 257206
    assert db.session.execute(select(AuditEvent.action).where(AuditEvent.object_id == draft.id)
                              .order_by(AuditEvent.id.desc())).scalars().first() == "invoice.updated"


def test_it_refuses_to_edit_an_open_invoice_with_a_clear_message(client, world):
    invoice = make_invoice(world.client_a, status="open")
    login(client, world.alice)
    page = client.get(f"/admin/invoices/{invoice.id}/edit")
    assert page.status_code == 409 and "only drafts can be edited" in page.text and "duplicate" in page.text
    posted = client.post(f"/admin/invoices/{invoice.id}/edit", data=form(world.client_a.id, op="save"))
    assert posted.status_code == 409
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).total == 27000


def test_it_keeps_other_organizations_out_of_the_editor(client, world):
    draft = make_invoice(world.client_a)
    login(client, world.bob)
    assert client.get(f"/admin/invoices/{draft.id}/edit").status_code == 404
    assert client.post(f"/admin/invoices/{draft.id}/edit", data=form(world.client_b.id)).status_code == 404
    assert client.get(f"/admin/invoices/new?client={world.client_a.id}").status_code == 404
    response = client.post("/admin/invoices/new", data=form(world.client_a.id, op="save"))  # org A's client
    assert response.status_code == 422 and "Choose a client." in response.text
    assert invoice_count() == 1


def many_lines(n):
    return {f"lines-{i}-{name}": value for i in range(n)
            for name, value in (("description", f"Hour {i + 1}"), ("quantity", "1"), ("unit_price", "10"),
                                ("tax_rate", "0"))}


def stored_lines(invoice_id):
    db.session.expire_all()
    return [li.description for li in db.session.get(Invoice, invoice_id).lines]


def test_it_refuses_more_than_200_lines_instead_of_saving_the_first_200(client, world):
    draft = make_invoice(world.client_a)
    login(client, world.alice)
    data = {k: v for k, v in form(world.client_a.id, op="save").items() if not k.startswith("lines-")}
    created = client.post("/admin/invoices/new", data={**data, **many_lines(201)})
    edited = client.post(f"/admin/invoices/{draft.id}/edit", data={**data, **many_lines(201)})
    for response in (created, edited):
        assert response.status_code == 422
        assert "An invoice can have at most 200 lines; this one has 201." in response.text
        assert len(descriptions(response.text)) == 201  # every line typed is still there to remove
    assert invoice_count() == 1 and stored_lines(draft.id) == ["Consulting", "Travel"]
    assert client.post("/admin/invoices/new", data={**data, **many_lines(200)}).status_code == 303


def test_it_refuses_text_over_its_limit_instead_of_cutting_it(client, world):
    login(client, world.alice)
    page = client.get("/admin/invoices/new").text
    assert 'maxlength="2000"' in page and 'maxlength="5000"' in page and 'maxlength="120"' in page
    long = "x" * 2001
    response = client.post("/admin/invoices/new", data=form(world.client_a.id, op="save", **{
        "lines-1-description": long, "notes": "n" * 5001, "project_ref": "p" * 121}))
    assert response.status_code == 422 and "nothing was saved" in response.text
    for message in ("At most 2,000 characters; this has 2,001.", "At most 5,000 characters; this has 5,001.",
                    "At most 120 characters; this has 121."):
        assert message in response.text
    assert descriptions(response.text)[1] == long  # kept whole, for the user to shorten
    assert invoice_count() == 0


def test_it_refuses_amounts_above_the_documented_maximum_instead_of_failing(client, world):
    login(client, world.alice)
    data = {k: v for k, v in form(world.client_a.id, op="save").items() if not k.startswith("lines-2-")}
    huge_line = client.post("/admin/invoices/new", data={
        **data, "lines-1-quantity": "10000000", "lines-1-unit_price": "9,999,999,999,999.99"})
    huge_total = client.post("/admin/invoices/new", data={
        **data, "lines-0-quantity": "1", "lines-0-unit_price": "9,000,000,000,000", "lines-0-tax_rate": "0",
        "lines-1-quantity": "1", "lines-1-unit_price": "9,000,000,000,000", "discount_kind": ""})
    huge_quantity = client.post("/admin/invoices/new", data={**data, "lines-1-quantity": "1" + "0" * 20})
    assert (huge_line.status_code, huge_total.status_code, huge_quantity.status_code) == (422, 422, 422)
    assert "Line 2: quantity × unit price comes to $99,999,999,999,999,900,000.00; " \
           "a line can be at most $9,999,999,999,999.99." in huge_line.text
    assert "Quantity × unit price is over $9,999,999,999,999.99." in huge_line.text  # beside the line
    assert "The invoice would come to $18,000,000,000,000.00; an invoice can be at most $9,999,999,999,999.99." \
        in huge_total.text
    assert "A positive number up to 1,000,000,000, at most 3 decimals." in huge_quantity.text


def test_it_shows_a_mistyped_number_beside_its_field_while_typing(client, world):
    login(client, world.alice)
    response = client.post("/admin/invoices/preview", headers=HX,
                           data=form(world.client_a.id, op="totals", **{"lines-1-unit_price": "12,5O"}))
    assert response.status_code == 200
    assert re.search(r'id="lines-1-unit_price-error" class="field-error" hx-swap-oob="true">'
                     r"&#39;12,5O&#39; is not an amount.<", response.text)
    assert re.findall(r'id="line-amount-(\d)" hx-swap-oob="true">([^<]*)<', response.text) == [
        ("0", "$2,501.00"), ("1", ""), ("2", "$15.00")]  # the other lines keep their amounts
    assert totals(response.text)["subtotal"] == "$2,516.00"
    moved = client.post("/admin/invoices/preview", headers=HX,
                        data=form(world.client_a.id, op="up-1", **{"lines-1-unit_price": "12,5O"})).text
    assert re.search(r'id="lines-0-unit_price-error" class="field-error">&#39;12,5O&#39; is not an amount.<', moved)
    assert "nothing was saved" not in moved  # nothing was asked to be saved
    assert invoice_count() == 0


def test_it_saves_the_draft_and_says_why_save_and_send_did_not_send(client, world):
    login(client, world.alice)
    nobody = make_client(world.org_a, "No Email", contacts=0)
    nobody.email = ""
    db.session.commit()
    response = client.post("/admin/invoices/new", data=form(nobody.id, op="save_send"), follow_redirects=True)
    assert response.status_code == 200 and "Draft saved but not sent:" in response.text
    invoice = db.session.execute(select(Invoice).where(Invoice.client_id == nobody.id)).scalar_one()
    assert (invoice.status, invoice.number, invoice.total) == ("draft", None, 257206)
