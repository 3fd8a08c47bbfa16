"""A client's saved cards: added through the provider's hosted setup page (Stripe Checkout in setup mode, or
the sandbox's setup form) and verified with the provider on return, listed with the default and expiry
flags, made the default, removed (detached at the provider).

Every function takes the signed-in contact's `client_id` and the configured provider's name, and finds cards
only among that client's cards of that provider: another company's card is NotFound, exactly like a missing
one. Provider calls are made outside the transactions that lock the client row.

The default card is `Client.autopay_payment_method` (the provider id of one active card): the first card saved
becomes it; removing it hands the role to the newest remaining card. While autopay is on, the default card
cannot be removed: autopay needs a card, so the contact first picks another default or turns autopay off
(services/portal/autopay.py). A removed card stays as a row with `removed_at` (its provider id can never be
stored again, so reloading an old return page does not bring it back)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.gateways.base import Gateway, SetupRequest
from invoicing.models import Client, Contact, PaymentMethod
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.checkout import _customer_key
from invoicing.services.db import atomic
from invoicing.services.portal.autopay import default_card, end_autopay, lock_client
from invoicing.services.site import Site

EXPIRY_WARNING = timedelta(days=30)  # a card expiring within this is flagged
RETURN_PATH = "/portal/payment-methods/added?session_id={CHECKOUT_SESSION_ID}"
LIST_PATH = "/portal/payment-methods"
AUTOPAY_NEEDS_IT = ("Autopay charges this card, so it cannot be removed while autopay is on. Make another card "
                    "the default first, or turn autopay off.")


def active_cards(client_id: int, provider: str) -> list[PaymentMethod]:
    """The client's saved cards at this provider, oldest first."""
    return list(db.session.execute(
        select(PaymentMethod).where(PaymentMethod.client_id == client_id, PaymentMethod.provider == provider,
                                    PaymentMethod.removed_at.is_(None))
        .order_by(PaymentMethod.created_at, PaymentMethod.id)
    ).scalars())


def _card(client_id: int, card_id: int, provider: str) -> PaymentMethod:
    card = db.session.execute(
        select(PaymentMethod).where(PaymentMethod.id == card_id, PaymentMethod.client_id == client_id,
                                    PaymentMethod.provider == provider, PaymentMethod.removed_at.is_(None))
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if card is None:
        raise NotFound("Card not found.")
    return card


# --- listing ----------------------------------------------------------------------------------------------


def expiry_state(card: PaymentMethod, today: date) -> str:
    """"expired" after the last day of its expiry month, "expiring" within EXPIRY_WARNING of it, else "ok"."""
    first_of_next = date(card.exp_year + card.exp_month // 12, card.exp_month % 12 + 1, 1)
    last_day = first_of_next - timedelta(days=1)
    if today > last_day:
        return "expired"
    return "expiring" if last_day - today <= EXPIRY_WARNING else "ok"


@dataclass(frozen=True)
class CardRow:
    card: PaymentMethod
    default: bool
    expiry: str  # ok, expiring, expired


def list_cards(client_id: int, *, provider: str, today: date) -> list[CardRow]:
    client = db.session.get(Client, client_id)
    if client is None:
        raise NotFound("Client not found.")
    return [CardRow(card, card.provider_id == client.autopay_payment_method, expiry_state(card, today))
            for card in active_cards(client_id, provider)]


# --- adding a card ----------------------------------------------------------------------------------------


def provider_customer(client_id: int, *, gateway: Gateway, site: Site) -> str | None:
    """The provider customer the client's cards are attached to. Stripe's is made once per client and stored
    on it (the same one pay-by-link checkouts use, same idempotency key); the sandbox keeps its own, made
    idempotently from the same key, so nothing is stored for it."""
    client = db.session.get(Client, client_id)
    if client is None:
        raise NotFound("Client not found.")
    if gateway.name == "stripe" and client.stripe_customer_id:
        return client.stripe_customer_id
    customer_id = gateway.create_customer(name=client.name, email=client.email or None,
                                          idempotency_key=_customer_key(site, client),
                                          metadata={"client_id": str(client.id)})
    if gateway.name != "stripe":
        return customer_id
    with atomic():
        stored = lock_client(client_id)
        if stored.stripe_customer_id is None:
            stored.stripe_customer_id = customer_id
        return stored.stripe_customer_id


def start_setup(contact_id: int, *, gateway: Gateway, site: Site, return_path: str = RETURN_PATH,
                cancel_path: str = LIST_PATH, purpose: str = "save_card") -> str:
    """Open the provider's hosted page where the contact saves a card for their company; returns its URL.
    Each press opens a new page (a setup moves no money, so a double click costs nothing). The portal's pages
    are where the provider sends the person back, unless the caller names others (the public sign-up's:
    services/subscriptions/signup.py); `return_path` contains {CHECKOUT_SESSION_ID}."""
    contact = db.session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("Contact not found.")
    client, organization = contact.client, contact.organization
    customer_id = provider_customer(client.id, gateway=gateway, site=site)
    setup = gateway.create_setup_checkout(SetupRequest(
        currency=client.currency, customer_id=customer_id,
        success_url=site.url(return_path, organization), cancel_url=site.url(cancel_path, organization),
        idempotency_key=f"setup:{client.id}:{contact.id}:{secrets.token_hex(16)}",
        metadata={"client_id": str(client.id), "contact_id": str(contact.id),
                  "organization_id": str(organization.id), "purpose": purpose},
    ))
    if not setup.url:
        raise DomainError("The card page could not be opened. Please try again.")
    return setup.url


@dataclass(frozen=True)
class SetupOutcome:
    status: str  # saved (now or before), removed (saved once, removed since), not_saved (cancelled, declined)
    card: PaymentMethod | None = None


def confirm_setup(client_id: int, contact_id: int, session_id: str, *, gateway: Gateway,
                  now: datetime) -> SetupOutcome:
    """The return page: ask the provider what happened to the setup session and store the card it saved, once
    (reloading the page, or two tabs at once, store it once). A session of another client is NotFound.
    GatewayError when the provider cannot be asked now (the page asks to reload)."""
    setup = gateway.retrieve_setup_checkout(session_id)
    if setup.mode != "setup" or setup.metadata.get("client_id") != str(client_id):
        raise NotFound("Card setup not found.")
    card = setup.card
    if not setup.saved or card is None:
        return SetupOutcome("not_saved")
    with atomic():
        client = lock_client(client_id)
        known = db.session.execute(
            select(PaymentMethod).where(PaymentMethod.provider_id == card.id)).scalar_one_or_none()
        if known is not None:
            if known.client_id != client_id:
                raise NotFound("Card setup not found.")
            return SetupOutcome("removed" if known.removed_at else "saved", known)
        method = PaymentMethod(
            organization_id=client.organization_id, client_id=client.id, provider=gateway.name, provider_id=card.id,
            customer_id=card.customer_id or setup.customer_id, setup_session_id=setup.id, brand=card.brand,
            last4=card.last4, exp_month=card.exp_month, exp_year=card.exp_year, added_by_contact_id=contact_id,
            created_at=now)
        db.session.add(method)
        db.session.flush()
        made_default = default_card(client, gateway.name) is None
        if made_default:
            client.autopay_payment_method = card.id
        contact = db.session.get(Contact, contact_id)
        record("payment_method.added", method, actor=Actor.contact(contact), now=now,
               details={"card": method.label, "expiry": method.expiry, "default": made_default,
                        "provider": gateway.name})
    return SetupOutcome("saved", method)


# --- default and removal ----------------------------------------------------------------------------------


def set_default(client_id: int, card_id: int, *, provider: str, actor: Actor, now: datetime) -> PaymentMethod:
    """Make a card the default (the one autopay charges, from its next charge on)."""
    with atomic():
        client = lock_client(client_id)
        card = _card(client_id, card_id, provider)
        previous = client.autopay_payment_method
        if previous != card.provider_id:
            client.autopay_payment_method = card.provider_id
            record("payment_method.default_set", card, actor=actor, now=now,
                   details={"card": card.label, "autopay": client.autopay_enabled})
    return card


def remove_card(client_id: int, card_id: int, *, gateway: Gateway, actor: Actor, now: datetime) -> PaymentMethod:
    """Detach the card at the provider, then mark it removed. The default card cannot go while autopay is on.
    GatewayError if the provider refused or could not be reached (nothing changed here)."""
    card = _card(client_id, card_id, gateway.name)
    client = card.client
    if client.autopay_enabled and client.autopay_payment_method == card.provider_id:
        raise DomainError(AUTOPAY_NEEDS_IT)
    provider_id = card.provider_id
    db.session.rollback()  # no read transaction held open across the provider call
    gateway.detach_payment_method(provider_id)
    with atomic():
        client = lock_client(client_id)
        card = _card(client_id, card_id, gateway.name)
        card.removed_at = now
        details: dict[str, object] = {"card": card.label}
        if client.autopay_payment_method == card.provider_id:
            if client.autopay_enabled:  # autopay was turned on while the card was being detached: it has no card
                end_autopay(client, reason="card_removed", actor=actor, now=now)
                details["autopay_ended"] = True
            newest = next(reversed(active_cards(client_id, gateway.name)), None)
            client.autopay_payment_method = newest.provider_id if newest else None
            details["new_default"] = newest.label if newest else None
        record("payment_method.removed", card, actor=actor, now=now, details=details)
    return card
