"""Admin recurring profiles: create (with inline errors, nothing saved), edit future periods, pause, resume, end,
the invoices made and the next date; another organization's profile answers 404."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, RecurringProfile
from invoicing.services.billing import recurring
from invoicing.services.invoices import LineData
from tests.conftest import NOW, SYSTEM, login, make_user
from tests.services.billing.helpers import fresh, site, utc

FORM: dict[str, Any] = {
    "client_id": "", "title": "Hosting, monthly", "currency": "", "interval_count": "1", "interval_unit": "month",
    "start_date": "2026-03-31", "end_date": "", "max_invoices": "", "payment_terms_days": "14", "send": "auto",
    "notes": "Thank you!", "lines-0-description": "Hosting", "lines-0-quantity": "1", "lines-0-unit_price": "49.00",
    "lines-0-tax_rate": "0", "lines-1-description": "", "lines-1-quantity": "", "lines-1-unit_price": "",
    "lines-1-tax_rate": "", "op": "save",
}


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)  # March 10 2026, 11:00 in New York


def form(world, **changes: str) -> dict[str, str]:  # noqa: ANN001
    return {**FORM, "client_id": str(world.client_a.id), **changes}


def profile_of(world) -> RecurringProfile:  # noqa: ANN001
    return recurring.create_profile(world.org_a.id, recurring.ProfileData(
        client_id=world.client_a.id, title="Support plan", currency="USD",
        lines=(LineData("Support", Decimal(2), 15000),), interval_unit="month", interval_count=1,
        start_date=date(2026, 3, 31), payment_terms_days=30), actor=SYSTEM, now=NOW)


def count() -> int:
    return int(db.session.scalar(select(func.count()).select_from(RecurringProfile)))


def test_it_creates_a_profile_and_shows_its_schedule(client, world):
    login(client, world.alice)
    assert "Hosting, monthly" not in client.get("/admin/recurring").text
    response = client.post("/admin/recurring/new", data=form(world))
    assert response.status_code == 303, response.text
    profile = db.session.execute(select(RecurringProfile)).scalar_one()
    assert response.location == f"/admin/recurring/{profile.id}"
    assert (profile.title, profile.currency, profile.interval_unit, profile.start_date, profile.next_period_start) == (
        "Hosting, monthly", "USD", "month", date(2026, 3, 31), date(2026, 3, 31))
    assert profile.lines == [{"description": "Hosting", "quantity": "1", "unit_price": 4900, "tax_rate": "0"}]
    assert profile.auto_send and profile.created_by_id == world.alice.id
    page = client.get(response.location).text
    assert "Every month on the 31st (the last day of shorter months)" in page
    assert "Mar 31, 2026" in page and "Apr 30, 2026" in page and "May 31, 2026" in page  # next invoices
    assert "$49.00 each period" in page and "None yet." in page
    listing = client.get("/admin/recurring").text
    assert "Hosting, monthly" in listing and "Active (1)" in listing
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "recurring.created")) == 1


def test_it_explains_each_mistake_and_saves_nothing(client, world):
    login(client, world.alice)
    response = client.post("/admin/recurring/new", data=form(
        world, title="", start_date="2026-03-01", end_date="2026-02-01", interval_count="x", max_invoices="0",
        **{"lines-0-unit_price": "abc"}))
    assert response.status_code == 422
    page = response.text
    assert "Nothing was saved" in page and "&#39;abc&#39; is not an amount." in page
    assert "A whole number, e.g. 1 for every month." in page and 'aria-invalid="true"' in page
    response = client.post("/admin/recurring/new", data=form(world, title="", start_date="2026-03-01",
                                                             end_date="2026-02-01", max_invoices="0"))
    assert response.status_code == 422
    for message in ("Say what is invoiced", "The first period cannot start before today (2026-03-10).",
                    "The end date cannot be before the start date.", "Between 1 and 10,000 invoices"):
        assert message in response.text, message
    no_lines = client.post("/admin/recurring/new", data=form(world, **{"lines-0-description": "",
                                                                       "lines-0-unit_price": ""}))
    assert no_lines.status_code == 422 and "Add at least one line." in no_lines.text
    assert count() == 0


def test_more_lines_and_client_search_work_without_javascript(client, world):
    login(client, world.alice)
    page = client.post("/admin/recurring/new", data=form(world, op="add_line")).text
    assert 'name="lines-4-description"' in page and 'value="Hosting"' in page
    assert count() == 0


def test_it_edits_future_periods_and_lists_the_invoices_made(client, world):
    profile = profile_of(world)
    recurring.generate_due(now=utc(2026, 3, 31, 13), site=site())
    login(client, world.alice)
    edit = client.get(f"/admin/recurring/{profile.id}/edit").text
    assert 'value="Support plan"' in edit and 'value="150.00"' in edit and "the 1 made keep what they say" in edit
    response = client.post(f"/admin/recurring/{profile.id}/edit", data=form(
        world, title="Support plan, bigger", start_date="2026-03-31", **{"lines-0-description": "Support XL",
                                                                         "lines-0-unit_price": "400"}))
    assert response.status_code == 303, response.text
    saved = fresh(RecurringProfile, profile.id)
    assert saved.title == "Support plan, bigger" and saved.lines[0]["unit_price"] == 40000
    page = client.get(f"/admin/recurring/{profile.id}").text
    assert "2026-0001" in page and "$300.00" in page  # the invoice made keeps its amount
    assert "$400.00 each period" in page and "Apr 30, 2026" in page


def test_it_pauses_resumes_and_ends(client, world):
    profile = profile_of(world)
    login(client, world.alice)
    assert client.post(f"/admin/recurring/{profile.id}/pause").status_code == 303
    assert fresh(RecurringProfile, profile.id).status == "paused"
    assert "is paused" in client.get(f"/admin/recurring/{profile.id}").text
    again = client.post(f"/admin/recurring/{profile.id}/pause", follow_redirects=True)
    assert "only an active profile can be paused" in again.text
    client.post(f"/admin/recurring/{profile.id}/resume")
    assert fresh(RecurringProfile, profile.id).status == "active"
    client.post(f"/admin/recurring/{profile.id}/end")
    ended = fresh(RecurringProfile, profile.id)
    assert (ended.status, ended.next_period_start) == ("ended", None)
    assert client.get(f"/admin/recurring/{profile.id}/edit").status_code == 303  # nothing to edit any more
    actions = db.session.execute(select(AuditEvent.action).where(AuditEvent.object_type == "recurringprofile")
                                 .order_by(AuditEvent.id)).scalars().all()
    assert actions == ["recurring.created", "recurring.paused", "recurring.resumed", "recurring.ended"]


def test_another_organizations_profile_is_not_found(client, world):
    profile = profile_of(world)
    login(client, make_user(world.org_b, "admin@b.test", "admin"))
    for path in (f"/admin/recurring/{profile.id}", f"/admin/recurring/{profile.id}/edit"):
        assert client.get(path).status_code == 404
    assert client.post(f"/admin/recurring/{profile.id}/end").status_code == 404
    assert "Support plan" not in client.get("/admin/recurring").text
    assert client.post("/admin/recurring/new", data=form(world)).status_code == 422  # Org A's client: refused
    assert fresh(RecurringProfile, profile.id).status == "active" and count() == 1
