"""The staff subscription pages in a real browser at 1280 px and 390 px (the checks of tests/test_browser_pages.py:
no sideways page scroll, no serious axe violation), and the plan-change preview loaded into the client page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from invoicing.services.subscriptions import changes, lifecycle, plans
from invoicing.services.subscriptions.plans import PriceData
from tests.conftest import SYSTEM, World, make_client
from tests.pay.support import real_now
from tests.services.billing.helpers import site
from tests.test_browser_pages import (
    WIDTHS,
    assert_fits_and_accessible,
    log_in,
    sized_page,  # noqa: F401  (the fixture)
)

LONG = "Managed-platform-maintenance-" * 3  # an unbroken name: it must wrap, not widen the page


@dataclass
class Seeded:
    plan_id: int
    client_id: int
    subscription_id: int
    other_price_id: int


def seed(world: World) -> Seeded:
    """Two plans (one per seat with a replaced price and subscribers on the old one), and a client with a
    trialing, an active (a downgrade scheduled), a paused and a canceled subscription."""
    now = real_now()
    org = world.org_a
    seats = plans.create_plan(org.id, plans.PlanData(name=f"{LONG} seats", per_seat=True, public=True,
                                                     description=LONG, prices=(
        PriceData("USD", 123456, setup_fee=50000), PriceData("JPY", 1200000, "year"),
        PriceData("KWD", 12345, "month", 3))), actor=SYSTEM, now=now)
    care = plans.create_plan(org.id, plans.PlanData(name="Care plan", trial_days=14, prices=(
        PriceData("USD", 9900), PriceData("USD", 99000, "year"))), actor=SYSTEM, now=now)
    client = world.client_a

    def subscribe(price_id: int, **options: Any) -> int:
        return lifecycle.create_subscription(org.id, client_id=client.id, price_id=price_id, actor=SYSTEM, now=now,
                                             site=site(), **options).id

    usd = seats.prices[0].id
    active = subscribe(usd, quantity=12, trial_days=0)
    subscribe(care.prices[0].id)  # trialing
    paused = subscribe(care.prices[1].id, trial_days=0)
    lifecycle.pause_subscription(paused, org.id, actor=SYSTEM, now=now, site=site())
    canceled = subscribe(care.prices[0].id, trial_days=0)
    lifecycle.cancel_subscription(canceled, org.id, at_period_end=False, reason="Moving to another agency",
                                  actor=SYSTEM, now=now, site=site())
    changes.change_subscription(active, org.id, price_id=usd, quantity=3, request_key=None, actor=SYSTEM, now=now,
                                site=site())  # fewer seats: at period end
    jpy_client = make_client(org, "Kaiju Foods KK", currency="JPY")
    lifecycle.create_subscription(org.id, client_id=jpy_client.id, price_id=seats.prices[1].id, quantity=2,
                                  trial_days=0, actor=SYSTEM, now=now, site=site())
    plans.update_plan(seats.id, org.id, plans.PlanData(name=seats.name, slug=seats.slug, per_seat=True, prices=(
        PriceData("USD", 150000, id=usd), PriceData("JPY", 1200000, "year", id=seats.prices[1].id),
        PriceData("KWD", 12345, "month", 3, id=seats.prices[2].id))), actor=SYSTEM, now=now)
    return Seeded(seats.id, client.id, active, care.prices[0].id)


PAGES = {
    "subscriptions": lambda s: "/admin/subscriptions",
    "subscriptions filtered": lambda s: f"/admin/subscriptions?status=active&plan={s.plan_id}&currency=USD",
    "plans": lambda s: "/admin/plans",
    "plan": lambda s: f"/admin/plans/{s.plan_id}",
    "new plan": lambda s: "/admin/plans/new",
    "edit plan": lambda s: f"/admin/plans/{s.plan_id}/edit",
    "client with subscriptions": lambda s: f"/admin/clients/{s.client_id}",
}


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
@pytest.mark.parametrize("name", list(PAGES))
def test_it_fits_and_passes_axe_on_the_subscription_pages(sized_page, name, live_server_factory, world):  # noqa: F811
    server = live_server_factory(RATELIMIT_ENABLED="0")  # a login per test
    seeded = seed(world)
    log_in(sized_page, server.url, world)
    response = sized_page.goto(server.url + PAGES[name](seeded))
    assert response.status == 200
    assert_fits_and_accessible(sized_page)


@pytest.mark.parametrize("sized_page", list(WIDTHS), indirect=True)
def test_the_change_preview_opens_in_the_panel_and_fits(sized_page, live_server_factory, world):  # noqa: F811
    server = live_server_factory(RATELIMIT_ENABLED="0")
    seeded = seed(world)
    log_in(sized_page, server.url, world)
    sized_page.goto(f"{server.url}/admin/clients/{seeded.client_id}")
    article = sized_page.locator(f"#subscription-{seeded.subscription_id}")
    article.get_by_text("Change plan or seats…").click()
    article.get_by_role("textbox", name="Seats").fill("20")
    article.get_by_role("button", name="Preview the change").click()
    preview = article.locator(f"#preview-{seeded.subscription_id}")
    preview.get_by_role("button", name="Confirm the change").wait_for()
    assert "Seat change: takes effect today" in preview.inner_text()
    assert sized_page.url == f"{server.url}/admin/clients/{seeded.client_id}"  # loaded into the page, in place
    assert_fits_and_accessible(sized_page)
