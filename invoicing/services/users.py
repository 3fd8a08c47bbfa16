"""Organizations and staff users: creation, password hashing (scrypt by default), authentication."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from invoicing.extensions import db
from invoicing.models import ROLES, UNUSABLE_PASSWORD_PREFIX, Organization, User
from invoicing.money import MoneyError, check_currency
from invoicing.services import DomainError
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic

MIN_PASSWORD = 10
# A real hash to compare against when the email is unknown, so both answers take the same time.
_DUMMY_HASH = generate_password_hash("not-a-password", method="scrypt")


def unusable_password() -> str:
    """A password hash no password matches (an invited user); random, so each invitation has its own."""
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(32)


def normalize_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False, test_environment=True).normalized.lower()
    except EmailNotValidError as exc:
        raise DomainError(f"{email.strip() or 'That'} is not a valid email address: {exc}") from None


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "org"


def create_organization(name: str, *, now: datetime, actor: Actor, **settings: object) -> Organization:
    name = name.strip()
    if not name:
        raise DomainError("Give the organization a name.")
    try:
        ZoneInfo(str(settings.get("timezone", "UTC")))
        check_currency(str(settings.get("default_currency", "USD")))
    except ZoneInfoNotFoundError:
        raise DomainError(f"Unknown time zone {settings.get('timezone')!r}.") from None
    except MoneyError as exc:
        raise DomainError(str(exc)) from None
    with atomic():
        base = slug = slugify(name)
        n = 1
        while db.session.execute(select(Organization.id).where(Organization.slug == slug)).first():
            n += 1
            slug = f"{base}-{n}"
        org = Organization(name=name, slug=slug, created_at=now, **settings)
        db.session.add(org)
        db.session.flush()
        record("organization.created", org, actor=actor, now=now, organization_id=org.id)
    return org


def create_user(
    email: str,
    password: str,
    *,
    role: str,
    organization: Organization | None,
    now: datetime,
    actor: Actor,
    name: str = "",
    hash_method: str = "scrypt",
) -> User:
    email = normalize_email(email)
    if len(password) < MIN_PASSWORD:
        raise DomainError(f"The password must have at least {MIN_PASSWORD} characters.")
    with atomic():
        user = add_user(email, generate_password_hash(password, method=hash_method), role=role,
                        organization=organization, now=now, name=name)
        record("user.created", user, actor=actor, now=now, details={"email": user.email, "role": role})
    return user


def add_user(
    email: str, password_hash: str, *, role: str, organization: Organization | None, now: datetime, name: str = "",
) -> User:
    """Insert a user in the caller's transaction (no commit, no audit: the caller records why)."""
    email = normalize_email(email)
    if role not in ROLES:
        raise DomainError(f"Role must be one of {', '.join(ROLES)}.")
    if role != "superadmin" and organization is None:
        raise DomainError("Staff and admins belong to an organization.")
    if find_user(email) is not None:
        raise DomainError(f"A user with email {email} already exists.")
    user = User(email=email, name=name.strip(), password_hash=password_hash, role=role,
                organization_id=organization.id if organization else None, created_at=now)
    db.session.add(user)
    db.session.flush()
    return user


def find_user(email: str) -> User | None:
    return db.session.execute(
        select(User).where(func.lower(User.email) == email.strip().lower())
    ).scalar_one_or_none()


class OrganizationArchived(DomainError):
    """The right email and password, but the user's organization is archived: they may not log in."""


def authenticate(email: str, password: str, *, now: datetime) -> User | None:
    """The active user with this email and password, or None (same work either way). OrganizationArchived when
    the password is right but their organization is archived (said only then: it tells nothing to a guesser)."""
    user = find_user(email)
    usable = user is not None and bool(user.password_hash) and not user.is_invited
    # An invited user has no password yet: compare with the dummy so the answer takes the same time.
    ok = check_password_hash(user.password_hash if user is not None and usable else _DUMMY_HASH, password)
    if user is None or not usable or not ok or not user.active:
        return None
    if user.organization is not None and user.organization.is_archived:
        raise OrganizationArchived(f"{user.organization.name} is archived: its staff can no longer log in. If this "
                                   "is a mistake, ask the person who runs this site to un-archive it.")
    with atomic():
        user.last_login_at = now
        record("user.logged_in", user, actor=Actor.user(user), now=now)
    return user
