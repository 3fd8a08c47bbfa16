"""The company profile a contact keeps up to date: billing email, address, tax id (the name is read-only)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from invoicing.portal import bp
from invoicing.portal.access import contact_required, current_contact
from invoicing.portal.forms import CompanyProfileForm
from invoicing.services import DomainError
from invoicing.services.audit import Actor
from invoicing.services.portal import profile
from invoicing.services.site import Site


@bp.route("/company-profile", methods=["GET", "POST"])
@contact_required
def company_profile() -> ResponseReturnValue:
    contact = current_contact()
    form = CompanyProfileForm(obj=contact.client)
    if form.validate_on_submit():
        try:
            changed = profile.update_company_profile(contact.client_id, form.profile_data(),
                                                     actor=Actor.contact(contact), now=datetime.now(UTC),
                                                     site=Site.from_config(current_app.config))
        except DomainError as exc:
            form.form_errors.append(str(exc))
        else:
            flash(f"Saved; {contact.organization.name} has been told." if changed else "Nothing changed.", "success")
            return redirect(url_for("portal.company_profile"), code=303)
    return render_template("portal/company_profile.html", form=form, client=contact.client,
                           organization=contact.organization), 422 if form.is_submitted() else 200
