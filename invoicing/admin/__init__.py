"""Staff area: /admin/. One views module per part of the admin; each registers its routes on `bp`."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from invoicing.admin import (  # noqa: E402,F401
    autopay,  # a client's saved cards and autopay consent; staff turn autopay off
    billing,  # the Scheduler page and its banner, reminder settings and switches (the scheduler's work)
    clients,  # clients and contacts (staff invoicing)
    integrations,  # Settings > API keys and Webhooks, the API reference
    invites,  # accepting a staff invitation (public: the emailed link)
    invoices,  # invoice list, editor, invoice page and its actions (staff invoicing)
    organizations,  # the superadmin's organizations: switch, create, rename, public URL, archive, first admin
    outbox,  # the outbox: queued and sent emails, previews
    payments,  # the webhook inbox, refunds, the invoice page's money panel
    pdf,  # invoice PDF download
    plans,  # subscription plans and their prices: create, edit, archive, move subscribers to a new price
    recurring,  # recurring profiles: create, edit, pause, resume, end, the invoices they made
    reports,  # reports: figures, charts, aging, exports; client statements
    settings,  # organization settings, staff users
    subscriptions,  # the subscriptions list and figures, the client page's subscription panel and actions
    texts,  # client emails and PDF texts, edited by admins
    views,  # login, dashboard
)
