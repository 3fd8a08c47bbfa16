"""Email open tracking: invoice and reminder emails carry a 1x1 image; the first time a mail program loads it,
the invoice's timeline says "email opened" (later loads only count). Per organization, on by default
(Organization.track_email_opens, Settings → Reminders); when off, no pixel goes out and loads are ignored.

- The pixel is added when the email is delivered (mail.build_message), never stored in the outbox: staff
  previewing an email in the Outbox cannot "open" it for the client.
- Its address is `/pay/opened/<outbox id>.<HMAC-SHA256 of SECRET_KEY>`: it cannot be guessed or enumerated,
  and nothing is stored to look it up. A wrong token gets the same image as a right one (no oracle).
- GET records, HEAD does not (link checkers); staff signed in are not the client. Mail programs that fetch
  images on delivery (Apple Mail Privacy Protection) report an open that may not be a person: the event says
  "opened", not "read".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from markupsafe import Markup
from sqlalchemy import select, update

from invoicing.extensions import db
from invoicing.models import Invoice, Organization, OutboxEmail
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.site import Site

TRACKED_KINDS = ("invoice", "reminder")
ACTOR = Actor.anonymous("email open")
# The smallest transparent GIF (1x1 pixel).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _mac(secret_key: str, email_id: int) -> str:
    digest = hmac.new(secret_key.encode(), f"email-open:{email_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_for(email_id: int, secret_key: str) -> str:
    return f"{email_id}.{_mac(secret_key, email_id)}"


def tracked(email: OutboxEmail, organization: Organization | None) -> bool:
    return (email.kind in TRACKED_KINDS and email.invoice_id is not None and organization is not None
            and organization.track_email_opens)


def with_pixel(email: OutboxEmail, site: Site) -> str:
    """The email's HTML as delivered: with the tracking image just before </body> when it is tracked."""
    organization = db.session.get(Organization, email.organization_id) if email.organization_id else None
    if not tracked(email, organization) or "</body>" not in email.html_body:
        return email.html_body
    url = site.url(f"/pay/opened/{token_for(email.id, site.secret_key)}", organization)
    image = Markup('<img src="{}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">'
                   ).format(url)
    head, _, tail = email.html_body.rpartition("</body>")
    return f"{head}{image}</body>{tail}"


def record_open(token: str, *, secret_key: str, now: datetime) -> bool:
    """A tracked email's image was loaded: the first time is an "email opened" event on its invoice, later
    ones count. False for a token that is not ours or an email no longer tracked."""
    email_id, _, mac = token.partition(".")
    if not email_id.isdigit() or len(email_id) > 18 or not hmac.compare_digest(mac, _mac(secret_key, int(email_id))):
        return False
    with atomic():
        again = db.session.execute(
            update(OutboxEmail).where(OutboxEmail.id == int(email_id), OutboxEmail.opened_at.is_not(None))
            .values(open_count=OutboxEmail.open_count + 1).execution_options(synchronize_session=False))
        if again.rowcount:  # type: ignore[attr-defined]
            return True
        email = db.session.execute(
            select(OutboxEmail).where(OutboxEmail.id == int(email_id)).with_for_update()
            .execution_options(populate_existing=True)).scalar_one_or_none()
        organization = db.session.get(Organization, email.organization_id) if email and email.organization_id else None
        if email is None or not tracked(email, organization):
            return False
        email.open_count += 1
        if email.opened_at is None:
            email.opened_at = now
            invoice = db.session.get(Invoice, email.invoice_id)
            if invoice is not None:
                record("email.opened", invoice, actor=ACTOR, now=now, details={
                    "outbox_id": email.id, "kind": email.kind, "subject": email.subject, "to": email.to_addr})
    return True
