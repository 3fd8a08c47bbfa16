"""The Scheduler page (each job's last start, success, duration, next run, last error; the next 24 hours from
the jobs' own plans) and the banner on every admin page when a job has not succeeded for twice its interval."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from invoicing import jobs
from invoicing.extensions import db
from invoicing.models import JobRun
from invoicing.services.billing import recurring, reminders
from invoicing.services.invoices import LineData
from tests.conftest import NOW, SYSTEM, login, make_user
from tests.services.billing.helpers import emails, open_invoice, utc

BANNER = "The scheduler needs attention"


def test_it_is_for_admins(client, world):
    login(client, world.bob)  # staff
    assert client.get("/admin/scheduler").status_code == 403
    assert "/admin/scheduler" not in client.get("/admin/").text
    login(client, world.alice)
    page = client.get("/admin/scheduler")
    assert page.status_code == 200 and 'href="/admin/scheduler"' in page.text
    for job in ("remind", "recurring", "deliver-mail", "reconcile", "backup"):
        assert f'id="job-{job}"' in page.text
    assert "never run" in page.text and BANNER not in page.text  # a fresh install is not alarming


def test_it_shows_each_jobs_last_run_and_error(client, world, time_machine, monkeypatch):
    open_invoice(world.client_a, due=date(2026, 4, 10))
    time_machine.move_to(utc(2026, 4, 12, 13, 5), tick=False)
    assert "1 reminder(s) queued" in jobs.run_job("remind", now=utc(2026, 4, 12, 13))

    def broken(now: Any, dry_run: bool) -> str:
        raise RuntimeError("the disk is full")

    monkeypatch.setitem(jobs.JOBS, "recurring", jobs.Job("recurring", 900, broken))
    with pytest.raises(RuntimeError):
        jobs.run_job("recurring", now=utc(2026, 4, 12, 13))
    login(client, world.alice)
    page = client.get("/admin/scheduler").text
    remind = page[page.index('id="job-remind"'):page.index("</tr>", page.index('id="job-remind"'))]
    assert "12 Apr 2026, 09:00 EDT" in remind  # last start and last success, in the organization's zone
    assert "12 Apr 2026, 09:15 EDT" in remind  # the next slot
    assert " ms</td>" in remind and "remind: 1 reminder(s) queued" in remind
    assert '<span class="badge badge-ok">ok</span>' in remind
    broken_row = page[page.index('id="job-recurring"'):page.index("</tr>", page.index('id="job-recurring"'))]
    assert "RuntimeError: the disk is full" in broken_row and "last run failed" in broken_row
    assert BANNER not in page  # one failure within its interval: no alarm yet


def test_the_banner_shows_on_every_admin_page_once_a_job_is_late(client, world, time_machine):
    time_machine.move_to(utc(2026, 4, 12, 13), tick=False)
    jobs.run_job("remind", now=utc(2026, 4, 12, 13))
    login(client, world.bob)  # staff see the banner too (without the link to the admin-only page)
    time_machine.move_to(utc(2026, 4, 12, 13, 29), tick=False)
    assert BANNER not in client.get("/admin/invoices").text
    time_machine.move_to(utc(2026, 4, 12, 13, 31), tick=False)  # twice its 15 minutes without a success
    for path in ("/admin/", "/admin/invoices", "/admin/clients", "/admin/outbox"):
        page = client.get(path).text
        assert BANNER in page and "“remind” (every 15 minutes) has not succeeded since" in page, path
    assert "Open the Scheduler page" not in page
    jobs.run_job("remind", now=utc(2026, 4, 12, 13, 31))
    assert BANNER not in client.get("/admin/invoices").text


def test_the_banner_is_kept_a_few_seconds_per_process(app, client, world, time_machine, monkeypatch):
    """The banner's state is read at most every SCHEDULER_BANNER_CACHE_SECONDS: a run recorded by another process
    (here: the lease row written directly) shows up within those seconds; a run this process finishes at once."""
    monkeypatch.setitem(app.config, "SCHEDULER_BANNER_CACHE_SECONDS", 5)
    monkeypatch.setitem(app.extensions, "scheduler_alerts", {})
    time_machine.move_to(utc(2026, 4, 12, 13), tick=False)
    jobs.run_job("remind", now=utc(2026, 4, 12, 13))
    login(client, world.bob)
    time_machine.move_to(utc(2026, 4, 12, 13, 31), tick=False)
    assert BANNER in client.get("/admin/invoices").text
    lease = db.session.get_one(JobRun, "remind")  # another process's run: the lease row changes under us
    lease.last_success_at = utc(2026, 4, 12, 13, 30)
    db.session.commit()
    time_machine.move_to(utc(2026, 4, 12, 13, 31, 4), tick=False)
    assert BANNER in client.get("/admin/invoices").text  # kept: at most 5 seconds stale
    time_machine.move_to(utc(2026, 4, 12, 13, 31, 5), tick=False)
    assert BANNER not in client.get("/admin/invoices").text  # read afresh
    time_machine.move_to(utc(2026, 5, 12, 13), tick=False)
    assert BANNER in client.get("/admin/invoices").text
    jobs.run_job("remind", now=utc(2026, 5, 12, 13))  # this process's run drops the kept copy at once
    assert BANNER not in client.get("/admin/invoices").text


def test_the_banner_names_a_failing_job_and_its_error(client, world, time_machine, monkeypatch):
    time_machine.move_to(utc(2026, 4, 12, 13), tick=False)
    jobs.run_job("recurring", now=utc(2026, 4, 12, 13))

    def broken(now: Any, dry_run: bool) -> str:
        raise RuntimeError("database unreachable")

    monkeypatch.setitem(jobs.JOBS, "recurring", jobs.Job("recurring", 900, broken))
    time_machine.move_to(utc(2026, 4, 12, 13, 45), tick=False)
    with pytest.raises(RuntimeError):
        jobs.run_job("recurring", now=utc(2026, 4, 12, 13, 45))
    login(client, world.alice)
    page = client.get("/admin/invoices").text
    assert BANNER in page and "database unreachable" in page and "Open the Scheduler page" in page
    assert "failing" in client.get("/admin/scheduler").text


def test_the_next_24_hours_are_what_the_jobs_then_do(client, world, time_machine):
    due_in_a_week = open_invoice(world.client_a, due=date(2026, 4, 20))  # "due in 7 days" tomorrow 09:00
    overdue = open_invoice(world.client_a, due=date(2026, 4, 1))  # overdue_7 due now (nobody ran the job)
    open_invoice(world.client_a, due=date(2026, 5, 30))  # nothing in the next 24 hours
    profile = recurring.create_profile(world.org_a.id, recurring.ProfileData(
        client_id=world.client_a.id, title="Hosting", currency="USD", lines=(LineData("Hosting", Decimal(1), 4900),),
        interval_unit="month", interval_count=1, start_date=date(2026, 4, 13)), actor=SYSTEM, now=NOW)
    now = utc(2026, 4, 12, 14)
    time_machine.move_to(now, tick=False)
    login(client, world.alice)
    page = client.get("/admin/scheduler").text
    start = page.index('id="preview-reminders"')
    reminders_table = page[start:page.index("</table>", start)]
    assert "Reminders to go (2)" in page and "Invoices to make (1)" in page and "Cards to charge (0)" in page
    assert "2026-0002" in reminders_table and "due now" in reminders_table and "overdue by 11 days" in reminders_table
    assert "2026-0001" in reminders_table and "13 Apr 2026, 09:00 EDT" in reminders_table
    assert "due in 7 days" in reminders_table and "2026-0003" not in reminders_table
    invoices_table = page[page.index('id="preview-invoices"'):]
    assert "Hosting" in invoices_table and "Apr 13, 2026" in invoices_table and "$49.00" in invoices_table
    # 24 hours on, the jobs do exactly what the page said.
    later = now + timedelta(hours=24)
    jobs.run_job("remind", now=later)
    jobs.run_job("recurring", now=later)
    assert sorted(e.invoice_id for e in emails("reminder")) == sorted([due_in_a_week.id, overdue.id])
    assert [period for period, _ in recurring.invoices_made(profile)] == [date(2026, 4, 13)]


def test_the_preview_is_scoped_to_the_organization(client, world, time_machine):
    open_invoice(world.client_a, due=date(2026, 4, 1))
    time_machine.move_to(utc(2026, 4, 12, 14), tick=False)
    assert [p.organization_id for p in reminders.plan(now=utc(2026, 4, 12, 14))] == [world.org_a.id]
    login(client, make_user(world.org_b, "admin@b.test", "admin"))
    page = client.get("/admin/scheduler").text
    assert "Reminders to go (0)" in page and "2026-0001" not in page
