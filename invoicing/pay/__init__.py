"""Public pay-by-link pages: /pay/<token> (no login; the token is the capability)."""

from flask import Blueprint

bp = Blueprint("pay", __name__, url_prefix="/pay")

from invoicing.pay import sandbox_setup, views  # noqa: E402,F401
