"""What staff do to a contact's portal access: invite (an emailed sign-in link valid 7 days, access turned on if
it was off) and revoke (access off, live sessions ended, unused links and the password dropped). The contact
form's "Can log in to the client portal" box goes through services/clients.update_contact, which ends access
the same way when it is unticked."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import Contact
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic
from invoicing.services.portal.auth import add_magic_link, end_sessions
from invoicing.services.site import Site

INVITATION_TTL = timedelta(days=7)  # a person may open an invitation days later; a sign-in link lives 15 minutes
INVITE_KIND = "portal_invitation"  # outbox kind; its body holds a live sign-in link, so only admins may read it


def _lock_contact(contact_id: int, organization_id: int) -> Contact:
    contact = db.session.execute(
        select(Contact).where(Contact.id == contact_id, Contact.organization_id == organization_id)
        .with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if contact is None:
        raise NotFound("Contact not found.")
    return contact


def invite_contact(contact_id: int, organization_id: int, *, actor: Actor, site: Site, now: datetime) -> Contact:
    """Email the contact an invitation to the portal: a sign-in link (single use, 7 days) that lands on their
    account page, where they may choose a password. Turns portal access on if it was off."""
    with atomic():
        contact = _lock_contact(contact_id, organization_id)
        client = contact.client
        organization = client.organization
        if client.archived_at is not None or organization.is_archived:
            raise DomainError(f"{client.name} is archived: its contacts cannot use the portal.")
        if not contact.portal_access:
            contact.portal_access = True
            record("contact.portal_enabled", contact, actor=actor, now=now, details={"email": contact.email})
        token = add_magic_link(contact.id, now=now, ttl=INVITATION_TTL)
        subject = f"Your access to {organization.name}'s client portal"
        text, html = render_email("portal_invitation", organization=organization, subject=subject, contact=contact,
                                  client=client, valid_days=INVITATION_TTL.days,
                                  sign_in_url=site.url(f"/portal/login/{token}?next=/portal/account", organization),
                                  login_url=site.url("/portal/login", organization))
        sender, reply_to = sender_for(organization, site.mail_sender)
        enqueue(kind=INVITE_KIND, to=contact.email, subject=subject, text_body=text, html_body=html,
                from_addr=sender, reply_to=reply_to, now=now, organization_id=organization.id)
        record("contact.portal_invited", contact, actor=actor, now=now,
               details={"email": contact.email, "valid_days": INVITATION_TTL.days})
    return contact


def revoke_access(contact_id: int, organization_id: int, *, actor: Actor, now: datetime) -> Contact:
    """No more portal for this contact (this company): access off, its live sessions end at their next request,
    its unused sign-in links stop working and its password is dropped."""
    with atomic():
        contact = _lock_contact(contact_id, organization_id)
        if not contact.portal_access:
            raise DomainError(f"{contact.name} has no portal access.")
        contact.portal_access = False
        end_sessions(contact, now=now, forget_password=True)
        record("contact.portal_revoked", contact, actor=actor, now=now, details={"email": contact.email})
    return contact
