"""Demo data, made through the same services as real data (so open invoices are finalized and numbered)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from invoicing.extensions import db
from invoicing.jobs import load_jobs, run_job
from invoicing.models import Client, Contact, Invoice, Organization, PaymentMethod, RecurringPeriod, SubscriptionPeriod
from invoicing.services.audit import Actor
from invoicing.services.billing import recurring, reminders
from invoicing.services.db import atomic
from invoicing.services.invoices import DraftData, LineData, create_draft, finalize_invoice, void_invoice
from invoicing.services.payments import apply_payment, apply_refund, record_manual_payment
from invoicing.services.portal.autopay import CONSENT_VERSION, enable_autopay
from invoicing.services.site import Site
from invoicing.services.subscriptions import lifecycle, plans
from invoicing.services.users import create_organization, create_user

DEMO_ORG = "Northwind Studio"
DEMO_EMAIL = "admin@example.com"
DEMO_PASSWORD = "demo-password"  # a demo only: never run `flask demo` against a real database
DEMO_PORTAL_EMAIL = "wile@acme.test"  # the one contact with portal access (Acme Corporation)
DEMO_PORTAL_PASSWORD = "portal-demo-password"


def _client(org: Organization, name: str, email: str, currency: str, contacts: list[tuple[str, str]],
            portal_hash: str) -> Client:
    """A client and its contacts; the demo portal contact may sign in (with a link or the demo password)."""
    with atomic():
        client = Client(organization_id=org.id, name=name, email=email, currency=currency,
                        address="1 Demo Street\nSpringfield")
        client.contacts = [Contact(organization_id=org.id, name=n, email=e, portal_access=e == DEMO_PORTAL_EMAIL,
                                   password_hash=portal_hash if e == DEMO_PORTAL_EMAIL else None)
                           for n, e in contacts]
        db.session.add(client)
    return client


def load_demo(*, now: datetime, hash_method: str = "scrypt") -> Organization | None:
    """Create the demo organization once; return None if it already exists."""
    if db.session.execute(select(Organization).where(Organization.name == DEMO_ORG)).scalar_one_or_none():
        return None
    system = Actor.system("demo")
    org = create_organization(
        DEMO_ORG, now=now, actor=system, address="42 Harbour Road\nPortland, OR 97201",
        sender_email="billing@northwind.test",
        brand_color="#0f766e", accent_color="#f59e0b", default_currency="USD", timezone="America/Los_Angeles",
        payment_terms_days=30, allow_partial_payments=True, min_partial_amount=1000,
        payment_instructions="Pay by card with the link, or by bank transfer to IBAN US00 DEMO 0000 0000.",
        logo=_logo(), logo_mime="image/png",
    )
    admin = create_user(DEMO_EMAIL, DEMO_PASSWORD, role="admin", organization=org, now=now, actor=system,
                        name="Dana Admin", hash_method=hash_method)
    actor = Actor.user(admin)
    portal_hash = generate_password_hash(DEMO_PORTAL_PASSWORD, method=hash_method)
    acme = _client(org, "Acme Corporation", "ap@acme.test", "USD", [("Wile Coyote", DEMO_PORTAL_EMAIL),
                                                                     ("Road Runner", "beep@acme.test")], portal_hash)
    globex = _client(org, "Globex GmbH", "rechnung@globex.test", "EUR", [("Hank Scorpio", "hank@globex.test")],
                     portal_hash)
    kaiju = _client(org, "Kaiju Foods KK", "keiri@kaiju.test", "JPY", [("Aiko Tanaka", "aiko@kaiju.test")],
                    portal_hash)

    def invoice(client: Client, days_ago: int, terms: int, lines: list[tuple[str, str, int, str]], **extra: object):
        issued = (now - timedelta(days=days_ago)).date()
        data = DraftData(
            client_id=client.id, currency=client.currency, issue_date=issued, due_date=issued + timedelta(days=terms),
            lines=tuple(LineData(d, Decimal(q), p, Decimal(t)) for d, q, p, t in lines), **extra,  # type: ignore[arg-type]
        )
        return create_draft(org, data, actor=actor, now=_at(issued))

    design = [("Brand workshop", "1", 240000, "0"), ("Logo design", "12.5", 9500, "8.5")]
    hosting = [("Hosting, monthly", "3", 4900, "0"), ("Support hours", "2.25", 12000, "0")]
    # (client, issued days ago, terms, lines, extra fields, what happens next); made oldest first so numbers
    # follow the calendar. Payments: (days ago, amount or None for the full total, method, reference).
    plan: list[tuple[Client, int, int, list[tuple[str, str, int, str]], dict[str, Any], tuple[Any, ...] | None]] = [
        (acme, 90, 30, hosting, {}, ("paid", 80, None, "bank_transfer", "TRF-0871")),
        (globex, 75, 30, design, {}, ("paid", 65, None, "bank_transfer", "TRF-0902")),
        (acme, 60, 30, design, {"project_ref": "ACME-BRAND"}, None),
        (kaiju, 50, 30, [("Catalogue print run", "500", 320, "10")], {}, ("paid", 30, 100000, "cash", "")),
        (globex, 45, 14, hosting, {}, None),
        (kaiju, 40, 30, [("Consulting", "4", 30000, "10")], {}, ("paid", 30, None, "bank_transfer", "TRF-1044")),
        (globex, 30, 30, [("Cancelled retainer", "1", 50000, "19")], {}, ("void", 25)),
        (acme, 20, 30, [("Website build", "1", 600000, "0")], {}, ("paid", 12, 200000, "bank_transfer", "TRF-1182")),
        (acme, 10, 30, hosting, {"project_ref": "ACME-WEB"}, None),
        (globex, 5, 30, [("Beratung", "8", 15000, "19")], {"discount_kind": "percent", "discount_value": 1000}, None),
        (kaiju, 3, 30, [("Package design", "2", 95000, "10")], {}, None),
    ]
    _history(org, actor, [acme, globex], now)
    site = Site.from_config(current_app.config)
    hosting_plan = recurring.create_profile(org.id, recurring.ProfileData(
        client_id=acme.id, title="Hosting and support, monthly", currency="USD",
        lines=(LineData("Hosting, monthly", Decimal(1), 4900), LineData("Support hours", Decimal(2), 12000)),
        interval_unit="month", interval_count=1, start_date=_day(now, 70), payment_terms_days=14,
        notes="Thank you for your business."), actor=actor, now=_at(_day(now, 70)))
    recurring.create_profile(org.id, recurring.ProfileData(
        client_id=globex.id, title="Quarterly brand review", currency="EUR",
        lines=(LineData("Brand review workshop", Decimal(1), 180000, Decimal(19)),), interval_unit="quarter",
        interval_count=1, start_date=_day(now, -20), payment_terms_days=30, auto_send=False), actor=actor, now=now)
    _autopay(kaiju, now=_at(_day(now, 45)))  # its invoices issued from then on are charged on their due date
    for client, ago, terms, lines, extra, then in plan:
        # The recurring profile's periods are invoiced when their day comes, so numbers follow the calendar.
        recurring.generate_due(now=_at(_day(now, ago)), site=site)
        inv = finalize_invoice(invoice(client, ago, terms, lines, **extra).id, actor=actor, now=_at(_day(now, ago)))
        if then and then[0] == "paid":
            _, paid_ago, amount, method, ref = then
            record_manual_payment(inv.id, amount=amount or inv.total, method=method, paid_on=_day(now, paid_ago),
                                  reference=ref, actor=actor, now=_at(_day(now, paid_ago)))
        elif then and then[0] == "void":
            void_invoice(inv.id, reason="Client cancelled the retainer.", actor=actor, now=_at(_day(now, then[1])))
    recurring.generate_due(now=now, site=site)
    _subscriptions(org, actor, acme, globex, kaiju, now=now, site=site)
    # Drafts, not numbered yet
    invoice(acme, 1, 30, design, notes="Draft: waiting for sign-off.")
    invoice(kaiju, 0, 14, [("Menu photography", "1", 180000, "10")])
    reminders.set_invoice_paused(_demo_paused(org.id, hosting_plan.id), org.id, True, actor=actor, now=now)
    # The scheduler's first runs, so its page has something to show (the served demo keeps them going).
    load_jobs()
    for job in ("recurring", "remind", "subscriptions", "process-recurring-charges"):
        run_job(job, now=now, force=True)
    return org


def _autopay(client: Client, *, now: datetime) -> None:
    """A sandbox card that always succeeds, saved as the client's default, and autopay on with its contact's
    consent (charged on each invoice's due date)."""
    with atomic():
        db.session.add(PaymentMethod(organization_id=client.organization_id, client_id=client.id, provider="sandbox",
                                     provider_id="pm_sandbox_visa", customer_id="cus_sbx_demo", brand="visa",
                                     last4="4242", exp_month=12, exp_year=now.year + 4, created_at=now))
        client.autopay_payment_method = "pm_sandbox_visa"
    enable_autopay(client.id, client.contacts[0].id, mode="due_date", text_version=CONSENT_VERSION,
                   ip="198.51.100.20", provider="sandbox", now=now)


def _history(org: Organization, actor: Actor, clients: list[Client], now: datetime) -> None:
    """A year of monthly retainers in USD and EUR (a few paid late, by hand, by card through the pay link or the
    portal, one refunded, the latest still open) so that the reports page shows a year of figures."""
    methods = ["bank_transfer", "card", "cheque", "card", "cash", "card"]
    for month in range(12, 3, -1):  # the last three months are the plan's invoices (made after these)
        for n, client in enumerate(clients):
            issued = _day(now, 30 * month + 7 * n)
            amount = (180000 if client.currency == "USD" else 95000) + 12500 * ((month * 7 + n * 3) % 5)
            data = DraftData(client_id=client.id, currency=client.currency, issue_date=issued,
                             due_date=issued + timedelta(days=30),
                             lines=(LineData("Monthly retainer", Decimal(1), amount, Decimal(0)),))
            inv = finalize_invoice(create_draft(org, data, actor=actor, now=_at(issued)).id, actor=actor,
                                   now=_at(issued))
            late = (month + n) % 4 == 0
            paid = issued + timedelta(days=38 if late else 12 + 3 * n)
            if paid > now.date():
                continue
            method = methods[(month + n) % len(methods)]
            if method == "card":  # as the sandbox records a paid checkout, some by a signed-in portal contact
                contact = client.contacts[0].id if month % 3 == 0 else None
                payment = apply_payment(inv.id, amount=inv.total, currency=inv.currency, method="sandbox",
                                        status="succeeded", actor=Actor.system("demo"), now=_at(paid),
                                        payment_intent_id=f"pi_sbx_demo_{inv.id}", contact_id=contact).payment
            else:
                payment = record_manual_payment(inv.id, amount=inv.total, method=method, paid_on=paid,
                                                reference=f"DEMO-{inv.id}", actor=actor, now=_at(paid)).payment
            if month == 5 and n == 0:
                apply_refund(payment.id, amount=25000, actor=actor, now=_at(paid + timedelta(days=3)),
                             idempotency_key=f"demo-refund-{payment.id}", reason="Goodwill credit")


def _subscriptions(org: Organization, actor: Actor, acme: Client, globex: Client, kaiju: Client, *, now: datetime,
                   site: Site) -> None:
    """Two plans (seats; a care plan with a trial and a public sign-up page) and three subscriptions: Acme active
    on 5 seats (its first invoice paid, the renewal open), Kaiju trialing (on autopay: its card is charged when
    the trial ends), Globex past due (no card on file: its first invoice unpaid after its due date)."""
    seats = plans.create_plan(org.id, plans.PlanData(
        name="Design seats", description="Unlimited design requests, per team member.", slug="design-seats",
        per_seat=True, prices=(plans.PriceData("USD", 1500),)), actor=actor, now=_at(_day(now, 60)))
    care = plans.create_plan(org.id, plans.PlanData(
        name="Care plan", description="Site updates, backups and an hour of support a month.", slug="care-plan",
        public=True, trial_days=14, prices=(plans.PriceData("USD", 9900), plans.PriceData("EUR", 8900),
                                            plans.PriceData("JPY", 120000, "year"))), actor=actor,
        now=_at(_day(now, 60)))

    def subscribe(client: Client, price: int, days_ago: int, **options: Any) -> int:
        return lifecycle.create_subscription(org.id, client_id=client.id, price_id=price, actor=actor, site=site,
                                             now=_at(_day(now, days_ago)), **options).id

    active = subscribe(acme, seats.prices[0].id, 40, quantity=5, trial_days=0)
    [first] = db.session.execute(select(SubscriptionPeriod.invoice_id).where(
        SubscriptionPeriod.subscription_id == active)).scalars()
    record_manual_payment(first, amount=db.session.get_one(Invoice, first).total, method="bank_transfer",
                          paid_on=_day(now, 35), reference="TRF-SEATS", actor=actor, now=_at(_day(now, 35)))
    subscribe(kaiju, care.prices[2].id, 5)  # the plan's 14-day trial
    subscribe(globex, care.prices[1].id, 45, trial_days=0, charge_now=False)  # due after 30 days, unpaid
    lifecycle.renew_due(now=now, site=site, organization_id=org.id)  # Acme's second period; Globex past due


def _demo_paused(organization_id: int, profile_id: int) -> int:
    """The hosting plan's first invoice: the client said it pays at the end of the quarter."""
    return int(db.session.execute(
        select(RecurringPeriod.invoice_id).where(RecurringPeriod.profile_id == profile_id)
        .order_by(RecurringPeriod.period_start).limit(1)).scalar_one())


def _logo() -> bytes:
    """A small generated PNG so the demo shows branding without shipping an image file."""
    from PIL import Image, ImageDraw  # Pillow comes with WeasyPrint

    image = Image.new("RGB", (160, 160), "#0f766e")
    draw = ImageDraw.Draw(image)
    draw.polygon([(30, 130), (30, 30), (60, 30), (100, 95), (100, 30), (130, 30), (130, 130), (100, 130),
                  (60, 65), (60, 130)], fill="#ffffff")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _day(now: datetime, days_ago: int) -> date:
    return (now - timedelta(days=days_ago)).date()


def _at(day: date) -> datetime:
    return datetime.combine(day, time(17, 0), tzinfo=UTC)
