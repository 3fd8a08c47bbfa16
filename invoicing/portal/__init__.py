"""Client portal: /portal/ (contacts log in to see and pay their company's invoices)."""

from flask import Blueprint

bp = Blueprint("portal", __name__, url_prefix="/portal")

from invoicing.portal import account, cards, company, invoices, pay, statements, subscriptions, views  # noqa: E402,F401
