"""The portal's subscription pages are scoped to the signed-in contact's company: a contact of another client
(of the same organization, or of another organization) gets the same 404 as for a subscription that does not
exist, for every page and every action, and nothing changes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import OutboxEmail, SubscriptionChange
from tests.conftest import NOW, World, make_client, portal_login
from tests.subscriptions.helpers import fresh, make_plan, subscribe


@pytest.fixture
def setup(world: World, time_machine: Any) -> dict[str, Any]:
    time_machine.move_to(NOW, tick=False)
    basic = make_plan(world.org_a, "Basic", prices=(("USD", 1000, "month", 1),))
    pro = make_plan(world.org_a, "Pro", prices=(("USD", 3000, "month", 1),))
    theirs = subscribe(world.client_a, basic.prices[0], now=NOW, contact_id=world.client_a.contacts[0].id)
    return {"sub": theirs, "pro": pro.prices[0].id}


@pytest.mark.parametrize("who", ["same_org_other_client", "other_org", "nobody_such"])
def test_another_companys_subscription_is_not_found(client, world: World, setup: dict[str, Any], who: str) -> None:
    sub = setup["sub"]
    if who == "same_org_other_client":
        portal_login(client, make_client(world.org_a, "Client C").contacts[0])
    else:
        portal_login(client, world.client_b.contacts[0] if who == "other_org" else world.client_a.contacts[1])
    public_id = sub.public_id if who != "nobody_such" else "x" * 22
    before = db.session.scalars(select(OutboxEmail)).all()
    base = f"/portal/subscriptions/{public_id}"
    for path in (base, f"{base}/change", f"{base}/change?price_id={setup['pro']}&quantity=1", f"{base}/cancel"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"{base}/change", data={"price_id": setup["pro"], "quantity": 1,
                                               "request_key": "k" * 24}).status_code == 404
    assert client.post(f"{base}/cancel").status_code == 404
    assert client.post(f"{base}/resume").status_code == 404
    assert client.post(f"{base}/keep").status_code == 404
    listing = client.get("/portal/subscriptions")
    assert listing.status_code == 200 and (sub.public_id in listing.text) == (who == "nobody_such")  # own company
    current = fresh(sub)
    assert (current.price_id, current.cancel_at_period_end) == (sub.price_id, False)
    assert db.session.scalars(select(SubscriptionChange)).all() == []
    assert len(db.session.scalars(select(OutboxEmail)).all()) == len(before)


def test_a_second_contact_of_the_same_company_may_manage_it(client, world: World, setup: dict[str, Any]) -> None:
    portal_login(client, world.client_a.contacts[1])
    sub = setup["sub"]
    assert client.get(f"/portal/subscriptions/{sub.public_id}").status_code == 200
    assert client.post(f"/portal/subscriptions/{sub.public_id}/cancel").status_code == 303
    assert fresh(sub).cancel_at_period_end is True
