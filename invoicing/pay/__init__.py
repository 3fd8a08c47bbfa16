"""Public pay-by-link pages: /pay/<token> (no login; the token is the capability)."""

from flask import Blueprint

bp = Blueprint("pay", __name__, url_prefix="/pay")

from invoicing.pay import (  # noqa: E402,F401
    cache,
    opens,  # the open-tracking image of invoice and reminder emails
    sandbox_setup,
    views,
)

bp.record_once(lambda state: cache.init_app(state.app))  # type: ignore[arg-type]
