"""The Outbox: every email the app queued, what happened to it, and exactly what the client receives."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from invoicing.admin import bp
from invoicing.auth import staff_required
from invoicing.mail import (
    STATUSES,
    attachment_label,
    build_attachment,
    get_email,
    list_outbox,
    mail_configured,
    release_held,
    retry_email,
)
from invoicing.models import OutboxEmail
from invoicing.rendering import render
from invoicing.services import NotFound, invites, queries
from invoicing.services.audit import Actor
from invoicing.services.portal import auth as portal_auth
from invoicing.services.portal import staff as portal_staff
from invoicing.services.subscriptions import signup

# The detail page shows a client's email in a sandboxed srcdoc iframe (no scripts, no same-origin); this
# policy also covers it, since a srcdoc frame inherits its parent's: inline styles and data: images only.
PREVIEW_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'")
# Emails whose body holds a live link (a staff invitation makes its holder staff; a portal sign-in link or
# invitation signs its holder in as the client's contact): only admins may read them.
LIVE_LINK_KINDS = frozenset({invites.KIND, portal_auth.SIGN_IN_KIND, portal_staff.INVITE_KIND, signup.WELCOME_KIND})
# Outbox statuses drawn with the existing badge colours.
BADGE = {"sent": "succeeded", "failed": "failed", "queued": "open", "sending": "processing", "held": "partial"}


def _now() -> datetime:
    return datetime.now(UTC)


def _readable(email_id: int) -> OutboxEmail:
    """The email, if this user may read it: an invitation or sign-in link would let staff act as someone else."""
    email = get_email(email_id, queries.org_scope(current_user))
    if email.kind in LIVE_LINK_KINDS and current_user.role not in ("admin", "superadmin"):
        raise NotFound("Email not found.")
    return email


@bp.get("/outbox")
@staff_required
def outbox() -> str:
    status = request.args.get("status") if request.args.get("status") in STATUSES else None
    before = request.args.get("before", type=int)
    page = list_outbox(queries.org_scope(current_user), status=status, before=before)
    return render("admin/outbox.html", "rows", page=page, status=status, statuses=STATUSES,
                  configured=mail_configured(), badge=BADGE)


@bp.get("/outbox/<int:email_id>")
@staff_required
def outbox_email(email_id: int) -> Response:
    email = _readable(email_id)
    html = render_template("admin/outbox_email.html", email=email, configured=mail_configured(), badge=BADGE,
                           attachments=[attachment_label(spec) for spec in email.attachments or []])
    response = current_app.make_response(html)
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    return response


@bp.get("/outbox/<int:email_id>/attachments/<int:index>")
@staff_required
def outbox_attachment(email_id: int, index: int) -> Response:
    email = _readable(email_id)
    specs = email.attachments or []
    if not 0 <= index < len(specs):
        raise NotFound("Attachment not found.")
    item = build_attachment(specs[index], email.organization_id)  # rendered now (or from the PDF cache)
    return Response(item.data, mimetype=item.content_type,
                    headers={"Content-Disposition": f'attachment; filename="{item.filename}"'})


@bp.post("/outbox/<int:email_id>/retry")
@staff_required
def outbox_retry(email_id: int) -> ResponseReturnValue:
    email = retry_email(email_id, queries.org_scope(current_user), actor=Actor.user(current_user), now=_now())
    flash(f"The email to {email.to_addr} will be sent on the next delivery run (within a minute).")
    return redirect(url_for("admin.outbox_email", email_id=email.id), 303)


@bp.post("/outbox/release")
@staff_required
def outbox_release() -> ResponseReturnValue:
    count = release_held(queries.org_scope(current_user), actor=Actor.user(current_user), now=_now())
    flash(f"{count} held email{'s' if count != 1 else ''} queued for delivery.")
    return redirect(url_for("admin.outbox"), 303)
