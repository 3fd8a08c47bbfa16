"""Portal sign-in (the signed-in home, the invoice list, is portal/invoices.py). GET never signs anyone in: a
magic link opens a page whose button POSTs (mail scanners open links without pressing buttons)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import current_app, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from werkzeug.wrappers import Response

from invoicing.models import Contact
from invoicing.portal import bp
from invoicing.portal.forms import ConfirmForm, EmailLinkForm
from invoicing.services import organizations
from invoicing.services.portal import auth
from invoicing.services.site import Site


def _now() -> datetime:
    return datetime.now(UTC)


def _safe_next(target: str | None) -> str:
    """Only portal paths on this site: never an open redirect."""
    if target and target.startswith("/portal/") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("portal.index")


def _host_organization_id() -> int | None:
    return organizations.organization_for_host(request.host)


def sign_in(contact: Contact) -> None:
    """A fresh session for the contact: nothing of the one before survives (no fixation)."""
    session.clear()
    login_user(contact, fresh=True)
    session.permanent = True


@bp.route("/login", methods=["GET", "POST"])
def login() -> tuple[str, int]:
    form = EmailLinkForm()
    if form.validate_on_submit():
        auth.request_magic_link(form.email.data or "", site=Site.from_config(current_app.config), now=_now(),
                                organization_id=_host_organization_id())
        return render_template("portal/link_sent.html", email=auth.normalize(form.email.data or "")), 200
    return render_template("portal/login.html", form=form, next=request.args.get("next")), \
        200 if request.method == "GET" else 400


@bp.get("/login/<token>")
def magic_link(token: str) -> tuple[str, int]:
    try:
        contact = auth.peek_magic_link(token, now=_now())
    except auth.LinkUnusable:
        return render_template("portal/link_unusable.html", form=EmailLinkForm()), 410
    return render_template("portal/link_confirm.html", contact=contact, form=ConfirmForm(), token=token), 200


@bp.post("/login/<token>")
def use_magic_link(token: str) -> Response | tuple[str, int]:
    if not ConfirmForm().validate_on_submit():
        return render_template("portal/link_unusable.html", form=EmailLinkForm()), 400
    try:
        contact = auth.redeem_magic_link(token, now=_now())
    except auth.LinkUnusable:
        return render_template("portal/link_unusable.html", form=EmailLinkForm()), 410
    sign_in(contact)
    return redirect(_safe_next(request.args.get("next")), code=303)


@bp.post("/logout")
def logout() -> Response:
    logout_user()
    session.clear()
    return redirect(url_for("portal.login"), code=303)
