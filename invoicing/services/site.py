"""The app settings that links and emails need, as plain values (built from the app config at the edge)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from invoicing.models import Invoice
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

    def url(self, path: str) -> str:
        """An absolute link for emails: always from BASE_URL, never from the request's Host header."""
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    def pay_url(self, invoice: Invoice) -> str:
        return link_for(invoice, secret_key=self.secret_key, base_url=self.base_url).url
