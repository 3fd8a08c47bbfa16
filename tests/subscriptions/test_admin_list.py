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
