"""One checkout for several invoices (the portal's "pay several at once"): the client picks open invoices of
one currency, the provider is asked for one session for the sum, and when it completes every invoice is
credited its own amount through the money door (payments.apply_group_payment), in one transaction.

A CheckoutGroup row is written before the provider is called, under a `ref` derived from the request's
idempotency key (an HMAC of SECRET_KEY): a double click finds the same row and gets the same session back
from the provider; the session's metadata names the group (`checkout_group`), so the webhook, the return page
and reconciliation all find it, and another installation sharing the Stripe account never does. Provider
calls are never made while invoice rows are locked (the same rhythm as services/checkout.py).

Receipts: one per invoice paid (each share is a Payment with its own receipt number, deduplicated by the
outbox key `receipt:{payment_id}` like any card payment); the portal's return page lists them together.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Exists, and_, exists, func, or_, select

from invoicing.extensions import db
from invoicing.gateways.base import Checkout, CheckoutRequest, Gateway, GatewayError, MethodDetails
from invoicing.models import CheckoutGroup, CheckoutGroupItem, Invoice, Payment, Refund
from invoicing.money import format_money
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.billing import autopay
from invoicing.services.checkout import (
    KEY_BUCKET_SECONDS,
    PAY_PAGE_ACTOR,
    WEBHOOK_ACTOR,
    CheckoutStart,
    _customer,
    _expire_at_provider,
    after_payment,
    notify_payment_failed,
    pending_state,
)
from invoicing.services.db import atomic, lock_invoice
from invoicing.services.payments import apply_group_payment, record_method
from invoicing.services.site import Site

log = logging.getLogger(__name__)

GROUP_KEY = "checkout_group"  # the metadata key naming a group (single-invoice sessions carry invoice_id)
MAX_INVOICES = 25  # one checkout; its metadata lists the invoice ids (Stripe: 500 characters per value)


@dataclass(frozen=True)
class GroupRequest:
    """Who pays which invoices, and where the provider sends them back (`return_url` holds
    {CHECKOUT_SESSION_ID})."""

    client_id: int
    invoice_ids: Sequence[int]
    contact_id: int | None
    return_url: str
    cancel_url: str
    ui_mode: str = "hosted"
    payer_email: str | None = None
    actor: Actor = PAY_PAGE_ACTOR


def is_group(metadata: Mapping[str, str]) -> bool:
    return bool(metadata.get(GROUP_KEY))


def group_for(metadata: Mapping[str, str]) -> CheckoutGroup | None:
    """Our group named in a provider object's metadata, or None (not a group, or another installation's)."""
    ref = metadata.get(GROUP_KEY) or ""
    if not ref:
        return None
    return db.session.execute(select(CheckoutGroup).where(CheckoutGroup.ref == ref[:64])).scalar_one_or_none()


def group_for_refs(charge_id: str | None, payment_intent_id: str | None) -> CheckoutGroup | None:
    clauses = [c for c in (CheckoutGroup.charge_id == charge_id if charge_id else None,
                           CheckoutGroup.payment_intent_id == payment_intent_id if payment_intent_id else None)
               if c is not None]
    if not clauses:
        return None
    return db.session.execute(select(CheckoutGroup).where(or_(*clauses))).scalars().first()


# --- choosing what to pay ---------------------------------------------------------------------------------


def refusal(invoice: Invoice) -> str | None:
    """Why this invoice cannot be paid now, in the client's words; None when it can."""
    name = f"Invoice {invoice.number}"
    if invoice.status == "processing":
        return f"A payment for {name.lower()} is still being processed: we will email you when it clears."
    if invoice.status == "paid":
        return f"{name} is already paid."
    if invoice.status == "void":
        return f"{name} was cancelled (void): there is nothing to pay."
    if invoice.status != "open" or invoice.amount_due <= 0:
        return f"{name} has nothing left to pay."
    if autopay.charge_in_flight(invoice.id):
        return f"An automatic card payment of {name.lower()} is in progress: we will email you when it clears."
    return None


def lock_selection(client_id: int, invoice_ids: Iterable[int]) -> list[Invoice]:
    """The chosen invoices, locked in id order, once they can be paid together: the client's own (another
    client's, a draft or a missing one is NotFound, all alike), each open with something due, one currency."""
    ids = sorted(set(invoice_ids))
    if not ids:
        raise DomainError("Choose at least one invoice to pay.")
    if len(ids) > MAX_INVOICES:
        raise DomainError(f"Choose at most {MAX_INVOICES} invoices to pay at once.")
    visible = db.session.scalar(select(func.count()).select_from(Invoice).where(
        Invoice.id.in_(ids), Invoice.client_id == client_id, Invoice.status != "draft"))
    if visible != len(ids):
        raise NotFound("Invoice not found.")
    invoices = [lock_invoice(invoice_id) for invoice_id in ids]
    currencies = sorted({invoice.currency for invoice in invoices})
    if len(currencies) > 1:
        raise DomainError(f"Choose invoices in one currency: you chose {' and '.join(currencies)}. "
                          "Pay each currency separately.")
    for invoice in invoices:
        if (why := refusal(invoice)) is not None:
            raise DomainError(why)
    return invoices


# --- starting ---------------------------------------------------------------------------------------------


def _ref(site: Site, key: str) -> str:
    return hmac.new(site.secret_key.encode(), f"group:{key}".encode(), hashlib.sha256).hexdigest()[:32]


def start_group_checkout(request: GroupRequest, *, gateway: Gateway, site: Site, now: datetime) -> CheckoutStart:
    """Open one checkout for the amounts due of several invoices, or hand out the open one for the same
    selection (a double click, a second tab). A session found paid at the provider is recorded and the client
    sent to the return page; one found expired is closed here and a new one made."""
    for _ in range(3):
        group_id, reuse = _prepare(request, gateway=gateway, site=site, now=now)
        if reuse is not None:
            started = _reuse(group_id, reuse, request, gateway=gateway, site=site, now=now)
        else:
            started = _create(group_id, request, gateway=gateway, site=site, now=now)
        if started is not None:
            return started
    raise DomainError("The payment could not be started just now. Please try again in a minute.")


def _prepare(request: GroupRequest, *, gateway: Gateway, site: Site, now: datetime) -> tuple[int, str | None]:
    """Under the invoice locks: check the selection, find or write the group row. Returns its id and, when its
    session exists already, that session's id (to check at the provider before handing it out again)."""
    with atomic():
        invoices = lock_selection(request.client_id, request.invoice_ids)
        currency = invoices[0].currency
        total = sum(invoice.amount_due for invoice in invoices)
        try:
            gateway.check_amount(total, currency)
        except GatewayError as exc:
            raise DomainError(exc.message) from None
        bucket = int(now.timestamp()) // KEY_BUCKET_SECONDS
        # A group closed since (expired, or completed unpaid) changes the key: the provider would replay it.
        closed = db.session.scalar(select(func.count()).select_from(CheckoutGroup).where(
            CheckoutGroup.client_id == request.client_id, CheckoutGroup.status != "open"))
        items = ",".join(f"{invoice.id}:{invoice.amount_due}:{invoice.amount_paid}" for invoice in invoices)
        key = f"{request.client_id}:{request.contact_id}:{currency}:{items}:{request.ui_mode}:{bucket}:{closed}"
        ref = _ref(site, key)
        group = db.session.execute(select(CheckoutGroup).where(CheckoutGroup.ref == ref)).scalar_one_or_none()
        if group is None:
            group = CheckoutGroup(
                ref=ref, organization_id=invoices[0].organization_id, client_id=request.client_id,
                contact_id=request.contact_id, provider=gateway.name, ui_mode=request.ui_mode, amount=total,
                currency=currency, status="open", url="", created_at=now,
                items=[CheckoutGroupItem(invoice_id=invoice.id, amount=invoice.amount_due) for invoice in invoices])
            db.session.add(group)
            db.session.flush()
        return group.id, group.session_id if group.status == "open" else None


def _request(group: CheckoutGroup, request: GroupRequest, site: Site, gateway: Gateway) -> CheckoutRequest:
    invoices = [item.invoice for item in group.items]
    numbers = ", ".join(invoice.number or str(invoice.id) for invoice in invoices)
    product = f"{len(invoices)} invoices: {numbers}"
    customer_id, email = _customer(invoices[0], gateway, site, request.payer_email)
    metadata = {GROUP_KEY: group.ref, "client_id": str(group.client_id),
                "invoice_ids": ",".join(str(invoice.id) for invoice in invoices)}
    if group.contact_id:
        metadata["contact_id"] = str(group.contact_id)
    return CheckoutRequest(
        amount=group.amount, currency=group.currency, product_name=product[:250],
        description=f"{invoices[0].organization.name}, {product}"[:500], success_url=request.return_url,
        cancel_url=request.cancel_url, idempotency_key=f"checkout-group:{group.ref}", metadata=metadata,
        customer_id=customer_id, customer_email=email, ui_mode=group.ui_mode,
    )


def _create(group_id: int, request: GroupRequest, *, gateway: Gateway, site: Site,
            now: datetime) -> CheckoutStart | None:
    group = db.session.get(CheckoutGroup, group_id)
    assert group is not None
    try:
        checkout = gateway.create_checkout(_request(group, request, site, gateway))
    except GatewayError as exc:
        raise DomainError(exc.message) from None
    if checkout.status != "open":  # the key replayed this group's session, which has closed since
        return _closed(group_id, checkout, request, gateway=gateway, site=site, now=now)
    return _store(group_id, checkout, request, gateway=gateway, now=now)


def _store(group_id: int, checkout: Checkout, request: GroupRequest, *, gateway: Gateway,
           now: datetime) -> CheckoutStart:
    """Keep the session on the group, once the invoices are checked again under their locks (one may have been
    paid another way while we were at the provider: then the session is expired there and nobody pays it)."""
    with atomic():
        items = _items(group_id)
        invoices = [lock_invoice(item.invoice_id) for item in items]
        group = db.session.get(CheckoutGroup, group_id, populate_existing=True)
        assert group is not None
        payable = all(invoice.status == "open" and item.amount <= invoice.amount_due
                      for item, invoice in zip(items, invoices, strict=True))
        if payable and group.session_id is None:
            group.session_id, group.url, group.expires_at = checkout.id, checkout.url or "", checkout.expires_at
            for item, invoice in zip(items, invoices, strict=True):
                record("checkout.started", invoice, actor=request.actor, now=now, details={
                    "session_id": checkout.id, "amount": item.amount, "provider": gateway.name,
                    "ui_mode": group.ui_mode, "group_amount": group.amount, "group_id": group.id})
        elif not payable:
            group.status = "expired"
    if not payable:
        _expire_at_provider(checkout.id, gateway)
        raise DomainError("One of these invoices was just paid or changed: please reload the page.")
    return CheckoutStart(checkout.id, checkout.url or "", reused=False, client_secret=checkout.client_secret)


def _reuse(group_id: int, session_id: str, request: GroupRequest, *, gateway: Gateway, site: Site,
           now: datetime) -> CheckoutStart | None:
    try:
        checkout = gateway.retrieve_checkout(session_id)
    except GatewayError as exc:  # the provider is unreachable: a new session could not be made either
        log.warning("open group checkout %s not checked before reuse: %s", session_id, exc.message)
        group = db.session.get(CheckoutGroup, group_id)
        return CheckoutStart(session_id, group.url if group else "", reused=True)
    if checkout.status == "open":
        return CheckoutStart(session_id, checkout.url or "", reused=True, client_secret=checkout.client_secret)
    return _closed(group_id, checkout, request, gateway=gateway, site=site, now=now)


def _closed(group_id: int, checkout: Checkout, request: GroupRequest, *, gateway: Gateway, site: Site,
            now: datetime) -> CheckoutStart | None:
    """A group's session that is no longer open: paid (record it, send the client to the return page), or
    closed unpaid (mark it; None tells the caller to start again, with a new key)."""
    if checkout.status == "complete" and checkout.payment_status in ("paid", "unpaid"):
        apply_group_checkout(checkout, gateway=gateway, site=site, now=now, actor=PAY_PAGE_ACTOR, retrieved=True)
        back = request.return_url.replace("{CHECKOUT_SESSION_ID}", checkout.id)
        return CheckoutStart(checkout.id, back, reused=True, paid=True)
    with atomic():
        group = db.session.get(CheckoutGroup, group_id, populate_existing=True)
        if group is not None and group.status == "open":
            group.status = "expired"
    return None


def _items(group_id: int) -> list[CheckoutGroupItem]:
    return list(db.session.execute(select(CheckoutGroupItem).where(CheckoutGroupItem.group_id == group_id)
                                   .order_by(CheckoutGroupItem.invoice_id)).scalars())


# --- recording what the provider says --------------------------------------------------------------------


def mark_group(group_id: int, checkout: Checkout) -> None:
    """Bring the group forward to what the provider says of its session (open -> complete | expired)."""
    if checkout.status not in ("complete", "expired"):
        return
    with atomic():
        group = db.session.get(CheckoutGroup, group_id, populate_existing=True)
        if group is None:
            return
        if group.session_id is None:  # made at the provider, never stored here (a crash in between)
            group.session_id, group.expires_at = checkout.id, checkout.expires_at
        if group.status == "open" and group.session_id == checkout.id:
            group.status = checkout.status


def apply_group_checkout(checkout: Checkout, *, gateway: Gateway, site: Site, now: datetime,
                         actor: Actor = WEBHOOK_ACTOR, observed_at: datetime | None = None,
                         retrieved: bool = False) -> list[Payment]:
    """Record a retrieved or announced group session through the money door: one payment per invoice, all in
    one transaction; [] when no money moved (or the group is not ours). Then, per payment, the follow-ups of
    any card payment (how it was paid, its receipt, expiring sessions it made stale)."""
    group = group_for(checkout.metadata)
    if group is None:
        return []
    group_id = group.id
    if checkout.status != "complete" or checkout.payment_status not in ("paid", "unpaid"):
        mark_group(group_id, checkout)
        return []
    status = "succeeded" if checkout.payment_status == "paid" else "processing"
    failure: tuple[str | None, str | None] = (None, None)
    if retrieved:
        observed_at = now
        if status == "processing":
            status, failure, observed_at = pending_state(checkout, gateway, now=now)
    results = apply_group_payment(
        group_id, session_id=checkout.id, status=status, actor=actor, now=now, observed_at=observed_at,
        payment_intent_id=checkout.payment_intent_id, failure_code=failure[0], failure_message=failure[1],
        payer_email=checkout.payer_email)
    mark_group(group_id, checkout)
    follow_up(group_id, [r.payment.id for r in results], gateway=gateway, site=site, now=now)
    return [r.payment for r in results]


def follow_up(group_id: int, payment_ids: list[int], *, gateway: Gateway, site: Site, now: datetime) -> None:
    """What follows a group's payments: how it was paid (asked once for the shared intent), each invoice's
    receipt and expired sessions, and the failure emails of a settles-later payment that failed."""
    _describe(group_id, payment_ids, gateway)
    for payment_id in payment_ids:
        after_payment(payment_id, gateway=gateway, site=site, now=now)
        payment = db.session.get(Payment, payment_id)
        if payment is not None and payment.status == "failed":
            notify_payment_failed(payment_id, site=site, now=now)


def _describe(group_id: int, payment_ids: list[int], gateway: Gateway) -> None:
    group = db.session.get(CheckoutGroup, group_id, populate_existing=True)
    undescribed = [p for p in (db.session.get(Payment, i) for i in payment_ids) if p is not None and not p.method_type]
    if group is None or not group.payment_intent_id or not undescribed:
        return
    try:
        intent = gateway.retrieve_payment_intent(group.payment_intent_id)
    except GatewayError as exc:
        log.warning("payment method of %s not retrieved: %s", group.payment_intent_id, exc.message)
        return
    if intent.method is not None:
        for payment in undescribed:
            record_method(payment.id, intent.method)
    if intent.charge_id and intent.status == "succeeded" and not group.charge_id:
        with atomic():
            fresh = db.session.get(CheckoutGroup, group_id, populate_existing=True)
            if fresh is not None and not fresh.charge_id:
                fresh.charge_id = intent.charge_id


def apply_group_event(group: CheckoutGroup, *, status: str, actor: Actor, now: datetime,
                      observed_at: datetime | None, gateway: Gateway, site: Site,
                      payment_intent_id: str | None = None, charge_id: str | None = None,
                      failure_code: str | None = None, failure_message: str | None = None,
                      method: MethodDetails | None = None) -> list[Payment]:
    """A PaymentIntent event (or a refund proving the charge succeeded) about a group's shared payment. `method`:
    how it was paid, asked before the caller's transaction (the inbox): then the provider is not called here."""
    if group.session_id is None:
        raise DomainError("The group checkout of this payment is not recorded yet; retry after its session event.")
    before = {row.id: row.status for row in db.session.execute(
        select(Payment.id, Payment.status).where(Payment.group_id == group.id))}
    results = apply_group_payment(
        group.id, session_id=group.session_id, status=status, actor=actor, now=now, observed_at=observed_at,
        payment_intent_id=payment_intent_id, charge_id=charge_id, failure_code=failure_code,
        failure_message=failure_message)
    ids = [r.payment.id for r in results]
    if status == "succeeded":
        if method is not None:
            for payment_id in ids:
                record_method(payment_id, method)
        else:
            _describe(group.id, ids, gateway)
        for payment_id in ids:
            after_payment(payment_id, gateway=gateway, site=site, now=now)
    if status == "failed":  # only a settles-later payment that was processing tells the client it failed
        for payment_id in ids:
            if before.get(payment_id) == "processing":
                notify_payment_failed(payment_id, site=site, now=now)
    return [r.payment for r in results]


# --- refunds of a shared payment --------------------------------------------------------------------------


def refund_target(group: CheckoutGroup, *, provider_refund_id: str, amount: int, payment_ref: str = "") -> Payment:
    """Which invoice's share a provider refund of the group's shared charge gives back: the one it was made
    for (our refund service names the payment in the refund's metadata, and records it by its id), else (a
    refund made at the provider's dashboard) the first share, by invoice, with enough left to cover it."""
    known = db.session.execute(select(Refund.payment_id).where(Refund.provider_refund_id == provider_refund_id)
                               ).scalar()
    payments = {p.id: p for p in db.session.execute(select(Payment).where(Payment.group_id == group.id)
                                                    .order_by(Payment.invoice_id)).scalars()}
    if known in payments:
        return payments[known]
    if payment_ref.isdigit() and int(payment_ref) in payments:
        return payments[int(payment_ref)]
    for payment in payments.values():
        if payment.amount - payment.amount_refunded >= amount:
            return payment
    numbers = ", ".join(p.invoice.number or str(p.invoice_id) for p in payments.values())
    raise DomainError(f"A refund of {format_money(amount, group.currency)} on the payment shared by invoices "
                      f"{numbers} is more than any one invoice's share: record it on each invoice by hand.")


# --- closing groups that should no longer be paid ---------------------------------------------------------


def _stale_clause(invoice_ids: Iterable[int] | None = None) -> Exists:
    """An open group with an item that can no longer be paid in full: its invoice is no longer open, or
    owes less than the item (paid in part or in full another way)."""
    item_stale = and_(CheckoutGroupItem.group_id == CheckoutGroup.id,
                      (Invoice.status != "open") | (CheckoutGroupItem.amount > Invoice.total - Invoice.amount_paid))
    query = exists().where(item_stale, Invoice.id == CheckoutGroupItem.invoice_id)
    if invoice_ids is not None:
        query = query.where(CheckoutGroupItem.invoice_id.in_(list(invoice_ids)))
    return query


def stale_groups(*, provider: str, invoice_ids: Iterable[int] | None = None) -> list[int]:
    return list(db.session.execute(
        select(CheckoutGroup.id).where(CheckoutGroup.status == "open", CheckoutGroup.provider == provider,
                                       _stale_clause(invoice_ids)).order_by(CheckoutGroup.id)).scalars())


def expire_stale_groups(invoice_id: int, *, gateway: Gateway, site: Site, now: datetime) -> int:
    """Expire the open group checkouts that include this invoice and can no longer be paid in full (DESIGN
    rule 4). One that turns out complete already is recorded: money received is never refused."""
    return sum(expire_group(group_id, gateway=gateway, site=site, now=now)
               for group_id in stale_groups(provider=gateway.name, invoice_ids=[invoice_id]))


def expire_group(group_id: int, *, gateway: Gateway, site: Site, now: datetime) -> bool:
    group = db.session.get(CheckoutGroup, group_id)
    if group is None or group.status != "open":
        return False
    if group.session_id is None:  # never reached the provider
        mark_expired(group_id)
        return True
    checkout = _expire_at_provider(group.session_id, gateway)
    if checkout is None:
        return False
    if checkout.status == "complete":
        apply_group_checkout(checkout, gateway=gateway, site=site, now=now, retrieved=True)
        return False
    mark_group(group_id, checkout)
    return checkout.status == "expired"


def mark_expired(group_id: int) -> None:
    with atomic():
        group = db.session.get(CheckoutGroup, group_id, populate_existing=True)
        if group is not None and group.status == "open":
            group.status = "expired"
