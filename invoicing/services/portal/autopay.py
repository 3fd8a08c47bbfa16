"""Autopay consent: a contact agrees, to an exact text (stored with its version), at a time, from an IP, that
their company's default saved card is charged for each invoice, on its due date or as soon as it is issued.
Turning autopay off (the contact; or staff, who can never turn it on) ends the consent and cancels what was
scheduled; staff turning it off emails the contact who agreed.

The charging itself is the scheduler's (services/billing/charges.py): it reads `Client.autopay_enabled`, the
active consent's `mode` and the default card, re-checked inside the invoice lock right before each charge
(DESIGN rule 4); what it has scheduled (InvoiceAutopay rows) `cancel_scheduled_charges` ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import AUTOPAY_MODES, AutopayConsent, Client, Contact, PaymentMethod
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.billing.autopay import cancel_for_client
from invoicing.services.db import atomic
from invoicing.services.site import Site

# Versioned: a new wording gets a new key and the old ones stay, so every stored consent can be read against
# the text it names. The stored consent also keeps the text itself, with the names filled in.
CONSENT_VERSION = "autopay-2026-03"
CONSENT_TEXTS = {
    "autopay-2026-03": (
        "I authorize {organization} to charge {client}'s default card saved in this portal for the full amount "
        "due on each invoice {organization} issues to {client}, without asking each time, at the moment chosen "
        "above: on the invoice's due date, or as soon as the invoice is issued. A receipt is emailed for every "
        "charge. This authorization stays in effect until autopay is turned off, in this portal or by "
        "{organization}; turning it off stops every charge not yet made."
    ),
}
MODES = {"due_date": "Charge on the due date", "on_issue": "Charge when issued"}
assert tuple(MODES) == AUTOPAY_MODES
NEEDS_CARD = "Save a card first: autopay charges your company's default card."
# ChargeAttempt statuses of charges planned but not yet sent to the provider: turning autopay off cancels them.
# An attempt already "pending" (written, then the provider called: DESIGN rule 3) is left to finish or to the
# reconcile job, since its charge may have happened; the charge job re-checks autopay before calling.
SCHEDULED_ATTEMPTS = ("scheduled",)
OFF_EMAIL_KIND = "autopay_off"


def lock_client(client_id: int, organization_id: int | None = None) -> Client:
    """The client row, locked (FOR UPDATE on PostgreSQL; atomic() holds SQLite's write lock)."""
    query = select(Client).where(Client.id == client_id)
    if organization_id is not None:
        query = query.where(Client.organization_id == organization_id)
    client = db.session.execute(query.with_for_update().execution_options(populate_existing=True)).scalar_one_or_none()
    if client is None:
        raise NotFound("Client not found.")
    return client


def default_card(client: Client, provider: str) -> PaymentMethod | None:
    """The card autopay charges: the client's default, if it is an active card at this provider."""
    if not client.autopay_payment_method:
        return None
    return db.session.execute(
        select(PaymentMethod).where(PaymentMethod.client_id == client.id, PaymentMethod.provider == provider,
                                    PaymentMethod.provider_id == client.autopay_payment_method,
                                    PaymentMethod.removed_at.is_(None))
    ).scalar_one_or_none()


def consent_text(organization: str, client: str, version: str = CONSENT_VERSION) -> str:
    return CONSENT_TEXTS[version].format(organization=organization, client=client)


def active_consent(client_id: int) -> AutopayConsent | None:
    return db.session.execute(
        select(AutopayConsent).where(AutopayConsent.client_id == client_id, AutopayConsent.ended_at.is_(None))
        .order_by(AutopayConsent.id.desc())
    ).scalars().first()


@dataclass(frozen=True)
class AutopayState:
    enabled: bool
    consent: AutopayConsent | None  # the active one
    card: PaymentMethod | None  # the default card
    history: list[AutopayConsent]  # the latest consents, ended ones included, newest first


def autopay_state(client_id: int, *, provider: str, history: int = 5) -> AutopayState:
    client = db.session.get(Client, client_id)
    if client is None:
        raise NotFound("Client not found.")
    consents = list(db.session.execute(
        select(AutopayConsent).where(AutopayConsent.client_id == client_id)
        .order_by(AutopayConsent.id.desc()).limit(history)
    ).scalars())
    active = next((c for c in consents if c.ended_at is None), None) if client.autopay_enabled else None
    return AutopayState(client.autopay_enabled, active, default_card(client, provider), consents)


def enable_autopay(client_id: int, contact_id: int, *, mode: str, text_version: str, ip: str, provider: str,
                   now: datetime) -> AutopayConsent:
    """Turn autopay on with the contact's consent (or change when it charges: a new consent replaces the old).
    `text_version` is the version the page showed: if the wording changed since, the contact reads it again."""
    if mode not in MODES:
        raise DomainError("Choose when autopay charges: on the due date, or when the invoice is issued.")
    if text_version != CONSENT_VERSION:
        raise DomainError("The autopay terms have changed since this page was opened. Please read them again.")
    with atomic():
        client = lock_client(client_id)
        contact = db.session.get(Contact, contact_id)
        if contact is None or contact.client_id != client.id:
            raise NotFound("Contact not found.")
        card = default_card(client, provider)
        if card is None:
            raise DomainError(NEEDS_CARD)
        current = active_consent(client.id)
        if client.autopay_enabled and current is not None and current.mode == mode \
                and current.text_version == text_version:
            return current  # the same consent again (a second click): nothing new
        actor = Actor.contact(contact)
        if current is not None:
            _end(current, reason="replaced", actor=actor, now=now)
        consent = AutopayConsent(
            organization_id=client.organization_id, client_id=client.id, contact_id=contact.id,
            payment_method_id=card.id, mode=mode, text_version=text_version, ip=ip[:45],
            text=consent_text(client.organization.name, client.name, text_version), created_at=now)
        db.session.add(consent)
        db.session.flush()
        client.autopay_enabled, client.autopay_consent_at = True, now
        record("autopay.enabled", client, actor=actor, now=now,
               details={"consent_id": consent.id, "mode": mode, "text_version": text_version, "card": card.label,
                        "replaced": current.id if current is not None else None})
    return consent


def _end(consent: AutopayConsent, *, reason: str, actor: Actor, now: datetime) -> None:
    consent.ended_at, consent.end_reason = now, reason
    consent.ended_by_type, consent.ended_by_id, consent.ended_by_label = actor.type, actor.id, actor.label


def end_autopay(client: Client, *, reason: str, actor: Actor, now: datetime) -> AutopayConsent | None:
    """Inside the caller's transaction, with the client row locked: autopay off, its consent ended, whatever
    was scheduled cancelled. Returns the consent that ended."""
    consent = active_consent(client.id)
    if consent is not None:
        _end(consent, reason=reason, actor=actor, now=now)
    client.autopay_enabled, client.autopay_consent_at = False, None
    cancelled = cancel_scheduled_charges(client.id, now=now)
    record("autopay.disabled", client, actor=actor, now=now,
           details={"consent_id": consent.id if consent else None, "reason": reason, "cancelled_attempts": cancelled})
    return consent


def turn_off(client_id: int, *, actor: Actor, now: datetime, organization_id: int | None = None,
             site: Site | None = None) -> AutopayConsent | None:
    """Autopay off: by the contact (their client's id), or by staff (`organization_id` scopes it to theirs;
    with `site`, the contact who agreed is emailed that it was turned off)."""
    with atomic():
        client = lock_client(client_id, organization_id)
        if not client.autopay_enabled:
            raise DomainError("Autopay is already off.")
        consent = end_autopay(client, reason="turned_off", actor=actor, now=now)
        if site is not None and consent is not None:
            _email_turned_off(client, consent, site=site, now=now)
    return consent


def cancel_scheduled_charges(client_id: int, *, now: datetime) -> int:
    """The scheduler's hook: cancel the client's scheduled autopay charges (services/billing/autopay.py), in the
    caller's transaction (client row locked). A charge already at the provider is left to its answer."""
    return cancel_for_client(client_id, reason="autopay_off", now=now)


def _email_turned_off(client: Client, consent: AutopayConsent, *, site: Site, now: datetime) -> None:
    organization = client.organization
    contact = consent.contact
    subject = f"Autopay is off for {client.name}"
    text, html = render_email("autopay_off", organization=organization, subject=subject, client=client,
                              contact=contact, consent=consent,
                              portal_url=site.url("/portal/payment-methods", organization))
    sender, reply_to = sender_for(organization, site.mail_sender)
    enqueue(kind=OFF_EMAIL_KIND, to=contact.email, subject=subject, text_body=text, html_body=html, from_addr=sender,
            reply_to=reply_to, now=now, organization_id=organization.id, dedupe_key=f"autopay_off:{consent.id}")
