"""Self-service in the portal (/portal/subscriptions): the contact sees plan, price, status, next invoice, trial
end and the subscription's invoices; changes plan or seats after a preview of the amounts (the whole page
without JS, its preview block for htmx) and a confirm step that makes one change however often it is sent;
cancels at period end and resumes; finds the card page. Each action is confirmed by email (subs-core's
notices, delivered to a real SMTP server)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from invoicing import mail
from invoicing.extensions import db
from invoicing.models import Subscription, SubscriptionChange
from invoicing.services.db import atomic
from invoicing.services.subscriptions import changes, lifecycle
from tests.conftest import NOW, World, portal_login
from tests.services.billing.helpers import emails, utc
from tests.subscriptions.helpers import fresh, make_plan, moves, period_invoices, subscribe

LATER = utc(2026, 3, 20, 15)  # ten days into the first period (March 10 - April 10, New York)


@pytest.fixture
def plans(world: World) -> dict[str, Any]:
    return {"basic": make_plan(world.org_a, "Basic", prices=(("USD", 1000, "month", 1),)),
            "pro": make_plan(world.org_a, "Pro", prices=(("USD", 3000, "month", 1),), tax_rate_milli=10000),
            "team": make_plan(world.org_a, "Team", prices=(("USD", 500, "month", 1),), per_seat=True),
            "euro": make_plan(world.org_a, "Euro", prices=(("EUR", 900, "month", 1),))}


@pytest.fixture
def sub(world: World, plans: dict[str, Any], time_machine: Any) -> Subscription:
    time_machine.move_to(NOW, tick=False)
    return subscribe(world.client_a, plans["basic"].prices[0], now=NOW, contact_id=world.client_a.contacts[0].id)


@pytest.fixture
def signed_in(client, world: World, sub: Subscription) -> Any:
    portal_login(client, world.client_a.contacts[0], now=NOW)
    return client


def _price(plans: dict[str, Any], name: str) -> int:
    return int(plans[name].prices[0].id)


def _confirm_form(page: str) -> dict[str, str]:
    form = re.search(r'<form method="post" action="[^"]*/change">(.*?)</form>', page, re.S)
    assert form, page
    return dict(re.findall(r'name="(\w+)" type="hidden" value="([^"]*)"', form.group(1)))


# --- what the contact sees --------------------------------------------------------------------------------


def test_the_list_and_the_page_show_plan_price_status_next_invoice_and_invoices(signed_in, world, sub) -> None:
    nav = signed_in.get("/portal/").text
    assert '<a href="/portal/subscriptions">Subscriptions</a>' in nav
    listing = signed_in.get("/portal/subscriptions")
    assert listing.status_code == 200 and "<h2" in listing.text and ">Basic</h2>" in listing.text
    assert f'href="/portal/subscriptions/{sub.public_id}"' in listing.text

    page = signed_in.get(f"/portal/subscriptions/{sub.public_id}")
    assert page.status_code == 200 and "<h1>Basic</h1>" in page.text
    assert '<dd class="sub-price">$10.00 per month</dd>' in page.text
    assert re.search(r'class="sub-status"><span class="badge badge-paid">active</span>', page.text)
    when, amount = lifecycle.next_invoice_preview(fresh(sub), now=NOW)
    assert (when, amount) == (date(2026, 4, 10), 1000)
    assert '<dd class="sub-next">Apr 10, 2026: <strong>$10.00</strong></dd>' in page.text
    first, = period_invoices(sub)
    assert f'href="/portal/invoices/{first.public_id}">{first.number}</a>' in page.text
    assert 'href="/portal/payment-methods">Update your card</a>' in page.text
    assert "Trial ends" not in page.text


def test_a_trial_shows_its_end_and_no_invoice_yet(client, world, plans) -> None:
    trial = make_plan(world.org_a, "Trial", prices=(("USD", 2000, "month", 1),), trial_days=14)
    sub = subscribe(world.client_a, trial.prices[0], now=NOW, contact_id=world.client_a.contacts[0].id)
    portal_login(client, world.client_a.contacts[0])
    page = client.get(f"/portal/subscriptions/{sub.public_id}").text
    assert '<dd class="sub-trial-end">Mar 24, 2026</dd>' in page
    assert "No invoice yet: the first one is issued when the trial ends, on Mar 24, 2026." in page


def test_past_due_says_to_pay_the_open_invoice_and_a_change_waits(signed_in, plans, sub) -> None:
    with atomic():
        fresh(sub).status = "past_due"  # as the engine leaves it after a failed charge (its own tests cover that)
    page = signed_in.get(f"/portal/subscriptions/{sub.public_id}").text
    assert 'id="past-due">A payment is overdue. Pay the open invoice below' in page
    assert '<span class="badge badge-overdue">past due</span>' in page
    first, = period_invoices(sub)
    assert f'href="/portal/invoices/{first.public_id}"' in page
    preview = signed_in.get(f"/portal/subscriptions/{sub.public_id}/change?price_id={_price(plans, 'pro')}")
    assert preview.status_code == 422 and "Confirm the change" not in preview.text
    assert fresh(sub).price_id == _price(plans, "basic")


def test_a_company_without_subscriptions_sees_an_empty_page(client, world) -> None:
    portal_login(client, world.client_a.contacts[0])
    assert "Client A has no subscription." in client.get("/portal/subscriptions").text


def test_signed_out_visitors_go_to_sign_in(client, sub) -> None:
    for path in ("/portal/subscriptions", f"/portal/subscriptions/{sub.public_id}",
                 f"/portal/subscriptions/{sub.public_id}/change"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["Location"].startswith("/portal/login")
    assert client.post(f"/portal/subscriptions/{sub.public_id}/cancel").status_code == 303
    assert fresh(sub).cancel_at_period_end is False


# --- changing plan or seats ------------------------------------------------------------------------------------


def test_an_upgrade_is_previewed_then_confirmed_once_and_emailed(signed_in, world, plans, sub, time_machine,
                                                                 smtp) -> None:
    time_machine.move_to(LATER, tick=False)
    choose = signed_in.get(f"/portal/subscriptions/{sub.public_id}/change")
    assert choose.status_code == 200 and "Basic: $10.00 per month" in choose.text and "(current)" in choose.text
    assert "Confirm the change" not in choose.text  # no choice made yet: no preview

    url = f"/portal/subscriptions/{sub.public_id}/change?price_id={_price(plans, 'pro')}&quantity=1"
    page = signed_in.get(url)
    expected = changes.preview_change(sub.id, world.org_a.id, price_id=_price(plans, "pro"), quantity=1, now=LATER)
    assert (expected.kind, expected.takes_effect) == ("upgrade", "now") and expected.net > 0
    assert page.status_code == 200 and "Upgrade: what you pay" in page.text
    for description, minor in expected.lines:
        assert description in page.text
        assert mail_money(minor) in page.text
    assert f'<td class="num" id="preview-net">{mail_money(expected.net)}</td>' in page.text
    assert "Charged now to your card" in page.text
    assert fresh(sub).price_id == _price(plans, "basic")  # a preview changes nothing

    fragment = signed_in.get(url, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text and "Upgrade: what you pay" in fragment.text

    form = _confirm_form(page.text)
    assert form["price_id"] == str(_price(plans, "pro")) and len(form["request_key"]) >= 20
    for _ in range(2):  # a double click, or the page reloaded and sent again: one change
        done = signed_in.post(f"/portal/subscriptions/{sub.public_id}/change", data=form)
        assert done.status_code == 303 and done.headers["Location"] == f"/portal/subscriptions/{sub.public_id}"
    change, = db.session.scalars(select(SubscriptionChange)).all()
    assert (change.kind, change.status, change.actor_type, change.request_key) == (
        "upgrade", "applied", "contact", form["request_key"])
    assert (change.credit, change.charge) == (expected.credit, expected.charge)
    assert fresh(sub).price_id == _price(plans, "pro")
    after = signed_in.get(f"/portal/subscriptions/{sub.public_id}").text
    assert "Your subscription is now Pro ($30.00 per month)." in after
    assert "<h1>Pro</h1>" in after and 'plus 10% tax' in after
    invoice_numbers = re.findall(r'href="/portal/invoices/\w+">([^<]+)</a>', after)
    assert len(invoice_numbers) == 2  # the first period's and the upgrade's

    queued = emails("subscription")
    assert [e.subject for e in queued] == ["Your subscription to Basic", "Your Pro subscription: plan change confirmed"]
    report = mail.deliver_due(now=datetime.now(UTC))
    assert report.sent == len(emails())
    sent = [m for m in smtp.wait_for(report.sent) if m["Subject"] == "Your Pro subscription: plan change confirmed"]
    assert len(sent) == 1 and sent[0]["To"] == world.client_a.contacts[0].email
    assert moves(sub).count("subscription.changed") == 1


def test_a_downgrade_is_scheduled_for_the_period_end(signed_in, plans, sub, time_machine) -> None:
    signed_in.post(f"/portal/subscriptions/{sub.public_id}/change",
                   data={"price_id": _price(plans, "pro"), "quantity": 1, "request_key": "k" * 24})
    time_machine.move_to(LATER, tick=False)
    page = signed_in.get(f"/portal/subscriptions/{sub.public_id}/change?price_id={_price(plans, 'basic')}")
    assert "Takes effect at the end of the current period, on Apr 10, 2026" in page.text
    form = _confirm_form(page.text)
    done = signed_in.post(f"/portal/subscriptions/{sub.public_id}/change", data=form)
    assert done.status_code == 303
    after = signed_in.get(f"/portal/subscriptions/{sub.public_id}").text
    assert "Your change to Basic ($10.00 per month) takes effect on Apr 10, 2026." in after
    assert '<dd class="sub-pending">Changes to Basic ($10.00 per month) on Apr 10, 2026</dd>' in after
    current = fresh(sub)
    assert (current.price_id, current.pending_price_id) == (_price(plans, "pro"), _price(plans, "basic"))
    for _ in range(2):  # changed their mind: keep Pro (twice: the second finds nothing scheduled)
        assert signed_in.post(f"/portal/subscriptions/{sub.public_id}/keep").status_code == 303
    assert "The scheduled change is dropped: you keep Pro." in signed_in.get(
        f"/portal/subscriptions/{sub.public_id}").text
    current = fresh(sub)
    assert (current.price_id, current.pending_price_id) == (_price(plans, "pro"), None)
    assert moves(sub).count("subscription.change_canceled") == 1
    assert [e.subject for e in emails("subscription")][-2:] == ["Your Pro subscription: plan change confirmed",
                                                                "Your Pro subscription stays as it is"]


def test_seats_change_on_a_per_seat_plan(client, world, plans) -> None:
    sub = subscribe(world.client_a, plans["team"].prices[0], now=NOW, quantity=2)
    portal_login(client, world.client_a.contacts[0])
    page = client.get(f"/portal/subscriptions/{sub.public_id}").text
    assert '<dd class="sub-price">$10.00 per month (2 seats)</dd>' in page
    preview = client.get(f"/portal/subscriptions/{sub.public_id}/change?price_id={_price(plans, 'team')}&quantity=5")
    assert preview.status_code == 200 and "Seats change: what you pay" in preview.text
    assert client.post(f"/portal/subscriptions/{sub.public_id}/change",
                       data=_confirm_form(preview.text)).status_code == 303
    assert fresh(sub).quantity == 5


@pytest.mark.parametrize(("query", "message"), [
    ("price_id={basic}&quantity=1", "That is your current plan: choose another plan or another number of seats."),
    ("price_id={euro}", "Choose one of the plans offered."),  # another currency: not offered
    ("price_id=999999", "Choose one of the plans offered."),
    ("price_id={team}&quantity=abc", "Choose between 1 and 10,000 seats."),
    ("price_id={team}&quantity=0", "Choose between 1 and 10,000 seats."),
])
def test_a_preview_that_cannot_be_made_says_why(signed_in, plans, sub, query, message) -> None:
    ids = {name: plan.prices[0].id for name, plan in plans.items()}
    page = signed_in.get(f"/portal/subscriptions/{sub.public_id}/change?" + query.format(**ids))
    assert page.status_code == 422 and message in page.text and "Confirm the change" not in page.text
    assert "EUR" not in page.text.split("change-preview")[0]  # the euro plan is not among the choices
    assert fresh(sub).price_id == ids["basic"] and db.session.scalars(select(SubscriptionChange)).all() == []


# --- cancel and resume ---------------------------------------------------------------------------------------


def test_cancel_at_period_end_then_resume(signed_in, world, sub, smtp) -> None:
    page = signed_in.get(f"/portal/subscriptions/{sub.public_id}/cancel")
    assert page.status_code == 200 and "<h1>Cancel Basic?</h1>" in page.text and "Apr 10, 2026" in page.text
    for _ in range(2):
        done = signed_in.post(f"/portal/subscriptions/{sub.public_id}/cancel", data={"reason": "Too   expensive"})
        assert done.status_code == 303
    cancelled = fresh(sub)
    assert (cancelled.cancel_at_period_end, cancelled.status, cancelled.cancel_reason) == (True, "active",
                                                                                           "Too expensive")
    after = signed_in.get(f"/portal/subscriptions/{sub.public_id}").text
    assert "Your subscription is cancelled: it ends on Apr 10, 2026. You can resume it until then." in after
    assert "Resume subscription" in after and "Change plan or seats" not in after and "sub-next" not in after
    assert moves(sub).count("subscription.cancel_scheduled") == 1

    for _ in range(2):
        assert signed_in.post(f"/portal/subscriptions/{sub.public_id}/resume").status_code == 303
    assert fresh(sub).cancel_at_period_end is False
    assert "Your subscription is resumed: it renews as before." in signed_in.get(
        f"/portal/subscriptions/{sub.public_id}").text
    assert moves(sub).count("subscription.cancel_undone") == 1

    subjects = [e.subject for e in emails("subscription")]
    assert subjects == ["Your subscription to Basic", "Your Basic subscription ends on April 10, 2026",
                        "Your Basic subscription continues"]  # started, then one per action
    report = mail.deliver_due(now=datetime.now(UTC))
    assert report.sent == len(emails())
    assert {m["To"] for m in smtp.wait_for(report.sent)} == {world.client_a.contacts[0].email}


def test_every_action_needs_its_csrf_token(app, signed_in, plans, sub) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        base = f"/portal/subscriptions/{sub.public_id}"
        assert 'name="csrf_token"' in signed_in.get(f"{base}/cancel").text
        assert signed_in.post(f"{base}/change", data={"price_id": _price(plans, "pro"), "quantity": 1,
                                                      "request_key": "k" * 24}).status_code == 400
        assert signed_in.post(f"{base}/cancel").status_code == 400
        assert signed_in.post(f"{base}/resume").status_code == 400
        assert signed_in.post(f"{base}/keep").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    current = fresh(sub)
    assert (current.price_id, current.cancel_at_period_end) == (_price(plans, "basic"), False)


def mail_money(minor: int) -> str:
    """Money as the page writes it (USD)."""
    sign = "-" if minor < 0 else ""
    return f"{sign}${abs(minor) / 100:,.2f}"
