"""A fixed data set for the reports tests, with its figures computed by hand (in the tests' docstrings).

Org A (America/New_York; today is 10 March 2026 there, NOW = 15:00 UTC) bills three clients in USD, JPY and
KWD; org B has a JPY invoice of its own that must never show. The period is 1 January - 28 February 2026.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from invoicing.extensions import db
from invoicing.models import ChargeAttempt, Client, Invoice
from invoicing.services.invoices import DraftData, LineData, create_draft, finalize_invoice, void_invoice
from invoicing.services.payments import apply_payment, apply_refund, record_manual_payment
from invoicing.services.reports.period import ReportFilters
from tests.conftest import SYSTEM, World, make_client

PERIOD = ReportFilters(preset="custom", date_from=date(2026, 1, 1), date_to=date(2026, 2, 28))


def at(y: int, m: int, d: int, h: int = 17, minute: int = 0) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=UTC)


def invoice(client: Client, issued: date, due: date, total: int, *, draft: bool = False) -> Invoice:
    org, when = client.organization, datetime.combine(issued, datetime.min.time(), UTC)
    inv = create_draft(org, DraftData(client_id=client.id, currency=client.currency, issue_date=issued, due_date=due,
                                      lines=(LineData("Work", Decimal(1), total, Decimal(0)),)), actor=SYSTEM, now=when)
    return inv if draft else finalize_invoice(inv.id, actor=SYSTEM, now=when)


def manual(inv: Invoice, amount: int, method: str, paid_on: date, recorded: datetime) -> int:
    return record_manual_payment(inv.id, amount=amount, method=method, paid_on=paid_on, reference=f"REF-{inv.id}",
                                 actor=SYSTEM, now=recorded).payment.id


def card(inv: Invoice, amount: int, when: datetime, *, intent: str, contact_id: int | None = None) -> int:
    return apply_payment(inv.id, amount=amount, currency=inv.currency, method="card", status="succeeded",
                         actor=SYSTEM, now=when, payment_intent_id=intent, contact_id=contact_id).payment.id


@dataclass
class Data:
    usd: dict[str, int]
    jpy: dict[str, int]
    kwd: dict[str, int]
    client_j: Client
    client_k: Client


def build(world: World) -> Data:
    a = world.client_a
    j = make_client(world.org_a, "Kaiju KK", currency="JPY")
    k = make_client(world.org_a, "Kuwait Co", currency="KWD")
    u: dict[str, int] = {}
    u["U0"] = invoice(a, date(2025, 10, 1), date(2025, 11, 1), 9000).id  # 129 days past due: over 90
    u1 = invoice(a, date(2025, 12, 31), date(2026, 1, 30), 10000)
    u["U1"] = u1.id
    card(u1, 10000, at(2026, 1, 1, 4, 30), intent="pi_u1")  # 23:30 on 31 Dec in New York: December's money
    u2 = invoice(a, date(2026, 1, 5), date(2026, 2, 4), 20000)
    u["U2"] = u2.id
    manual(u2, 5000, "bank_transfer", date(2026, 1, 10), at(2026, 1, 11))
    # 04:00 UTC on 1 March is 23:00 on 28 February in New York: February's money, paid 24 days late
    card(u2, 15000, at(2026, 3, 1, 4, 0), intent="pi_u2", contact_id=a.contacts[0].id)
    u3 = invoice(a, date(2026, 1, 20), date(2026, 2, 19), 30000)
    u["U3"] = u3.id
    void_invoice(u3.id, reason="Wrong client", actor=SYSTEM, now=at(2026, 1, 25))
    u4 = invoice(a, date(2026, 2, 10), date(2026, 3, 12), 40000)
    u["U4"] = u4.id
    p4 = manual(u4, 40000, "bank_transfer", date(2026, 2, 15), at(2026, 2, 15))
    apply_refund(p4, amount=10000, actor=SYSTEM, now=at(2026, 2, 20, 15), idempotency_key="refund-u4")
    u["U5"] = invoice(a, date(2026, 2, 28), date(2026, 3, 5), 50000).id  # overdue since 5 March
    u["U6"] = invoice(a, date(2026, 3, 1), date(2026, 3, 31), 60000).id  # after the period
    u["U7"] = invoice(a, date(2026, 1, 15), date(2026, 2, 15), 70000, draft=True).id
    u8 = invoice(a, date(2026, 1, 8), date(2026, 1, 20), 8000)
    u["U8"] = u8.id
    manual(u8, 8000, "cash", date(2026, 1, 18), at(2026, 1, 18))

    jp: dict[str, int] = {}
    j1 = invoice(j, date(2026, 2, 1), date(2026, 3, 3), 12345)
    jp["J1"] = j1.id
    db.session.add(ChargeAttempt(invoice_id=j1.id, attempt_number=1, idempotency_key="autopay:j1:1", amount=12345,
                                 currency="JPY", status="succeeded", payment_intent_id="pi_auto_j1"))
    db.session.commit()
    card(j1, 12345, at(2026, 2, 2, 12), intent="pi_auto_j1")  # autopay
    j2 = invoice(j, date(2026, 2, 15), date(2026, 3, 17), 5000)
    jp["J2"] = j2.id
    card(j2, 2000, at(2026, 2, 16, 10), intent="pi_j2")  # a pay link, part of it

    kw: dict[str, int] = {}
    k1 = invoice(k, date(2026, 1, 31), date(2026, 1, 31), 1234567)
    kw["K1"] = k1.id
    pk = manual(k1, 1234567, "cheque", date(2026, 2, 1), at(2026, 2, 1, 20))
    apply_refund(pk, amount=234, actor=SYSTEM, now=at(2026, 3, 2), idempotency_key="refund-k1")  # after the period

    theirs = invoice(world.client_b, date(2026, 2, 1), date(2026, 3, 3), 99999)  # org B: never in org A's figures
    card(theirs, 99999, at(2026, 2, 2), intent="pi_b")
    return Data(u, jp, kw, j, k)
