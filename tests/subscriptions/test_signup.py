"""The public sign-up (/subscribe/<slug>): the plan's page and form, a client, its portal contact and the
recurring-charge consent made once per form token, the card saved on the provider's setup page (the sandbox's,
and Checkout in setup mode on the local Stripe server), the subscription made on return (subs-core), the welcome
email with a portal sign-in link. Rate-limited, CSRF-protected; bad input writes nothing; only public plans."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from invoicing import mail
from invoicing.extensions import db
from invoicing.models import (
    AuditEvent,
    AutopayConsent,
    Client,
    Contact,
    OutboxEmail,
    PaymentMethod,
    SandboxObject,
    Subscription,
    SubscriptionSignup,
)
from invoicing.services.subscriptions import signup
from tests.conftest import NOW, World, login, make_user
from tests.pay.support import stripe_object
from tests.portal.cards_support import local
from tests.subscriptions.signup_support import (
    count,
    fill,
    make_plan,
    sandbox_card,
    signups,
    stripe_card,
    submit,
)


@pytest.fixture(autouse=True)
def _at_now(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=True)


def _writes() -> tuple[int, ...]:
    return tuple(count(model) for model in (Client, Contact, AutopayConsent, SubscriptionSignup, Subscription,
                                            OutboxEmail))


# --- the page ----------------------------------------------------------------------------------------------


def test_the_page_shows_the_plan_its_prices_trial_setup_fee_tax_and_the_terms(client, world: World) -> None:
    make_plan(world.org_a, prices=(("USD", 4900, "month", 1), ("USD", 49000, "year", 1)), trial_days=14,
              tax_rate_milli=8875, setup_fee=2500, per_seat=True)
    page = client.get("/subscribe/pro")
    assert page.status_code == 200 and "<h1>Subscribe to Pro</h1>" in page.text
    prices = re.search(r'<ul class="plan-prices" id="plan-prices">(.*?)</ul>', page.text, re.S).group(1)
    assert re.findall(r"<strong>(.*?)</strong>", prices) == ["$49.00 per seat per month", "$490.00 per seat per year"]
    assert prices.count("+ $25.00 one-time setup fee") == 2
    assert "14 days: nothing is charged until it ends" in page.text and "8.875% added to each invoice" in page.text
    assert 'name="quantity"' in page.text  # per seat: the seats field
    terms = signup.consent_text(world_plan := signup.public_plan("pro"))
    assert terms.startswith("I authorize Org A to charge the card I save on the next page, without asking each "
                            "time, for each invoice Org A issues to my company, as soon as it is issued: the "
                            "invoices of my subscription to Pro at the price and number of seats I chose above "
                            "($49.00 per seat per month; $490.00 per seat per year), plus 8.875% tax, and a "
                            "one-time setup fee ($25.00) on the first invoice")
    assert "the first one when the 14-day free trial ends" in terms and world_plan.slug == "pro"
    assert terms.replace("'", "&#39;") in page.text
    assert page.headers["Cache-Control"] == "no-store"


def test_a_zero_decimal_currency_is_shown_and_signed_up_in_whole_units(client, world: World) -> None:
    plan = make_plan(world.org_b, "tokyo", name="Tokyo", prices=(("JPY", 5000, "month", 1),), setup_fee=1000)
    page = client.get("/subscribe/tokyo").text
    assert "<strong>¥5,000 per month</strong>" in page and "+ ¥1,000 one-time setup fee" in page
    assert submit(client, fill(client, "tokyo"), "tokyo").status_code == 303
    started, = signups()
    assert (started.client.currency, started.client.organization_id, started.price_id) == ("JPY", world.org_b.id,
                                                                                           plan.prices[0].id)


@pytest.mark.parametrize("kind", ["missing", "private", "archived", "archived_price_only", "archived_org"])
def test_only_a_public_plan_with_a_price_has_a_page(client, world: World, kind: str) -> None:
    if kind == "private":
        make_plan(world.org_a, public=False)
    elif kind == "archived":
        make_plan(world.org_a, archived=True)
    elif kind == "archived_price_only":
        plan = make_plan(world.org_a)
        plan.prices[0].archived_at = NOW
        db.session.commit()
    elif kind == "archived_org":
        make_plan(world.org_a)
        world.org_a.archived_at = NOW
        db.session.commit()
    assert client.get("/subscribe/pro").status_code == 404
    response = client.post("/subscribe/pro", data={"name": "X", "email": "x@x.test", "agree": "y",
                                                   "signup_key": "k" * 32, "text_version": signup.CONSENT_VERSION})
    assert response.status_code == 404
    assert _writes() == (2, 3, 0, 0, 0, 0)  # the world's clients and contacts only


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"name": "  "}, "name", "Enter your name."),
    ({"name": "x" * 201}, "name", "Your name can have at most 200 characters."),
    ({"email": ""}, "email", "Enter your email address: your sign-in link and receipts go there."),
    ({"email": "not-an-email"}, "email", "Enter a valid email address, like name@example.com."),
    ({"agree": ""}, "agree", "Tick the box to agree to the recurring charges: we cannot subscribe you without it."),
    ({"text_version": "subscription-2020-01"}, "agree", "The terms have changed since this page was opened."),
    ({"price_id": "999999"}, "price_id", "Choose one of the prices."),
    ({"quantity": "0"}, "quantity", "Choose between 1 and 10,000 seats."),
    ({"signup_key": "short"}, "form", "This form has expired. Reload the page and fill it in again."),
])
def test_bad_input_says_what_to_fix_and_writes_nothing(client, world: World, overrides, field, message) -> None:
    make_plan(world.org_a, per_seat=True)
    data = fill(client, **overrides)
    if overrides.get("quantity") == "0":
        data["quantity"] = "0"
    before = _writes()
    response = submit(client, data)
    assert response.status_code in (400, 422), response.status_code
    assert message in response.text
    if field not in ("form", "quantity"):
        assert f'id="{field}-error"' in response.text or field in ("agree", "price_id")
    assert _writes() == before
    assert 'value="Dana Scully"' in response.text or overrides.get("name") is not None  # what was typed stays


def test_a_plan_without_seats_subscribes_one_whatever_the_form_says(client, world: World) -> None:
    make_plan(world.org_a, per_seat=False)
    assert 'name="quantity"' not in client.get("/subscribe/pro").text
    response = submit(client, fill(client, quantity="7"))
    assert response.status_code == 303
    started, = signups()
    assert started.quantity == 1


def test_the_form_needs_its_csrf_token(app, client, world: World) -> None:
    make_plan(world.org_a)
    data = fill(client)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        page = client.get("/subscribe/pro")
        assert 'name="csrf_token"' in page.text
        response = submit(client, data)
        assert response.status_code == 400 and "The CSRF token is missing." in response.text
        assert _writes() == (2, 3, 0, 0, 0, 0)
        started = signup.start_signup("pro", signup.SignupData("Dana", "", "dana@x.test", int(data["price_id"]), 1,
                                                               True, signup.CONSENT_VERSION),
                                      signup_key=data["signup_key"], ip="", now=NOW)
        assert client.post(f"/subscribe/signup/{started.signup_key}/card").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert _writes() == (3, 4, 1, 1, 0, 0)  # only the sign-up made through the service
    assert count(SandboxObject) == 0  # no card page was opened at the provider
    assert client.post("/subscribe/signup/" + "x" * 32 + "/card").status_code == 404


def test_it_rate_limits_sign_ups_per_ip_and_per_email(app, client, world: World) -> None:
    make_plan(world.org_a)
    for _ in range(5):  # bad input counts too: a flood of attempts is refused whatever they hold
        assert submit(client, fill(client, email="same@person.test", name="")).status_code == 422
    blocked = submit(client, fill(client, email="SAME@person.test "))  # the 6th for this email, however typed
    assert blocked.status_code == 429 and "Too many attempts" in blocked.text
    assert _writes() == (2, 3, 0, 0, 0, 0)
    for n in range(4):  # other emails from the same address: 10 a minute in all (the refused one counted)
        assert submit(client, fill(client, email=f"other{n}@person.test", name="")).status_code == 422
    assert submit(client, fill(client, email="fresh@person.test")).status_code == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert submit(elsewhere, fill(elsewhere, email="fresh@person.test")).status_code == 303
    assert len(signups()) == 1


# --- the form makes one sign-up ------------------------------------------------------------------------------


def test_the_form_makes_a_client_a_portal_contact_and_the_consent_then_opens_the_sandbox_card_page(
        client, world: World) -> None:
    plan = make_plan(world.org_a, prices=(("EUR", 2900, "month", 1),), trial_days=14)
    data = fill(client, company="  Scully   Consulting ", email="Dana@Scully.TEST")
    response = submit(client, data)
    assert response.status_code == 303
    card_page = local(response.headers["Location"])
    assert card_page.startswith("/pay/sandbox/setup/cs_sbx_setup_")

    started, = signups()
    client_row, contact = started.client, started.contact
    assert (client_row.name, client_row.email, client_row.currency, client_row.organization_id) == (
        "Scully Consulting", "dana@scully.test", "EUR", world.org_a.id)
    assert (contact.name, contact.email, contact.portal_access, contact.client_id) == (
        "Dana Scully", "dana@scully.test", True, client_row.id)
    assert (started.plan_id, started.price_id, started.quantity, started.status, started.signup_key) == (
        plan.id, plan.prices[0].id, 1, "card", data["signup_key"])
    consent = started.consent
    assert (consent.contact_id, consent.client_id, consent.mode, consent.text_version, consent.ip,
            consent.payment_method_id, consent.ended_at) == (contact.id, client_row.id, "on_issue",
                                                             "subscription-2026-12", "127.0.0.1", None, None)
    assert consent.text == signup.consent_text(plan)
    assert client_row.autopay_enabled is False  # not before a card is saved
    assert count(Subscription) == 0 and count(OutboxEmail) == 0
    actions = [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))
               if e.organization_id == world.org_a.id]
    assert actions[-3:] == ["client.created", "contact.added", "subscription_signup.started"]

    page = client.get(card_page)
    assert page.status_code == 200 and f'href="http://billing.test/subscribe/signup/{started.signup_key}"' in page.text


def test_the_same_form_submitted_twice_makes_one_sign_up(client, world: World) -> None:
    make_plan(world.org_a)
    data = fill(client)
    first, second = submit(client, data), submit(client, {**data, "name": "Someone Else"})
    assert first.status_code == second.status_code == 303
    assert len(signups()) == 1 and count(Client) == 3 and count(AutopayConsent) == 1
    assert signups()[0].contact.name == "Dana Scully"  # the resubmit changed nothing
    another = submit(client, fill(client))  # a new form (a fresh page): a new sign-up
    assert another.status_code == 303 and len(signups()) == 2


def test_racing_submits_of_the_same_form_make_one_sign_up(app, world: World, is_postgres: bool) -> None:
    make_plan(world.org_a)
    data = fill(app.test_client())

    def post(_: int) -> int:
        with app.app_context():
            return submit(app.test_client(), data).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(post, range(4)))
    assert codes == [303] * 4
    assert len(signups()) == 1 and count(Client) == 3 and count(Contact) == 4


def test_an_email_already_at_the_organization_gets_a_new_client_and_the_page_says_nothing(client,
                                                                                         world: World) -> None:
    """The decision (services/subscriptions/signup.py): never attach to an existing client (typing someone's
    email must not subscribe their company, nor charge its saved card), never say the address is known."""
    make_plan(world.org_a)
    known = world.client_a.contacts[0]
    answers = []
    for email in (known.email, "nobody@new.test"):
        response = submit(client, fill(client, email=email))
        answers.append((response.status_code, local(response.headers["Location"]).split("cs_sbx_setup_")[0]))
    assert answers[0] == answers[1] == (303, "/pay/sandbox/setup/")
    existing, new = signups()
    assert existing.client_id not in (world.client_a.id,) and existing.contact.email == known.email
    assert db.session.get(Contact, known.id).client_id == world.client_a.id  # the known contact is untouched
    assert count(Contact) == 5


# --- the whole sign-up ---------------------------------------------------------------------------------------


def _sign_up(client, number: str = "4242 4242 4242 4242") -> tuple[SubscriptionSignup, str]:
    data = fill(client)
    response = submit(client, data)
    assert response.status_code == 303
    back = sandbox_card(client, response.headers["Location"], number)
    return signups()[-1], back


def test_sign_up_with_trial_in_the_sandbox_end_to_end(app, client, world: World, smtp) -> None:
    plan = make_plan(world.org_a, trial_days=14, tax_rate_milli=20000)
    started, back = _sign_up(client)
    assert count(PaymentMethod) == 0  # nothing stored before the return page asks the sandbox
    for _ in range(3):  # the return page, then reloaded: one card, one subscription, one email
        response = client.get(back)
        assert response.status_code == 303 and response.headers["Location"] == f"/subscribe/signup/{started.signup_key}"
    page = client.get(f"/subscribe/signup/{started.signup_key}")
    assert page.status_code == 200 and "<h1>You are subscribed</h1>" in page.text
    assert "Mar 24, 2026" in page.text  # the trial's end: 14 days after March 10

    done, = signups()
    subscription = db.session.scalars(select(Subscription)).one()
    card = db.session.scalars(select(PaymentMethod)).one()
    assert (done.status, done.subscription_id, done.completed_at is not None) == ("done", subscription.id, True)
    assert (subscription.client_id, subscription.contact_id, subscription.plan_id, subscription.price_id,
            subscription.quantity, subscription.consent_id, subscription.signup_key, subscription.status) == (
        done.client_id, done.contact_id, plan.id, plan.prices[0].id, 1, done.consent_id, done.signup_key, "trialing")
    assert subscription.trial_end.isoformat() == "2026-03-24"
    client_row = db.session.get(Client, done.client_id)
    assert (client_row.autopay_enabled, client_row.autopay_payment_method) == (True, card.provider_id)
    assert (card.client_id, card.provider, card.last4, card.added_by_contact_id) == (
        done.client_id, "sandbox", "4242", done.contact_id)
    assert done.consent.payment_method_id == card.id and done.consent.ended_at is None

    welcome = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "subscription_welcome")).one()
    assert (welcome.to_addr, welcome.subject) == ("dana@scully.test", "You are subscribed to Pro")
    assert count(OutboxEmail) == 1  # the welcome only: subs-core sends no "subscribed" email of its own then
    assert mail.deliver_due(now=datetime.now(UTC)).sent == 1
    sent = [m for m in smtp.wait_for(1) if m["Subject"] == "You are subscribed to Pro"]
    assert len(sent) == 1 and sent[0]["To"] == "dana@scully.test"
    body = sent[0].get_body(("plain",)).get_content()
    assert "Your free trial runs until Mar 24, 2026." in body
    link = re.search(r"http://billing\.test(/portal/login/[\w-]+\?next=/portal/subscriptions)", body).group(1)

    portal = app.test_client()
    assert portal.get(link).status_code == 200
    signed_in = portal.post(link)
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/portal/subscriptions"
    listing = portal.get("/portal/subscriptions")
    assert "<h2" in listing.text and "Pro" in listing.text and "Trial ends" in listing.text


def test_sign_up_without_trial_issues_the_first_invoice(client, world: World) -> None:
    make_plan(world.org_a, trial_days=0, setup_fee=2500)
    started, back = _sign_up(client)
    assert client.get(back).status_code == 303
    subscription = db.session.scalars(select(Subscription)).one()
    assert subscription.status in ("active", "past_due") and subscription.trial_end is None
    page = client.get(f"/subscribe/signup/{started.signup_key}")
    assert "<h1>You are subscribed</h1>" in page.text and "Next invoice" in page.text


def test_a_declined_card_subscribes_nothing_and_the_page_offers_to_try_again(client, world: World) -> None:
    make_plan(world.org_a)
    data = fill(client)
    card_page = local(submit(client, data).headers["Location"])
    declined = client.post(card_page, data={"card": "4000 0000 0000 0002", "expiry": "12 / 34"})
    assert declined.status_code == 402
    started, = signups()
    session_id = card_page.rsplit("/", 1)[1]
    back = client.get(f"/subscribe/signup/{started.signup_key}?session_id={session_id}")
    assert back.status_code == 303
    page = client.get(f"/subscribe/signup/{started.signup_key}")
    assert "<h1>Save your card</h1>" in page.text and "you are not subscribed yet" in page.text
    assert count(Subscription) == 0 and count(PaymentMethod) == 0 and signups()[0].status == "card"

    again = client.post(f"/subscribe/signup/{started.signup_key}/card")  # try again: a new card page
    assert again.status_code == 303
    back = sandbox_card(client, again.headers["Location"])
    assert client.get(back).status_code == 303
    assert signups()[0].status == "done" and count(Subscription) == 1
    resubmit = submit(client, data)  # the old form sent again: the same, finished sign-up
    assert resubmit.status_code == 303
    assert resubmit.headers["Location"] == f"/subscribe/signup/{started.signup_key}"
    assert count(Subscription) == 1 and count(Client) == 3


def test_a_setup_session_of_another_sign_up_is_not_found(client, world: World) -> None:
    make_plan(world.org_a)
    mine, _ = _sign_up(client)
    other_data = fill(client, email="other@x.test")
    other_page = local(submit(client, other_data).headers["Location"])
    other_session = other_page.rsplit("/", 1)[1]
    response = client.get(f"/subscribe/signup/{mine.signup_key}?session_id={other_session}")
    assert response.status_code == 404
    assert client.get("/subscribe/signup/" + "x" * 32).status_code == 404
    assert count(Subscription) == 0


def test_sign_up_through_checkout_in_setup_mode_at_the_stripe_server(client, world: World,
                                                                     stripe_app) -> None:
    plan = make_plan(world.org_a, trial_days=7)
    data = fill(client)
    response = submit(client, data)
    assert response.status_code == 303
    back = stripe_card(stripe_app, response.headers["Location"])
    started, = signups()
    session_id = back.rsplit("=", 1)[1]
    assert back == f"/subscribe/signup/{started.signup_key}?session_id={session_id}"
    session = stripe_object(stripe_app, f"/v1/checkout/sessions/{session_id}")
    customer = db.session.get(Client, started.client_id).stripe_customer_id
    assert (session["mode"], session["status"], session["customer"]) == ("setup", "complete", customer)
    assert session["metadata"] == {"client_id": str(started.client_id), "contact_id": str(started.contact_id),
                                   "organization_id": str(world.org_a.id), "purpose": "subscription_signup"}
    for _ in range(2):
        assert client.get(back).status_code == 303
    card = db.session.scalars(select(PaymentMethod)).one()
    assert (card.provider, card.last4, card.customer_id) == ("stripe", "4444", customer)
    assert stripe_object(stripe_app, f"/v1/payment_methods/{card.provider_id}")["customer"] == customer
    subscription = db.session.scalars(select(Subscription)).one()
    assert (subscription.plan_id, subscription.status, subscription.consent_id) == (plan.id, "trialing",
                                                                                    started.consent_id)
    assert db.session.get(Client, started.client_id).autopay_payment_method == card.provider_id
    assert count(OutboxEmail) >= 1 and db.session.scalars(
        select(OutboxEmail).where(OutboxEmail.kind == "subscription_welcome")).one().to_addr == "dana@scully.test"


def test_stripe_unreachable_on_return_asks_to_reload_then_finishes(client, world: World,
                                                                   stripe_app) -> None:
    make_plan(world.org_a)
    back = stripe_card(stripe_app, submit(client, fill(client)).headers["Location"])
    stripe_app.fault(path_prefix="/v1/checkout/sessions", method="GET", mode="error_500", count=3)
    page = client.get(back)
    assert page.status_code == 503 and "Reload this page in a minute" in page.text
    assert count(Subscription) == 0 and count(PaymentMethod) == 0
    assert client.get(back).status_code == 303 and count(Subscription) == 1


def test_only_admins_read_the_welcome_email_it_holds_a_sign_in_link(app, client, world: World) -> None:
    make_plan(world.org_a)
    started, back = _sign_up(client)
    assert client.get(back).status_code == 303
    welcome = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "subscription_welcome")).one()
    admin, staff = app.test_client(), app.test_client()
    login(admin, world.alice)
    login(staff, make_user(world.org_a, "sam@a.test", "staff"))
    assert admin.get(f"/admin/outbox/{welcome.id}").status_code == 200
    assert staff.get(f"/admin/outbox/{welcome.id}").status_code == 404
    assert "You are subscribed to Pro" in staff.get("/admin/outbox").text  # listed, not readable
