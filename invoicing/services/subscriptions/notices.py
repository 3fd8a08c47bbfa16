"""The lifecycle emails of a subscription: every action (sign-up, trial ending in 3 days, plan or seat change,
cancellation and its undo, pause, resume, end) queues one confirmation to the contact who signed up (else the
client's billing email), in the transaction of the change (the outbox, invoicing/mail.py). Invoices themselves
go out as every invoice does (services/sending.send_locked).

One template, emails/subscription.{txt,html}: a subject, paragraphs and a few label/value rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import OutboxEmail, Subscription
from invoicing.services.site import Site

KIND = "subscription"
PORTAL_PATH = "/portal/subscriptions"  # the portal's subscription page (subs-portal)


def recipient(subscription: Subscription) -> tuple[str, str] | None:
    """(name, email) of who hears about this subscription, or None when nobody has an email."""
    contact = subscription.contact
    if contact is not None and contact.email:
        return contact.name, contact.email
    client = subscription.client
    return (client.name, client.email) if client.email else None


def notify(subscription: Subscription, key: str, *, subject: str, paragraphs: Sequence[str],
           rows: Sequence[tuple[str, str]] = (), now: datetime, site: Site) -> OutboxEmail | None:
    """Queue one lifecycle email, once per (subscription, key); None if nobody to write to or already queued."""
    to = recipient(subscription)
    if to is None:
        return None
    organization = subscription.organization
    text, html = render_email(KIND, subject=subject, organization=organization, person=to[0],
                              paragraphs=list(paragraphs), rows=list(rows),
                              portal_url=site.url(PORTAL_PATH, organization))
    sender, reply_to = sender_for(organization, site.mail_sender)
    return enqueue(kind=KIND, to=to[1], subject=subject, text_body=text, html_body=html, from_addr=sender,
                   reply_to=reply_to, now=now, organization_id=organization.id,
                   dedupe_key=f"subscription:{subscription.id}:{key}")


def day(value: date) -> str:
    return f"{value:%B} {value.day}, {value.year}"
