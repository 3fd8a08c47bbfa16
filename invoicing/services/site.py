"""The app settings that links and emails need, as plain values (built from the app config at the edge)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from invoicing.models import Invoice, Organization
from invoicing.services.paylinks import link_for


@dataclass(frozen=True)
class Site:
    base_url: str
    secret_key: str
    mail_sender: str
    paylink_expiry_days: int = 30

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Site:
        return cls(config["BASE_URL"], config["SECRET_KEY"], config.get("MAIL_DEFAULT_SENDER") or "billing@localhost",
                   config.get("PAYLINK_EXPIRY_DAYS", 30))

    def base_for(self, organization: Organization | None) -> str:
        """Where an organization's emailed and printed links start: its own public URL, else BASE_URL. Never the
        request's Host header. Every link in an email or PDF is built here."""
        own = organization.public_url if organization is not None else None
        return (own or self.base_url).rstrip("/")

    def url(self, path: str, organization: Organization | None) -> str:
        """An absolute link for an organization's emails."""
        return f"{self.base_for(organization)}/{path.lstrip('/')}"

    def pay_url(self, invoice: Invoice) -> str:
        return link_for(invoice, secret_key=self.secret_key, base_url=self.base_for(invoice.organization)).url
