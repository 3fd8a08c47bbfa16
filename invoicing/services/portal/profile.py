"""A contact edits their company's profile: billing email, address and tax id (the name stays staff's to
change). Each change is audited with the contact as actor, and the organization's admins are emailed what
changed, in the same transaction (outbox dedupe key per change)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Client
from invoicing.services import DomainError, NotFound
from invoicing.services.attention import email_organization_admins
from invoicing.services.audit import Actor, record
from invoicing.services.clients import clean_tax_id
from invoicing.services.db import atomic
from invoicing.services.site import Site
from invoicing.services.users import normalize_email

MAX_ADDRESS = 2000
LABELS = {"email": "Billing email", "address": "Address", "tax_id": "Tax id"}


@dataclass(frozen=True)
class ProfileData:
    email: str
    address: str = ""
    tax_id: str = ""


def _clean(data: ProfileData) -> dict[str, str]:
    if not data.email.strip():
        raise DomainError("Give a billing email: invoices are sent there.")
    address = data.address.strip().replace("\r\n", "\n")
    if len(address) > MAX_ADDRESS:
        raise DomainError(f"The address can have at most {MAX_ADDRESS} characters.")
    return {"email": normalize_email(data.email), "address": address, "tax_id": clean_tax_id(data.tax_id)}


def update_company_profile(client_id: int, data: ProfileData, *, actor: Actor, now: datetime,
                           site: Site) -> list[str]:
    """Save the contact's edits to their company; returns the names of the fields that changed (none: no write,
    no email)."""
    values = _clean(data)
    with atomic():
        client = db.session.execute(
            select(Client).where(Client.id == client_id).with_for_update().execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if client is None:
            raise NotFound("Company not found.")
        changes = {name: (getattr(client, name), value) for name, value in values.items()
                   if getattr(client, name) != value}
        if not changes:
            return []
        for name, (_, value) in changes.items():
            setattr(client, name, value)
        event = record("client.profile_updated", client, actor=actor, now=now, details={
            "changed": sorted(changes), "before": {k: old for k, (old, _) in changes.items()},
            "after": {k: new for k, (_, new) in changes.items()}})
        db.session.flush()
        email_organization_admins(
            client.organization, kind="client_profile_changed", key=f"client_profile:{event.id}", now=now, site=site,
            subject=f"{client.name} updated its company profile in the client portal",
            admin_path=f"/admin/clients/{client.id}", client=client, contact_label=actor.label,
            changes=[(LABELS[name], old, new) for name, (old, new) in sorted(changes.items())])
    return sorted(changes)
