"""Fixtures of the subscription tests: the Stripe-configured app (tests/pay/support.py)."""

from tests.pay.support import stripe_app  # noqa: F401
