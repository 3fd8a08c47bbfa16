"""Audit trail: every state change writes one AuditEvent in the same transaction as the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from invoicing.extensions import db
from invoicing.models import AuditEvent
from invoicing.services.api import events as outgoing


@dataclass(frozen=True)
class Actor:
    """Who did it: a staff user, a client contact, an API key, or the system (webhooks, scheduler, CLI)."""

    type: str
    id: int | None = None
    label: str = ""

    @classmethod
    def user(cls, user: Any) -> Actor:
        return cls("user", user.id, user.email)

    @classmethod
    def contact(cls, contact: Any) -> Actor:
        return cls("contact", contact.id, contact.email)

    @classmethod
    def api_key(cls, key: Any) -> Actor:
        return cls("api_key", key.id, f"API key {key.name} ({key.prefix}…)")

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls("system", None, label)

    @classmethod
    def anonymous(cls, label: str = "pay link") -> Actor:
        return cls("anonymous", None, label)


def record(
    action: str,
    obj: Any,
    *,
    actor: Actor,
    now: datetime,
    organization_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        organization_id=organization_id if organization_id is not None else getattr(obj, "organization_id", None),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        object_type=type(obj).__name__.lower(),
        object_id=obj.id,
        details=details or {},
        created_at=now,
    )
    db.session.add(event)
    outgoing.on_audit(event, obj)  # the organization's webhook endpoints hear of it, in this same transaction
    return event
