"""Settings > Client emails and PDF: admins edit what clients read, with a live preview, versions and reset."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from invoicing.admin import bp
from invoicing.auth import role_required
from invoicing.models import Organization
from invoicing.rendering import render
from invoicing.services import client_texts
from invoicing.services import settings as svc
from invoicing.services.audit import Actor

TEMPLATE = "admin/settings_texts.html"


def _organization() -> Organization | None:
    return svc.current_organization(current_user)


def _page(org: Organization, kind: str, checked: client_texts.Preview | None = None, *, saved: bool = False,
          status: int = 200) -> ResponseReturnValue:
    spec = client_texts.kind_of(kind)
    if checked is None:
        checked = client_texts.preview(kind, client_texts.current_parts(org.id, spec), organization_name=org.name)
    return render(TEMPLATE, "preview", organization=org, kind=spec, kinds=client_texts.KINDS.values(),
                  checked=checked, saved=saved, variables=client_texts.VARIABLES,
                  versions=client_texts.versions(org.id, kind)), status


@bp.get("/settings/texts", defaults={"kind": "invoice"})
@bp.get("/settings/texts/<kind>")
@role_required("admin")
def settings_texts(kind: str) -> ResponseReturnValue:
    org = _organization()
    if org is None:
        flash("Choose the organization to act in first.")
        return redirect(url_for("admin.switch_organization"), 303)
    return _page(org, kind)


@bp.post("/settings/texts/<kind>")
@role_required("admin")
def settings_texts_save(kind: str) -> ResponseReturnValue:
    """Save a new version, or (the Preview button, or htmx as staff type) only show it filled in."""
    org = _organization()
    if org is None:
        return redirect(url_for("admin.switch_organization"), 303)
    if request.form.get("action") == "preview":
        checked = client_texts.preview(kind, request.form, organization_name=org.name)
        return _page(org, kind, checked, status=200)
    try:
        client_texts.save_texts(org.id, kind, request.form, organization_name=org.name,
                                actor=Actor.user(current_user), now=datetime.now(UTC))
    except client_texts.TextsInvalid as exc:
        return _page(org, kind, exc.preview, status=422)
    flash("Saved: the next emails and PDFs use this text.")
    return redirect(url_for("admin.settings_texts", kind=kind), 303)


@bp.post("/settings/texts/<kind>/reset")
@role_required("admin")
def settings_texts_reset(kind: str) -> ResponseReturnValue:
    org = _organization()
    if org is None:
        return redirect(url_for("admin.switch_organization"), 303)
    client_texts.reset_texts(org.id, kind, actor=Actor.user(current_user), now=datetime.now(UTC))
    flash("Back to the default text. Earlier versions stay in the history.")
    return redirect(url_for("admin.settings_texts", kind=kind), 303)
