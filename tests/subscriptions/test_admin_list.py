"""The staff subscriptions list: filters by status, plan and currency (nonsense ignored), keyset pages newest
first, only the organization's own subscriptions."""

from __future__ import annotations

import re

from invoicing.services.subscriptions import queries
from invoicing.services.subscriptions.plans import PriceData
from tests.conftest import login, make_client
from tests.subscriptions.admin_helpers import make_plan, price_of, subscription_row


def ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', page)]


def test_it_filters_by_status_plan_and_currency(client, world):
    gold = make_plan(world.org_a.id, "Gold", PriceData("USD", 9900), PriceData("EUR", 8900))
    basic = make_plan(world.org_a.id, "Basic", PriceData("USD", 900))
    euro = make_client(world.org_a, "Berlin GmbH", currency="EUR")
    active = subscription_row(world.client_a, price_of(gold, "USD"))
    late = subscription_row(world.client_a, price_of(basic), status="past_due")
    eur = subscription_row(euro, price_of(gold, "EUR"), status="trialing")
    theirs = subscription_row(world.client_b, price_of(make_plan(world.org_b.id, "Theirs", PriceData("JPY", 500))))
    login(client, world.alice)
    page = client.get("/admin/subscriptions").text
    assert ids(page) == [eur.id, late.id, active.id] and theirs.id not in ids(page)
    assert "Past due (1)" in page and "Trialing (1)" in page
    assert ids(client.get("/admin/subscriptions?status=past_due").text) == [late.id]
    assert ids(client.get(f"/admin/subscriptions?plan={gold.id}").text) == [eur.id, active.id]
    assert ids(client.get("/admin/subscriptions?currency=eur").text) == [eur.id]
    assert ids(client.get(f"/admin/subscriptions?plan={gold.id}&currency=USD&status=active").text) == [active.id]
    nonsense = client.get("/admin/subscriptions?status=bogus&plan=x&currency=1234").text
    assert ids(nonsense) == [eur.id, late.id, active.id]
    assert ids(client.get(f"/admin/subscriptions?plan={theirs.plan_id}").text) == []  # not theirs to see
    none = client.get("/admin/subscriptions?status=ended").text
    assert "No subscriptions match these filters." in none
    fragment = client.get("/admin/subscriptions?status=past_due", headers={"HX-Request": "true"}).text
    assert fragment.startswith('\n<div id="results">') or fragment.lstrip().startswith('<div id="results">')
    assert ids(fragment) == [late.id] and "<html" not in fragment


def test_it_pages_newest_first_by_keyset(client, world):
    plan = make_plan(world.org_a.id)
    rows = [subscription_row(world.client_a, price_of(plan)) for _ in range(5)]
    first = queries.list_subscriptions(world.org_a.id, queries.SubscriptionFilters(), limit=2)
    assert [s.id for s in first.rows] == [rows[4].id, rows[3].id] and first.next_after == rows[3].id
    second = queries.list_subscriptions(world.org_a.id, queries.SubscriptionFilters(), after=first.next_after, limit=2)
    third = queries.list_subscriptions(world.org_a.id, queries.SubscriptionFilters(), after=second.next_after, limit=2)
    assert [s.id for s in second.rows + third.rows] == [rows[2].id, rows[1].id, rows[0].id]
    assert third.next_after is None
    login(client, world.alice)
    assert ids(client.get(f"/admin/subscriptions?after={rows[2].id}").text) == [rows[1].id, rows[0].id]


def checked(page: str) -> str:
    [choice] = [re.search(r'value="(\w+)"', tag).group(1)  # type: ignore[union-attr]
                for tag in re.findall(r'<input[^>]*name="action"[^>]*>', page) if " checked" in tag]
    return choice


def test_admins_choose_what_happens_when_the_retries_end_unpaid(client, world):
    from sqlalchemy import select

    from invoicing.extensions import db
    from invoicing.models import AuditEvent, Organization
    from tests.conftest import make_user

    login(client, world.alice)
    page = client.get("/admin/subscriptions").text
    assert "When a subscription's charges fail for good" in page
    assert checked(page) == "cancel"  # the default
    response = client.post("/admin/subscriptions/unpaid-action", data={"action": "leave_unpaid"})
    assert response.status_code == 303 and response.headers["Location"].endswith("#unpaid-setting")
    db.session.expire_all()
    assert db.session.get(Organization, world.org_a.id).subscription_unpaid == "leave_unpaid"
    assert db.session.get(Organization, world.org_b.id).subscription_unpaid == "cancel"  # only their own
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "organization.subscription_unpaid")
                               ).scalar_one()
    assert event.details == {"before": "cancel", "after": "leave_unpaid"}
    assert checked(client.get("/admin/subscriptions").text) == "leave_unpaid"
    # Nonsense changes nothing; staff who are not admins neither see nor use it.
    assert client.post("/admin/subscriptions/unpaid-action", data={"action": "delete"}).status_code == 400
    client.post("/admin/logout")
    clerk = make_user(world.org_a, "clerk@a.test", role="staff")
    login(client, clerk)
    assert "fail for good" not in client.get("/admin/subscriptions").text
    assert client.post("/admin/subscriptions/unpaid-action", data={"action": "cancel"}).status_code == 403
    db.session.expire_all()
    assert db.session.get(Organization, world.org_a.id).subscription_unpaid == "leave_unpaid"
