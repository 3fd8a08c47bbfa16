from tests.pay.support import stripe_app, stripe_live  # noqa: F401
