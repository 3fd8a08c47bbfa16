"""Paying from the portal: "Pay now" on one invoice, or several invoices of one currency at once, through the
same checkouts and the same money door as the pay link (services/checkout.py, services/checkout_groups.py).
The signed-in contact is who paid (the provider's metadata carries their id; each payment records it).

Every function is scoped to the contact's client: another company's invoice or checkout is NotFound, exactly
like a missing one (DESIGN rule 9)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.gateways.base import Checkout, Gateway, GatewayError
from invoicing.models import CheckoutGroup, CheckoutSession, Invoice, Organization, Payment
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor
from invoicing.services.checkout import (
    RETURN_ACTOR,
    Channel,
    CheckoutStart,
    apply_checkout,
    invoice_for,
    start_checkout,
)
from invoicing.services.checkout_groups import (
    GroupRequest,
    apply_group_checkout,
    group_for,
    is_group,
    refusal,
    start_group_checkout,
)
from invoicing.services.site import Site

RETURN_PATH = "/portal/checkout/return?session_id={CHECKOUT_SESSION_ID}"
CANCEL_PATH = "/portal/pay"
MAX_LISTED = 200  # open invoices listed on the pay page (a client owing more pays the oldest first)


@dataclass(frozen=True)
class Payer:
    """The signed-in contact, as the services need it."""

    contact_id: int
    client_id: int
    email: str
    organization: Organization
    actor: Actor


def payable_invoices(client_id: int) -> list[Invoice]:
    """The client's invoices that can be paid now: open with something due, the oldest due first."""
    return list(db.session.execute(
        select(Invoice).where(Invoice.client_id == client_id, Invoice.status == "open",
                              Invoice.total > Invoice.amount_paid)
        .order_by(Invoice.due_date, Invoice.id).limit(MAX_LISTED)).scalars())


def start_payment(payer: Payer, invoice_ids: Sequence[int], *, ui_mode: str, gateway: Gateway, site: Site,
                  now: datetime) -> CheckoutStart:
    """One checkout for the amounts due of the chosen invoices: one invoice is a plain checkout (the pay link's,
    with the contact as payer); several are a group (one session for the sum, each credited its own share)."""
    ids = sorted(set(invoice_ids))
    return_url = site.url(RETURN_PATH, payer.organization)
    cancel_url = site.url(CANCEL_PATH, payer.organization)
    if len(ids) != 1:
        return start_group_checkout(GroupRequest(
            client_id=payer.client_id, invoice_ids=ids, contact_id=payer.contact_id, return_url=return_url,
            cancel_url=cancel_url, ui_mode=ui_mode, payer_email=payer.email, actor=payer.actor),
            gateway=gateway, site=site, now=now)
    invoice = _own_invoice(payer.client_id, ids[0])
    if (why := refusal(invoice)) is not None:
        raise DomainError(why)
    channel = Channel(contact_id=payer.contact_id, return_url=return_url, cancel_url=cancel_url, ui_mode=ui_mode,
                      payer_email=payer.email, actor=payer.actor)
    return start_checkout(invoice.id, amount=invoice.amount_due, gateway=gateway, site=site, now=now,
                          channel=channel)


def _own_invoice(client_id: int, invoice_id: int) -> Invoice:
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None or invoice.client_id != client_id or invoice.status == "draft":
        raise NotFound("Invoice not found.")
    return invoice


@dataclass(frozen=True)
class PortalReturn:
    checkout: Checkout
    invoices: list[Invoice]  # what the checkout was for
    payments: list[Payment]  # what it recorded, one per invoice (none if nothing was paid)

    @property
    def paid(self) -> bool:
        return bool(self.payments) and all(p.status in ("succeeded", "partially_refunded", "refunded")
                                           for p in self.payments)

    @property
    def processing(self) -> bool:
        return any(p.status == "processing" for p in self.payments)

    @property
    def failed(self) -> Payment | None:
        return next((p for p in self.payments if p.status == "failed"), None)


def confirm_return(client_id: int, session_id: str, *, gateway: Gateway, site: Site, now: datetime) -> PortalReturn:
    """The contact is back from the checkout: ask the provider about the session and record what it says
    through the door (DESIGN rule 6), so the page can say "paid" even when no webhook is configured. Racing
    the webhook (or a second tab) is safe: the door records each payment once.

    Raises GatewayError when the provider cannot be reached (the page says we are confirming)."""
    _check_local(client_id, session_id)
    try:
        checkout = gateway.retrieve_checkout(session_id)
    except GatewayError as exc:
        if exc.code == "resource_missing":
            raise NotFound("Checkout not found.") from None
        raise
    if is_group(checkout.metadata):
        group = group_for(checkout.metadata)
        if group is None or group.client_id != client_id:
            raise NotFound("Checkout not found.")
        group_id = group.id
        apply_group_checkout(checkout, gateway=gateway, site=site, now=now, actor=RETURN_ACTOR, retrieved=True)
        return _result(checkout, group_id=group_id)
    invoice = invoice_for(checkout.metadata)
    if invoice is None or invoice.client_id != client_id:
        raise NotFound("Checkout not found.")
    invoice_id = invoice.id
    apply_checkout(checkout, gateway=gateway, site=site, now=now, actor=RETURN_ACTOR, retrieved=True)
    return _result(checkout, invoice_id=invoice_id)


def _check_local(client_id: int, session_id: str) -> None:
    """A session we keep for another client is NotFound before the provider is asked anything."""
    single = db.session.execute(
        select(Invoice.client_id).join(CheckoutSession, CheckoutSession.invoice_id == Invoice.id)
        .where(CheckoutSession.session_id == session_id)).scalar()
    group = db.session.execute(select(CheckoutGroup.client_id).where(CheckoutGroup.session_id == session_id)).scalar()
    if any(owner is not None and owner != client_id for owner in (single, group)):
        raise NotFound("Checkout not found.")


def _result(checkout: Checkout, *, group_id: int | None = None, invoice_id: int | None = None) -> PortalReturn:
    db.session.expire_all()  # what the door just committed, not what this session loaded before
    if group_id is not None:
        group = db.session.get(CheckoutGroup, group_id)
        assert group is not None
        invoices = [item.invoice for item in group.items]
        payments = list(db.session.execute(select(Payment).where(Payment.group_id == group_id)
                                           .order_by(Payment.invoice_id)).scalars())
        return PortalReturn(checkout, invoices, payments)
    invoice = db.session.get(Invoice, invoice_id)
    assert invoice is not None
    payments = list(db.session.execute(select(Payment).where(
        Payment.invoice_id == invoice.id, Payment.checkout_session_id == checkout.id)).scalars())
    return PortalReturn(checkout, [invoice], payments)
