"""The public sign-up page's service (/subscribe/<slug>): a person picks a price of a public plan, gives their
name, company and email, agrees to recurring charges, saves a card on the provider's setup page, and is
subscribed; an email brings them a portal sign-in link.

Steps, each safe to repeat:
1. `start_signup` (the form): validates everything first (nothing is written on bad input), then in one
   transaction makes the Client, its portal Contact, the consent (an AutopayConsent row: the exact text shown,
   its version, the IP, the time) and the SubscriptionSignup row keyed by the form's token. The token is UNIQUE:
   the same form submitted twice (a double click, a reload, two racing requests) finds the first row and makes
   nothing more.
2. `open_card_page`: the provider's hosted setup page (Stripe Checkout in setup mode, or the sandbox's form),
   through services/portal/cards.py like the portal's "Add a card", sending the person back to the sign-up.
3. `finish_signup` (the return page): asks the provider what was saved (verify on return) and stores the card
   once (cards.confirm_setup), turns autopay on with the consent of step 1 (mode on_issue: each subscription
   invoice is charged when issued), calls subs-core's `create_subscription(..., signup_key=token)` (the same
   key gives the same subscription), then marks the sign-up done and queues the welcome email (once).

An email already known at the organization: the sign-up still makes a new client, never attaches to the
existing one. Attaching would let anyone who types a client's email subscribe that company (and, with its saved
card as the default, charge it), and asking "sign in first" would tell a stranger that the address is a client.
A new client leaks nothing and risks nothing: the person sees both companies in the portal (the same email at
two companies is two contacts, picked at sign-in) and staff can tidy up. An abandoned sign-up (no card saved)
leaves its client and contact with no subscription."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from invoicing.extensions import db
from invoicing.gateways.base import Gateway
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import (
    AutopayConsent,
    Client,
    Contact,
    Organization,
    PaymentMethod,
    Plan,
    PlanPrice,
    Subscription,
    SubscriptionSignup,
)
from invoicing.money import format_money
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.portal import cards
from invoicing.services.portal.auth import add_magic_link
from invoicing.services.portal.autopay import lock_client
from invoicing.services.portal.staff import INVITATION_TTL
from invoicing.services.site import Site
from invoicing.services.subscriptions import core
from invoicing.services.subscriptions.lifecycle import create_subscription, next_invoice_preview
from invoicing.services.users import normalize_email

# Versioned like the autopay terms: a new wording gets a new key, and every stored consent keeps its own text.
CONSENT_VERSION = "subscription-2026-12"
CONSENT_TEXTS = {
    "subscription-2026-12": (
        "I authorize {organization} to charge the card I save on the next page, without asking each time, for "
        "each invoice {organization} issues to my company, as soon as it is issued: the invoices of my "
        "subscription to {plan} at the price{seats} I chose above ({prices}){extras}{trial}, and any other "
        "invoice. A receipt is emailed for every charge. This authorization stays in effect until autopay is "
        "turned off in {organization}'s client portal; cancelling the subscription ends its invoices."
    ),
}
# Autopay (services/billing/autopay.py) charges every invoice of a client whose autopay is on, not only the
# subscription's: the terms say so.
CONSENT_MODE = "on_issue"  # a subscription invoice is charged as soon as it is issued
MAX_SEATS = core.MAX_SEATS
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{20,64}")
WELCOME_KIND = "subscription_welcome"  # outbox kind; its body holds a sign-in link, like portal_sign_in
WELCOME_TTL = INVITATION_TTL  # the welcome's sign-in link: the person may read it days later
RETURN_PATH = "/subscribe/signup/{key}?session_id={{CHECKOUT_SESSION_ID}}"
STATE_PATH = "/subscribe/signup/{key}"
EXPIRED_FORM = "This form has expired. Reload the page and fill it in again."


def new_signup_key() -> str:
    """The token of one sign-up form (a hidden field): submitting the same form twice makes one sign-up."""
    return secrets.token_urlsafe(24)


# --- the plan as the page shows it ----------------------------------------------------------------------


def interval_label(price: PlanPrice) -> str:
    """"month", "year", "3 months"."""
    unit = price.interval_unit
    return unit if price.interval_count == 1 else f"{price.interval_count} {unit}s"


def price_label(price: PlanPrice, quantity: int = 1) -> str:
    """"$49.00 per month", "¥5,000 per seat every 3 months", "$98.00 per month (2 seats)"."""
    every = f"per {price.interval_unit}" if price.interval_count == 1 else f"every {interval_label(price)}"
    if quantity > 1:
        return f"{format_money(price.amount * quantity, price.currency)} {every} ({quantity} seats)"
    per_seat = " per seat" if price.plan.per_seat else ""
    return f"{format_money(price.amount, price.currency)}{per_seat} {every}"


def tax_label(plan: Plan) -> str:
    """"20%", "8.875%", or "" for no tax."""
    if not plan.tax_rate_milli:
        return ""
    return f"{(Decimal(plan.tax_rate_milli) / 1000).normalize():f}%"


def active_prices(plan: Plan) -> list[PlanPrice]:
    return [price for price in plan.prices if price.archived_at is None]


def public_plan(slug: str) -> Plan:
    """The plan of a sign-up page: public, not archived, with a price, of an organization not archived. Any
    other plan is NotFound, exactly like a slug nobody uses."""
    plan = db.session.execute(
        select(Plan).join(Organization, Organization.id == Plan.organization_id)
        .where(Plan.slug == slug[:80], Plan.public.is_(True), Plan.archived_at.is_(None),
               Organization.archived_at.is_(None))
    ).scalar_one_or_none()
    if plan is None or not active_prices(plan):
        raise NotFound("There is no sign-up page at this address.")
    return plan


def consent_text(plan: Plan, version: str = CONSENT_VERSION) -> str:
    """The recurring-charge terms the sign-up page shows, with the plan's names and prices filled in: the exact
    text stored with the consent (the sign-up row keeps the price and seats chosen)."""
    prices = active_prices(plan)
    extras = []
    if tax := tax_label(plan):
        extras.append(f", plus {tax} tax")
    fees = sorted({format_money(p.setup_fee, p.currency) for p in prices if p.setup_fee})
    if fees:
        extras.append(f", and a one-time setup fee ({' or '.join(fees)}) on the first invoice")
    trial = f", the first one when the {plan.trial_days}-day free trial ends" if plan.trial_days else ""
    return CONSENT_TEXTS[version].format(organization=plan.organization.name, plan=plan.name,
                                         prices="; ".join(price_label(p) for p in prices), extras="".join(extras),
                                         trial=trial, seats=" and number of seats" if plan.per_seat else "")


@dataclass(frozen=True)
class PriceOffer:
    price: PlanPrice
    label: str  # "$49.00 per month"
    setup_fee: str  # "$25.00", or ""


@dataclass(frozen=True)
class Offer:
    """A public plan as its sign-up page shows it."""

    plan: Plan
    prices: list[PriceOffer]
    trial_days: int
    tax: str  # "20%", or ""


def offer(plan: Plan) -> Offer:
    return Offer(plan, [PriceOffer(p, price_label(p), format_money(p.setup_fee, p.currency) if p.setup_fee else "")
                        for p in active_prices(plan)], plan.trial_days, tax_label(plan))


# --- step 1: the form ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignupData:
    name: str
    company: str
    email: str
    price_id: int | None
    quantity: int | None
    agree: bool
    text_version: str


class SignupInvalid(DomainError):
    """A sign-up form refused; `errors` maps form fields to messages (nothing was written)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors


@dataclass(frozen=True)
class _Clean:
    name: str
    company: str
    email: str
    price: PlanPrice
    quantity: int


def _clean(plan: Plan, data: SignupData) -> _Clean:
    errors: dict[str, str] = {}
    name, company = " ".join(data.name.split()), " ".join(data.company.split())
    if not name:
        errors["name"] = "Enter your name."
    elif len(name) > 200:
        errors["name"] = "Your name can have at most 200 characters."
    if len(company) > 200:
        errors["company"] = "The company name can have at most 200 characters."
    email = ""
    try:
        email = normalize_email(data.email) if data.email.strip() else ""
    except DomainError:
        errors["email"] = "Enter a valid email address, like name@example.com."
    if not email and "email" not in errors:
        errors["email"] = "Enter your email address: your sign-in link and receipts go there."
    price = next((p for p in active_prices(plan) if p.id == data.price_id), None)
    if price is None:
        errors["price_id"] = "Choose one of the prices."
    quantity = data.quantity or 0
    if not plan.per_seat:
        quantity = 1
    elif not 1 <= quantity <= MAX_SEATS:
        errors["quantity"] = f"Choose between 1 and {MAX_SEATS:,} seats."
    if data.text_version != CONSENT_VERSION:
        errors["agree"] = "The terms have changed since this page was opened. Please read them again."
    elif not data.agree:
        errors["agree"] = "Tick the box to agree to the recurring charges: we cannot subscribe you without it."
    if errors:
        raise SignupInvalid(errors)
    assert price is not None
    return _Clean(name, company, email, price, quantity)


def signup_by_key(signup_key: str) -> SubscriptionSignup:
    signup = db.session.execute(
        select(SubscriptionSignup).where(SubscriptionSignup.signup_key == signup_key[:64])
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if signup is None:
        raise NotFound("Sign-up not found.")
    return signup


def start_signup(slug: str, data: SignupData, *, signup_key: str, ip: str, now: datetime) -> SubscriptionSignup:
    """The form: the client, its portal contact, the consent and the sign-up row, in one transaction; or the
    sign-up this form's token already made (a resubmit makes nothing more, whatever it says now)."""
    plan = public_plan(slug)
    if not KEY_PATTERN.fullmatch(signup_key):
        raise SignupInvalid({"form": EXPIRED_FORM})
    existing = db.session.execute(
        select(SubscriptionSignup).where(SubscriptionSignup.signup_key == signup_key)).scalar_one_or_none()
    if existing is not None:
        if existing.plan_id != plan.id:
            raise SignupInvalid({"form": EXPIRED_FORM})
        return existing
    clean = _clean(plan, data)
    try:
        with atomic():
            return _create(plan, clean, signup_key=signup_key, ip=ip, now=now)
    except IntegrityError:  # the same form, submitted at the same instant: the other request made it
        return signup_by_key(signup_key)


def _create(plan: Plan, clean: _Clean, *, signup_key: str, ip: str, now: datetime) -> SubscriptionSignup:
    client = Client(organization_id=plan.organization_id, name=clean.company or clean.name, email=clean.email,
                    currency=clean.price.currency, created_at=now)
    contact = Contact(organization_id=plan.organization_id, name=clean.name, email=clean.email, portal_access=True,
                      created_at=now)
    client.contacts = [contact]
    db.session.add(client)
    db.session.flush()
    actor = Actor.contact(contact)
    record("client.created", client, actor=actor, now=now, details={"name": client.name, "via": "signup"})
    record("contact.added", contact, actor=actor, now=now, details={"email": contact.email, "via": "signup"})
    consent = AutopayConsent(
        organization_id=plan.organization_id, client_id=client.id, contact_id=contact.id, mode=CONSENT_MODE,
        text_version=CONSENT_VERSION, text=consent_text(plan),
        ip=ip[:45], created_at=now)
    db.session.add(consent)
    db.session.flush()
    signup = SubscriptionSignup(
        organization_id=plan.organization_id, plan_id=plan.id, price_id=clean.price.id, quantity=clean.quantity,
        signup_key=signup_key, client_id=client.id, contact_id=contact.id, consent_id=consent.id, status="card",
        ip=ip[:45], created_at=now)
    db.session.add(signup)
    db.session.flush()
    record("subscription_signup.started", signup, actor=actor, now=now,
           details={"plan": plan.name, "price_id": clean.price.id, "quantity": clean.quantity,
                    "consent_id": consent.id})
    return signup


# --- step 2: the card ------------------------------------------------------------------------------------


def open_card_page(signup_key: str, *, gateway: Gateway, site: Site) -> str:
    """The provider's page where the person saves the card of this sign-up; back to the sign-up after."""
    signup = signup_by_key(signup_key)
    if signup.status == "done":
        raise DomainError("You are subscribed already: manage your card in the client portal.")
    return cards.start_setup(signup.contact_id, gateway=gateway, site=site, purpose="subscription_signup",
                             return_path=RETURN_PATH.format(key=signup.signup_key),
                             cancel_path=STATE_PATH.format(key=signup.signup_key))


# --- step 3: back from the provider ----------------------------------------------------------------------


@dataclass(frozen=True)
class SignupOutcome:
    status: str  # done (subscribed, now or before), not_saved (no card: cancelled or declined)
    signup: SubscriptionSignup


def finish_signup(signup_key: str, session_id: str, *, gateway: Gateway, site: Site,
                  now: datetime) -> SignupOutcome:
    """The return page: verify the card with the provider, store it once, turn autopay on with the sign-up's
    consent, subscribe (subs-core; the token as signup_key: one subscription however often this runs), then
    mark the sign-up done and queue the welcome email once. GatewayError when the provider cannot be asked
    now (the page asks to reload); NotFound for a setup session of another sign-up."""
    signup = signup_by_key(signup_key)
    if signup.status == "done":
        return SignupOutcome("done", signup)
    saved = cards.confirm_setup(signup.client_id, signup.contact_id, session_id, gateway=gateway, now=now)
    if saved.status != "saved" or saved.card is None:
        return SignupOutcome("not_saved", signup)
    _autopay_on(signup.id, saved.card.id, now=now)
    signup = signup_by_key(signup_key)
    subscription = create_subscription(
        signup.organization_id, client_id=signup.client_id, price_id=signup.price_id, quantity=signup.quantity,
        trial_days=None, charge_now=True, contact_id=signup.contact_id, consent_id=signup.consent_id,
        signup_key=signup.signup_key, actor=Actor.contact(signup.contact), now=now, site=site)
    return SignupOutcome("done", _complete(signup.id, subscription.id, site=site, now=now))


def _lock_signup(signup_id: int) -> SubscriptionSignup:
    return db.session.execute(
        select(SubscriptionSignup).where(SubscriptionSignup.id == signup_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _autopay_on(signup_id: int, card_id: int, *, now: datetime) -> None:
    """The sign-up's consent becomes the client's active autopay consent, with the card just saved as the
    default (autopay then charges each subscription invoice when it is issued). Once: a replay finds it on."""
    with atomic():
        signup = _lock_signup(signup_id)
        client = lock_client(signup.client_id)
        card = db.session.get(PaymentMethod, card_id)
        assert card is not None and card.client_id == client.id
        consent = signup.consent
        if client.autopay_enabled and consent.payment_method_id is not None:
            return
        consent.payment_method_id = consent.payment_method_id or card.id
        client.autopay_payment_method = client.autopay_payment_method or card.provider_id
        client.autopay_enabled, client.autopay_consent_at = True, consent.created_at
        record("autopay.enabled", client, actor=Actor.contact(signup.contact), now=now,
               details={"consent_id": consent.id, "mode": consent.mode, "text_version": consent.text_version,
                        "card": card.label, "replaced": None, "via": "signup"})


def _complete(signup_id: int, subscription_id: int, *, site: Site, now: datetime) -> SubscriptionSignup:
    with atomic():
        signup = _lock_signup(signup_id)
        if signup.status != "done":
            signup.status, signup.subscription_id, signup.completed_at = "done", subscription_id, now
            record("subscription_signup.completed", signup, actor=Actor.contact(signup.contact), now=now,
                   details={"subscription_id": subscription_id})
            _email_welcome(signup, site=site, now=now)
    return signup


def _email_welcome(signup: SubscriptionSignup, *, site: Site, now: datetime) -> None:
    contact, plan = signup.contact, signup.plan
    organization = contact.organization
    subscription = db.session.get(Subscription, signup.subscription_id)
    assert subscription is not None
    token = add_magic_link(contact.id, now=now, ttl=WELCOME_TTL)
    subject = f"You are subscribed to {plan.name}"
    text, html = render_email(
        "subscription_welcome", organization=organization, subject=subject, contact=contact, plan=plan,
        subscription=subscription, price=price_label(signup.price, signup.quantity), tax=tax_label(plan),
        sign_in_url=site.url(f"/portal/login/{token}?next=/portal/subscriptions", organization),
        login_url=site.url("/portal/login", organization), valid_days=WELCOME_TTL.days)
    sender, reply_to = sender_for(organization, site.mail_sender)
    enqueue(kind=WELCOME_KIND, to=contact.email, subject=subject, text_body=text, html_body=html, from_addr=sender,
            reply_to=reply_to, now=now, organization_id=organization.id, dedupe_key=f"subscription_welcome:{signup.id}")


# --- the sign-up's page ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignupView:
    signup: SubscriptionSignup
    price: str  # "$98.00 per month (2 seats)"
    subscription: Subscription | None
    next_invoice: tuple[date, int] | None  # date and amount, tax included (subs-core's preview)


def signup_view(signup: SubscriptionSignup, *, now: datetime) -> SignupView:
    subscription = signup.subscription
    upcoming = None
    if subscription is not None and subscription.status in ("trialing", "active", "past_due"):
        upcoming = next_invoice_preview(subscription, now=now)
    return SignupView(signup, price_label(signup.price, signup.quantity), subscription, upcoming)
