"""Settings > Client emails and PDF: admins edit the texts clients receive; preview, versions, reset, audit."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, TemplateOverride
from tests.conftest import login

SUBJECT = "Invoice {{ invoice_number }}: {{ amount_due }} for {{ client_name }}"
BODY = "Dear {{ contact_name }},\n\nPlease find invoice {{ invoice_number }} attached.\nThanks!"
SECRET = "test-secret-key-"


def overrides(org_id: int | None = None) -> list[TemplateOverride]:
    db.session.rollback()
    query = select(TemplateOverride).order_by(TemplateOverride.id)
    if org_id is not None:
        query = query.where(TemplateOverride.organization_id == org_id)
    return list(db.session.execute(query).scalars())


def audits(action: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)).scalars())


def test_it_is_linked_from_settings_and_shows_the_default_text_with_a_preview(client, world):
    login(client, world.alice)
    assert 'href="/admin/settings/texts"' in client.get("/admin/settings").text
    page = client.get("/admin/settings/texts").text
    assert 'value="Invoice {{ invoice_number }} from {{ organization_name }}' in page
    # The preview fills in demo values, with the organization's real name.
    assert "<strong>Invoice 2026-0042 from Org A — $1,250.00 due Apr 9, 2026</strong>" in page
    assert "Hello Dana Fields," in page and "{{ client_name }}" in page  # the placeholder list
    assert "nothing was saved yet" in page
    for kind in ("reminder", "receipt", "payment_failed", "pdf"):
        assert f'href="/admin/settings/texts/{kind}"' in page
        assert client.get(f"/admin/settings/texts/{kind}").status_code == 200


def test_it_is_for_admins_only(client, world):
    login(client, world.bob)  # staff of org B
    assert client.get("/admin/settings/texts").status_code == 403
    assert client.post("/admin/settings/texts/invoice", data={"subject": "x", "body": "y"}).status_code == 403
    assert client.post("/admin/settings/texts/invoice/reset").status_code == 403
    assert overrides() == []


def test_it_saves_each_change_as_a_new_version_and_audits_the_previous_one(client, world):
    login(client, world.alice)
    first = client.post("/admin/settings/texts/invoice", data={"action": "save", "subject": SUBJECT, "body": BODY})
    assert first.status_code == 303 and first.headers["Location"].endswith("/admin/settings/texts")
    second = client.post("/admin/settings/texts/invoice", data={
        "action": "save", "subject": "Invoice {{ invoice_number }}", "body": BODY + "\r\n"})
    assert second.status_code == 303
    v1, v2 = overrides(world.org_a.id)
    assert v1.parts == {"subject": SUBJECT, "body": BODY} and not v1.is_default
    assert v2.parts == {"subject": "Invoice {{ invoice_number }}", "body": BODY}  # CRLF and trailing space gone
    assert (v2.created_by_id, v2.template) == (world.alice.id, "invoice")
    saved = audits("template.saved")
    assert [e.object_id for e in saved] == [v1.id, v2.id] and saved[0].actor_id == world.alice.id
    assert saved[1].details["previous_id"] == v1.id and saved[1].details["previous_parts"] == v1.parts
    assert saved[1].details["parts"] == v2.parts and saved[0].details["previous_id"] is None
    page = client.get("/admin/settings/texts").text  # the invoice email's page
    assert "Saved: the next emails and PDFs use this text." in page
    assert 'value="Invoice {{ invoice_number }}"' in page and "<strong>Invoice 2026-0042</strong>" in page
    assert page.count("alice@a.test") >= 2 and "active" in page  # the history
    assert overrides(world.org_b.id) == []  # another organization keeps its defaults


def test_it_refuses_a_syntax_error_with_its_message_and_saves_nothing(client, world):
    login(client, world.alice)
    response = client.post("/admin/settings/texts/invoice", data={
        "action": "save", "subject": "Invoice {{ invoice_number }", "body": "Hi {% if overdue %}late"})
    assert response.status_code == 422
    assert "Nothing was saved" in response.text
    assert "Syntax error on line 1: unexpected &#39;}&#39;" in response.text
    assert "Syntax error on line 1: Unexpected end of template" in response.text
    assert 'value="Invoice {{ invoice_number }"' in response.text  # what was typed stays in the form
    assert overrides() == [] and audits("template.saved") == []


def test_it_refuses_an_unknown_placeholder(client, world):
    login(client, world.alice)
    response = client.post("/admin/settings/texts/reminder", data={
        "action": "save", "subject": "Reminder {{ invoice_nmber }}", "body": "Hello"})
    assert response.status_code == 422 and "&#39;invoice_nmber&#39; is undefined" in response.text
    assert overrides() == []


def test_it_previews_as_staff_type_with_an_htmx_fragment_and_saves_nothing(client, world):
    login(client, world.alice)
    response = client.post("/admin/settings/texts/invoice", headers={"HX-Request": "true"}, data={
        "action": "preview", "subject": SUBJECT, "body": "Hi {{ contact_name }} <b>&\n\nSecond paragraph"})
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    fragment = response.text
    assert fragment.lstrip().startswith('<section class="card" id="preview"') and "<html" not in fragment
    assert "<strong>Invoice 2026-0042: $1,250.00 for Northwind Traders</strong>" in fragment
    # Staff text is text: escaped, a blank line makes a new paragraph.
    assert "<p>Hi Dana Fields &lt;b&gt;&amp;</p>\n<p>Second paragraph</p>" in fragment
    assert overrides() == []


def test_it_previews_without_javascript_with_the_preview_button(client, world):
    login(client, world.alice)
    response = client.post("/admin/settings/texts/pdf", data={
        "action": "preview", "header_note": "", "payment_instructions": "Wire {{ amount_due }}", "terms": "Net 30",
        "footer": "{{ organization_name }} · VAT 123"})
    assert response.status_code == 200 and "<html" in response.text
    assert "Wire $1,250.00" in response.text and "Org A · VAT 123" in response.text
    assert 'name="footer" rows="6" maxlength="5000"' in response.text
    assert "{{ organization_name }} · VAT 123</textarea>" in response.text
    assert overrides() == []


def test_it_resets_to_the_default_and_keeps_every_version(client, world):
    login(client, world.alice)
    client.post("/admin/settings/texts/receipt", data={"action": "save", "subject": "Paid, thanks", "body": "Thanks!"})
    response = client.post("/admin/settings/texts/receipt/reset")
    assert response.status_code == 303
    saved, reset = overrides(world.org_a.id)
    assert (saved.is_default, reset.is_default, reset.parts) == (False, True, {})
    event, = audits("template.reset")
    assert event.object_id == reset.id and event.details["previous_parts"] == saved.parts
    page = client.get("/admin/settings/texts/receipt").text
    assert 'value="Receipt {{ receipt_number }} for invoice' in page and "Reset to the default" in page
    assert "Paid, thanks" in page  # the earlier version in the history


ATTACKS = [
    "{{ config }}",
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ range.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ request.application.__globals__ }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "{% for a in client_name %}{% for b in client_name %}{% for c in client_name %}{{ c }}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{{ 'x' * 1000000000 }}",
    "{{ 10 ** 10 ** 10 }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ client_name.format_map({}) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% set x = config %}{{ x }}",
    "{% include 'admin/base.html' %}",
    "{% extends 'base.html' %}",
    "{% import 'emails/_button.html' as b %}",
    "{{ client_name|attr('__class__') }}",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_it_renders_nothing_secret_and_stops_quickly_on_injection_attempts(client, app, world, attack):
    login(client, world.alice)
    started = time.monotonic()
    preview = client.post("/admin/settings/texts/invoice", data={"action": "preview", "subject": "S", "body": attack})
    saved = client.post("/admin/settings/texts/invoice", data={"action": "save", "subject": "S", "body": attack})
    assert time.monotonic() - started < 3
    assert preview.status_code == 200 and saved.status_code == 422
    for page in (preview.text, saved.text):
        assert SECRET not in page and app.config["SECRET_KEY"] not in page
        assert "<class" not in page and "&lt;class" not in page and "__builtins__" not in page
        assert "SQLALCHEMY" not in page and "Dana Fields" not in page.split('id="preview"')[1].split("</section>")[0]
        assert 'role="alert" id="part-body-error"' in page or '<p class="error"><strong>Opening text:</strong>' in page
    assert overrides() == []
