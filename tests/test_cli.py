from datetime import date

from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import (
    AuditEvent,
    Client,
    Contact,
    Invoice,
    InvoiceAutopay,
    JobRun,
    Organization,
    OutboxEmail,
    Payment,
    Plan,
    RecurringProfile,
    Subscription,
    SubscriptionPeriod,
    User,
)
from invoicing.services.demo import DEMO_EMAIL


def test_it_creates_an_admin_in_a_new_organization(runner):
    result = runner.invoke(args=["create-admin", "--email", "Boss@Shop.test", "--password", "long-enough-pw",
                                 "--org", "Shop"])
    assert result.exit_code == 0, result.output
    assert "Created admin boss@shop.test in Shop" in result.output
    user = db.session.execute(select(User)).scalar_one()
    assert (user.email, user.role, user.organization.name) == ("boss@shop.test", "admin", "Shop")


def test_it_creates_a_superadmin_without_an_organization(runner):
    result = runner.invoke(args=["create-admin", "--email", "root@ops.test", "--password", "long-enough-pw",
                                 "--superadmin"])
    assert result.exit_code == 0 and db.session.execute(select(User.role)).scalar_one() == "superadmin"


def test_it_explains_what_is_wrong_and_writes_nothing(runner):
    result = runner.invoke(args=["create-admin", "--email", "x@shop.test", "--password", "short", "--org", "Shop"])
    assert result.exit_code == 1 and "at least 10 characters" in result.output
    assert db.session.scalar(select(func.count()).select_from(User)) == 0
    result = runner.invoke(args=["create-admin", "--email", "x@shop.test", "--password", "long-enough-pw"])
    assert "Give --org NAME" in result.output


def test_it_loads_demo_data_in_every_state_once(runner, app):
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert DEMO_EMAIL in result.output and "password:" in result.output
    statuses = dict(db.session.execute(select(Invoice.status, func.count()).group_by(Invoice.status)).all())
    # a year of retainers for the reports (one refunded in part: open again), 3 open ones made by the recurring profile,
    # 4 of subscriptions (Acme's seats: the first paid, the renewal open; Globex's monthly care plan: the first
    # unpaid past its due date, the renewal open; Kaiju's is trialing, on autopay)
    assert statuses == {"draft": 2, "open": 14, "paid": 21, "void": 1}
    numbers = db.session.execute(select(Invoice.number).where(Invoice.number.is_not(None))
                                 .order_by(Invoice.issue_date, Invoice.id)).scalars().all()
    numbers, years = sorted(numbers), sorted({n[:4] for n in numbers})  # per year from 0001, without gaps
    assert numbers == [f"{y}-{n:04d}" for y in years for n in range(1, 1 + sum(x[:4] == y for x in numbers))]
    profiles = db.session.execute(select(RecurringProfile).order_by(RecurringProfile.id)).scalars().all()
    assert [(p.status, p.invoices_made, p.auto_send) for p in profiles] == [("active", 3, True), ("active", 0, False)]
    runs = {run.name: run for run in db.session.execute(select(JobRun)).scalars()}
    assert {"remind", "recurring"} <= set(runs) and all(runs[n].last_success_at for n in ("remind", "recurring"))
    assert db.session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "reminder")) > 0
    partial = db.session.scalar(select(func.count()).select_from(Invoice).where(
        Invoice.status == "open", Invoice.amount_paid > 0))
    assert partial == 3
    assert db.session.scalar(select(func.count()).select_from(Client)) == 3
    assert db.session.scalar(select(func.count()).select_from(Contact)) >= 3
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 24
    # Kaiju pays by autopay (sandbox card): its invoices paid by hand were cancelled, the open one is scheduled.
    autopays = db.session.execute(select(InvoiceAutopay.status, func.count()).group_by(InvoiceAutopay.status)).all()
    assert dict(autopays) == {"scheduled": 1, "cancelled": 2}
    subscriptions = db.session.execute(select(Subscription).order_by(Subscription.id)).scalars().all()
    assert [(s.plan.name, s.status, s.quantity) for s in subscriptions] == [
        ("Design seats", "active", 5), ("Care plan", "trialing", 1), ("Care plan", "past_due", 1)]
    assert [p.per_seat or p.trial_days > 0 for p in db.session.execute(select(Plan)).scalars()] == [True, True]
    past_due = db.session.execute(select(Invoice).join(SubscriptionPeriod, SubscriptionPeriod.invoice_id == Invoice.id)
                                  .where(SubscriptionPeriod.subscription_id == subscriptions[2].id)
                                  .order_by(SubscriptionPeriod.period_start)).scalars().first()
    assert past_due is not None and past_due.status == "open" and past_due.due_date < date.today()  # why past due
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) > 30
    org = db.session.execute(select(Organization)).scalar_one()
    assert org.logo_mime == "image/png" and org.logo.startswith(b"\x89PNG") and org.brand_color.startswith("#")
    db.session.rollback()
    again = runner.invoke(args=["demo"])
    assert "already present" in again.output
    assert db.session.scalar(select(func.count()).select_from(Invoice)) == 38


def test_it_reports_health(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "payments": "sandbox", "mail": "outbox"}
