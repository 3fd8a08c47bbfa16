"""Provider webhooks: /webhooks/stripe (the inbox; exempt from CSRF, authenticated by signature)."""

from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

from invoicing.webhooks import views  # noqa: E402,F401
