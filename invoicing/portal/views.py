"""Portal sign-in and the signed-in home. GET never signs anyone in: a magic link opens a page whose button
POSTs (mail scanners open links without pressing buttons). Every sign-in POST (asking for a link, a password,
a link's button) is rate-limited per IP, and per email where one is typed; the answers never tell whether an
email is known."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import current_app, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from werkzeug.wrappers import Response

from invoicing.extensions import limiter
from invoicing.models import Contact
from invoicing.portal import bp
from invoicing.portal.access import contact_required, current_contact
from invoicing.portal.forms import ConfirmForm, EmailLinkForm, PasswordSignInForm
from invoicing.services import organizations
from invoicing.services.portal import auth
from invoicing.services.site import Site

PER_IP = "30 per minute"  # shared by the sign-in page's POSTs and the magic links' buttons
PER_EMAIL = "5 per minute;20 per hour"  # a password guesser, or someone flooding a mailbox with links
LINK_AT = "portal_link_at"  # when this session was signed in by an emailed link (unix time)
WRONG_PASSWORD = "Wrong email or password. No password yet? Ask for a link, then choose one under Account."


def _now() -> datetime:
    return datetime.now(UTC)


def _safe_next(target: str | None) -> str:
    """Only portal paths on this site: never an open redirect."""
    if target and target.startswith("/portal/") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("portal.index")


def _host_organization_id() -> int | None:
    return organizations.organization_for_host(request.host)


def _email_key() -> str:
    return "portal-sign-in:" + auth.normalize(request.form.get("email") or "")


def sign_in(contact: Contact, *, link_at: int | None = None) -> None:
    """A fresh session for the contact: nothing of the one before survives (no fixation). `link_at`: when an
    emailed link proved this person holds the mailbox (lets them replace a forgotten password for a while)."""
    session.clear()
    login_user(contact, fresh=True)
    session.permanent = True
    if link_at is not None:
        session[LINK_AT] = link_at


def _signed_in(contact: Contact) -> Response:
    """Where a new session goes: the company picker first when the person may act for several companies."""
    target = _safe_next(request.args.get("next"))
    if len(auth.companies_for(contact)) > 1:
        return redirect(url_for("portal.company", next=target), code=303)
    return redirect(target, code=303)


def _login_page(status: int, error: str = "", link_form: EmailLinkForm | None = None) -> tuple[str, int]:
    return render_template("portal/login.html", link_form=link_form or EmailLinkForm(),
                           password_form=PasswordSignInForm(), next=request.args.get("next"), error=error), status


@bp.route("/login", methods=["GET", "POST"])
@limiter.shared_limit(PER_IP, scope="portal-sign-in", methods=["POST"])
@limiter.limit(PER_EMAIL, key_func=_email_key, methods=["POST"])
def login() -> Response | tuple[str, int]:
    if "password" in request.form:
        return _password_sign_in()
    form = EmailLinkForm()
    if form.validate_on_submit():
        auth.request_magic_link(form.email.data or "", site=Site.from_config(current_app.config), now=_now(),
                                organization_id=_host_organization_id())
        return render_template("portal/link_sent.html", email=auth.normalize(form.email.data or "")), 200
    return _login_page(200 if request.method == "GET" else 400, link_form=form)


def _password_sign_in() -> Response | tuple[str, int]:
    form = PasswordSignInForm()
    if not form.validate_on_submit():
        return _login_page(400, "Enter your email and your password.")
    contact = auth.authenticate_password(form.email.data or "", form.password.data or "", now=_now(),
                                         hash_method=current_app.config["PASSWORD_HASH_METHOD"],
                                         organization_id=_host_organization_id())
    if contact is None:
        return _login_page(400, WRONG_PASSWORD)
    sign_in(contact)
    return _signed_in(contact)


@bp.get("/login/<token>")
def magic_link(token: str) -> tuple[str, int]:
    try:
        contact = auth.peek_magic_link(token, now=_now())
    except auth.LinkUnusable:
        return render_template("portal/link_unusable.html", form=EmailLinkForm()), 410
    return render_template("portal/link_confirm.html", contact=contact, form=ConfirmForm(), token=token), 200


@bp.post("/login/<token>")
@limiter.shared_limit(PER_IP, scope="portal-sign-in")
def use_magic_link(token: str) -> Response | tuple[str, int]:
    if not ConfirmForm().validate_on_submit():
        return render_template("portal/link_unusable.html", form=EmailLinkForm()), 400
    try:
        contact = auth.redeem_magic_link(token, now=_now())
    except auth.LinkUnusable:
        return render_template("portal/link_unusable.html", form=EmailLinkForm()), 410
    sign_in(contact, link_at=int(time.time()))
    return _signed_in(contact)


@bp.post("/logout")
def logout() -> Response:
    logout_user()
    session.clear()
    return redirect(url_for("portal.login"), code=303)


@bp.get("/")
@contact_required
def index() -> str:
    contact = current_contact()
    return render_template("portal/home.html", contact=contact, organization=contact.organization)
