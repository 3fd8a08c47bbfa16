"""Saved cards in the portal (/portal/payment-methods): added on the provider's setup page (the sandbox's, or
Checkout in setup mode on the Stripe test server) and stored once on return, listed with the default and the
expiry flags, made the default, removed (detached at the provider). Scoped to the contact's company."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import PaymentMethod, WebhookEvent
from invoicing.services.portal.cards import expiry_state
from tests.conftest import NOW, portal_login
from tests.pay.support import event_body, sandbox, stripe_object, stripe_signature
from tests.pay.support import stripe_app as stripe_app  # noqa: F401  (fixture)
from tests.portal.cards_support import (
    add_sandbox_card,
    audits,
    cards_of,
    fresh_client,
    open_sandbox_setup,
    save_at_stripe,
    save_in_sandbox,
)


@pytest.fixture(autouse=True)
def _at_now(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=True)  # expiry flags are decided against today (March 10, 2026)


@pytest.fixture
def alice(client, world):
    """The first contact of client A, signed in to the portal."""
    portal_login(client, world.client_a.contacts[0])
    return world.client_a.contacts[0]


def test_it_saves_a_card_in_the_sandbox_once_even_when_the_return_page_is_reloaded(client, world, alice):
    setup_page = client.get(open_sandbox_setup(client))
    assert setup_page.status_code == 200 and "Sandbox — no money moves" in setup_page.text
    assert "4000 0000 0000 0341" in setup_page.text and 'href="http://billing.test/portal/payment-methods"' in \
        setup_page.text  # the test cards, and Cancel goes back to the portal

    back = save_in_sandbox(client, "4242 4242 4242 4242", "12 / 34")
    assert cards_of(world.client_a) == []  # nothing stored before the return page confirms it
    for _ in range(3):  # the return page, then reloaded twice
        response = client.get(back)
        assert response.status_code == 303 and response.headers["Location"] == "/portal/payment-methods"
    card, = cards_of(world.client_a)
    assert (card.provider, card.brand, card.last4, card.exp_month, card.exp_year) == ("sandbox", "visa", "4242", 12,
                                                                                        2034)
    assert card.provider_id.startswith("pm_sbx_") and card.added_by_contact_id == alice.id
    assert card.setup_session_id == back.rsplit("=", 1)[1] and card.customer_id.startswith("cus_sbx_")
    assert fresh_client(world.client_a).autopay_payment_method == card.provider_id  # the first card: default
    added, = audits("payment_method.added")
    assert (added.actor_type, added.actor_id, added.object_id) == ("contact", alice.id, card.id)
    assert added.details == {"card": "Visa •••• 4242", "expiry": "12/34", "default": True, "provider": "sandbox"}

    page = client.get("/portal/payment-methods")
    assert "Card saved: Visa •••• 4242." in page.text
    assert re.search(r"Visa •••• 4242</strong>\s*<span[^>]*>expires 12/34</span>\s*<span[^>]*>Default</span>",
                     page.text)
    saved = sandbox().retrieve_payment_method(card.provider_id)
    assert (saved["customer"], saved["card"]["last4"]) == (card.customer_id, "4242")


@pytest.mark.parametrize(("number", "expiry", "status", "message"), [
    ("4000 0000 0000 0002", "12 / 34", 402, "Your card was declined."),
    ("4242 4242 4242 4242", "02 / 26", 402, "Your card has expired."),
    ("4242 4242 4242 4241", "12 / 34", 402, "Your card number is incorrect."),
    ("4242 4242 4242 4242", "13 / 34", 400, "Enter the expiry as MM / YY"),
])
def test_it_says_why_the_sandbox_did_not_save_a_card(client, world, alice, number, expiry, status, message):
    setup = open_sandbox_setup(client)
    response = client.post(setup, data={"card": number, "expiry": expiry})
    assert response.status_code == status and message in response.text
    session_id = setup.rsplit("/", 1)[1]
    back = client.get(f"/portal/payment-methods/added?session_id={session_id}")  # as if the client came back
    assert back.status_code == 303
    assert "No card was saved." in client.get("/portal/payment-methods").text
    assert cards_of(world.client_a) == [] and fresh_client(world.client_a).autopay_payment_method is None


def test_it_saves_a_card_through_checkout_in_setup_mode_at_stripe(client, world, alice, stripe_app):  # noqa: F811
    back = save_at_stripe(client, stripe_app, card="5555555555554444", expiry="04 / 31")
    session_id = back.rsplit("=", 1)[1]
    assert back == f"/portal/payment-methods/added?session_id={session_id}"
    session = stripe_object(stripe_app, f"/v1/checkout/sessions/{session_id}")
    customer = fresh_client(world.client_a).stripe_customer_id
    assert (session["mode"], session["currency"], session["customer"], session["status"]) == (
        "setup", "usd", customer, "complete")
    assert session["metadata"] == {"client_id": str(world.client_a.id), "contact_id": str(alice.id),
                                   "organization_id": str(world.org_a.id), "purpose": "save_card"}

    for _ in range(3):  # no webhook reaches the in-process app: the return page alone stores it, once
        assert client.get(back).status_code == 303
    card, = cards_of(world.client_a)
    assert (card.provider, card.brand, card.last4, card.exp_month, card.exp_year, card.customer_id) == (
        "stripe", "mastercard", "4444", 4, 2031, customer)
    method = stripe_object(stripe_app, f"/v1/payment_methods/{card.provider_id}")
    assert method["customer"] == customer  # attached to the client's Stripe customer
    assert fresh_client(world.client_a).autopay_payment_method == card.provider_id
    assert "Mastercard •••• 4444" in client.get("/portal/payment-methods").text


def test_the_setup_sessions_webhook_is_stored_and_ignored(client, world, alice, stripe_app):  # noqa: F811
    back = save_at_stripe(client, stripe_app)
    session = stripe_object(stripe_app, f"/v1/checkout/sessions/{back.rsplit('=', 1)[1]}")
    raw = event_body("checkout.session.completed", session)
    response = client.post("/webhooks/stripe", data=raw, headers={"Stripe-Signature": stripe_signature(raw),
                                                                  "Content-Type": "application/json"})
    assert response.status_code == 200
    event = db.session.scalars(select(WebhookEvent)).one()
    assert (event.type, event.status) == ("checkout.session.completed", "ignored")
    assert cards_of(world.client_a) == []  # the return page stores the card (verify on return), not the webhook


def test_it_asks_to_reload_when_stripe_cannot_be_reached_on_return_then_saves(client, world, alice,
                                                                              stripe_app):  # noqa: F811
    back = save_at_stripe(client, stripe_app)
    stripe_app.fault(path_prefix="/v1/checkout/sessions", method="GET", mode="error_500", count=3)
    page = client.get(back)
    assert page.status_code == 503 and "Reload this page in a minute" in page.text
    assert cards_of(world.client_a) == []
    assert client.get(back).status_code == 303 and len(cards_of(world.client_a)) == 1


def test_it_shows_the_stripe_declined_card_on_its_page_and_saves_nothing(client, world, alice,
                                                                         stripe_app):  # noqa: F811
    response = client.post("/portal/payment-methods/add")
    page = response.headers["Location"].removeprefix(stripe_app.base_url)
    status, _, body = stripe_app.request("POST", page + "/save", data={"card": "4000000000000002",
                                                                         "expiry": "04 / 31"})
    assert status == 402 and b"Your card was declined." in body
    session_id = page.rsplit("/", 1)[1]
    assert client.get(f"/portal/payment-methods/added?session_id={session_id}").status_code == 303
    assert cards_of(world.client_a) == []


def test_it_flags_cards_expiring_within_30_days_and_expired_ones(client, world, alice, time_machine):
    add_sandbox_card(client, "4242 4242 4242 4242", "12 / 34")
    add_sandbox_card(client, "5555 5555 5555 4444", "03 / 26")  # valid through March 31: 21 days left
    page = client.get("/portal/payment-methods").text
    assert page.count("Expires soon") == 1 and "Expired" not in page
    assert "This card expires at the end of 03/26: add your new card." in page
    time_machine.move_to(datetime(2026, 4, 1, 12, tzinfo=UTC), tick=True)  # April 1 in New York too
    portal_login(client, alice)
    page = client.get("/portal/payment-methods").text
    assert page.count(">Expired<") == 1 and "This card has expired" in page and "Expires soon" not in page


def test_expiry_state_counts_to_the_last_day_of_the_expiry_month():
    card = PaymentMethod(exp_month=12, exp_year=2026)  # valid through December 31, 2026
    assert [expiry_state(card, day) for day in (date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 31),
                                                 date(2027, 1, 1))] == ["ok", "expiring", "expiring", "expired"]
    assert expiry_state(PaymentMethod(exp_month=2, exp_year=2028), date(2028, 2, 29)) == "expiring"


def test_it_makes_another_card_the_default_and_removes_one_detaching_it_at_the_provider(client, world, alice):
    first = add_sandbox_card(client, "4242 4242 4242 4242")
    second = add_sandbox_card(client, "5555 5555 5555 4444", "06 / 30")
    assert fresh_client(world.client_a).autopay_payment_method == first.provider_id  # the first one stays default

    response = client.post(f"/portal/payment-methods/{second.id}/default")
    assert response.status_code == 303
    assert fresh_client(world.client_a).autopay_payment_method == second.provider_id
    event, = audits("payment_method.default_set")
    assert (event.actor_type, event.actor_id, event.object_id) == ("contact", alice.id, second.id)
    assert "Mastercard •••• 4444 is now your default card." in client.get("/portal/payment-methods").text

    response = client.post(f"/portal/payment-methods/{first.id}/remove")
    assert response.status_code == 303
    assert sandbox().retrieve_payment_method(first.provider_id)["customer"] is None  # detached at the provider
    removed = db.session.get(PaymentMethod, first.id)
    assert removed.removed_at is not None and fresh_client(world.client_a).autopay_payment_method == \
        second.provider_id
    event, = audits("payment_method.removed")
    assert (event.actor_type, event.actor_id, event.object_id) == ("contact", alice.id, first.id)
    page = client.get("/portal/payment-methods").text
    assert "Visa •••• 4242 was removed." in page and "Visa •••• 4242</strong>" not in page
    assert client.post(f"/portal/payment-methods/{first.id}/remove").status_code == 404  # gone


def test_removing_the_default_card_makes_the_newest_other_card_the_default(client, world, alice):
    first = add_sandbox_card(client, "4242 4242 4242 4242")
    add_sandbox_card(client, "5555 5555 5555 4444")
    third = add_sandbox_card(client, "4000 0000 0000 0341")
    assert client.post(f"/portal/payment-methods/{first.id}/remove").status_code == 303
    assert fresh_client(world.client_a).autopay_payment_method == third.provider_id
    event, = audits("payment_method.removed")
    assert event.details == {"card": "Visa •••• 4242", "new_default": "Visa •••• 0341"}
    for card in cards_of(world.client_a)[1:]:
        assert client.post(f"/portal/payment-methods/{card.id}/remove").status_code == 303
    assert fresh_client(world.client_a).autopay_payment_method is None
    assert "No card saved yet." in client.get("/portal/payment-methods").text


def test_a_removed_card_does_not_come_back_when_its_old_return_page_is_opened(client, world, alice):
    back = save_in_sandbox(client)
    client.get(back)
    card, = cards_of(world.client_a)
    client.post(f"/portal/payment-methods/{card.id}/remove")
    assert client.get(back).status_code == 303
    assert "Visa •••• 4242 was removed: it is no longer saved." in client.get("/portal/payment-methods").text
    assert [c.removed_at is not None for c in cards_of(world.client_a)] == [True]


def test_it_detaches_a_removed_card_at_the_stripe_server(client, world, alice, stripe_app):  # noqa: F811
    client.get(save_at_stripe(client, stripe_app))
    card, = cards_of(world.client_a)
    assert client.post(f"/portal/payment-methods/{card.id}/remove").status_code == 303
    assert stripe_object(stripe_app, f"/v1/payment_methods/{card.provider_id}")["customer"] is None
    assert cards_of(world.client_a)[0].removed_at is not None


def test_it_keeps_the_card_when_the_stripe_server_cannot_detach_it(client, world, alice, stripe_app):  # noqa: F811
    client.get(save_at_stripe(client, stripe_app))
    card, = cards_of(world.client_a)
    stripe_app.fault(path_prefix="/v1/payment_methods", mode="error_500", count=10)
    page = client.post(f"/portal/payment-methods/{card.id}/remove")
    assert page.status_code == 503 and "could not be reached" in page.text
    assert cards_of(world.client_a)[0].removed_at is None and audits("payment_method.removed") == []


def test_another_companys_card_answers_404_like_a_missing_one(app, client, world, alice):
    theirs = add_sandbox_card(client)
    back = save_in_sandbox(client, "5555 5555 5555 4444")
    bob = app.test_client()
    portal_login(bob, world.client_b.contacts[0])
    for path in (f"/portal/payment-methods/{theirs.id}/default", f"/portal/payment-methods/{theirs.id}/remove",
                 "/portal/payment-methods/999999/default", "/portal/payment-methods/999999/remove"):
        response = bob.post(path)
        assert response.status_code == 404 and "Card not found." in response.text, path
    assert bob.get(back).status_code == 404  # client A's setup session, returned by client B's contact
    assert "Visa •••• 4242" not in bob.get("/portal/payment-methods").text
    assert [c.removed_at for c in cards_of(world.client_a)] == [None]  # A's card untouched, not stored twice
    assert sandbox().retrieve_payment_method(theirs.provider_id)["customer"] is not None
    assert cards_of(world.client_b) == [] and audits("payment_method.removed") == []


def test_the_card_pages_need_a_signed_in_contact(client, world):
    assert client.get("/portal/payment-methods").status_code == 303
    assert client.post("/portal/payment-methods/add").status_code == 303
    assert db.session.scalars(select(PaymentMethod)).all() == []


def test_every_card_form_keeps_its_csrf_token(app, client, world, alice):
    card = add_sandbox_card(client)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        page = client.get("/portal/payment-methods").text
        assert page.count('name="csrf_token"') >= 3  # add, remove, sign out (the default card has no "Make default")
        for path in ("/portal/payment-methods/add", f"/portal/payment-methods/{card.id}/remove",
                     f"/portal/payment-methods/{card.id}/default"):
            assert client.post(path).status_code == 400, path
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        setup = client.post("/portal/payment-methods/add", data={"csrf_token": token})
        assert setup.status_code == 303
        setup_path = setup.headers["Location"].removeprefix("http://billing.test")
        assert 'name="csrf_token"' in client.get(setup_path).text
        assert client.post(setup_path, data={"card": "4242424242424242", "expiry": "12/34"}).status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert [c.removed_at for c in cards_of(world.client_a)] == [None]
