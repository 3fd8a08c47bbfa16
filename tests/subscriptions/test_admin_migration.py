"""A price change never touches existing subscriptions; staff then move an earlier price's subscribers to the
current one: each audited and emailed (over a real SMTP server), from their period end, once however many times
the button is pressed; the renewal bills the new price."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.mail import deliver_due
from invoicing.models import AuditEvent, PlanPrice, Subscription
from invoicing.services.subscriptions import lifecycle, plans
from invoicing.services.subscriptions.plans import PriceData
from tests.conftest import NOW, SYSTEM, login, make_client
from tests.services.billing.helpers import site, utc
from tests.subscriptions.admin_helpers import make_plan, price_of
from tests.subscriptions.helpers import fresh, period_invoices


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def subscribe(client: Any, price: PlanPrice) -> Subscription:
    return lifecycle.create_subscription(client.organization_id, client_id=client.id, price_id=price.id, trial_days=0,
                                         actor=SYSTEM, now=NOW, site=site())


def edit_price(client: Any, plan_id: int, price: PlanPrice, amount: str) -> Any:
    return client.post(f"/admin/plans/{plan_id}/edit", data={
        "name": "Hosting", "trial_days": "0", "tax_rate": "0", "slug": "hosting", "prices-0-id": str(price.id),
        "prices-0-currency": "USD", "prices-0-amount": amount, "prices-0-interval_count": "1",
        "prices-0-interval_unit": "month"})


def test_subscribers_keep_their_price_until_moved_then_are_audited_emailed_and_billed_anew(client, world, smtp):
    plan = make_plan(world.org_a.id, "Hosting", PriceData("USD", 4900), slug="hosting")
    old = price_of(plan)
    beta = make_client(world.org_a, "Beta")
    first, second = subscribe(world.client_a, old), subscribe(beta, old)
    gone = subscribe(make_client(world.org_a, "Gone"), old)
    lifecycle.cancel_subscription(gone.id, world.org_a.id, at_period_end=False, actor=SYSTEM, now=NOW, site=site())
    deliver_due(now=NOW)
    smtp.clear()  # the sign-up and cancel emails are not this test's
    login(client, world.alice)

    assert edit_price(client, plan.id, old, "59.00").status_code == 303
    new = price_of(fresh_plan := plans.get_plan(plan.id, world.org_a.id))
    assert (new.amount, db.session.get(PlanPrice, old.id).archived_at is not None) == (5900, True)
    for sub in (first, second):  # nothing changed silently
        sub = fresh(sub)
        assert (sub.price_id, sub.pending_price_id) == (old.id, None)
        assert lifecycle.next_invoice_preview(sub, now=NOW) == (date(2026, 4, 10), 4900)
    page = client.get(f"/admin/plans/{plan.id}").text
    assert "Move subscribers" in page and fresh_plan.name in page

    response = client.post(f"/admin/plans/{plan.id}/prices/{old.id}/migrate", data={"to_price_id": str(new.id)},
                           follow_redirects=True)
    assert "2 subscriber(s) move to the new price at their period end; each client was emailed." in response.text
    assert "2 moving at period end" in response.text and "All scheduled to move." in response.text
    for sub in (first, second):
        sub = fresh(sub)
        assert (sub.price_id, sub.pending_price_id) == (old.id, new.id)
        assert lifecycle.next_invoice_preview(sub, now=NOW) == (date(2026, 4, 10), 5900)
    events = db.session.execute(select(AuditEvent).where(AuditEvent.action == "subscription.migrated")
                                .order_by(AuditEvent.object_id)).scalars().all()
    assert [(e.object_id, e.details["from_price_id"], e.details["price_id"], e.actor_label) for e in events] == [
        (first.id, old.id, new.id, "alice@a.test"), (second.id, old.id, new.id, "alice@a.test")]
    assert fresh(gone).pending_price_id is None  # canceled: left alone

    deliver_due(now=NOW)
    assert sorted(m["To"] for m in smtp.messages) == ["beta@clients.test", "clienta@clients.test"]
    message = smtp.messages[0]
    assert message["Subject"] == "Your Hosting price changes on April 10, 2026"
    body = message.get_body(("plain",)).get_content()
    assert "$49.00" in body and "$59.00" in body

    again = client.post(f"/admin/plans/{plan.id}/prices/{old.id}/migrate", data={"to_price_id": str(new.id)},
                        follow_redirects=True)
    assert "No subscriber was moved. 2 already moving." in again.text
    assert len(db.session.execute(select(AuditEvent).where(AuditEvent.action == "subscription.migrated")).all()) == 2

    lifecycle.renew_due(now=utc(2026, 4, 10, 18), site=site())
    sub = fresh(first)
    assert (sub.price_id, sub.pending_price_id) == (new.id, None)
    assert [i.total for i in period_invoices(sub)] == [4900, 5900]


def test_it_refuses_a_target_of_another_currency_or_a_price_still_offered(client, world):
    plan = make_plan(world.org_a.id, "Hosting", PriceData("USD", 4900), PriceData("EUR", 4500), slug="hosting")
    usd, eur = price_of(plan, "USD"), price_of(plan, "EUR")
    subscribe(world.client_a, usd)
    login(client, world.alice)
    response = client.post(f"/admin/plans/{plan.id}/prices/{usd.id}/migrate", data={"to_price_id": str(eur.id)},
                           follow_redirects=True)
    assert "Subscribers are moved off an earlier price; this one is still offered." in response.text
    plans.update_plan(plan.id, world.org_a.id, plans.PlanData(name="Hosting", slug="hosting", prices=(
        PriceData("USD", 5900, id=usd.id), PriceData("EUR", 4500, id=eur.id))), actor=SYSTEM, now=NOW)
    response = client.post(f"/admin/plans/{plan.id}/prices/{usd.id}/migrate", data={"to_price_id": str(eur.id)},
                           follow_redirects=True)
    assert "Choose one of the plan&#39;s current USD prices." in response.text
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "subscription.migrated")).first() is None


def test_another_organizations_plan_cannot_be_migrated(client, world):
    plan = make_plan(world.org_a.id, "Hosting", PriceData("USD", 4900), slug="hosting")
    login(client, world.bob)
    price = price_of(plan)
    assert client.post(f"/admin/plans/{plan.id}/prices/{price.id}/migrate",
                       data={"to_price_id": str(price.id)}).status_code == 404
