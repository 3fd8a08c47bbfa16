"""Organizations as a superadmin manages them: create, rename, give a public URL, archive and restore; and the
hosts the app answers on (BASE_URL's, the organizations' public URLs', and the machine's own loopback names)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from invoicing.extensions import db
from invoicing.models import Organization
from invoicing.services import NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.settings import SettingsInvalid
from invoicing.services.users import create_organization

PUBLIC_URL_MAX = 200
# The machine itself (an operator's curl, a container health check): never another site's name.
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def hostname(url: str) -> str:
    """The lower-case host name of an absolute URL or of a Host header ("" when there is none)."""
    try:
        return (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower()
    except ValueError:  # e.g. an unbalanced "[" in a Host header
        return ""


def check_public_url(raw: str, *, base_url: str) -> str | None:
    """The normalized public URL (scheme://host[:port], lower case), None when empty; SettingsInvalid otherwise."""
    text = raw.strip()
    if not text:
        return None
    https_only = base_url.startswith("https://")
    example = "e.g. https://billing.acme.test"
    parts = urlsplit(text)
    if parts.scheme.lower() not in (("https",) if https_only else ("https", "http")) or not parts.netloc:
        need = "an absolute https:// address" if https_only else "an absolute https:// (or http://) address"
        raise _bad(f"The public URL must be {need}, {example}.")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in text or "#" in text:
        raise _bad(f"The public URL is a site's address only, without a path, query or fragment ({example}).")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.username is not None or port == -1 or not host or not _HOSTNAME.fullmatch(host) or len(host) > 253:
        raise _bad(f"{text} is not a valid site address: give a host name and at most a port ({example}).")
    url = f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")
    if len(url) > PUBLIC_URL_MAX:
        raise _bad(f"The public URL is too long ({PUBLIC_URL_MAX} characters at most).")
    if host == hostname(base_url):
        raise _bad("That is the app's own address (BASE_URL), which every organization uses by default: leave the "
                   "field empty instead.")
    return url


def _bad(message: str) -> SettingsInvalid:
    return SettingsInvalid({"public_url": message})


def _check_unused(url: str | None, organization_id: int | None) -> None:
    if url is None:
        return
    for other in db.session.execute(select(Organization).where(Organization.public_url.is_not(None))).scalars():
        if other.id != organization_id and other.public_url and hostname(other.public_url) == hostname(url):
            raise _bad(f"{other.name} already uses {other.public_url}; each organization needs its own address.")


def _checked(name: str, public_url: str, *, base_url: str, organization_id: int | None) -> tuple[str, str | None]:
    """The cleaned name and public URL, or SettingsInvalid with one message per bad field (both at once)."""
    errors: dict[str, str] = {}
    name = name.strip()
    if not name:
        errors["name"] = "Give the organization a name."
    elif len(name) > 200:
        errors["name"] = "The name is too long (200 characters at most)."
    url = None
    try:
        url = check_public_url(public_url, base_url=base_url)
        _check_unused(url, organization_id)
    except SettingsInvalid as exc:
        errors.update(exc.errors)
    if errors:
        raise SettingsInvalid(errors)
    return name, url


def _taken(url: str) -> SettingsInvalid:
    """Another request saved the same address a moment ago (the UNIQUE constraint said so)."""
    return _bad(f"Another organization already uses {url}; each organization needs its own address.")


def add_organization(name: str, public_url: str, *, base_url: str, actor: Actor, now: datetime) -> Organization:
    """A new organization (settings at their defaults; its first admin sets them), audited."""
    name, url = _checked(name, public_url, base_url=base_url, organization_id=None)
    try:
        return create_organization(name, now=now, actor=actor, public_url=url)
    except IntegrityError:
        raise _taken(public_url.strip()) from None


def _lock(organization_id: int) -> Organization:
    org = db.session.execute(
        select(Organization).where(Organization.id == organization_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if org is None:
        raise NotFound("Organization not found.")
    return org


def get_organization(organization_id: int) -> Organization:
    org = db.session.get(Organization, organization_id)
    if org is None:
        raise NotFound("Organization not found.")
    return org


def update_organization(organization_id: int, name: str, public_url: str, *, base_url: str, actor: Actor,
                        now: datetime) -> Organization:
    """Rename and/or change the public URL; every link emailed or printed from now on uses the new URL."""
    try:
        with atomic():
            org = _lock(organization_id)
            name, url = _checked(name, public_url, base_url=base_url, organization_id=org.id)
            changes: dict[str, Any] = {field: [getattr(org, field), value] for field, value
                                       in (("name", name), ("public_url", url)) if getattr(org, field) != value}
            if changes:
                org.name, org.public_url = name, url
                record("organization.updated", org, actor=actor, now=now, organization_id=org.id,
                       details={"changes": changes})
    except IntegrityError:
        raise _taken(public_url.strip()) from None
    return org


def set_archived(organization_id: int, archived: bool, *, actor: Actor, now: datetime) -> Organization:
    """Archive (staff cannot log in, pay links answer 410, the scheduler skips it) or un-archive; nothing is deleted.

    Asking for the state it is already in changes nothing (a double-submitted form)."""
    with atomic():
        org = _lock(organization_id)
        if org.is_archived != archived:
            org.archived_at = now if archived else None
            record("organization.archived" if archived else "organization.unarchived", org, actor=actor, now=now,
                   organization_id=org.id)
    return org


def is_known_host(host: str, *, base_url: str) -> bool:
    """Whether the app answers a request for this Host header: BASE_URL's host, an organization's public URL host
    (archived ones too: their pay links must say so), or loopback. The port does not matter."""
    name = hostname(host)
    if name in LOOPBACK or name == hostname(base_url):
        return True
    if not name:
        return False
    urls = db.session.execute(select(Organization.public_url).where(Organization.public_url.is_not(None))).scalars()
    return any(hostname(url) == name for url in urls if url)


def organization_for_host(host: str) -> int | None:
    """The organization whose own public URL has this host (its portal signs in its contacts only), else None."""
    name = hostname(host)
    if not name:
        return None
    rows = db.session.execute(select(Organization.id, Organization.public_url)
                              .where(Organization.public_url.is_not(None))).all()
    return next((org_id for org_id, url in rows if url and hostname(url) == name), None)
