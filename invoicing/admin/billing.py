"""The scheduler in the admin: the Scheduler page (jobs' health and the next 24 hours), the banner on every
admin page when a job is late, the reminder settings, the invoice's and client's reminder switches, and the
invoice's and client's autopay state (template globals)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField
from wtforms.fields.choices import SelectChoice

from invoicing.admin import bp
from invoicing.auth import is_staff, role_required, staff_required
from invoicing.models import Invoice, Organization
from invoicing.services import queries
from invoicing.services.audit import Actor
from invoicing.services.billing import autopay, reminders, schedule_preview
from invoicing.services.settings import current_organization


def _now() -> datetime:
    return datetime.now(UTC)


@bp.app_template_global("scheduler_alerts")
def scheduler_alerts() -> list[schedule_preview.JobStatus]:
    """The jobs that have not succeeded for twice their interval: a banner on every admin page (once a request)."""
    if not is_staff():
        return []
    cached = request.environ.get("invoicing.scheduler_alerts")  # per request (an app context may span several)
    if cached is None:
        cached = request.environ["invoicing.scheduler_alerts"] = schedule_preview.cached_alerts(
            now=_now(), config=current_app.config, store=current_app.extensions.setdefault("scheduler_alerts", {}),
            seconds=current_app.config.get("SCHEDULER_BANNER_CACHE_SECONDS", 5))
    return list(cached)


@bp.app_template_global("invoice_reminders")
def invoice_reminders(invoice: Invoice) -> reminders.InvoiceReminders:
    return reminders.invoice_reminders(invoice, now=_now())


@bp.app_template_global("invoice_autopay")
def invoice_autopay(invoice: Invoice) -> autopay.InvoiceAutopay | None:
    return autopay.invoice_state(invoice.id)


@bp.app_template_global("client_autopay")
def client_autopay(client_id: int) -> autopay.ClientAutopay:
    return autopay.client_autopay(client_id)


@bp.get("/scheduler")
@role_required("admin")
def scheduler() -> str:
    now = _now()
    return render_template(
        "admin/scheduler.html", now=now, statuses=schedule_preview.job_statuses(now=now, config=current_app.config),
        preview=schedule_preview.next_hours(now=now, organization_id=queries.org_scope(current_user)),
        scheduler_on=current_app.config.get("SCHEDULER_ENABLED", False))


# --- reminder settings -----------------------------------------------------------------------------------


class ReminderForm(FlaskForm):
    send_hour = SelectField("Send at (the organization's local time)",
                            choices=[SelectChoice(str(h), f"{h:02d}:00") for h in range(24)])
    track_opens = BooleanField("Track when clients open invoice and reminder emails (a tiny image in the email)")

    def add_errors(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            field = getattr(self, name, None)
            if field is None:
                self.form_errors.append(message)
            else:
                field.errors = [*field.errors, message]

    @classmethod
    def initial(cls, organization: Organization) -> dict[str, Any]:
        policy = reminders.Policy.of(organization)
        chosen = {step.key for step in policy.steps}
        return {"send_hour": str(policy.send_hour), "track_opens": organization.track_email_opens,
                **{f"step_{step.key}": step.key in chosen for step in reminders.STEPS}}

    def chosen_steps(self) -> list[str]:
        return [step.key for step in reminders.STEPS if getattr(self, f"step_{step.key}").data]


for _step in reminders.STEPS:
    setattr(ReminderForm, f"step_{_step.key}", BooleanField(_step.label))


@bp.route("/settings/reminders", methods=["GET", "POST"])
@role_required("admin")
def settings_reminders() -> ResponseReturnValue:
    org = current_organization(current_user)
    if org is None:
        flash("Choose the organization to act in first.")
        return redirect(url_for("admin.switch_organization"), 303)
    form = ReminderForm() if request.method == "POST" else ReminderForm(data=ReminderForm.initial(org))
    if form.validate_on_submit():
        try:
            reminders.update_policy(org.id, steps=form.chosen_steps(), send_hour=int(form.send_hour.data or 0),
                                    track_opens=bool(form.track_opens.data), actor=Actor.user(current_user), now=_now())
        except reminders.PolicyInvalid as exc:
            form.add_errors(exc.errors)
        else:
            flash("Reminder settings saved.", "success")
            return redirect(url_for("admin.settings_reminders"), 303)
    return render_template("admin/settings_reminders.html", form=form, organization=org, steps=reminders.STEPS), \
        400 if request.method == "POST" else 200


# --- the switches on the invoice and client pages --------------------------------------------------------


@bp.post("/invoices/<int:invoice_id>/reminders")
@staff_required
def invoice_reminders_switch(invoice_id: int) -> ResponseReturnValue:
    paused = request.form.get("paused") == "1"
    invoice = reminders.set_invoice_paused(invoice_id, queries.org_scope(current_user), paused,
                                           actor=Actor.user(current_user), now=_now())
    flash("Automatic reminders paused for this invoice." if paused else "Automatic reminders resumed.", "success")
    return redirect(url_for("admin.invoice", invoice_id=invoice.id), 303)


@bp.post("/clients/<int:client_id>/reminders")
@staff_required
def client_reminders_switch(client_id: int) -> ResponseReturnValue:
    opted_out = request.form.get("opt_out") == "1"
    client = reminders.set_client_opt_out(client_id, queries.org_scope(current_user), opted_out,
                                          actor=Actor.user(current_user), now=_now())
    flash(f"{client.name} gets no automatic reminders." if opted_out
          else f"{client.name} gets automatic reminders again.", "success")
    return redirect(url_for("admin.client", client_id=client.id), 303)
