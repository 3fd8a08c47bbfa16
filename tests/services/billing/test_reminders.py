"""services/billing/reminders.py: each step of the organization's policy once, at its local hour, only the latest
after downtime, never for invoices that must not be chased; the email says where things stand."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from invoicing.extensions import db
from invoicing.models import Client, Invoice, Organization
from invoicing.services.audit import Actor
from invoicing.services.billing import reminders
from invoicing.services.billing.reminders import Policy, plan, send_due_reminders
from invoicing.services.db import atomic
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import record_manual_payment
from invoicing.services.sending import send_reminder
from tests.conftest import SYSTEM, make_client, make_invoice
from tests.services.billing.helpers import emails, events, fresh, hours, open_invoice, site, utc

DUE = date(2026, 4, 20)  # New York is on summer time (UTC-4) all through these tests but the DST ones


def sweep(at: datetime, **kw):  # noqa: ANN201
    return send_due_reminders(now=at, site=site(), **kw)


def set_policy(org: Organization, steps: list[str], send_hour: int = 9, track_opens: bool = True) -> None:
    reminders.update_policy(org.id, steps=steps, send_hour=send_hour, track_opens=track_opens, actor=SYSTEM,
                            now=utc(2026, 3, 1))


def test_it_sends_each_default_step_once_at_nine_in_the_morning_local_time(world):
    invoice = open_invoice(world.client_a, due=DUE)
    sent_at = {}
    for tick in hours(utc(2026, 4, 10), utc(2026, 5, 20)):  # a scheduler ticking every hour for six weeks
        if sweep(tick).sent:
            for email in emails("reminder")[len(sent_at):]:
                sent_at[email.subject] = tick
    expected = {
        "Reminder: invoice 2026-0001 from Org A is due in 7 days — $270.00": utc(2026, 4, 13, 13),
        "Reminder: invoice 2026-0001 from Org A is due tomorrow — $270.00": utc(2026, 4, 19, 13),
        "Reminder: invoice 2026-0001 from Org A is overdue by 1 day — $270.00": utc(2026, 4, 21, 13),
        "Reminder: invoice 2026-0001 from Org A is overdue by 7 days — $270.00": utc(2026, 4, 27, 13),
        "Reminder: invoice 2026-0001 from Org A is overdue by 14 days — $270.00": utc(2026, 5, 4, 13),
    }
    assert sent_at == expected  # 09:00 in New York (EDT) is 13:00 UTC; nothing on the due date (off by default)
    sent = emails("reminder")
    assert [e.dedupe_key for e in sent] == [f"reminder:{invoice.id}:{key}" for key in
                                             ("before_7", "before_1", "overdue_1", "overdue_7", "overdue_14")]
    assert {e.to_addr for e in sent} == {"clienta@clients.test"}
    reminded = events("invoice.reminded", invoice.id)
    assert [(e.details["step"], e.details["when"], e.details["automatic"]) for e in reminded] == [
        ("before_7", "due in 7 days", True), ("before_1", "due tomorrow", True),
        ("overdue_1", "overdue by 1 day", True), ("overdue_7", "overdue by 7 days", True),
        ("overdue_14", "overdue by 14 days", True)]
    assert {e.actor_label for e in reminded} == {"reminders"}
    assert fresh(Invoice, invoice.id).reminded_through == 14


def test_it_writes_a_distinct_email_with_the_pay_link_and_the_pdf(world):
    invoice = open_invoice(world.client_a, due=DUE)
    sweep(utc(2026, 4, 13, 13))
    sweep(utc(2026, 4, 22, 13))  # overdue_1 was due yesterday: sent today, saying what is true today
    early, late = emails("reminder")
    assert "is due in 7 days (Apr 20, 2026)." in early.text_body
    assert "was due on Apr 20, 2026 and is now overdue by 2 days." in late.text_body
    assert late.subject == "Reminder: invoice 2026-0001 from Org A is overdue by 2 days — $270.00"
    pay_link = site().pay_url(fresh(Invoice, invoice.id))
    for email in (early, late):
        assert email.attachments == [{"kind": "invoice_pdf", "invoice_id": invoice.id}]
        assert pay_link in email.text_body and f'href="{pay_link}"' in email.html_body and "Pay now" in email.html_body
        assert email.kind == "reminder" and email.invoice_id == invoice.id and email.status == "queued"


def test_it_sends_only_the_latest_step_after_downtime(world):
    invoice = open_invoice(world.client_a, due=DUE)
    report = sweep(utc(2026, 4, 28, 18))  # down from before the first step until 8 days past due
    assert (report.sent, report.passed) == (1, 0)
    [email] = emails("reminder")
    assert email.dedupe_key == f"reminder:{invoice.id}:overdue_7" and "overdue by 8 days" in email.subject
    for tick in hours(utc(2026, 4, 28, 19), utc(2026, 5, 10)):
        sweep(tick)
    assert [e.dedupe_key.rsplit(":", 1)[1] for e in emails("reminder")] == ["overdue_7", "overdue_14"]


def test_it_passes_over_steps_whose_time_came_before_the_invoice_was_opened(world):
    invoice = open_invoice(world.client_a, due=DUE, opened=utc(2026, 4, 17, 15))  # sent 3 days before due
    for tick in hours(utc(2026, 4, 17, 15), utc(2026, 4, 19, 12)):
        sweep(tick)
    assert emails("reminder") == []  # not "due in 3 days" right after the invoice itself
    assert fresh(Invoice, invoice.id).reminded_through == -7
    sweep(utc(2026, 4, 19, 13))
    assert [e.subject for e in emails("reminder")] == [
        "Reminder: invoice 2026-0001 from Org A is due tomorrow — $270.00"]


@pytest.mark.parametrize("zone, day, sent, not_yet", [
    # New York starts summer time on Sunday March 8 2026: 09:00 that day is 13:00 UTC, not the 14:00 of the day before.
    ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 13), utc(2026, 3, 8, 12, 59)),
    # ... and ends it on Sunday November 1: 09:00 is 14:00 UTC, not the 13:00 of the day before.
    ("America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 14), utc(2026, 11, 1, 13, 59)),
    # Paris changes on March 29: 09:00 CEST is 07:00 UTC.
    ("Europe/Paris", date(2026, 3, 29), utc(2026, 3, 29, 7), utc(2026, 3, 29, 6, 59)),
])
def test_it_sends_at_the_local_hour_with_the_offset_of_the_send_date(world, zone, day, sent, not_yet):
    with atomic():
        db.session.execute(update(Organization).where(Organization.id == world.org_a.id).values(timezone=zone))
    invoice = open_invoice(world.client_a, due=day + timedelta(days=7))
    the_day_before = sent - timedelta(days=1)
    [planned] = [p for p in plan(now=the_day_before, until=the_day_before + timedelta(hours=30))]
    assert (planned.invoice_id, planned.step.key, planned.at) == (invoice.id, "before_7", sent)  # planned a day ahead
    sweep(not_yet)
    assert emails("reminder") == []
    sweep(sent)
    assert len(emails("reminder")) == 1


def test_it_follows_the_organizations_own_policy_and_send_hour(world):
    set_policy(world.org_a, ["due", "overdue_7"], send_hour=17)
    open_invoice(world.client_a, due=DUE)
    ticks = {}
    for tick in hours(utc(2026, 4, 18), utc(2026, 4, 30)):
        if sweep(tick).sent:
            ticks[tick] = emails("reminder")[-1].dedupe_key.rsplit(":", 1)[1]
    assert ticks == {utc(2026, 4, 20, 21): "due", utc(2026, 4, 27, 21): "overdue_7"}  # 17:00 EDT
    assert "is due today" in emails("reminder")[0].subject


def test_it_uses_each_organizations_time_zone(world):
    tokyo = open_invoice(world.client_b, due=DUE)  # Org B is in Tokyo (UTC+9): 09:00 there is 00:00 UTC
    new_york = open_invoice(world.client_a, due=DUE)
    sweep(utc(2026, 4, 13, 0))
    assert [e.invoice_id for e in emails("reminder")] == [tokyo.id]
    sweep(utc(2026, 4, 13, 13))
    assert [e.invoice_id for e in emails("reminder")] == [tokyo.id, new_york.id]


def test_it_never_chases_drafts_paid_void_processing_opted_out_or_paused_invoices(world):
    chased = open_invoice(world.client_a, due=date(2026, 4, 10))
    partly_paid = open_invoice(world.client_a, due=date(2026, 4, 10))
    record_manual_payment(partly_paid.id, amount=7000, method="cash", paid_on=date(2026, 4, 1), reference="",
                          actor=SYSTEM, now=utc(2026, 4, 1))
    make_invoice(world.client_a, due_date=date(2026, 4, 10))  # a draft
    paid = open_invoice(world.client_a, due=date(2026, 4, 10))
    record_manual_payment(paid.id, amount=27000, method="cash", paid_on=date(2026, 4, 1), reference="", actor=SYSTEM,
                          now=utc(2026, 4, 1))
    void = open_invoice(world.client_a, due=date(2026, 4, 10))
    void_invoice(void.id, reason="Issued in error", actor=SYSTEM, now=utc(2026, 4, 1))
    processing = open_invoice(world.client_a, due=date(2026, 4, 10))
    with atomic():  # a bank debit is settling (what services/payments does when one starts)
        db.session.execute(update(Invoice).where(Invoice.id == processing.id).values(status="processing"))
    opted_out_client = make_client(world.org_a, "Quiet Corp")
    opted_out = open_invoice(opted_out_client, due=date(2026, 4, 10))
    reminders.set_client_opt_out(opted_out_client.id, world.org_a.id, True, actor=SYSTEM, now=utc(2026, 4, 1))
    paused = open_invoice(world.client_a, due=date(2026, 4, 10))
    reminders.set_invoice_paused(paused.id, world.org_a.id, True, actor=SYSTEM, now=utc(2026, 4, 1))

    assert {p.invoice_id for p in plan(now=utc(2026, 4, 12, 13))} == {chased.id, partly_paid.id}
    report = sweep(utc(2026, 4, 12, 13))
    assert report.sent == 2 and sorted(e.invoice_id for e in emails("reminder")) == [chased.id, partly_paid.id]
    [partial] = emails("reminder", partly_paid)
    assert "$200.00" in partial.subject  # what is still due

    # Reminders back on: the latest step that applies then goes, once.
    reminders.set_client_opt_out(opted_out_client.id, world.org_a.id, False, actor=SYSTEM, now=utc(2026, 4, 12))
    reminders.set_invoice_paused(paused.id, world.org_a.id, False, actor=SYSTEM, now=utc(2026, 4, 12))
    sweep(utc(2026, 4, 18, 13))
    assert [e.dedupe_key.rsplit(":", 1)[1] for e in emails("reminder", opted_out)] == ["overdue_7"]
    assert [e.dedupe_key.rsplit(":", 1)[1] for e in emails("reminder", paused)] == ["overdue_7"]
    assert [e.action for e in events("client.reminders_opted_out")] == ["client.reminders_opted_out"]
    assert len(events("invoice.reminders_paused", paused.id)) == 1
    assert len(events("invoice.reminders_resumed", paused.id)) == 1


def test_it_waits_while_an_autopay_charge_is_scheduled(world, monkeypatch):
    invoice = open_invoice(world.client_a, due=date(2026, 4, 10))
    monkeypatch.setattr(reminders, "autopay_pending", lambda inv: inv.id == invoice.id)
    assert sweep(utc(2026, 4, 12, 13)).sent == 0 and emails("reminder") == []
    monkeypatch.setattr(reminders, "autopay_pending", lambda inv: False)  # the charge failed: overdue notices go
    assert sweep(utc(2026, 4, 12, 14)).sent == 1


def test_it_notes_on_the_invoice_a_reminder_it_cannot_send(world):
    nobody = make_client(world.org_a, "No Email Ltd", contacts=0)
    with atomic():
        db.session.execute(update(Client).where(Client.id == nobody.id).values(email=""))
    invoice = open_invoice(nobody, due=date(2026, 4, 10))
    report = sweep(utc(2026, 4, 12, 13))
    assert (report.sent, report.skipped) == (0, 1) and emails("reminder") == []
    [skipped] = events("invoice.reminder_skipped", invoice.id)
    assert skipped.details == {"step": "overdue_1", "when": "overdue by 2 days", "reason": "no email address"}
    assert sweep(utc(2026, 4, 12, 14)).skipped == 0  # noted once, not every tick


def test_it_skips_archived_organizations(world):
    open_invoice(world.client_a, due=date(2026, 4, 10))
    with atomic():
        db.session.execute(update(Organization).where(Organization.id == world.org_a.id)
                           .values(archived_at=utc(2026, 4, 1)))
    assert sweep(utc(2026, 4, 12, 13)).sent == 0


def test_a_second_sweep_and_a_staff_reminder_do_not_repeat_a_step(world):
    invoice = open_invoice(world.client_a, due=DUE)
    send_reminder(invoice.id, actor=Actor.user(world.alice), now=utc(2026, 4, 13, 12), base_url="http://billing.test",
                  secret_key="test-secret-key-" + "x" * 32, default_sender="billing@example.test")
    assert sweep(utc(2026, 4, 13, 13)).sent == 1  # the automatic step is its own email (staff's is extra)
    assert sweep(utc(2026, 4, 13, 13)).sent == 0
    with atomic():  # even with the bookkeeping lost, the outbox's dedupe key stops a second copy
        db.session.execute(update(Invoice).where(Invoice.id == invoice.id).values(reminded_through=None))
    assert sweep(utc(2026, 4, 13, 14)).sent == 0
    assert [e.dedupe_key for e in emails("reminder")][1:] == [f"reminder:{invoice.id}:before_7"]


def test_the_dry_run_lists_what_the_sweep_then_does_and_changes_nothing(world, runner, time_machine):
    first = open_invoice(world.client_a, due=date(2026, 4, 10))
    second = open_invoice(world.client_a, due=date(2026, 4, 20))
    time_machine.move_to(utc(2026, 4, 13, 13, 30), tick=False)
    dry = runner.invoke(args=["billing", "remind", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "remind would queue 2 reminder(s)" in dry.output
    assert '2026-0001 (Client A): 1 day after the due date, says "overdue by 3 days"' in dry.output
    assert '2026-0002 (Client A): 7 days before the due date, says "due in 7 days"' in dry.output
    assert emails() == [] and fresh(Invoice, first.id).reminded_through is None
    done = runner.invoke(args=["billing", "remind"])
    assert done.exit_code == 0 and "remind: 2 reminder(s) queued" in done.output
    assert sorted(e.invoice_id for e in emails("reminder")) == [first.id, second.id]


def test_the_policy_is_validated_and_audited(world):
    with pytest.raises(reminders.PolicyInvalid) as refused:
        reminders.update_policy(world.org_a.id, steps=["before_7", "every_hour"], send_hour=24, track_opens=True,
                                actor=SYSTEM, now=utc(2026, 3, 1))
    assert set(refused.value.errors) == {"steps", "send_hour"}
    assert fresh(Organization, world.org_a.id).reminder_policy == {}
    assert Policy.of(fresh(Organization, world.org_a.id)) == Policy(
        tuple(reminders.STEP_KEYS[k] for k in reminders.DEFAULT_STEPS), 9)
    set_policy(world.org_a, ["overdue_14", "before_1"], send_hour=7, track_opens=False)
    org = fresh(Organization, world.org_a.id)
    assert org.reminder_policy == {"steps": {"before_7": False, "before_1": True, "due": False, "overdue_1": False,
                                             "overdue_7": False, "overdue_14": True}, "send_hour": 7}
    assert org.track_email_opens is False
    [audit] = events("organization.reminders_updated")
    assert audit.details["steps"] == ["before_1", "overdue_14"] and audit.details["previous"]["send_hour"] == 9


def test_it_keeps_the_pay_link_alive_for_a_late_reminder(world):
    invoice = open_invoice(world.client_a, due=date(2026, 1, 10))  # its link expires 30 days after it was due
    sweep(utc(2026, 3, 20, 13))
    assert fresh(Invoice, invoice.id).link_expires_on >= date(2026, 4, 19)
    assert db.session.scalar(select(Invoice.reminded_through).where(Invoice.id == invoice.id)) == 14
