"""Autopay in the portal (/portal/autopay): on with explicit consent (text version, time, contact, IP, mode),
needs a default saved card, off ends the consent and cancels what was scheduled. Staff see the consent on the
client page and can turn it off (the contact is emailed), never on."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from markupsafe import escape
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.gateways.sandbox import SandboxGateway
from invoicing.models import AutopayConsent, ChargeAttempt, InvoiceAutopay, OutboxEmail
from invoicing.services import DomainError
from invoicing.services.audit import Actor
from invoicing.services.db import atomic
from invoicing.services.portal import autopay, cards
from tests.conftest import NOW, login, make_invoice, portal_login
from tests.pay.support import sandbox
from tests.portal.cards_support import add_sandbox_card, audits, cards_of, fresh_client

IP = "203.0.113.7"
VERSION = autopay.CONSENT_VERSION


@pytest.fixture(autouse=True)
def _at_now(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=True)


@pytest.fixture
def alice(client, world):
    portal_login(client, world.client_a.contacts[0])
    return world.client_a.contacts[0]


def turn_on(client, mode: str = "due_date", **overrides: str):
    data = {"mode": mode, "agree": "y", "text_version": VERSION, **overrides}
    return client.post("/portal/autopay", data=data, environ_base={"REMOTE_ADDR": IP})


def consents() -> list[AutopayConsent]:
    db.session.rollback()
    return list(db.session.scalars(select(AutopayConsent).order_by(AutopayConsent.id)))


def test_it_turns_autopay_on_with_the_consent_on_record(client, world, alice):
    card = add_sandbox_card(client)
    page = client.get("/portal/autopay")
    assert page.status_code == 200 and f"Terms version {VERSION}." in page.text
    terms = autopay.consent_text("Org A", "Client A")
    assert str(escape(terms)) in page.text and "Visa •••• 4242" in page.text

    response = turn_on(client, "on_issue")
    assert response.status_code == 303 and response.headers["Location"] == "/portal/autopay"
    consent, = consents()
    assert (consent.client_id, consent.contact_id, consent.mode, consent.text_version, consent.ip) == (
        world.client_a.id, alice.id, "on_issue", VERSION, IP)
    assert consent.text == terms and consent.payment_method_id == card.id and consent.ended_at is None
    assert abs((consent.created_at - datetime.now(UTC)).total_seconds()) < 60
    client_a = fresh_client(world.client_a)
    assert client_a.autopay_enabled and client_a.autopay_consent_at == consent.created_at
    event, = audits("autopay.enabled")
    assert (event.actor_type, event.actor_id, event.object_type, event.object_id) == (
        "contact", alice.id, "client", world.client_a.id)
    assert event.details["consent_id"] == consent.id and event.details["mode"] == "on_issue"

    page = client.get("/portal/autopay").text
    assert "Autopay is on: charge when issued." in page and "When the invoice is issued" in page
    assert "Turn autopay off" in page
    assert "Invoices are charged to Visa •••• 4242: when they are issued." in client.get(
        "/portal/payment-methods").text


def test_it_needs_a_saved_card_first(client, world, alice):
    page = client.get("/portal/autopay").text
    assert "save a card first" in page and "I agree" not in page
    response = turn_on(client)
    assert response.status_code == 422 and "Save a card first" in response.text
    assert consents() == [] and not fresh_client(world.client_a).autopay_enabled


@pytest.mark.parametrize(("overrides", "status", "message"), [
    ({"agree": ""}, 400, "Tick the box to agree to the terms"),
    ({"mode": "weekly"}, 400, "Not a valid choice"),
    ({"mode": ""}, 400, "Choose when autopay charges."),
    ({"text_version": "autopay-2020-01"}, 422, "The autopay terms have changed since this page was opened"),
])
def test_it_needs_a_mode_and_explicit_agreement_to_the_current_terms(client, world, alice, overrides, status,
                                                                     message):
    add_sandbox_card(client)
    data = {"mode": "due_date", "agree": "y", "text_version": VERSION, **overrides}
    response = client.post("/portal/autopay", data={k: v for k, v in data.items() if v})
    assert response.status_code == status and message in response.text
    assert consents() == [] and not fresh_client(world.client_a).autopay_enabled
    assert audits("autopay.enabled") == []


def test_choosing_another_mode_replaces_the_consent_and_the_same_one_adds_nothing(client, world, alice):
    add_sandbox_card(client)
    turn_on(client, "due_date")
    turn_on(client, "due_date")  # a second click
    assert [c.mode for c in consents()] == ["due_date"]
    turn_on(client, "on_issue")
    first, second = consents()
    assert (first.ended_at is not None, first.end_reason, first.ended_by_type, first.ended_by_id) == (
        True, "replaced", "contact", alice.id)
    assert (second.mode, second.ended_at) == ("on_issue", None)
    assert [e.details["replaced"] for e in audits("autopay.enabled")] == [None, first.id]


def test_turning_autopay_off_ends_the_consent_and_cancels_what_was_scheduled(client, world, alice):
    add_sandbox_card(client)
    turn_on(client)
    mine, theirs = make_invoice(world.client_a, status="open"), make_invoice(world.client_b, status="open")
    assert db.session.get(InvoiceAutopay, mine.id).status == "scheduled"  # issued while autopay is on
    assert db.session.get(InvoiceAutopay, theirs.id) is None
    with atomic():  # attempt rows: planned, and one already sent to the provider (left to its answer)
        db.session.add_all([
            ChargeAttempt(invoice_id=mine.id, attempt_number=1, idempotency_key="a1", amount=100, currency="USD",
                          status="scheduled"),
            ChargeAttempt(invoice_id=mine.id, attempt_number=2, idempotency_key="a2", amount=100, currency="USD",
                          status="pending"),
            ChargeAttempt(invoice_id=theirs.id, attempt_number=1, idempotency_key="b1", amount=100, currency="JPY",
                          status="scheduled")])

    response = client.post("/portal/autopay/off")
    assert response.status_code == 303
    consent, = consents()
    assert (consent.end_reason, consent.ended_by_type, consent.ended_by_id) == ("turned_off", "contact", alice.id)
    assert consent.ended_at is not None
    client_a = fresh_client(world.client_a)
    assert (client_a.autopay_enabled, client_a.autopay_consent_at) == (False, None)
    assert client_a.autopay_payment_method == cards_of(world.client_a)[0].provider_id  # the card stays the default
    attempts = {a.idempotency_key: (a.status, a.error_code) for a in db.session.scalars(select(ChargeAttempt))}
    assert attempts == {"a1": ("canceled", "autopay_off"), "a2": ("pending", None), "b1": ("scheduled", None)}
    event, = audits("autopay.disabled")
    assert (event.actor_type, event.actor_id) == ("contact", alice.id)
    assert event.details == {"consent_id": consent.id, "reason": "turned_off", "cancelled_attempts": 2}
    state = db.session.get(InvoiceAutopay, mine.id)
    assert (state.status, state.end_reason, state.next_charge_at) == ("cancelled", "autopay_off", None)
    assert db.session.scalars(select(OutboxEmail)).all() == []  # they did it themselves: the page says so
    page = client.get("/portal/autopay").text
    assert "Autopay is off: nothing will be charged automatically." in page and "Turn autopay on" in page

    again = client.post("/portal/autopay/off")
    assert again.status_code == 422 and "Autopay is already off." in again.text


def test_the_default_card_stays_while_autopay_is_on(client, world, alice):
    first = add_sandbox_card(client)
    turn_on(client)
    page = client.post(f"/portal/payment-methods/{first.id}/remove")
    assert page.status_code == 409 and "cannot be removed while autopay is on" in page.text
    assert cards_of(world.client_a)[0].removed_at is None
    assert sandbox().retrieve_payment_method(first.provider_id)["customer"] is not None  # not detached

    second = add_sandbox_card(client, "5555 5555 5555 4444")
    client.post(f"/portal/payment-methods/{second.id}/default")
    assert client.post(f"/portal/payment-methods/{first.id}/remove").status_code == 303
    client_a = fresh_client(world.client_a)
    assert client_a.autopay_enabled and client_a.autopay_payment_method == second.provider_id
    assert "Invoices are charged to Mastercard •••• 4444" in client.get("/portal/payment-methods").text


class TurnsAutopayOnWhileDetaching(SandboxGateway):
    """A sandbox whose detach lets another request turn autopay on in between (the race remove_card covers)."""

    def __init__(self, inner: SandboxGateway, on: Any) -> None:
        self.__dict__.update(inner.__dict__)
        self._on = on

    def detach_payment_method(self, payment_method_id: str) -> None:
        self._on()
        super().detach_payment_method(payment_method_id)


def test_a_default_card_detached_while_autopay_was_turned_on_ends_autopay(client, world, alice):
    card = add_sandbox_card(client)
    gateway = TurnsAutopayOnWhileDetaching(sandbox(), lambda: autopay.enable_autopay(
        world.client_a.id, alice.id, mode="due_date", text_version=VERSION, ip=IP, provider="sandbox", now=NOW))
    cards.remove_card(world.client_a.id, card.id, gateway=gateway, actor=Actor.contact(alice), now=NOW)
    consent, = consents()
    assert consent.end_reason == "card_removed" and not fresh_client(world.client_a).autopay_enabled
    assert fresh_client(world.client_a).autopay_payment_method is None
    assert audits("payment_method.removed")[0].details["autopay_ended"] is True


def test_staff_see_the_consent_on_the_client_page(client, app, world, alice):
    add_sandbox_card(client)
    turn_on(client, "on_issue")
    staff = app.test_client()
    login(staff, world.alice)
    page = staff.get(f"/admin/clients/{world.client_a.id}").text
    consent_block = re.search(r'<dl class="facts" id="autopay-consent">(.*?)</dl>', page, re.S).group(1)
    for fact in ("Client A contact 1 &lt;c1@clienta.test&gt;", VERSION, IP, "on issue", "10 Mar 2026"):
        assert fact in consent_block, fact
    assert "Autopay on" in page and "Visa •••• 4242, expires 12/34" in page and "Turn autopay off" in page
    assert "autopay/on" not in page  # staff can never turn it on
    assert staff.post(f"/admin/clients/{world.client_a.id}/autopay").status_code in (404, 405)


def test_staff_turn_autopay_off_and_the_contact_is_emailed(client, app, world, alice):
    add_sandbox_card(client)
    turn_on(client)
    staff = app.test_client()
    login(staff, world.alice)
    response = staff.post(f"/admin/clients/{world.client_a.id}/autopay/off")
    assert response.status_code == 303
    consent, = consents()
    assert (consent.end_reason, consent.ended_by_type, consent.ended_by_id, consent.ended_by_label) == (
        "turned_off", "user", world.alice.id, "alice@a.test")
    assert not fresh_client(world.client_a).autopay_enabled
    event, = audits("autopay.disabled")
    assert (event.actor_type, event.actor_id, event.object_id) == ("user", world.alice.id, world.client_a.id)
    email, = db.session.scalars(select(OutboxEmail))
    assert (email.kind, email.to_addr, email.subject, email.dedupe_key) == (
        "autopay_off", "c1@clienta.test", "Autopay is off for Client A", f"autopay_off:{consent.id}")
    assert "Org A has turned autopay off for Client A" in email.text_body
    assert "http://billing.test/portal/payment-methods" in email.text_body
    page = staff.get(f"/admin/clients/{world.client_a.id}").text
    assert "Client A contact 1 was emailed that it is off." in page and "Autopay off" in page
    assert "ended" in page and "alice@a.test (turned off)" in page
    assert "Autopay is off: nothing" not in client.get("/portal/autopay").text  # the contact sees it off
    assert "Turn autopay on" in client.get("/portal/autopay").text
    assert staff.post(f"/admin/clients/{world.client_a.id}/autopay/off").status_code == 422  # already off


def test_staff_of_another_organization_get_404(client, app, world, alice):
    add_sandbox_card(client)
    turn_on(client)
    staff = app.test_client()
    login(staff, world.bob)
    assert staff.post(f"/admin/clients/{world.client_a.id}/autopay/off").status_code == 404
    assert fresh_client(world.client_a).autopay_enabled and consents()[0].ended_at is None
    with pytest.raises(DomainError):  # the service is scoped the same way
        autopay.turn_off(world.client_a.id, organization_id=world.org_b.id, actor=Actor.user(world.bob), now=NOW)


def test_every_autopay_form_keeps_its_csrf_token(client, app, world, alice):
    add_sandbox_card(client)
    staff = app.test_client()
    login(staff, world.alice)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        page = client.get("/portal/autopay").text
        assert 'name="csrf_token"' in page
        assert turn_on(client).status_code == 400
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        assert turn_on(client, csrf_token=token).status_code == 303
        assert client.post("/portal/autopay/off").status_code == 400
        assert staff.post(f"/admin/clients/{world.client_a.id}/autopay/off").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert fresh_client(world.client_a).autopay_enabled and len(consents()) == 1


def test_a_contact_who_gave_a_consent_stays_on_the_record(client, app, world, alice):
    add_sandbox_card(client)
    turn_on(client)
    staff = app.test_client()
    login(staff, world.alice)
    response = staff.post(f"/admin/clients/{world.client_a.id}/contacts/{alice.id}/remove")
    assert response.status_code == 422 and "saved cards or autopay consents, so it stays on the record" in \
        response.text
    assert consents()[0].contact_id == alice.id and fresh_client(world.client_a).contacts[0].id == alice.id
