"""Portal: the company's subscriptions (/portal/subscriptions), self-service. A contact sees plan, price,
status, next invoice, trial end and past invoices; changes plan or seats after a preview of the amounts and a
confirm step; cancels at period end or resumes; updates the card on the payment methods page. Every lookup is
scoped to the contact's company (services/subscriptions/selfservice.py): another company's subscription is 404.
The change page is one template: the whole page, or its "preview" block for htmx."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, flash, render_template, request, url_for
from werkzeug.wrappers import Response

from invoicing.portal import bp
from invoicing.portal.access import contact_required, current_contact
from invoicing.portal.subscription_forms import CancelForm, ChangeForm, ConfirmChangeForm
from invoicing.rendering import go, render
from invoicing.services import DomainError, NotFound
from invoicing.services.site import Site
from invoicing.services.subscriptions import selfservice

TEMPLATE_CHANGE = "portal/subscription_change.html"
Page = tuple[str, int]


def _now() -> datetime:
    return datetime.now(UTC)


def _site() -> Site:
    return Site.from_config(current_app.config)


def _detail(public_id: str) -> Response:
    return go(url_for(".subscription", public_id=public_id))


@bp.get("/subscriptions")
@contact_required
def subscriptions() -> str:
    contact = current_contact()
    views = [selfservice.subscription_view(s, now=_now()) for s in selfservice.client_subscriptions(contact.client_id)]
    return render_template("portal/subscriptions.html", organization=contact.organization, views=views)


@bp.get("/subscriptions/<public_id>")
@contact_required
def subscription(public_id: str) -> str:
    contact = current_contact()
    found = selfservice.client_subscription(contact.client_id, public_id)
    return render_template("portal/subscription.html", organization=contact.organization, confirm=CancelForm(),
                           view=selfservice.subscription_view(found, now=_now()))


@bp.get("/subscriptions/<public_id>/change")
@contact_required
def subscription_change(public_id: str) -> Page:
    """The plan and seats form; with a choice made, the preview of the amounts and the confirm button."""
    contact, form = current_contact(), ChangeForm(request.args)
    found = selfservice.client_subscription(contact.client_id, public_id)
    form.offer(found, selfservice.change_options(found))
    preview, error = None, ""
    try:
        if "price_id" in request.args:
            found, preview = selfservice.preview(contact, public_id, price_id=form.chosen_price(),
                                                 quantity=form.chosen_quantity(), now=_now())
    except NotFound:
        raise
    except DomainError as exc:
        error = str(exc)
    confirm = ConfirmChangeForm(formdata=None, price_id=form.price_id.data, quantity=form.quantity.data,
                                request_key=selfservice.new_request_key())
    return render(TEMPLATE_CHANGE, "preview", organization=contact.organization, subscription=found, form=form,
                  preview=preview, confirm=confirm, error=error), 422 if error else 200


@bp.post("/subscriptions/<public_id>/change")
@contact_required
def subscription_change_confirm(public_id: str) -> Response:
    form = ConfirmChangeForm()
    if not form.validate_on_submit():
        abort(400)
    price_id, quantity = form.values()
    made = selfservice.change(current_contact(), public_id, price_id=price_id, quantity=quantity,
                              request_key=form.request_key.data or "", site=_site(), now=_now())
    flash(selfservice.change_message(made), "success")
    return _detail(public_id)


@bp.get("/subscriptions/<public_id>/cancel")
@contact_required
def subscription_cancel_page(public_id: str) -> str:
    contact = current_contact()
    found = selfservice.client_subscription(contact.client_id, public_id)
    return render_template("portal/subscription_cancel.html", organization=contact.organization, form=CancelForm(),
                           view=selfservice.subscription_view(found, now=_now()))


@bp.post("/subscriptions/<public_id>/cancel")
@contact_required
def subscription_cancel(public_id: str) -> Response:
    form = CancelForm()
    if not form.validate_on_submit():
        abort(400)
    done = selfservice.cancel(current_contact(), public_id, reason=form.reason.data or "", site=_site(), now=_now())
    flash(f"Your subscription is cancelled: it ends on {done.current_period_end:%b %-d, %Y}. You can resume it "
          "until then.", "success")
    return _detail(public_id)


@bp.post("/subscriptions/<public_id>/resume")
@contact_required
def subscription_resume(public_id: str) -> Response:
    if not CancelForm().validate_on_submit():  # the CSRF token
        abort(400)
    selfservice.resume(current_contact(), public_id, site=_site(), now=_now())
    flash("Your subscription is resumed: it renews as before.", "success")
    return _detail(public_id)


@bp.post("/subscriptions/<public_id>/keep")
@contact_required
def subscription_keep(public_id: str) -> Response:
    if not CancelForm().validate_on_submit():  # the CSRF token
        abort(400)
    kept = selfservice.keep_current(current_contact(), public_id, site=_site(), now=_now())
    flash(f"The scheduled change is dropped: you keep {kept.plan.name}.", "success")
    return _detail(public_id)
