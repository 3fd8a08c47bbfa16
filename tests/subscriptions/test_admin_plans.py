"""Staff plans: create and edit with prices typed in major units (USD, JPY, KWD), validation with a message
beside each field and nothing written, a changed price is a new price (existing subscriptions keep theirs),
archive and restore, and another organization's plan answers 404."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Plan, PlanPrice
from invoicing.services.subscriptions import plans
from tests.conftest import NOW, SYSTEM, login

FORM: dict[str, Any] = {
    "name": "Maintenance", "description": "Updates and backups", "trial_days": "14", "tax_rate": "8.875",
    "per_seat": "y", "public": "y", "slug": "maintenance",
    "prices-0-id": "", "prices-0-currency": "USD", "prices-0-amount": "1,234.50", "prices-0-interval_count": "1",
    "prices-0-interval_unit": "month", "prices-0-setup_fee": "99",
    "prices-1-id": "", "prices-1-currency": "JPY", "prices-1-amount": "50000", "prices-1-interval_count": "1",
    "prices-1-interval_unit": "year", "prices-1-setup_fee": "",
    "prices-2-id": "", "prices-2-currency": "KWD", "prices-2-amount": "12.345", "prices-2-interval_count": "3",
    "prices-2-interval_unit": "month", "prices-2-setup_fee": "",
    "prices-3-id": "", "prices-3-currency": "USD", "prices-3-amount": "", "prices-3-interval_count": "1",
    "prices-3-interval_unit": "month", "prices-3-setup_fee": "",
}


def count(model: type) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)))


def make_plan(org_id: int, **overrides: Any) -> Plan:
    data = plans.PlanData(name=overrides.pop("name", "Support"), slug=overrides.pop("slug", ""), prices=overrides.pop(
        "prices", (plans.PriceData("USD", 4900),)), **overrides)
    return plans.create_plan(org_id, data, actor=SYSTEM, now=NOW)


def test_it_creates_a_plan_with_prices_in_minor_units_of_each_currency(client, world):
    login(client, world.alice)
    assert client.get("/admin/plans/new").status_code == 200
    response = client.post("/admin/plans/new", data=FORM)
    assert response.status_code == 303, response.text
    plan = db.session.execute(select(Plan)).scalar_one()
    assert response.location == f"/admin/plans/{plan.id}"
    assert (plan.name, plan.slug, plan.public, plan.trial_days, plan.tax_rate_milli, plan.per_seat,
            plan.organization_id) == ("Maintenance", "maintenance", True, 14, 8875, True, world.org_a.id)
    assert [(p.currency, p.amount, p.interval_unit, p.interval_count, p.setup_fee) for p in plan.prices] == [
        ("USD", 123450, "month", 1, 9900), ("JPY", 50000, "year", 1, 0), ("KWD", 12345, "month", 3, 0)]
    page = client.get(response.location).text
    assert "$1,234.50 per seat every month (+ $99.00 setup)" in page and "¥50,000 per seat every year" in page
    assert "KWD12.345 per seat every 3 months" in page
    assert "/subscribe/maintenance" in page
    listing = client.get("/admin/plans").text
    assert "Maintenance" in listing and "14 days" in listing
    created = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "plan.created")
    assert db.session.scalar(created) == 1


def test_it_makes_a_slug_from_the_name_when_none_is_given(client, world):
    make_plan(world.org_a.id, name="Gold Support")
    login(client, world.alice)
    response = client.post("/admin/plans/new", data={**FORM, "name": "Gold Support!", "slug": ""})
    assert response.status_code == 303, response.text
    assert sorted(db.session.execute(select(Plan.slug)).scalars()) == ["gold-support", "gold-support-2"]


def test_it_explains_each_mistake_and_writes_nothing(client, world):
    make_plan(world.org_b.id, slug="taken")  # slugs are unique across the site
    login(client, world.alice)
    before = count(AuditEvent)
    bad = {**FORM, "name": "", "trial_days": "-3", "tax_rate": "101", "slug": "Bad Slug",
           "prices-0-amount": "12.345", "prices-1-amount": "100.5", "prices-2-interval_count": "0"}
    response = client.post("/admin/plans/new", data=bad)
    assert response.status_code == 422
    page = response.text
    assert "Nothing was saved" in page
    assert "Give the plan a name." in page and "0 to 365 days (0: no trial)." in page
    assert "0 to 100 %, at most 3 decimals." in page
    assert "USD amounts take at most 2 decimals." in page and "JPY amounts take no decimals." in page
    assert "A whole number, e.g. 1 for every month." in page or "Every 1 to 36 months." in page
    response = client.post("/admin/plans/new", data={**FORM, "slug": "Bad Slug"})
    assert response.status_code == 422 and "Lowercase letters, digits and dashes" in response.text
    response = client.post("/admin/plans/new", data={**FORM, "slug": "taken"})
    assert response.status_code == 422 and "/subscribe/taken is taken; choose another." in response.text
    same = {"prices-2-currency": "USD", "prices-2-amount": "5", "prices-2-interval_count": "1"}
    response = client.post("/admin/plans/new", data={**FORM, **same})
    assert response.status_code == 422 and "Price 1 already bills USD every month." in response.text
    empty = {k: ("" if k.endswith("-amount") else v) for k, v in FORM.items()}
    response = client.post("/admin/plans/new", data=empty)
    assert response.status_code == 422 and "Give the plan at least one price." in response.text
    response = client.post("/admin/plans/new", data={**FORM, "prices-0-amount": "0"})
    assert response.status_code == 422 and "Each period must cost more than zero." in response.text
    assert (count(Plan), count(PlanPrice), count(AuditEvent)) == (1, 1, before)  # only org B's plan


def test_a_changed_price_is_a_new_price_and_subscriptions_keep_theirs(client, world):
    plan = make_plan(world.org_a.id, name="Hosting", slug="hosting",
                     prices=(plans.PriceData("USD", 4900), plans.PriceData("EUR", 4500)))
    usd, eur = plan.prices
    login(client, world.alice)
    page = client.get(f"/admin/plans/{plan.id}/edit").text
    assert 'value="49.00"' in page and 'value="45.00"' in page
    response = client.post(f"/admin/plans/{plan.id}/edit", data={
        "name": "Hosting", "description": "", "trial_days": "0", "tax_rate": "0", "slug": "hosting",
        "prices-0-id": str(usd.id), "prices-0-currency": "USD", "prices-0-amount": "59.00",
        "prices-0-interval_count": "1", "prices-0-interval_unit": "month", "prices-0-setup_fee": "",
        "prices-1-id": str(eur.id), "prices-1-currency": "EUR", "prices-1-amount": "45", "prices-1-interval_count": "1",
        "prices-1-interval_unit": "month", "prices-1-setup_fee": "",
        "prices-2-id": "", "prices-2-currency": "USD", "prices-2-amount": "590", "prices-2-interval_count": "1",
        "prices-2-interval_unit": "year", "prices-2-setup_fee": ""})
    assert response.status_code == 303, response.text
    db.session.expire_all()
    rows = db.session.execute(select(PlanPrice).order_by(PlanPrice.id)).scalars().all()
    assert [(p.currency, p.amount, p.interval_unit, p.archived_at is not None) for p in rows] == [
        ("USD", 4900, "month", True), ("EUR", 4500, "month", False), ("USD", 5900, "month", False),
        ("USD", 59000, "year", False)]
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "plan.updated")).scalar_one()
    assert event.details["replaced"] == [{"old": usd.id, "new": rows[2].id}]
    assert "subscribers keep the old price" in client.get(response.location).text


def test_it_removes_a_price_but_never_the_last_one(client, world):
    plan = make_plan(world.org_a.id, slug="solo")
    price = plan.prices[0]
    login(client, world.alice)
    response = client.post(f"/admin/plans/{plan.id}/edit", data={
        "name": "Support", "trial_days": "0", "tax_rate": "0", "slug": "solo", "prices-0-id": str(price.id),
        "prices-0-currency": "USD", "prices-0-amount": "49", "prices-0-interval_count": "1",
        "prices-0-interval_unit": "month", "prices-0-remove": "y"})
    assert response.status_code == 422 and "Give the plan at least one price." in response.text
    db.session.expire_all()
    assert db.session.get(PlanPrice, price.id).archived_at is None


def test_archive_stops_new_sign_ups_and_restore_reopens(client, world):
    plan = make_plan(world.org_a.id, slug="arch", public=True)
    login(client, world.alice)
    response = client.post(f"/admin/plans/{plan.id}/archive")
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Plan, plan.id).archived_at is not None
    assert "is archived: no new subscribers; its subscribers keep billing." in client.get("/admin/plans").text
    assert f"/admin/plans/{plan.id}" not in client.get("/admin/plans").text
    assert f"/admin/plans/{plan.id}" in client.get("/admin/plans?archived=1").text
    assert "already archived" in client.post(f"/admin/plans/{plan.id}/archive", follow_redirects=True).text
    client.post(f"/admin/plans/{plan.id}/archive", data={"restore": "1"})
    db.session.expire_all()
    assert db.session.get(Plan, plan.id).archived_at is None
    actions = db.session.execute(select(AuditEvent.action).where(AuditEvent.object_type == "plan")
                                 .order_by(AuditEvent.id)).scalars().all()
    assert actions == ["plan.created", "plan.archived", "plan.restored"]


def test_another_organizations_plan_answers_404(client, world):
    plan = make_plan(world.org_b.id, slug="theirs")
    login(client, world.alice)
    for url in (f"/admin/plans/{plan.id}", f"/admin/plans/{plan.id}/edit"):
        assert client.get(url).status_code == 404
    assert client.post(f"/admin/plans/{plan.id}/archive").status_code == 404
    assert client.post(f"/admin/plans/{plan.id}/edit", data={**FORM, "slug": "mine"}).status_code == 404
    assert f"/admin/plans/{plan.id}" not in client.get("/admin/plans").text
    db.session.expire_all()
    assert db.session.get(Plan, plan.id).archived_at is None
