from tests.pay.support import stripe_app  # noqa: F401
