"""services/billing/recurring.py: the calendar (month ends), one invoice per period dated for its period, sent
or left as a draft, catch-up after downtime, end by date or count, pause/resume, edits for future periods."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from invoicing.extensions import db
from invoicing.models import Client, Invoice, RecurringPeriod, RecurringProfile
from invoicing.services.billing import recurring
from invoicing.services.billing.recurring import ProfileData, generate_due, period_start, plan
from invoicing.services.clients import archive_client
from invoicing.services.db import atomic
from invoicing.services.invoices import LineData
from tests.conftest import SYSTEM, make_client
from tests.services.billing.helpers import emails, events, fresh, site, utc

CREATED = utc(2026, 3, 10, 15)  # New York: 11:00 EDT on March 10


def data(client: Client, **overrides) -> ProfileData:  # noqa: ANN001
    values = dict(client_id=client.id, title="Hosting, monthly", currency=client.currency,
                  lines=(LineData("Hosting", Decimal(1), 4900), LineData("Support hours", Decimal("2.5"), 12000,
                                                                          Decimal(10))),
                  interval_unit="month", interval_count=1, start_date=date(2026, 3, 31), payment_terms_days=14)
    values.update(overrides)
    return ProfileData(**values)  # type: ignore[arg-type]


def create(client: Client, **overrides) -> RecurringProfile:  # noqa: ANN001
    return recurring.create_profile(client.organization_id, data(client, **overrides), actor=SYSTEM, now=CREATED)


def run(at: datetime) -> recurring.RecurringReport:
    return generate_due(now=at, site=site())


def made(profile: RecurringProfile) -> list[Invoice]:
    db.session.expire_all()
    return list(db.session.execute(
        select(Invoice).join(RecurringPeriod, RecurringPeriod.invoice_id == Invoice.id)
        .where(RecurringPeriod.profile_id == profile.id).order_by(RecurringPeriod.period_start)).scalars())


@pytest.mark.parametrize("start, unit, count, expected", [
    # Started on the 31st: the last day of shorter months, then the 31st again (leap year 2028 has Feb 29).
    (date(2026, 1, 31), "month", 1, ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31",
                                     "2026-06-30"]),
    (date(2028, 1, 31), "month", 1, ["2028-01-31", "2028-02-29", "2028-03-31"]),
    (date(2026, 1, 30), "month", 1, ["2026-01-30", "2026-02-28", "2026-03-30"]),
    (date(2026, 1, 29), "month", 1, ["2026-01-29", "2026-02-28", "2026-03-29"]),
    (date(2026, 1, 28), "month", 1, ["2026-01-28", "2026-02-28", "2026-03-28"]),
    (date(2026, 3, 31), "month", 2, ["2026-03-31", "2026-05-31", "2026-07-31", "2026-09-30", "2026-11-30",
                                     "2027-01-31"]),
    (date(2026, 11, 30), "quarter", 1, ["2026-11-30", "2027-02-28", "2027-05-30", "2027-08-30"]),
    (date(2026, 12, 31), "quarter", 1, ["2026-12-31", "2027-03-31", "2027-06-30", "2027-09-30", "2027-12-31"]),
    (date(2028, 2, 29), "year", 1, ["2028-02-29", "2029-02-28", "2030-02-28", "2031-02-28", "2032-02-29"]),
    (date(2026, 12, 15), "month", 1, ["2026-12-15", "2027-01-15", "2027-02-15"]),
    (date(2026, 12, 30), "week", 1, ["2026-12-30", "2027-01-06", "2027-01-13"]),
    (date(2026, 2, 26), "week", 2, ["2026-02-26", "2026-03-12", "2026-03-26"]),
])
def test_it_follows_the_month_end_rule(start, unit, count, expected):
    got = [period_start(start, start.day, unit, count, k).isoformat() for k in range(len(expected))]
    assert got == expected


def test_it_makes_one_invoice_per_period_dated_for_it_and_sends_it(world):
    profile = create(world.client_a)
    assert (profile.status, profile.next_period_start, profile.anchor_day) == ("active", date(2026, 3, 31), 31)
    assert run(utc(2026, 3, 31, 12, 59)).made == 0  # 08:59 in New York: the send hour has not come
    report = run(utc(2026, 3, 31, 13))
    assert (report.made, report.sent) == (1, 1)
    [invoice] = made(profile)
    assert (invoice.status, invoice.number, invoice.issue_date, invoice.due_date) == (
        "open", "2026-0001", date(2026, 3, 31), date(2026, 4, 14))
    assert invoice.total == 4900 + 33000  # 2.5 x 120.00 + 10 % tax
    [email] = emails("invoice")
    assert email.invoice_id == invoice.id and email.to_addr == "clienta@clients.test"
    assert email.subject == "Invoice 2026-0001 from Org A — $379.00 due Apr 14, 2026"
    assert [e.action for e in events("invoice.generated", invoice.id)] == ["invoice.generated"]
    assert events("invoice.sent", invoice.id)[0].actor_label == "recurring"
    assert run(utc(2026, 4, 15)).made == 0  # nothing more until April 30
    assert run(utc(2026, 4, 30, 13)).made == 1
    assert [i.issue_date for i in made(profile)] == [date(2026, 3, 31), date(2026, 4, 30)]
    profile = fresh(RecurringProfile, profile.id)
    assert (profile.invoices_made, profile.next_index, profile.next_period_start) == (2, 2, date(2026, 5, 31))
    assert [e.details["period_start"] for e in events("recurring.invoiced", profile.id)] == ["2026-03-31",
                                                                                             "2026-04-30"]


def test_it_leaves_drafts_for_staff_when_asked(world):
    profile = create(world.client_a, auto_send=False)
    run(utc(2026, 3, 31, 13))
    [invoice] = made(profile)
    assert (invoice.status, invoice.number) == ("draft", None) and emails() == []  # numbered when staff send it


def test_it_invoices_each_missed_period_once_after_a_week_of_downtime(world):
    weekly = create(world.client_a, title="Cleaning", interval_unit="week", start_date=date(2026, 3, 11))
    monthly = create(world.client_b, title="Retainer", start_date=date(2026, 3, 12), currency="JPY",
                     lines=(LineData("Retainer", Decimal(1), 50000),))
    assert run(utc(2026, 3, 11, 13)).made == 1  # then the scheduler is down for two weeks
    report = run(utc(2026, 3, 26, 13))
    assert report.made == 3  # the weeks of March 18 and 25, and the retainer of March 12
    assert [i.issue_date for i in made(weekly)] == [date(2026, 3, 11), date(2026, 3, 18), date(2026, 3, 25)]
    assert [i.issue_date for i in made(monthly)] == [date(2026, 3, 12)]
    assert run(utc(2026, 3, 26, 14)).made == 0  # done once
    assert [i.number for i in made(weekly)] == ["2026-0001", "2026-0002", "2026-0003"]  # at finalization, no gap
    assert [i.number for i in made(monthly)] == ["2026-0001"]  # Org B counts its own


def test_a_long_downtime_catches_up_every_period_dated_for_its_period(world):
    weekly = create(world.client_a, title="Cleaning", interval_unit="week", start_date=date(2026, 3, 11))
    assert [p.period_start for p in plan(now=utc(2026, 4, 9))] == [date(2026, 3, 11) + timedelta(weeks=n)
                                                                   for n in range(5)]
    assert run(utc(2026, 4, 9)).made == 5
    invoices = made(weekly)
    assert [i.issue_date for i in invoices] == [date(2026, 3, 11) + timedelta(weeks=n) for n in range(5)]
    assert [i.due_date - i.issue_date for i in invoices] == [timedelta(days=14)] * 5
    assert [i.number for i in invoices] == [f"2026-{n:04d}" for n in range(1, 6)]
    assert len(emails("invoice")) == 5 and run(utc(2026, 4, 9)).made == 0


def test_it_ends_after_its_count_or_its_end_date(world):
    counted = create(world.client_a, title="Three payments", max_invoices=3, start_date=date(2026, 3, 11))
    dated = create(world.client_a, title="Until June", start_date=date(2026, 3, 15), end_date=date(2026, 6, 14))
    run(utc(2026, 12, 31))
    assert [i.issue_date.isoformat() for i in made(counted)] == ["2026-03-11", "2026-04-11", "2026-05-11"]
    assert [i.issue_date.isoformat() for i in made(dated)] == ["2026-03-15", "2026-04-15", "2026-05-15"]
    for profile in (counted, dated):
        ended = fresh(RecurringProfile, profile.id)
        assert (ended.status, ended.next_period_start) == ("ended", None)
    assert events("recurring.ended", counted.id)[0].details == {"reason": "all 3 invoices made"}
    assert events("recurring.ended", dated.id)[0].details == {"reason": "end date 2026-06-14 reached"}


def test_pausing_skips_the_periods_that_start_while_paused(world):
    profile = create(world.client_a, title="Weekly", interval_unit="week", start_date=date(2026, 3, 11))
    run(utc(2026, 3, 11, 13))
    recurring.pause_profile(profile.id, world.org_a.id, actor=SYSTEM, now=utc(2026, 3, 12))
    assert run(utc(2026, 3, 30)).made == 0
    resumed = recurring.resume_profile(profile.id, world.org_a.id, actor=SYSTEM, now=utc(2026, 3, 30))
    assert resumed.next_period_start == date(2026, 4, 1)
    assert events("recurring.resumed", profile.id)[0].details["skipped"] == ["2026-03-18", "2026-03-25"]
    run(utc(2026, 4, 1, 13))
    assert [i.issue_date for i in made(profile)] == [date(2026, 3, 11), date(2026, 4, 1)]
    with pytest.raises(recurring.DomainError, match="only a paused profile can be resumed"):
        recurring.resume_profile(profile.id, world.org_a.id, actor=SYSTEM, now=utc(2026, 4, 2))
    recurring.end_profile(profile.id, world.org_a.id, actor=SYSTEM, now=utc(2026, 4, 2))
    assert run(utc(2026, 5, 1)).made == 0 and fresh(RecurringProfile, profile.id).status == "ended"


def test_edits_change_future_periods_only(world):
    profile = create(world.client_a, title="Hosting", start_date=date(2026, 3, 31))
    run(utc(2026, 3, 31, 13))
    changed = data(world.client_a, title="Hosting, bigger", lines=(LineData("Hosting XL", Decimal(1), 9900),),
                   interval_unit="week", interval_count=2, payment_terms_days=7)
    recurring.update_profile(profile.id, world.org_a.id, changed, actor=SYSTEM, now=utc(2026, 4, 2))
    profile = fresh(RecurringProfile, profile.id)
    assert profile.next_period_start == date(2026, 4, 30)  # the new interval counts from the next period
    run(utc(2026, 5, 20))
    first, second, third = made(profile)
    assert (first.total, first.lines[0].description) == (37900, "Hosting")  # what it said, unchanged
    assert [(i.issue_date, i.total, i.due_date - i.issue_date) for i in (second, third)] == [
        (date(2026, 4, 30), 9900, timedelta(days=7)), (date(2026, 5, 14), 9900, timedelta(days=7))]
    assert events("recurring.updated", profile.id)[0].details["before"]["title"] == "Hosting"


def test_it_refuses_a_bad_profile_and_writes_nothing(world):
    with pytest.raises(recurring.ProfileInvalid) as refused:
        create(world.client_a, title=" ", lines=(), interval_count=0, start_date=date(2026, 3, 9),
               end_date=date(2026, 3, 1), max_invoices=0, payment_terms_days=400)
    assert set(refused.value.errors) == {"title", "interval_count", "start_date", "end_date", "max_invoices",
                                         "payment_terms_days", "lines"}
    assert refused.value.errors["start_date"] == "The first period cannot start before today (2026-03-10)."
    with pytest.raises(recurring.ProfileInvalid) as refused:
        create(world.client_a, lines=(LineData("Free", Decimal(1), 0),))
    assert refused.value.errors == {"lines": "Each invoice must come to more than zero."}
    with pytest.raises(recurring.ProfileInvalid) as refused:
        recurring.create_profile(world.org_a.id, data(world.client_b), actor=SYSTEM, now=CREATED)  # Org B's client
    assert "client_id" in refused.value.errors
    profile = create(world.client_a)
    run(utc(2026, 3, 31, 13))
    with pytest.raises(recurring.ProfileInvalid) as refused:  # once invoices exist, the client and start stay
        recurring.update_profile(profile.id, world.org_a.id, data(make_client(world.org_a, "Other"),
                                                                  start_date=date(2026, 5, 1)),
                                 actor=SYSTEM, now=utc(2026, 4, 1))
    assert set(refused.value.errors) == {"client_id", "start_date"}
    assert db.session.scalar(select(func.count()).select_from(RecurringProfile)) == 1
    with pytest.raises(recurring.NotFound):
        recurring.pause_profile(profile.id, world.org_b.id, actor=SYSTEM, now=utc(2026, 4, 1))


def test_it_leaves_a_draft_when_the_client_has_no_email_and_pauses_for_an_archived_client(world):
    quiet = make_client(world.org_a, "Quiet", contacts=0)
    with atomic():
        db.session.execute(update(Client).where(Client.id == quiet.id).values(email=""))
    profile = create(quiet, start_date=date(2026, 3, 11))
    run(utc(2026, 3, 11, 13))
    [invoice] = made(profile)
    assert invoice.status == "draft" and emails() == []
    assert events("invoice.not_sent", invoice.id)[0].details["reason"].startswith("the client has no billing email")
    archive_client(quiet.id, world.org_a.id, actor=SYSTEM, now=utc(2026, 3, 20))
    assert run(utc(2026, 4, 11, 13)).made == 0
    assert fresh(RecurringProfile, profile.id).status == "paused"
    assert events("recurring.paused", profile.id)[0].details == {"reason": "the client is archived"}


def test_two_threads_make_each_period_once(app, world):
    profiles = [create(world.client_a, title=f"Weekly {n}", interval_unit="week", start_date=date(2026, 3, 11))
                for n in range(6)]
    start = threading.Barrier(2)
    reports: list[recurring.RecurringReport] = []

    def worker() -> None:
        with app.app_context():
            start.wait()
            for day in (18, 25, 31):
                reports.append(generate_due(now=utc(2026, 3, day, 14), site=site()))
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(r.made for r in reports) == 6 * 3 and all(not r.errors for r in reports)
    for profile in profiles:
        assert [i.issue_date for i in made(profile)] == [date(2026, 3, 11) + timedelta(weeks=n) for n in range(3)]
    numbers = db.session.execute(select(Invoice.number_seq)).scalars().all()
    assert sorted(numbers) == list(range(1, 19))
    assert len(emails("invoice")) == 18


def test_the_command_lists_then_makes_the_due_invoices(world, runner, time_machine):
    assert "recurring" in runner.invoke(args=["billing", "--help"]).output
    create(world.client_a, title="Cleaning", interval_unit="week", start_date=date(2026, 3, 11))
    time_machine.move_to(utc(2026, 3, 19, 14), tick=False)
    dry = runner.invoke(args=["billing", "recurring", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "recurring would make 2 invoice(s)" in dry.output
    assert "Cleaning (Client A): period from 2026-03-11, sent" in dry.output
    assert "Cleaning (Client A): period from 2026-03-18, sent" in dry.output
    assert db.session.scalar(select(func.count()).select_from(Invoice)) == 0
    done = runner.invoke(args=["billing", "recurring"])
    assert done.exit_code == 0 and "recurring: 2 invoice(s) made, 2 of them sent" in done.output
    assert db.session.scalar(select(func.count()).select_from(RecurringPeriod)) == 2
