"""Pay links are capabilities (DESIGN rule 8): HMAC of SECRET_KEY over the invoice's random public id and its
link version. Nothing secret is stored, staff can copy the same link again, and bumping the version revokes
every earlier link."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import current_app
from sqlalchemy import Engine, bindparam, create_engine, select
from sqlalchemy.exc import DBAPIError

from invoicing.extensions import db
from invoicing.models import Client, Invoice, Organization


class LinkNotFound(Exception):
    """The token is malformed or forged (404)."""


class LinkGone(Exception):
    """The token was real but has expired, been replaced, its invoice was voided or its organization archived
    (410)."""

    def __init__(self, invoice: Invoice, reason: str):
        super().__init__(reason)
        self.invoice = invoice
        self.reason = reason


@dataclass(frozen=True)
class PayLink:
    token: str
    url: str


def _mac(secret_key: str, public_id: str, version: int) -> str:
    digest = hmac.new(secret_key.encode(), f"paylink:{public_id}:{version}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()  # 256 bits


def token_for(invoice: Invoice, secret_key: str) -> str:
    return f"{invoice.public_id}.{_mac(secret_key, invoice.public_id, invoice.link_version)}"


def form_key(token: str, secret_key: str) -> str:
    """The pay form's CSRF token: a MAC of the link itself, so the page keeps no session and is the same for
    every visitor (it can be kept rendered). A forged cross-site post would need the link, which is the
    capability anyway; the key only proves the post came from a page of this link."""
    digest = hmac.new(secret_key.encode(), f"payform:{token}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def form_key_ok(token: str, secret_key: str, given: str) -> bool:
    return hmac.compare_digest(given.encode(), form_key(token, secret_key).encode())


def link_for(invoice: Invoice, *, secret_key: str, base_url: str) -> PayLink:
    """The full pay URL, always built from BASE_URL (never from the request's Host header)."""
    token = token_for(invoice, secret_key)
    return PayLink(token=token, url=f"{base_url.rstrip('/')}/pay/{token}")


def _parts(token: str) -> tuple[str, str] | None:
    public_id, _, mac = token.partition(".")
    if len(public_id) != 32 or not mac or len(token) > 100:
        return None
    return public_id, mac


@dataclass(frozen=True)
class Head:
    """What a valid pay link opens, in one indexed statement and no ORM object: the invoice, and `version`, a
    key that changes whenever anything its pay page shows does (invoice.version counts the invoice's own
    changes and its payments', refunds' and lines'; the organization's and client's shown columns are read
    as they are)."""

    invoice_id: int
    first_view: bool  # never marked viewed yet
    version: tuple[Any, ...]


_HEAD = (select(Invoice.id, Invoice.status, Invoice.link_version, Invoice.link_expires_on, Invoice.viewed_at,
                Organization.archived_at, Invoice.version, Invoice.updated_at, Client.name, Organization.name,
                Organization.address, Organization.sender_email, Organization.brand_color,
                Organization.allow_partial_payments, Organization.min_partial_amount,
                Organization.payment_instructions, Organization.logo.is_not(None))
         .join(Organization, Organization.id == Invoice.organization_id).join(Client, Client.id == Invoice.client_id)
         .where(Invoice.public_id == bindparam("public_id")))  # built once: its cache key is computed once


def _reader() -> Engine:
    """Where the head is read: on PostgreSQL a small pool of its own in autocommit, without the ping on checkout
    (one round trip a page instead of four: ping, BEGIN, SELECT, ROLLBACK; a dropped connection is retried
    once instead, below); on SQLite, in process, the app's engine."""
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return engine
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    reader: Engine | None = app.extensions.get("paylinks.reader")
    if reader is None:
        reader = app.extensions["paylinks.reader"] = create_engine(
            engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=4, max_overflow=12)
    return reader


def _read_head(public_id: str) -> Any:
    for attempt in (1, 2):
        try:
            with _reader().connect() as connection:  # Core, no ORM session: nothing to load, track or close
                return connection.execute(_HEAD, {"public_id": public_id}).first()
        except DBAPIError as exc:  # the database restarted since: the pool is invalidated, try a new connection
            if attempt == 2 or not exc.connection_invalidated:
                raise
    return None


def head(token: str, *, secret_key: str, today: date) -> Head | None:
    """The happy path of `resolve`, cheaply: None when the link does not open a page (call `resolve` then,
    for the reason), else its Head."""
    parts = _parts(token)
    if parts is None:
        return None
    public_id, mac = parts
    row = _read_head(public_id)
    if row is None:
        return None
    invoice_id, status, link_version, expires_on, viewed_at, archived_at = row[:6]
    if status in ("draft", "void") or archived_at is not None or (
            status != "paid" and expires_on is not None and today > expires_on):
        return None
    if not hmac.compare_digest(mac, _mac(secret_key, public_id, link_version)):
        return None
    return Head(invoice_id, viewed_at is None, (token, *row[6:]))


def resolve(token: str, *, secret_key: str, today: date) -> Invoice:
    """Return the invoice a token opens, or raise LinkNotFound / LinkGone. Compares in constant time."""
    parts = _parts(token)
    if parts is None:
        raise LinkNotFound(token)
    public_id, mac = parts
    invoice = db.session.execute(select(Invoice).where(Invoice.public_id == public_id)).scalar_one_or_none()
    if invoice is None or invoice.status == "draft":
        raise LinkNotFound(token)
    if not hmac.compare_digest(mac, _mac(secret_key, public_id, invoice.link_version)):
        if any(hmac.compare_digest(mac, _mac(secret_key, public_id, v)) for v in range(1, invoice.link_version)):
            raise LinkGone(invoice, "void" if invoice.status == "void" else "replaced")
        raise LinkNotFound(token)
    if invoice.organization.is_archived:
        raise LinkGone(invoice, "archived")
    if invoice.status == "void":
        raise LinkGone(invoice, "void")
    if invoice.status != "paid" and invoice.link_expires_on is not None and today > invoice.link_expires_on:
        raise LinkGone(invoice, "expired")
    return invoice
