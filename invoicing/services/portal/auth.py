"""Portal sign-in: emailed magic links (single use, 15 minutes, only the token's SHA-256 stored) and the
bookkeeping of a successful sign-in. The emailing, passwords and company choice build on these."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from invoicing.extensions import db
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import Client, Contact, Organization, PortalLogin
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.site import Site

MAGIC_LINK_TTL = timedelta(minutes=15)


class LinkUnusable(Exception):
    """A magic link that is unknown, already used or expired (the page says so kindly, never which)."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def can_sign_in(contact: Contact) -> bool:
    return bool(contact.portal_access) and contact.client.archived_at is None and not contact.organization.is_archived


def issue_magic_link(contact_id: int, *, now: datetime) -> str:
    """A new sign-in token for the contact (its hash stored); the caller emails it and forgets it."""
    token = secrets.token_urlsafe(32)
    with atomic():
        db.session.add(PortalLogin(contact_id=contact_id, token_hash=_hash(token), expires_at=now + MAGIC_LINK_TTL,
                                   created_at=now))
    return token


def peek_magic_link(token: str, *, now: datetime) -> Contact:
    """The contact a magic link would sign in, without using it (the GET page: mail scanners open links)."""
    query = select(PortalLogin).where(PortalLogin.token_hash == _hash(token[:200]))
    row = db.session.execute(query).scalar_one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= now or not can_sign_in(row.contact):
        raise LinkUnusable
    return row.contact


def redeem_magic_link(token: str, *, now: datetime) -> Contact:
    """Use a magic link: one UPDATE claims it (used_at set only if unused and unexpired), so two racing
    POSTs sign in once. Records the sign-in."""
    with atomic():
        claimed = db.session.execute(
            update(PortalLogin)
            .where(PortalLogin.token_hash == _hash(token[:200]), PortalLogin.used_at.is_(None),
                   PortalLogin.expires_at > now)
            .values(used_at=now).returning(PortalLogin.contact_id)
        ).scalar_one_or_none()
        if claimed is None:
            raise LinkUnusable
        contact = db.session.get(Contact, claimed)
        if contact is None or not can_sign_in(contact):
            raise LinkUnusable
        _signed_in(contact, method="magic_link", now=now)
    return contact


def _signed_in(contact: Contact, *, method: str, now: datetime) -> None:
    contact.last_login_at = now
    record("contact.signed_in", contact, actor=Actor.contact(contact), now=now, details={"method": method})


def companies_for(contact: Contact) -> list[Contact]:
    """Every contact row of the same person (same email, same organization) that may sign in: one per company
    they can act for, the signed-in one included, by company name."""
    return list(db.session.execute(
        select(Contact).join(Client, Client.id == Contact.client_id).join(Organization)
        .where(Contact.organization_id == contact.organization_id, Contact.email == contact.email,
               Contact.portal_access.is_(True), Client.archived_at.is_(None), Organization.archived_at.is_(None))
        .order_by(Client.name, Contact.id)
    ).scalars())


SIGN_IN_KIND = "portal_sign_in"  # outbox kind; its body holds a live sign-in link, so only admins may read it


def normalize(email: str) -> str:
    return email.strip().lower()


def request_magic_link(email: str, *, site: Site, now: datetime, organization_id: int | None = None) -> int:
    """Email a sign-in link to the person with this email, once per organization they may sign in to (the
    link signs in as their first company there; they pick another after). Returns how many were queued; the
    caller shows the same message whatever it is, so nobody learns whether an address is known."""
    email = normalize(email)
    query = (select(Contact).join(Client, Client.id == Contact.client_id).join(Organization)
             .where(func.lower(Contact.email) == email, Contact.portal_access.is_(True),
                    Client.archived_at.is_(None), Organization.archived_at.is_(None))
             .order_by(Contact.organization_id, Client.name, Contact.id))
    if organization_id is not None:
        query = query.where(Contact.organization_id == organization_id)
    first: dict[int, Contact] = {}
    for contact in db.session.execute(query).scalars():
        first.setdefault(contact.organization_id, contact)
    for contact in first.values():
        token = issue_magic_link(contact.id, now=now)
        organization = contact.organization
        subject = f"Sign in to {organization.name}'s client portal"
        text, html = render_email("portal_sign_in", organization=organization, subject=subject, contact=contact,
                                  sign_in_url=site.url(f"/portal/login/{token}", organization),
                                  minutes=int(MAGIC_LINK_TTL.total_seconds() // 60))
        sender, reply_to = sender_for(organization, site.mail_sender)
        with atomic():
            enqueue(kind=SIGN_IN_KIND, to=contact.email, subject=subject, text_body=text, html_body=html,
                    from_addr=sender, reply_to=reply_to, now=now, organization_id=organization.id)
    return len(first)
