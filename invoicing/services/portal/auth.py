"""Portal sign-in: emailed magic links (single use, 15 minutes, only the token's SHA-256 stored), passwords,
the company a person acts for, and the bookkeeping of a successful sign-in.

A person is an email within one organization: the same email at two companies of an organization is two
Contact rows (acting for a company = being signed in as its row), and one password. Setting the password
writes the same hash on every row of that email in the organization and bumps each row's session version, so
every other session of the person ends, whichever company it acted for. Organizations never share a password.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from invoicing.extensions import db
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import Client, Contact, Organization, PortalLogin
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.site import Site
from invoicing.services.users import MIN_PASSWORD

MAGIC_LINK_TTL = timedelta(minutes=15)
MAX_PASSWORD = 200


class LinkUnusable(Exception):
    """A magic link that is unknown, already used or expired (the page says so kindly, never which)."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def can_sign_in(contact: Contact) -> bool:
    return bool(contact.portal_access) and contact.client.archived_at is None and not contact.organization.is_archived


def add_magic_link(contact_id: int, *, now: datetime, ttl: timedelta = MAGIC_LINK_TTL) -> str:
    """A new sign-in token for the contact, its hash added in the caller's transaction; the caller emails it
    and forgets it."""
    token = secrets.token_urlsafe(32)
    db.session.add(PortalLogin(contact_id=contact_id, token_hash=_hash(token), expires_at=now + ttl, created_at=now))
    return token


def issue_magic_link(contact_id: int, *, now: datetime, ttl: timedelta = MAGIC_LINK_TTL) -> str:
    with atomic():
        return add_magic_link(contact_id, now=now, ttl=ttl)


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


def _sign_in_rows(email: str, organization_id: int | None) -> list[Contact]:
    """The contact rows with this email that may sign in now, by organization, then company name."""
    query = (select(Contact).join(Client, Client.id == Contact.client_id).join(Organization)
             .where(func.lower(Contact.email) == normalize(email), Contact.portal_access.is_(True),
                    Client.archived_at.is_(None), Organization.archived_at.is_(None))
             .order_by(Contact.organization_id, Client.name, Contact.id))
    if organization_id is not None:
        query = query.where(Contact.organization_id == organization_id)
    return list(db.session.execute(query).scalars())


def request_magic_link(email: str, *, site: Site, now: datetime, organization_id: int | None = None) -> int:
    """Email a sign-in link to the person with this email, once per organization they may sign in to (the
    link signs in as their first company there; they pick another after). Returns how many were queued; the
    caller shows the same message whatever it is, so nobody learns whether an address is known."""
    first: dict[int, Contact] = {}
    for contact in _sign_in_rows(email, organization_id):
        first.setdefault(contact.organization_id, contact)
    for contact in first.values():
        organization = contact.organization
        subject = f"Sign in to {organization.name}'s client portal"
        with atomic():
            token = add_magic_link(contact.id, now=now)
            text, html = render_email("portal_sign_in", organization=organization, subject=subject, contact=contact,
                                      sign_in_url=site.url(f"/portal/login/{token}", organization),
                                      minutes=int(MAGIC_LINK_TTL.total_seconds() // 60))
            sender, reply_to = sender_for(organization, site.mail_sender)
            enqueue(kind=SIGN_IN_KIND, to=contact.email, subject=subject, text_body=text, html_body=html,
                    from_addr=sender, reply_to=reply_to, now=now, organization_id=organization.id)
    return len(first)


# --- passwords --------------------------------------------------------------------------------------------

_DUMMY_HASHES: dict[str, str] = {}


def _dummy_hash(method: str) -> str:
    """A real hash (of the configured method) to check when nobody matches, so every answer costs one check."""
    if method not in _DUMMY_HASHES:
        _DUMMY_HASHES[method] = generate_password_hash(secrets.token_urlsafe(16), method=method)
    return _DUMMY_HASHES[method]


def authenticate_password(email: str, password: str, *, now: datetime, hash_method: str,
                          organization_id: int | None = None) -> Contact | None:
    """The contact row to sign in with this email and password, or None: unknown email, no password chosen yet
    and a wrong password all cost one hash check and give the same None. On the shared address (no
    organization of its own) the first organization whose password matches wins."""
    rows = _sign_in_rows(email, organization_id)
    hashes = list(dict.fromkeys(row.password_hash for row in rows if row.password_hash))
    if not hashes:
        check_password_hash(_dummy_hash(hash_method), password)
        return None
    matched = next((h for h in hashes if check_password_hash(h, password)), None)
    contact = next((row for row in rows if matched and row.password_hash == matched), None)
    if contact is None:
        return None
    with atomic():
        _signed_in(contact, method="password", now=now)
    return contact


class PasswordInvalid(DomainError):
    """A password change refused; `errors` maps form fields to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors


def _person_rows(contact: Contact) -> list[Contact]:
    """Every row of this person (same email) in the contact's organization, with or without access, locked."""
    return list(db.session.execute(
        select(Contact).where(Contact.organization_id == contact.organization_id, Contact.email == contact.email)
        .order_by(Contact.id).with_for_update().execution_options(populate_existing=True)
    ).scalars())


def has_password(contact: Contact) -> bool:
    """The person has chosen a password in this organization (on any of their rows)."""
    return db.session.execute(
        select(Contact.id).where(Contact.organization_id == contact.organization_id, Contact.email == contact.email,
                                 Contact.password_hash.is_not(None)).limit(1)
    ).first() is not None


def set_password(contact_id: int, *, current: str, new: str, confirm: str, now: datetime, hash_method: str,
                 current_required: bool = True) -> Contact:
    """The signed-in contact chooses or changes the password of their person: the same hash on every row of
    their email in the organization, and every row's session version bumped (all their other sessions end;
    the caller signs the current one in again with the returned, fresh row). The current password is needed
    when one exists, unless `current_required` is False (signed in by an emailed link a moment ago: the way to
    replace a forgotten password)."""
    errors: dict[str, str] = {}
    if len(new) < MIN_PASSWORD:
        errors["new_password"] = f"The new password must have at least {MIN_PASSWORD} characters."
    elif len(new) > MAX_PASSWORD:
        errors["new_password"] = f"The new password can have at most {MAX_PASSWORD} characters."
    elif new != confirm:
        errors["confirm"] = "The two passwords differ."
    with atomic():
        contact = db.session.get(Contact, contact_id)
        if contact is None or not can_sign_in(contact):
            raise NotFound("Contact not found.")
        rows = _person_rows(contact)
        existing = [row.password_hash for row in rows if row.password_hash]
        if existing and current_required and not any(check_password_hash(h, current) for h in set(existing)):
            errors["current_password"] = "That is not your current password."
        if errors:
            raise PasswordInvalid(errors)
        new_hash = generate_password_hash(new, method=hash_method)
        for row in rows:
            row.password_hash = new_hash
            row.session_version += 1
            record("contact.password_changed" if existing else "contact.password_set", row,
                   actor=Actor.contact(contact), now=now, details={"by_contact": contact.id})
    return contact


# --- the company a person acts for ------------------------------------------------------------------------


def switch_company(contact: Contact, target_id: int, *, now: datetime) -> Contact:
    """Act for another company: the row `target_id` if it is the same person (same organization, same email)
    with access there, else NotFound (another person's row looks like a missing one)."""
    target = next((row for row in companies_for(contact) if row.id == target_id), None)
    if target is None:
        raise NotFound("Company not found.")
    if target.id != contact.id:
        with atomic():
            target.last_login_at = now
            record("contact.switched_company", target, actor=Actor.contact(contact), now=now,
                   details={"from_contact": contact.id, "from_client": contact.client_id})
    return target


# --- ending access ------------------------------------------------------------------------------------------


def end_sessions(contact: Contact, *, now: datetime, forget_password: bool) -> None:
    """In the caller's transaction: end every live session of this row (session version), make its unused
    sign-in links unusable, and with `forget_password` drop its password (revoked, or its email changed: the
    next person at that address must not inherit it)."""
    contact.session_version += 1
    if forget_password:
        contact.password_hash = None
    db.session.execute(update(PortalLogin).where(PortalLogin.contact_id == contact.id, PortalLogin.used_at.is_(None),
                                                 PortalLogin.expires_at > now).values(expires_at=now))
