"""The client page's subscription panel, end to end through the engine (services/subscriptions/lifecycle.py,
changes.py): subscribe with or without trial (a resubmitted form makes one), bad input explained with nothing
written, change plan with a preview (hand-calculated proration) then confirm, a downgrade at period end and
dropping it, cancel at period end and undo, pause and resume, cancel now with a prorated refund through the
refund door; and another organization's client or subscription answers 404."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Invoice, OutboxEmail, Refund, Subscription, SubscriptionChange
from invoicing.services.payments import record_manual_payment
from invoicing.services.subscriptions import plans
from invoicing.services.subscriptions.plans import PriceData
from tests.conftest import NOW, SYSTEM, login
from tests.subscriptions.admin_helpers import make_plan, price_of
from tests.subscriptions.helpers import fresh, moves, period_invoices


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)  # March 10 2026, 11:00 in New York (org A)


def count(model: type) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)))


def subject_lines() -> list[str]:
    return list(db.session.execute(select(OutboxEmail.subject).where(OutboxEmail.kind == "subscription")
                                   .order_by(OutboxEmail.id)).scalars())


def subscribe(client, world, price_id: int, **fields: str):  # noqa: ANN001, ANN201
    data = {"price_id": str(price_id), "quantity": "1", "trial": "none", "charge": "now", "key": "form-key-1"}
    return client.post(f"/admin/clients/{world.client_a.id}/subscriptions", data={**data, **fields})


def only_subscription() -> Subscription:
    return db.session.execute(select(Subscription)).scalar_one()


def test_it_subscribes_a_client_with_the_plans_trial_once(client, world):
    plan = make_plan(world.org_a.id, "Seats", PriceData("USD", 1000), trial_days=14, per_seat=True)
    login(client, world.alice)
    page = client.get(f"/admin/clients/{world.client_a.id}").text
    assert "Subscribe this client" in page and "Seats — $10.00 per seat every month" in page
    response = subscribe(client, world, price_of(plan).id, quantity="3", trial="plan")
    assert response.status_code == 303, response.text
    sub = only_subscription()
    assert response.location == f"/admin/clients/{world.client_a.id}#subscription-{sub.id}"
    assert (sub.status, sub.quantity, sub.trial_end, sub.client_id) == ("trialing", 3, date(2026, 3, 24),
                                                                        world.client_a.id)
    assert subscribe(client, world, price_of(plan).id, quantity="3", trial="plan").status_code == 303
    assert count(Subscription) == 1  # the same form twice: one subscription
    page = client.get(f"/admin/clients/{world.client_a.id}").text
    panel = page[page.index(f'id="subscription-{sub.id}"'):]
    assert "trialing" in panel and "Mar 24, 2026, $30.00" in panel  # the next invoice: 3 seats after the trial
    assert "Subscribed" in panel and "alice@a.test" in panel  # history, with who did it
    assert moves(sub) == ["subscription.created"]
    assert subject_lines() == ["Your subscription to Seats"]
    assert period_invoices(sub) == []


def test_without_trial_the_first_invoice_is_issued_now_or_due_after_the_terms(client, world):
    plan = make_plan(world.org_a.id, "Flat", PriceData("USD", 4900, setup_fee=1000), trial_days=7)
    login(client, world.alice)
    assert subscribe(client, world, price_of(plan).id, trial="none", charge="now").status_code == 303
    assert subscribe(client, world, price_of(plan).id, trial="none", charge="due", key="form-key-2").status_code == 303
    first, second = db.session.execute(select(Subscription).order_by(Subscription.id)).scalars()
    assert (first.status, second.status, first.trial_end) == ("active", "active", None)
    [now_invoice], [later] = period_invoices(first), period_invoices(second)
    assert (now_invoice.status, now_invoice.total, now_invoice.issue_date) == ("open", 5900, date(2026, 3, 10))
    assert now_invoice.number and later.number
    assert later.due_date == date(2026, 3, 10) + timedelta(days=world.org_a.payment_terms_days)
    page = client.get(f"/admin/clients/{world.client_a.id}").text
    assert "Apr 10, 2026, $49.00" in page  # next period: no setup fee again


def test_bad_input_is_explained_and_nothing_is_written(client, world):
    flat = make_plan(world.org_a.id, "Flat", PriceData("USD", 4900))
    old = make_plan(world.org_a.id, "Old", PriceData("USD", 100))
    plans.archive_plan(old.id, world.org_a.id, actor=SYSTEM, now=NOW)
    login(client, world.alice)
    response = subscribe(client, world, price_of(flat).id, quantity="0")
    assert response.status_code == 422 and "1 to 10,000 seats." in response.text
    response = subscribe(client, world, price_of(flat).id, quantity="2")
    assert response.status_code == 422 and "Flat is not sold per seat: the quantity is 1." in response.text
    response = subscribe(client, world, price_of(old).id)
    assert response.status_code == 422 and "Old is no longer offered" in response.text
    assert "Nothing was saved" in response.text and 'open id="subscribe"' in response.text
    assert (count(Subscription), count(Invoice), count(OutboxEmail)) == (0, 0, 0)


def test_a_plan_change_is_previewed_then_confirmed_with_the_previewed_amounts(client, world, time_machine):
    basic = make_plan(world.org_a.id, "Basic", PriceData("USD", 1000))
    pro = make_plan(world.org_a.id, "Pro", PriceData("USD", 3000))
    login(client, world.alice)
    subscribe(client, world, price_of(basic).id)
    sub = only_subscription()
    assert (sub.current_period_start, sub.current_period_end) == (date(2026, 3, 10), date(2026, 4, 10))
    time_machine.move_to(NOW + timedelta(days=10), tick=False)  # March 20: 21 of the period's 31 days are left
    change = {"price_id": str(price_of(pro).id), "quantity": "1", "key": "change-key"}
    preview = client.post(f"/admin/subscriptions/{sub.id}/change", data={**change, "op": "preview"},
                          headers={"HX-Request": "true"})
    assert preview.status_code == 200 and "<html" not in preview.text  # the fragment for the panel
    # credit 1000 x 21/31 = 677.42 -> 677; charge 3000 x 21/31 = 2032.26 -> 2032; net 1355
    assert "Upgrade: takes effect today" in preview.text
    assert "-$6.77" in preview.text and "$20.32" in preview.text and 'data-net="1355">$13.55' in preview.text
    assert count(SubscriptionChange) == 0  # a preview changes nothing
    page = client.post(f"/admin/subscriptions/{sub.id}/change", data={**change, "op": "preview"})
    assert "<html" in page.text and "Confirm the change" in page.text  # the same without JavaScript
    done = client.post(f"/admin/subscriptions/{sub.id}/change", data={**change, "op": "confirm"})
    assert done.status_code == 303 and done.location.endswith(f"#subscription-{sub.id}")
    client.post(f"/admin/subscriptions/{sub.id}/change", data={**change, "op": "confirm"})  # resubmitted
    applied = db.session.execute(select(SubscriptionChange)).scalar_one()
    assert (applied.kind, applied.status, applied.credit, applied.charge) == ("upgrade", "applied", 677, 2032)
    assert db.session.get(Invoice, applied.invoice_id).total == 1355
    assert (fresh(sub).price_id, fresh(sub).plan_id) == (price_of(pro).id, pro.id)
    assert "Your Pro subscription: plan change confirmed" in subject_lines()
    assert "Plan or seats changed" in client.get(f"/admin/clients/{world.client_a.id}").text

    downgrade = {"price_id": str(price_of(basic).id), "quantity": "1", "key": "downgrade-key", "op": "confirm"}
    assert client.post(f"/admin/subscriptions/{sub.id}/change", data=downgrade).status_code == 303
    sub = fresh(sub)
    assert (sub.price_id, sub.pending_price_id) == (price_of(pro).id, price_of(basic).id)
    page = client.get(f"/admin/clients/{world.client_a.id}").text
    assert "changes to Basic on Apr 10, 2026" in page and "Apr 10, 2026, $10.00" in page
    assert client.post(f"/admin/subscriptions/{sub.id}/keep-plan").status_code == 303
    assert fresh(sub).pending_price_id is None
    assert "subscription.change_canceled" in moves(sub)


def test_a_change_the_engine_refuses_is_explained(client, world):
    basic = make_plan(world.org_a.id, "Basic", PriceData("USD", 1000), PriceData("EUR", 900))
    login(client, world.alice)
    subscribe(client, world, price_of(basic, "USD").id)
    sub = only_subscription()
    same = client.post(f"/admin/subscriptions/{sub.id}/change",
                       data={"price_id": str(sub.price_id), "quantity": "1", "key": "k", "op": "confirm"})
    assert same.status_code == 422 and "Nothing was changed: That is the current plan." in same.text
    other = client.post(f"/admin/subscriptions/{sub.id}/change",
                        data={"price_id": str(price_of(basic, "EUR").id), "quantity": "1", "key": "k", "op": "preview"})
    assert other.status_code == 422 and "This subscription is billed in USD" in other.text
    assert count(SubscriptionChange) == 0


def test_cancel_at_period_end_undo_pause_and_resume(client, world):
    plan = make_plan(world.org_a.id, "Flat", PriceData("USD", 4900))
    login(client, world.alice)
    subscribe(client, world, price_of(plan).id)
    sub = only_subscription()
    url = f"/admin/subscriptions/{sub.id}"
    assert client.post(f"{url}/cancel").status_code == 303
    assert fresh(sub).cancel_at_period_end
    page = client.get(f"/admin/clients/{world.client_a.id}").text
    assert "none: cancels on Apr 10, 2026" in page and "Keep it (undo cancel)" in page
    assert "already set to cancel" in client.post(f"{url}/cancel", follow_redirects=True).text
    client.post(f"{url}/undo-cancel")
    assert not fresh(sub).cancel_at_period_end
    client.post(f"{url}/pause")
    assert fresh(sub).status == "paused"
    assert "none while paused" in client.get(f"/admin/clients/{world.client_a.id}").text
    client.post(f"{url}/resume")
    assert fresh(sub).status == "active"
    assert moves(sub) == ["subscription.created", "subscription.cancel_scheduled", "subscription.cancel_undone",
                          "subscription.paused", "subscription.active"]
    assert len(subject_lines()) == 5  # created, cancel, kept, paused, resumed: each emailed once


def test_cancel_now_refunds_the_unused_part_through_the_refund_door(client, world, time_machine):
    plan = make_plan(world.org_a.id, "Flat", PriceData("USD", 3100))
    login(client, world.alice)
    subscribe(client, world, price_of(plan).id)
    sub = only_subscription()
    [invoice] = period_invoices(sub)
    record_manual_payment(invoice.id, amount=3100, method="bank_transfer", paid_on=date(2026, 3, 10), reference="",
                          actor=SYSTEM, now=NOW)
    time_machine.move_to(NOW + timedelta(days=10), tick=False)  # March 20: 21 of 31 days unused -> $21.00
    response = client.post(f"/admin/subscriptions/{sub.id}/cancel-now",
                           data={"refund_unused": "y", "reason": "Closing the shop"})
    assert response.status_code == 303
    sub = fresh(sub)
    assert (sub.status, sub.cancel_reason) == ("canceled", "Closing the shop")
    refund = db.session.execute(select(Refund)).scalar_one()
    assert (refund.invoice_id, refund.amount) == (invoice.id, 2100)
    assert db.session.get(Invoice, invoice.id).amount_paid == 1000  # 31.00 paid, 21.00 back
    page = client.get(f"/admin/clients/{world.client_a.id}").text
    panel = page[page.index(f'id="subscription-{sub.id}"'):]
    assert "Closing the shop" in panel and "$21.00 refunded" in panel and "Cancel now" not in panel
    assert "Your Flat subscription was canceled" in subject_lines()


def test_another_organizations_client_and_subscription_answer_404(client, world):
    plan = make_plan(world.org_a.id, "Flat", PriceData("USD", 4900))
    login(client, world.alice)
    subscribe(client, world, price_of(plan).id)
    sub = only_subscription()
    client.post("/admin/logout")
    login(client, world.bob)  # org B's staff
    assert subscribe(client, world, price_of(plan).id, key="bob").status_code == 404
    url = f"/admin/subscriptions/{sub.id}"
    for action in ("cancel", "undo-cancel", "pause", "resume", "keep-plan", "cancel-now"):
        assert client.post(f"{url}/{action}").status_code == 404, action
    change = {"price_id": str(sub.price_id), "quantity": "1", "key": "x", "op": "preview"}
    assert client.post(f"{url}/change", data=change).status_code == 404
    assert not re.search(rf"data-id=\"{sub.id}\"", client.get("/admin/subscriptions").text)
    assert (fresh(sub).status, count(Subscription)) == ("active", 1)
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.object_type == "subscription")) == 1
