"""Helpers for the sign-up and portal subscription tests (subs-portal): plans made as rows (until plans can be
made through the admin pages), the public form filled in, the card saved on the sandbox's or the Stripe test
server's setup page."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import Organization, Plan, PlanPrice, SubscriptionSignup
from invoicing.services.db import atomic
from invoicing.services.subscriptions import signup
from tests.conftest import NOW
from tests.portal.cards_support import local


def make_plan(org: Organization, slug: str = "pro", *, name: str = "Pro", prices: tuple[tuple[str, int, str, int],
              ...] = (("USD", 4900, "month", 1),), trial_days: int = 0, per_seat: bool = False, public: bool = True,
              tax_rate_milli: int = 0, setup_fee: int = 0, archived: bool = False) -> Plan:
    """A plan with its prices (currency, amount, interval unit, interval count)."""
    with atomic():
        plan = Plan(organization_id=org.id, name=name, description=f"{name}: everything you need.", slug=slug,
                    public=public, trial_days=trial_days, per_seat=per_seat, tax_rate_milli=tax_rate_milli,
                    archived_at=NOW if archived else None, created_at=NOW, updated_at=NOW)
        plan.prices = [PlanPrice(currency=c, amount=a, interval_unit=u, interval_count=n, setup_fee=setup_fee,
                                 created_at=NOW) for c, a, u, n in prices]
        db.session.add(plan)
    return plan


def form_of(page: str) -> dict[str, str]:
    """The hidden fields of the sign-up form in the page (the form's token and the terms' version)."""
    return dict(re.findall(r'<input[^>]*name="(signup_key|text_version)"[^>]*value="([^"]*)"', page)
                or [(m[1], m[0]) for m in re.findall(r'<input[^>]*value="([^"]*)"[^>]*name="(signup_key|'
                                                      r'text_version)"', page)])


def fill(client: FlaskClient, slug: str = "pro", **overrides: Any) -> dict[str, Any]:
    """The sign-up form as a person fills it in (hidden fields from a fresh GET of the page)."""
    page = client.get(f"/subscribe/{slug}")
    assert page.status_code == 200, page.text
    hidden = form_of(page.text)
    assert set(hidden) == {"signup_key", "text_version"}, hidden
    price = re.search(r'name="price_id"[^>]*value="(\d+)"', page.text) or re.search(
        r'value="(\d+)"[^>]*name="price_id"', page.text)
    assert price, page.text
    data: dict[str, Any] = {"name": "Dana Scully", "company": "Scully Consulting", "email": "dana@scully.test",
                            "price_id": price.group(1), "quantity": "1", "agree": "y", **hidden}
    data.update(overrides)
    return data


def submit(client: FlaskClient, data: dict[str, Any], slug: str = "pro"):  # noqa: ANN201
    return client.post(f"/subscribe/{slug}", data=data)


def signups() -> list[SubscriptionSignup]:
    db.session.rollback()
    return list(db.session.scalars(select(SubscriptionSignup).order_by(SubscriptionSignup.id)))


def count(model: Any) -> int:
    db.session.rollback()
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def sandbox_card(client: FlaskClient, card_page: str, number: str = "4242 4242 4242 4242",
                 expiry: str = "12 / 34") -> str:
    """Save a card on the sandbox's setup page; the return path (not visited yet)."""
    path = local(card_page)
    assert path.startswith("/pay/sandbox/setup/cs_sbx_setup_"), path
    response = client.post(path, data={"card": number, "expiry": expiry})
    assert response.status_code == 303, response.text
    back = local(response.headers["Location"])
    assert back.startswith("/subscribe/signup/") and "?session_id=cs_sbx_setup_" in back, back
    return back


def stripe_card(stripe_server: Any, card_page: str, card: str = "5555555555554444", expiry: str = "04 / 31") -> str:
    """Save a card on the Stripe test server's setup-mode Checkout page; the return path."""
    assert card_page.startswith(f"{stripe_server.base_url}/_config/setup/cs_test_"), card_page
    status, headers, body = stripe_server.request("POST", card_page.removeprefix(stripe_server.base_url) + "/save",
                                                  data={"card": card, "expiry": expiry})
    assert status == 303, body
    return local(headers["Location"])


CONSENT_VERSION = signup.CONSENT_VERSION
