"""The signed-in contact's own pages: their password (/portal/account) and the company they act for
(/portal/company). Switching company is signing in as the same person's contact row at that company, checked
on the server (same organization, same email, access there)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from invoicing.auth import is_contact
from invoicing.portal import bp
from invoicing.portal.access import contact_required, current_contact
from invoicing.portal.forms import CompanyForm, PasswordForm
from invoicing.portal.views import LINK_AT, _safe_next, sign_in
from invoicing.services.portal import auth

LINK_PROOF_SECONDS = 15 * 60  # signed in by an emailed link this recently: no current password needed


def _now() -> datetime:
    return datetime.now(UTC)


def _proved_by_link() -> bool:
    return time.time() - float(session.get(LINK_AT) or 0) < LINK_PROOF_SECONDS


@bp.context_processor
def _portal_globals() -> dict[str, object]:
    def several_companies() -> bool:
        return is_contact() and len(auth.companies_for(current_contact())) > 1

    return {"several_companies": several_companies}


@bp.route("/account", methods=["GET", "POST"])
@contact_required
def account() -> Response | tuple[str, int]:
    contact = current_contact()
    form = PasswordForm()
    if form.validate_on_submit():
        try:
            fresh = auth.set_password(contact.id, current=form.current_password.data or "",
                                      new=form.new_password.data or "", confirm=form.confirm.data or "", now=_now(),
                                      hash_method=current_app.config["PASSWORD_HASH_METHOD"],
                                      current_required=not _proved_by_link())
        except auth.PasswordInvalid as exc:
            form.add_errors(exc.errors)
        else:
            sign_in(fresh)  # this session carries the new version; every other one has ended
            flash("Your password is saved. Any other place you were signed in is now signed out.", "success")
            return redirect(url_for("portal.account"), code=303)
    return render_template("portal/account.html", form=form, contact=contact, organization=contact.organization,
                           has_password=auth.has_password(contact), current_needed=not _proved_by_link()), \
        400 if form.is_submitted() else 200


@bp.get("/company")
@contact_required
def company() -> str:
    contact = current_contact()
    return render_template("portal/company.html", contact=contact, organization=contact.organization,
                           companies=auth.companies_for(contact), form=CompanyForm(), next=request.args.get("next"))


@bp.post("/company")
@contact_required
def switch_company() -> Response:
    form = CompanyForm()
    if not form.validate_on_submit() or form.contact_id.data is None:
        abort(400, "Choose a company.")
    target = auth.switch_company(current_contact(), form.contact_id.data, now=_now())
    sign_in(target, link_at=session.get(LINK_AT))
    flash(f"You are now acting for {target.client.name}.", "success")
    return redirect(_safe_next(request.args.get("next")), code=303)
