"""Settings -> Reminders (admins), and the switches staff use: pause one invoice's reminders, a client's opt-out."""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Client, Invoice, Organization
from tests.conftest import login, make_invoice
from tests.services.billing.helpers import fresh, open_invoice, utc

ALL_OFF = {"send_hour": "9", "track_opens": ""}


def test_it_shows_the_default_policy_and_saves_the_admins_choice(client, world):
    login(client, world.alice)
    page = client.get("/admin/settings/reminders").text
    checked = re.findall(r'<input checked id="(\w+)"', page)
    assert checked == ["step_before_7", "step_before_1", "step_overdue_1", "step_overdue_7", "step_overdue_14",
                       "track_opens"]  # the default steps (not the due date) and open tracking
    assert '<option selected value="9">09:00</option>' in page
    assert 'href="/admin/settings/reminders"' in client.get("/admin/settings").text
    response = client.post("/admin/settings/reminders", data={"step_due": "y", "step_overdue_14": "y",
                                                               "send_hour": "17"})
    assert response.status_code == 303, response.text
    org = fresh(Organization, world.org_a.id)
    assert org.reminder_policy["send_hour"] == 17 and org.track_email_opens is False
    assert [k for k, on in org.reminder_policy["steps"].items() if on] == ["due", "overdue_14"]
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.object_type == "organization",
                                                             AuditEvent.action == "organization.reminders_updated"))


def test_it_refuses_a_bad_hour_and_saves_nothing(client, world):
    login(client, world.alice)
    response = client.post("/admin/settings/reminders", data={"step_due": "y", "send_hour": "24"})
    assert response.status_code == 400 and "Nothing was saved" in response.text
    assert fresh(Organization, world.org_a.id).reminder_policy == {}


def test_staff_cannot_change_the_policy(client, world):
    login(client, world.bob)
    assert client.get("/admin/settings/reminders").status_code == 403
    assert client.post("/admin/settings/reminders", data=ALL_OFF).status_code == 403


def test_staff_pause_and_resume_one_invoices_reminders(client, world, time_machine):
    time_machine.move_to(utc(2026, 4, 12, 14), tick=False)
    invoice = open_invoice(world.client_a, due=date(2026, 4, 20))
    login(client, world.alice)
    page = client.get(f"/admin/invoices/{invoice.id}").text
    assert "next “7 days before the due date”, 13 Apr 2026, 09:00 EDT" in page
    response = client.post(f"/admin/invoices/{invoice.id}/reminders", data={"paused": "1"}, follow_redirects=True)
    assert "Automatic reminders paused for this invoice." in response.text and "Resume reminders" in response.text
    assert fresh(Invoice, invoice.id).reminders_paused_at == utc(2026, 4, 12, 14)
    assert "Automatic reminders paused" in client.get(f"/admin/invoices/{invoice.id}").text  # on the timeline
    client.post(f"/admin/invoices/{invoice.id}/reminders", data={"paused": "0"})
    assert fresh(Invoice, invoice.id).reminders_paused_at is None
    draft = make_invoice(world.client_a)
    assert "<strong>Automatic reminders:</strong>" not in client.get(f"/admin/invoices/{draft.id}").text


def test_a_client_opts_out_of_automatic_reminders(client, world):
    login(client, world.alice)
    page = client.get(f"/admin/clients/{world.client_a.id}").text
    assert "Stop automatic reminders" in page
    response = client.post(f"/admin/clients/{world.client_a.id}/reminders", data={"opt_out": "1"},
                           follow_redirects=True)
    assert "Client A gets no automatic reminders." in response.text
    assert fresh(Client, world.client_a.id).reminders_opt_out is True
    invoice = open_invoice(world.client_a, due=date(2026, 4, 20))
    assert "Client A opted out" in client.get(f"/admin/invoices/{invoice.id}").text
    client.post(f"/admin/clients/{world.client_a.id}/reminders", data={"opt_out": "0"})
    assert fresh(Client, world.client_a.id).reminders_opt_out is False


def test_another_organizations_invoice_or_client_is_not_found(client, world):
    invoice = open_invoice(world.client_a, due=date(2026, 4, 20))
    login(client, world.bob)
    assert client.post(f"/admin/invoices/{invoice.id}/reminders", data={"paused": "1"}).status_code == 404
    assert client.post(f"/admin/clients/{world.client_a.id}/reminders", data={"opt_out": "1"}).status_code == 404
    assert fresh(Invoice, invoice.id).reminders_paused_at is None
    assert fresh(Client, world.client_a.id).reminders_opt_out is False
