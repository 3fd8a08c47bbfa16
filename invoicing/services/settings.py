"""Organization settings, staff users and the superadmin's organization switch.

Every rule is checked before anything is written, and every error is reported at once per field
(`SettingsInvalid.errors`), so a form can show each message beside its input and nothing is saved half-way.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from invoicing.extensions import db
from invoicing.models import Organization, User
from invoicing.money import MoneyError, check_currency
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.invoices import check_number_format
from invoicing.services.users import MIN_PASSWORD, normalize_email

LOGO_MAX_BYTES = 512 * 1024
LOGO_MAX_PIXELS = 4000 * 4000  # checked before decoding: no decompression bombs
LOGO_BOX = (800, 400)  # stored logos are scaled down to fit
LOGO_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
STAFF_ROLES = ("admin", "staff")


class SettingsInvalid(DomainError):
    """One message per field that cannot be saved; nothing was written."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclass(frozen=True)
class OrgSettings:
    name: str
    address: str = ""
    sender_email: str = ""
    phone: str = ""
    website: str = ""
    brand_color: str = "#1f4e79"
    accent_color: str = "#f2a900"
    default_currency: str = "USD"
    payment_terms_days: int = 30
    number_format: str = "{year}-{seq:04d}"
    timezone: str = "UTC"
    allow_partial_payments: bool = False
    min_partial_amount: int = 0  # minor units of the default currency
    payment_instructions: str = ""
    manual_payment_receipts: bool = True  # email the client a receipt for cash, bank transfer, cheque payments

    @classmethod
    def of(cls, org: Organization) -> OrgSettings:
        values: dict[str, Any] = {name: getattr(org, name) for name in asdict(cls(name=""))}
        cleaned: dict[str, Any] = {name: "" if value is None else value for name, value in values.items()}
        return cls(**cleaned)


def timezones() -> list[str]:
    return sorted(available_timezones())


def _check(data: OrgSettings) -> tuple[OrgSettings, dict[str, str]]:
    """The cleaned settings and one message per bad field."""
    errors: dict[str, str] = {}
    name = data.name.strip()
    if not name:
        errors["name"] = "Give the organization a name."
    elif len(name) > 200:
        errors["name"] = "The name is too long (200 characters at most)."
    sender = data.sender_email.strip()
    if sender:
        try:
            sender = normalize_email(sender)
        except DomainError as exc:
            errors["sender_email"] = str(exc)
    for field_name in ("brand_color", "accent_color"):
        if not COLOR.fullmatch(getattr(data, field_name).strip()):
            errors[field_name] = "Use a colour like #1f4e79."
    currency = data.default_currency
    try:
        currency = check_currency(data.default_currency)
    except MoneyError as exc:
        errors["default_currency"] = str(exc)
    if not 0 <= data.payment_terms_days <= 365:
        errors["payment_terms_days"] = "Payment terms must be between 0 and 365 days."
    try:
        check_number_format(data.number_format.strip())
    except DomainError as exc:
        errors["number_format"] = str(exc)
    try:
        ZoneInfo(data.timezone.strip())
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = f"{data.timezone.strip() or 'An empty name'} is not a known time zone (e.g. Europe/Paris)."
    if data.min_partial_amount < 0:
        errors["min_partial_amount"] = "The minimum partial payment cannot be negative."
    for field_name, limit in (("address", 1000), ("payment_instructions", 2000), ("phone", 50), ("website", 200)):
        if len(getattr(data, field_name)) > limit:
            errors[field_name] = f"Keep this under {limit} characters."
    cleaned = OrgSettings(
        name=name, address=data.address.strip(), sender_email=sender, phone=data.phone.strip(),
        website=data.website.strip(), brand_color=data.brand_color.strip().lower(),
        accent_color=data.accent_color.strip().lower(), default_currency=currency,
        payment_terms_days=data.payment_terms_days, number_format=data.number_format.strip(),
        timezone=data.timezone.strip(), allow_partial_payments=data.allow_partial_payments,
        min_partial_amount=data.min_partial_amount if data.allow_partial_payments else 0,
        payment_instructions=data.payment_instructions.strip(), manual_payment_receipts=data.manual_payment_receipts,
    )
    return cleaned, errors


def process_logo(raw: bytes) -> tuple[bytes, str]:
    """A PNG, JPEG or WebP logo (recognised by its content, not its name), re-encoded so nothing else rides
    along (metadata, scripts in a polyglot file). SVG is refused: it can carry scripts."""
    from PIL import Image, UnidentifiedImageError

    if len(raw) > LOGO_MAX_BYTES:
        raise SettingsInvalid({"logo": f"The logo must be at most {LOGO_MAX_BYTES // 1024} KB."})
    if not raw:
        raise SettingsInvalid({"logo": "The logo file is empty."})
    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.format not in LOGO_FORMATS:
                raise SettingsInvalid({"logo": "The logo must be a PNG, JPEG or WebP image."})
            if image.width * image.height > LOGO_MAX_PIXELS:
                raise SettingsInvalid({"logo": "The logo is too large (4000 x 4000 pixels at most)."})
            image.load()
            fmt = image.format
            image.thumbnail(LOGO_BOX)
            out = io.BytesIO()
            if fmt == "JPEG":
                image.convert("RGB").save(out, "JPEG", quality=90)
            else:
                image.convert("RGBA").save(out, "PNG", optimize=True)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise SettingsInvalid({"logo": "The logo must be a PNG, JPEG or WebP image."}) from None
    return out.getvalue(), "image/jpeg" if fmt == "JPEG" else "image/png"


def update_settings(
    organization_id: int,
    data: OrgSettings,
    *,
    actor: Actor,
    now: datetime,
    logo: bytes | None = None,
    remove_logo: bool = False,
) -> Organization:
    """Save every setting, or none (SettingsInvalid lists each field's problem)."""
    cleaned, errors = _check(data)
    new_logo: tuple[bytes, str] | None = None
    if logo:
        try:
            new_logo = process_logo(logo)
        except SettingsInvalid as exc:
            errors.update(exc.errors)
    if errors:
        raise SettingsInvalid(errors)
    with atomic():
        org = db.session.execute(
            select(Organization).where(Organization.id == organization_id).with_for_update()
        ).scalar_one_or_none()
        if org is None:
            raise NotFound("Organization not found.")
        before = OrgSettings.of(org)
        changed = [name for name, value in asdict(cleaned).items() if getattr(before, name) != value]
        for name in changed:
            setattr(org, name, getattr(cleaned, name))
        if new_logo is not None:
            org.logo, org.logo_mime = new_logo
            changed.append("logo")
        elif remove_logo and org.logo is not None:
            org.logo, org.logo_mime = None, None
            changed.append("logo removed")
        if changed:
            record("organization.settings_updated", org, actor=actor, now=now, organization_id=org.id,
                   details={"changed": changed})
    return org


# --- staff users ------------------------------------------------------------------------------------------


def list_users(organization_id: int | None) -> list[User]:
    query = select(User).order_by(User.active.desc(), func.lower(User.email))
    if organization_id is not None:
        query = query.where(User.organization_id == organization_id)
    return list(db.session.execute(query).scalars())


def get_user(user_id: int, organization_id: int | None) -> User:
    user = db.session.get(User, user_id)
    if user is None or (organization_id is not None and user.organization_id != organization_id):
        raise NotFound("User not found.")
    return user


def change_password(user_id: int, current: str, new: str, *, now: datetime, hash_method: str) -> User:
    """A user changes their own password; the current one is required."""
    errors: dict[str, str] = {}
    if len(new) < MIN_PASSWORD:
        errors["new_password"] = f"The new password must have at least {MIN_PASSWORD} characters."
    with atomic():
        user = _lock_user(user_id, None, allow_superadmin=True)
        if not check_password_hash(user.password_hash, current):
            errors["current_password"] = "That is not your current password."
        if errors:
            raise SettingsInvalid(errors)
        user.password_hash = generate_password_hash(new, method=hash_method)
        record("user.password_changed", user, actor=Actor.user(user), now=now)
    return user


def _lock_user(user_id: int, organization_id: int | None, *, allow_superadmin: bool = False) -> User:
    query = select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
    if organization_id is not None:
        query = query.where(User.organization_id == organization_id)
    user = db.session.execute(query).scalar_one_or_none()
    if user is None or (user.is_superadmin and not allow_superadmin):
        raise NotFound("User not found.")
    return user


def _other_active_admins(user: User) -> int:
    return int(db.session.execute(
        select(func.count()).select_from(User).where(
            User.organization_id == user.organization_id, User.role == "admin", User.active.is_(True),
            User.id != user.id,
        )
    ).scalar_one())


def change_role(user_id: int, organization_id: int | None, role: str, *, actor: Actor, now: datetime) -> User:
    if role not in STAFF_ROLES:
        raise DomainError("Choose admin or staff.")
    with atomic():
        user = _lock_user(user_id, organization_id)
        if actor.type == "user" and actor.id == user.id:
            raise DomainError("You cannot change your own role; ask another admin.")
        if user.role == role:
            return user
        if user.role == "admin" and user.active and not _other_active_admins(user):
            raise DomainError("An organization keeps at least one active admin.")
        record("user.role_changed", user, actor=actor, now=now, organization_id=user.organization_id,
               details={"from": user.role, "to": role})
        user.role = role
    return user


def set_active(user_id: int, organization_id: int | None, active: bool, *, actor: Actor, now: datetime) -> User:
    """Deactivate (they are signed out at their next request) or reactivate a user."""
    with atomic():
        user = _lock_user(user_id, organization_id)
        if actor.type == "user" and actor.id == user.id:
            raise DomainError("You cannot deactivate yourself.")
        if user.active == active:
            return user
        if not active and user.role == "admin" and not _other_active_admins(user):
            raise DomainError("An organization keeps at least one active admin.")
        user.active = active
        record("user.reactivated" if active else "user.deactivated", user, actor=actor, now=now,
               organization_id=user.organization_id)
    return user


# --- the superadmin's organization switch ------------------------------------------------------------------


def list_organizations() -> list[Organization]:
    return list(db.session.execute(select(Organization).order_by(func.lower(Organization.name))).scalars())


def organization_to_act_in(user: User, organization_id: int | None) -> Organization | None:
    """The organization a superadmin chose to act in (None: all of them). Only superadmins may switch."""
    if not user.is_superadmin:
        raise DomainError("Only a superadmin can switch organization.")
    if organization_id is None:
        return None
    org = db.session.get(Organization, organization_id)
    if org is None:
        raise NotFound("Organization not found.")
    return org


def current_organization(user: User) -> Organization | None:
    """The organization this staff user works in: their own, or the one a superadmin is acting in."""
    if user.organization is not None:
        return user.organization
    org_id = getattr(user, "acting_organization_id", None)
    return db.session.get(Organization, org_id) if org_id is not None else None
