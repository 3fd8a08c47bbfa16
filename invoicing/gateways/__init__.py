"""Payment providers: `get_gateway(config)` picks Stripe when STRIPE_SECRET_KEY is set, else the sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app

from invoicing.gateways.base import Gateway, GatewayError, SignatureError

__all__ = ["Gateway", "GatewayError", "SignatureError", "current_gateway", "get_gateway", "payments_mode"]


def payments_mode(config: Mapping[str, Any]) -> str:
    """'live' (real money), 'test' (Stripe test keys) or 'sandbox' (no Stripe key: the built-in provider).

    config.py has already refused keys that are not Stripe's or whose pair mixes test and live.
    """
    key = config.get("STRIPE_SECRET_KEY") or ""
    if not key:
        return "sandbox"
    return "live" if key.startswith(("sk_live_", "rk_live_")) else "test"


def get_gateway(config: Mapping[str, Any]) -> Gateway:
    if config.get("STRIPE_SECRET_KEY"):
        from invoicing.gateways.stripe import StripeGateway

        return StripeGateway(api_key=config["STRIPE_SECRET_KEY"], webhook_secret=config.get("STRIPE_WEBHOOK_SECRET"),
                             api_base=config.get("STRIPE_API_BASE"))
    from invoicing.gateways.sandbox import SandboxGateway

    return SandboxGateway(secret_key=config["SECRET_KEY"], base_url=config["BASE_URL"],
                          deliver=_deliver_to_inbox)


def _deliver_to_inbox(raw: bytes, signature: str) -> None:
    """The sandbox's webhook sender: hand the signed event to the same inbox /webhooks/sandbox uses."""
    from invoicing.services.inbox import receive_now

    receive_now("sandbox", raw, signature)


def current_gateway() -> Gateway:
    """The app's gateway, built once per configuration (the Stripe client keeps its HTTP connections)."""
    config = current_app.config
    key = tuple(config.get(name) for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE",
                                              "SECRET_KEY", "BASE_URL"))
    cache = current_app.extensions.setdefault("invoicing_gateways", {})
    if key not in cache:
        cache[key] = get_gateway(config)
    gateway: Gateway = cache[key]
    return gateway
