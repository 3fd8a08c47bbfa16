"""Inviting staff by email: the user exists without a usable password until they open the link and choose one.

The link carries a signed token (HMAC-SHA256 of SECRET_KEY, 256 bits; nothing about it is stored) holding
the user id, the issue time and a fingerprint of the user's current password hash. An invited user's hash is
an unusable random marker (users.unusable_password), so accepting the invitation (a real hash) or resending
it (a new marker) changes the fingerprint and every earlier link stops working.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import generate_password_hash

from invoicing.extensions import db
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import Organization, OutboxEmail, User
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.settings import STAFF_ROLES, SettingsInvalid
from invoicing.services.site import Site
from invoicing.services.users import MIN_PASSWORD, add_user, find_user, normalize_email, unusable_password

SALT = "staff-invitation"
VALID_FOR = timedelta(days=7)
KIND = "staff_invite"  # outbox kind; its body holds a live link, so only admins may read it (admin/outbox.py)


class InvitationInvalid(DomainError):
    """The link cannot be used: 404 when it was never ours, 410 when it expired or was used or replaced."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})


def _fingerprint(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def invitation_token(user: User, *, secret_key: str, now: datetime) -> str:
    token = _serializer(secret_key).dumps({"u": user.id, "f": _fingerprint(user), "t": int(now.timestamp())})
    return str(token)


def _queue_invitation(user: User, organization: Organization, *, actor: Actor, site: Site,
                      now: datetime) -> OutboxEmail | None:
    token = invitation_token(user, secret_key=site.secret_key, now=now)
    subject = f"You are invited to {organization.name} on Invoicing"
    text, html = render_email("staff_invite", organization=organization, subject=subject, user=user,
                              invited_by=actor.label, invite_url=site.url(f"/admin/invite/{token}", organization),
                              valid_days=VALID_FOR.days)
    sender, reply_to = sender_for(organization, site.mail_sender)
    # One email per invitation state: a double-submitted form finds the same key and queues nothing.
    return enqueue(kind=KIND, to=user.email, subject=subject, text_body=text, html_body=html, from_addr=sender,
                   reply_to=reply_to, now=now, organization_id=organization.id,
                   dedupe_key=f"invite:{user.id}:{_fingerprint(user)}")


def invite_user(organization_id: int, *, email: str, name: str, role: str, actor: Actor, site: Site,
                now: datetime) -> User:
    """Create an admin or staff user without a password and email them a link to choose one.

    Inviting someone whose invitation is still pending in this organization changes nothing (a double submit).
    """
    if role not in STAFF_ROLES:
        raise SettingsInvalid({"role": "Choose admin or staff."})
    try:
        email = normalize_email(email)
    except DomainError as exc:
        raise SettingsInvalid({"email": str(exc)}) from None
    for attempt in (1, 2):
        try:
            return _invite(organization_id, email=email, name=name, role=role, actor=actor, site=site, now=now)
        except IntegrityError:
            if attempt == 2:  # a concurrent submit inserted the same email; the second pass finds it
                raise
    raise AssertionError("unreachable")


def _invite(organization_id: int, *, email: str, name: str, role: str, actor: Actor, site: Site,
            now: datetime) -> User:
    with atomic():
        organization = db.session.get(Organization, organization_id)
        if organization is None:
            raise NotFound("Organization not found.")
        if organization.is_archived:
            raise SettingsInvalid({"organization": f"{organization.name} is archived: un-archive it before inviting "
                                                   "anyone."})
        existing = find_user(email)
        if existing is not None:
            if existing.organization_id == organization.id and existing.is_invited and existing.active:
                return _invite_again(existing, organization, role=role, actor=actor, site=site, now=now)
            raise SettingsInvalid({"email": f"A user with email {email} already exists."})
        user = add_user(email, unusable_password(), role=role, organization=organization, now=now, name=name)
        record("user.invited", user, actor=actor, now=now, details={"email": email, "role": role})
        _queue_invitation(user, organization, actor=actor, site=site, now=now)
    return user


DOUBLE_SUBMIT = timedelta(minutes=10)


def _invite_again(user: User, organization: Organization, *, role: str, actor: Actor, site: Site,
                  now: datetime) -> User:
    """The same person invited again while their invitation is pending: the same form posted twice (same role,
    within minutes) changes nothing; otherwise it is a fresh invitation with the role asked for now."""
    last_sent = db.session.execute(
        select(OutboxEmail.created_at).where(OutboxEmail.kind == KIND,
                                             OutboxEmail.dedupe_key.startswith(f"invite:{user.id}:"))
        .order_by(OutboxEmail.id.desc()).limit(1)
    ).scalar()
    if user.role == role and last_sent is not None and now - last_sent < DOUBLE_SUBMIT:
        return user
    user.role = role
    user.password_hash = unusable_password()  # earlier links stop working
    record("user.invitation_resent", user, actor=actor, now=now, details={"email": user.email, "role": role})
    _queue_invitation(user, organization, actor=actor, site=site, now=now)
    return user


def resend_invitation(user_id: int, organization_id: int | None, *, actor: Actor, site: Site,
                      now: datetime) -> User:
    """A new link by email; the previous links stop working."""
    with atomic():
        user = _lock_user(user_id, organization_id)
        if user.is_superadmin or user.organization is None:
            raise NotFound("User not found.")
        if not user.is_invited:
            raise DomainError(f"{user.email} has already accepted their invitation.")
        if not user.active:
            raise DomainError(f"{user.email} is deactivated; reactivate them first.")
        user.password_hash = unusable_password()
        record("user.invitation_resent", user, actor=actor, now=now, details={"email": user.email})
        _queue_invitation(user, user.organization, actor=actor, site=site, now=now)
    return user


def _lock_user(user_id: int, organization_id: int | None) -> User:
    query = select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
    if organization_id is not None:
        query = query.where(User.organization_id == organization_id)
    user = db.session.execute(query).scalar_one_or_none()
    if user is None:
        raise NotFound("User not found.")
    return user


def _check(token: str, *, secret_key: str, now: datetime, lock: bool = False) -> User:
    try:
        payload: Any = _serializer(secret_key).loads(token)
        user_id, fingerprint, issued = int(payload["u"]), str(payload["f"]), int(payload["t"])
    except (BadSignature, KeyError, TypeError, ValueError):
        raise InvitationInvalid(404, "not found") from None
    user = _lock_user(user_id, None) if lock else db.session.get(User, user_id)
    if user is None:
        raise InvitationInvalid(404, "not found")
    if not user.is_invited or not user.active or _fingerprint(user) != fingerprint:
        raise InvitationInvalid(410, "used")
    if user.organization is not None and user.organization.is_archived:
        raise InvitationInvalid(410, "archived")
    if now.timestamp() - issued > VALID_FOR.total_seconds():
        raise InvitationInvalid(410, "expired")
    return user


def read_invitation(token: str, *, secret_key: str, now: datetime) -> User:
    """The invited user this link is for (reads only: mail scanners open links)."""
    return _check(token, secret_key=secret_key, now=now)


def accept_invitation(token: str, password: str, *, secret_key: str, now: datetime, hash_method: str) -> User:
    """Set the invited user's first password; the link is used up in the same transaction."""
    with atomic():
        user = _check(token, secret_key=secret_key, now=now, lock=True)  # locked: two submits accept once
        if len(password) < MIN_PASSWORD:
            raise SettingsInvalid({"password": f"The password must have at least {MIN_PASSWORD} characters."})
        user.password_hash = generate_password_hash(password, method=hash_method)
        user.last_login_at = now
        record("user.invitation_accepted", user, actor=Actor.user(user), now=now)
    return user
