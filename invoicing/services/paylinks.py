"""Pay links are capabilities (DESIGN rule 8): HMAC of SECRET_KEY over the invoice's random public id and its
link version. Nothing secret is stored, staff can copy the same link again, and bumping the version revokes
every earlier link."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import Invoice


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


def link_for(invoice: Invoice, *, secret_key: str, base_url: str) -> PayLink:
    """The full pay URL, always built from BASE_URL (never from the request's Host header)."""
    token = token_for(invoice, secret_key)
    return PayLink(token=token, url=f"{base_url.rstrip('/')}/pay/{token}")


def resolve(token: str, *, secret_key: str, today: date) -> Invoice:
    """Return the invoice a token opens, or raise LinkNotFound / LinkGone. Compares in constant time."""
    public_id, _, mac = token.partition(".")
    if len(public_id) != 32 or not mac or len(token) > 100:
        raise LinkNotFound(token)
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
