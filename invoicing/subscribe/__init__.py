"""Public sign-up pages: /subscribe/<slug> (no login; a public plan's page) and the sign-up's own pages."""

from flask import Blueprint

bp = Blueprint("subscribe", __name__, url_prefix="/subscribe")

from invoicing.subscribe import views  # noqa: E402,F401
