"""API keys: created by an organization's admins, shown once, stored as a SHA-256 hash, revocable at once.

A key reads `inv_live_` or `inv_test_` (live Stripe keys or not: a key pasted in the wrong place is easy to
spot, and secret scanners can match the prefix) followed by 40 random letters and digits (238 bits).
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from invoicing.extensions import db
from invoicing.models import API_SCOPES, ApiKey
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic

ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40
MAX_NAME = 100
TOUCH_EVERY = timedelta(minutes=1)  # "last used" is written at most this often: one write a minute, not a request


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    token: str  # shown once, never stored


def create_key(organization_id: int, *, name: str, scopes: list[str], expires_at: datetime | None, live: bool,
               actor: Actor, now: datetime) -> NewKey:
    name = name.strip()
    if not name:
        raise DomainError("Give the key a name (what uses it: \"CRM sync\").")
    if len(name) > MAX_NAME:
        raise DomainError(f"The name can have at most {MAX_NAME} characters.")
    if not scopes or set(scopes) - set(API_SCOPES):
        raise DomainError("Choose read, or read and write.")
    if expires_at is not None and expires_at <= now:
        raise DomainError("The expiry must be in the future.")
    token = ("inv_live_" if live else "inv_test_") + "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))
    with atomic():
        key = ApiKey(organization_id=organization_id, name=name, prefix=token[:13], key_hash=hash_key(token),
                     scopes=sorted(set(scopes) | {"read"}), expires_at=expires_at, created_at=now,
                     created_by_id=actor.id if actor.type == "user" else None)
        db.session.add(key)
        db.session.flush()
        record("api_key.created", key, actor=actor, now=now,
               details={"name": key.name, "prefix": key.prefix, "scopes": key.scopes})
    return NewKey(key, token)


def revoke_key(key_id: int, organization_id: int | None, *, actor: Actor, now: datetime) -> ApiKey:
    with atomic():
        query = select(ApiKey).where(ApiKey.id == key_id).with_for_update()
        if organization_id is not None:
            query = query.where(ApiKey.organization_id == organization_id)
        key = db.session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
        if key is None:
            raise NotFound("API key not found.")
        if key.revoked_at is not None:
            raise DomainError(f"The key {key.name} is already revoked.")
        key.revoked_at = now
        key.revoked_by_id = actor.id if actor.type == "user" else None
        record("api_key.revoked", key, actor=actor, now=now, details={"name": key.name, "prefix": key.prefix})
    return key


def list_keys(organization_id: int | None) -> list[ApiKey]:
    query = select(ApiKey).options(joinedload(ApiKey.created_by)).order_by(ApiKey.revoked_at.is_not(None),
                                                                           ApiKey.id.desc())
    if organization_id is not None:
        query = query.where(ApiKey.organization_id == organization_id)
    return list(db.session.execute(query).scalars())


def authenticate(token: str, *, now: datetime) -> ApiKey | None:
    """The usable key this token is (not revoked, not expired, its organization not archived), else None."""
    if not token.startswith("inv_") or len(token) > 100:
        return None
    key = db.session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(token))
                             .options(joinedload(ApiKey.organization))).scalar_one_or_none()
    if key is None or not key.is_usable(now) or key.organization.is_archived:
        return None
    return key


def touch(key: ApiKey, *, now: datetime) -> None:
    """Record that the key was used, at most once a minute (a write per request would serialize SQLite)."""
    if key.last_used_at is not None and now - key.last_used_at < TOUCH_EVERY:
        return
    with atomic():
        db.session.execute(update(ApiKey).where(
            ApiKey.id == key.id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - TOUCH_EVERY))
            .values(last_used_at=now).execution_options(synchronize_session=False))
    set_committed_value(key, "last_used_at", now)
