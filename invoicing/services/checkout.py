"""Paying an invoice through a hosted checkout: start or reuse a session, record what the provider says
through the money door (services/payments.apply_payment), and the follow-ups of a payment (receipt, failure
email, expiring the invoice's other open sessions).

The return page, the webhook handlers and reconciliation all record a session with `apply_checkout`, so a
payment is recorded once whichever of them comes first (DESIGN rules 2, 4 and 6). Provider calls are never
made while the invoice row is locked: the lock is taken before (checks, reuse) and after (recording).

Follow-ups are separate, idempotent transactions after the payment's own: the receipt is an outbox row with
the dedupe key `receipt:{payment_id}`. A crash between the two is repaired by the caller's retry (a webhook
stays unprocessed until its follow-ups are done, and is redelivered or re-applied) and by the reconcile job,
which queues any missing receipt.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update

from invoicing.extensions import db
from invoicing.gateways.base import Checkout, CheckoutRequest, Gateway, GatewayError
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import CheckoutSession, Client, Invoice, OutboxEmail, Payment
from invoicing.money import format_money
from invoicing.services import DomainError, NotFound, client_texts
from invoicing.services.attention import email_admins
from invoicing.services.audit import Actor, record
from invoicing.services.billing import autopay
from invoicing.services.db import atomic, before_commit, held, in_larger_transaction, lock_invoice, on_commit
from invoicing.services.payments import COUNTED, apply_payment, record_method
from invoicing.services.site import Site  # noqa: F401  (re-exported: checkout.Site)

log = logging.getLogger(__name__)

REUSE_MARGIN = timedelta(minutes=10)  # an open session closer than this to its expiry is not handed out again
KEY_BUCKET_SECONDS = 3600  # the idempotency key changes every hour, so an old expired session is not replayed
PROVIDER_METHODS = ("card", "sandbox")
WEBHOOK_ACTOR = Actor.system("payment provider")
RETURN_ACTOR = Actor.system("checkout return page")
PAY_PAGE_ACTOR = Actor.system("pay page")


# --- the pay page -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PayPage:
    invoice: Invoice
    can_pay: bool
    min_amount: int  # smallest amount the client may choose (== amount due when partial payments are off)
    receipt: Payment | None  # the latest succeeded payment, shown instead of the button when paid
    processing: Payment | None
    failed_attempt: Payment | None  # the last attempt that did not go through, if nothing succeeded since


def pay_page(invoice: Invoice) -> PayPage:
    payments = list(invoice.payments)
    counted = [p for p in payments if p.status in COUNTED]
    last_ok = max((p.id for p in counted), default=0)
    failed = [p for p in payments if p.status == "failed" and p.id > last_ok]
    due = invoice.amount_due
    partial = invoice.organization.allow_partial_payments
    return PayPage(
        invoice=invoice,
        can_pay=invoice.status == "open" and due > 0,
        min_amount=min(max(invoice.organization.min_partial_amount, 1), due) if partial else due,
        receipt=counted[-1] if counted else None,
        processing=next((p for p in payments if p.status == "processing"), None),
        failed_attempt=failed[-1] if failed else None,
    )


def record_view(invoice_id: int, *, now: datetime, count: int = 1) -> None:
    """A client opened the pay page (`count` times, the first at `now`): the first open marks the invoice viewed
    (audit), later ones count.

    A repeat open is one UPDATE of the counter: no row read back, no audit row, nothing else in the transaction,
    and neither updated_at nor the pay page's version moves (the page does not show views)."""
    with atomic():
        repeat = db.session.execute(
            update(Invoice).where(Invoice.id == invoice_id, Invoice.viewed_at.is_not(None))
            .values(view_count=Invoice.view_count + count, updated_at=Invoice.updated_at)
            .execution_options(synchronize_session=False)
        )
        if repeat.rowcount:  # type: ignore[attr-defined]
            return
        invoice = lock_invoice(invoice_id)
        invoice.view_count += count
        if invoice.viewed_at is None:
            invoice.viewed_at = now
            record("invoice.viewed", invoice, actor=Actor.anonymous(), now=now)


# --- starting a checkout ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutStart:
    session_id: str
    url: str  # the hosted page; for an embedded session "" (the page mounts it with client_secret)
    reused: bool
    client_secret: str | None = None
    paid: bool = False  # it turned out paid already: `url` is the return page that says so


def check_pay_amount(invoice: Invoice, amount: int) -> None:
    """The amount a client may pay now: the amount due, or (partial payments on) between the minimum and it."""
    if invoice.status == "processing":
        raise DomainError("A payment for this invoice is still being processed: we will email you when it clears.")
    if invoice.status != "open" or invoice.amount_due <= 0:
        raise DomainError("This invoice has nothing left to pay.")
    if autopay.charge_in_flight(invoice.id):
        raise DomainError(autopay.IN_FLIGHT_MESSAGE)
    due, org = invoice.amount_due, invoice.organization
    if amount == due:
        return
    if not org.allow_partial_payments:
        raise DomainError(f"Please pay the full amount due, {format_money(due, invoice.currency)}.")
    low = min(max(org.min_partial_amount, 1), due)
    if not low <= amount <= due:
        raise DomainError(f"Choose an amount between {format_money(low, invoice.currency)} and "
                          f"{format_money(due, invoice.currency)}.")


def _open_session(invoice: Invoice, amount: int, provider: str, now: datetime, *, contact_id: int | None,
                  ui_mode: str) -> CheckoutSession | None:
    """An open session to hand out again: same amount and provider, and the same kind of request (the pay link,
    or this portal contact's hosted or embedded checkout: their return pages and payers differ)."""
    return db.session.execute(
        select(CheckoutSession).where(
            CheckoutSession.invoice_id == invoice.id, CheckoutSession.status == "open",
            CheckoutSession.amount == amount, CheckoutSession.provider == provider,
            CheckoutSession.expires_at > now + REUSE_MARGIN, CheckoutSession.ui_mode == ui_mode,
            CheckoutSession.contact_id == contact_id if contact_id else CheckoutSession.contact_id.is_(None),
        ).order_by(CheckoutSession.id.desc())
    ).scalars().first()


def _customer_key(site: Site, client: Client) -> str:
    # Unique to this installation (two installs may share a Stripe test account and have the same client ids).
    return "customer:" + hmac.new(site.secret_key.encode(), f"customer:{client.id}".encode(),
                                  hashlib.sha256).hexdigest()[:32]


def _customer(invoice: Invoice, gateway: Gateway, site: Site,
              payer: str | None = None) -> tuple[str | None, str | None]:
    """(provider customer id, email): Stripe customers are created once per client and stored on it. `payer`:
    the email of the portal contact paying, prefilled on the provider's page when no customer is kept."""
    client = invoice.client
    email = payer or (invoice.contact.email if invoice.contact else None) or client.email or None
    if gateway.name != "stripe":
        return None, email
    if client.stripe_customer_id:
        return client.stripe_customer_id, email
    customer_id = gateway.create_customer(name=client.name, email=email, idempotency_key=_customer_key(site, client),
                                          metadata={"client_id": str(client.id)})
    with atomic():
        stored = db.session.get(Client, client.id, populate_existing=True)
        assert stored is not None
        if stored.stripe_customer_id is None:
            stored.stripe_customer_id = customer_id
        customer_id = stored.stripe_customer_id
    return customer_id, email


@dataclass(frozen=True)
class Channel:
    """Where a checkout is started from and comes back to. The pay link (the default): no payer known, the
    pay page's return and cancel URLs. The portal: the signed-in contact (who paid), its own return page
    (`return_url` holds {CHECKOUT_SESSION_ID}), hosted or embedded."""

    contact_id: int | None = None
    return_url: str | None = None
    cancel_url: str | None = None
    ui_mode: str = "hosted"
    payer_email: str | None = None  # the contact's email, prefilled at the provider
    actor: Actor = Actor.anonymous()  # who starts it (the audit's "checkout.started")

    def success_url(self, site: Site, invoice: Invoice) -> str:
        return self.return_url or f"{site.pay_url(invoice)}/return?session_id={{CHECKOUT_SESSION_ID}}"

    def back_url(self, site: Site, invoice: Invoice) -> str:
        return self.cancel_url or site.pay_url(invoice)


PAY_LINK = Channel()


def start_checkout(invoice_id: int, *, amount: int, gateway: Gateway, site: Site, now: datetime,
                   channel: Channel = PAY_LINK) -> CheckoutStart:
    """Open a checkout for `amount`, or hand out the open one for the same amount and channel (double click,
    second tab). The idempotency key (invoice, amount, what it has received, link version, the hour, the
    channel) makes two racing requests get the same session from the provider; the row lock makes them store
    it once.

    An open session is asked about at the provider before it is handed out again: the client may have paid it
    and lost the return page (and its webhook may be lost too). A paid one is recorded and the client is sent to
    its confirmation; one that expired is closed here and a new one is made."""
    with atomic():
        invoice = lock_invoice(invoice_id)
        check_pay_amount(invoice, amount)
        existing = _open_session(invoice, amount, gateway.name, now, contact_id=channel.contact_id,
                                 ui_mode=channel.ui_mode)
        reuse = (existing.session_id, existing.url) if existing is not None else None
    if reuse is not None:
        started = _reuse(invoice_id, *reuse, gateway=gateway, site=site, now=now, channel=channel)
        return started or start_checkout(invoice_id, amount=amount, gateway=gateway, site=site, now=now,
                                         channel=channel)
    with atomic():
        invoice = lock_invoice(invoice_id)
        check_pay_amount(invoice, amount)
        try:
            gateway.check_amount(amount, invoice.currency)
        except GatewayError as exc:
            raise DomainError(exc.message) from None
        bucket = int(now.timestamp()) // KEY_BUCKET_SECONDS
        # A session closed since (expired, or completed unpaid) changes the key: the provider would replay it.
        closed = db.session.scalar(select(func.count()).select_from(CheckoutSession).where(
            CheckoutSession.invoice_id == invoice.id, CheckoutSession.status != "open"))
        key = (f"checkout:{invoice.public_id}:{amount}:{invoice.currency}:{invoice.amount_paid}:"
               f"{invoice.link_version}:{bucket}:{closed}")
        if channel.contact_id:  # other metadata and URLs than the pay link's: another key
            key += f":portal:{channel.contact_id}:{channel.ui_mode}"
        metadata = {"invoice_id": str(invoice.id), "invoice_number": invoice.number or "",
                    "invoice_public_id": invoice.public_id}
        if channel.contact_id:  # who paid: only a signed-in contact is known (anyone may hold a pay link)
            metadata["contact_id"] = str(channel.contact_id)
        product = f"Invoice {invoice.number}"
        description = f"{invoice.organization.name}, invoice {invoice.number}"
        currency = invoice.currency
        success_url, cancel_url = channel.success_url(site, invoice), channel.back_url(site, invoice)
    try:
        customer_id, email = _customer(invoice, gateway, site, channel.payer_email)
        request = CheckoutRequest(
            amount=amount, currency=currency, product_name=product, description=description,
            success_url=success_url, cancel_url=cancel_url, idempotency_key=key, metadata=metadata,
            customer_id=customer_id, customer_email=email, ui_mode=channel.ui_mode,
        )
        checkout = gateway.create_checkout(request)
        if checkout.status != "open":  # the key replayed a session that has since closed: make a new one
            checkout = gateway.create_checkout(
                CheckoutRequest(**{**request.__dict__, "idempotency_key": f"{key}:{secrets.token_hex(4)}"}))
    except GatewayError as exc:
        raise DomainError(exc.message) from None
    return _store_session(invoice_id, checkout, gateway=gateway, site=site, now=now, channel=channel)


def _reuse(invoice_id: int, session_id: str, url: str, *, gateway: Gateway, site: Site, now: datetime,
           channel: Channel) -> CheckoutStart | None:
    """The open session if it still is at the provider; a completed one is recorded (the client goes to its
    confirmation page); None once it is closed here (expired), for the caller to make a new one."""
    try:
        checkout = gateway.retrieve_checkout(session_id)
    except GatewayError as exc:  # the provider is unreachable: a new session could not be made either
        log.warning("open checkout %s not checked before reuse: %s", session_id, exc.message)
        return CheckoutStart(session_id, url, reused=True)
    if checkout.status == "open":
        return CheckoutStart(session_id, url, reused=True, client_secret=checkout.client_secret)
    if checkout.status == "complete":
        apply_checkout(checkout, gateway=gateway, site=site, now=now, actor=PAY_PAGE_ACTOR, retrieved=True)
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice is not None
        back = channel.success_url(site, invoice).replace("{CHECKOUT_SESSION_ID}", session_id)
        return CheckoutStart(session_id, back, reused=True, paid=True)
    mark_session(checkout, invoice_id, gateway.name, now=now)
    _set_status(session_id, "expired")  # not ours (metadata) or not open for any other reason: never reuse it
    return None


def _store_session(invoice_id: int, checkout: Checkout, *, gateway: Gateway, site: Site, now: datetime,
                   channel: Channel) -> CheckoutStart:
    with atomic():
        invoice = lock_invoice(invoice_id)
        row = db.session.execute(
            select(CheckoutSession).where(CheckoutSession.session_id == checkout.id)).scalar_one_or_none()
        if row is not None:
            return CheckoutStart(row.session_id, row.url, reused=True, client_secret=checkout.client_secret)
        payable = invoice.status == "open" and checkout.amount <= invoice.amount_due
        if payable:
            db.session.add(CheckoutSession(
                organization_id=invoice.organization_id, invoice_id=invoice.id, provider=gateway.name,
                session_id=checkout.id, amount=checkout.amount, currency=checkout.currency, status="open",
                url=checkout.url or "", contact_id=channel.contact_id, ui_mode=channel.ui_mode,
                expires_at=checkout.expires_at, created_at=now,
            ))
            record("checkout.started", invoice, actor=channel.actor, now=now,
                   details={"session_id": checkout.id, "amount": checkout.amount, "provider": gateway.name,
                            **({"ui_mode": channel.ui_mode} if channel.ui_mode != "hosted" else {})})
    if not payable:  # paid by another channel while we were at the provider
        _expire_at_provider(checkout.id, gateway)
        raise DomainError("This invoice was just paid or changed: please reload the page.")
    return CheckoutStart(checkout.id, checkout.url or "", reused=False, client_secret=checkout.client_secret)


# --- recording what the provider says --------------------------------------------------------------------


def invoice_for(metadata: Mapping[str, str]) -> Invoice | None:
    """Our invoice named in a provider object's metadata, or None if it is not ours (another install)."""
    try:
        invoice = db.session.get(Invoice, int(metadata.get("invoice_id") or ""))
    except ValueError:
        return None
    public_id = metadata.get("invoice_public_id")
    if invoice is None or (public_id and public_id != invoice.public_id):
        return None
    return invoice


def _contact_id(metadata: Mapping[str, str]) -> int | None:
    value = metadata.get("contact_id") or ""
    return int(value) if value.isdigit() else None


def mark_session(checkout: Checkout, invoice_id: int, provider: str, *, now: datetime) -> None:
    """Bring our CheckoutSession row forward to what the provider says (open -> complete | expired)."""
    status = checkout.status if checkout.status in ("complete", "expired") else None
    if status is None:
        return
    with atomic():
        row = db.session.execute(
            select(CheckoutSession).where(CheckoutSession.session_id == checkout.id)).scalar_one_or_none()
        if row is None:  # made at the provider but never stored here (a crash in between): keep the record
            invoice = db.session.get(Invoice, invoice_id)
            if invoice is None:
                return
            db.session.add(CheckoutSession(
                organization_id=invoice.organization_id, invoice_id=invoice_id, provider=provider,
                session_id=checkout.id, amount=checkout.amount, currency=checkout.currency, status=status,
                url="", expires_at=checkout.expires_at, created_at=now))
        elif row.status == "open":
            row.status = status


def apply_checkout(checkout: Checkout, *, gateway: Gateway, site: Site, now: datetime,
                   actor: Actor = WEBHOOK_ACTOR, observed_at: datetime | None = None,
                   retrieved: bool = False) -> Payment | None:
    """Record a retrieved or announced checkout session through the money door; None if no money moved.

    `observed_at` is the provider's time of an announced session (its event's `created`); a session just
    `retrieved` is observed as of `now`, and when unpaid its PaymentIntent says whether it still processes."""
    invoice = invoice_for(checkout.metadata)
    if invoice is None:
        return None
    if checkout.status != "complete" or checkout.payment_status not in ("paid", "unpaid"):
        mark_session(checkout, invoice.id, gateway.name, now=now)
        return None
    status = "succeeded" if checkout.payment_status == "paid" else "processing"
    failure: tuple[str | None, str | None] = (None, None)
    if retrieved:
        observed_at = now
        if status == "processing":
            status, failure, observed_at = pending_state(checkout, gateway, now=now)
    result = apply_payment(
        invoice.id, amount=checkout.amount, currency=checkout.currency, method=gateway.method,
        status=status, actor=actor, now=now, observed_at=observed_at,
        checkout_session_id=checkout.id, payment_intent_id=checkout.payment_intent_id,
        contact_id=_contact_id(checkout.metadata), failure_code=failure[0], failure_message=failure[1],
        payer_email=checkout.payer_email,
    )
    mark_session(checkout, invoice.id, gateway.name, now=now)
    after_payment(result.payment.id, gateway=gateway, site=site, now=now, payer_email=checkout.payer_email)
    if status == "failed":  # a settles-later payment the provider now says failed: tell the client (once)
        notify_payment_failed(result.payment.id, site=site, now=now)
    return result.payment


def pending_state(checkout: Checkout, gateway: Gateway, *, now: datetime
                  ) -> tuple[str, tuple[str | None, str | None], datetime | None]:
    """What a complete but unpaid session retrieved now means: a session stays "unpaid" after its async
    payment failed, so only its PaymentIntent tells processing from failed. Without it, a time-less
    "processing" (the view says nothing about when), which the door applies as before."""
    if not checkout.payment_intent_id:
        return "processing", (None, None), None
    try:
        intent = gateway.retrieve_payment_intent(checkout.payment_intent_id)
    except GatewayError as exc:
        log.warning("payment intent of session %s not retrieved: %s", checkout.id, exc.message)
        return "processing", (None, None), None
    if intent.status == "succeeded":
        return "succeeded", (None, None), now
    if intent.status in ("requires_payment_method", "canceled"):
        return "failed", (intent.failure_code, intent.failure_message), now
    return "processing", (None, None), now


def after_payment(payment_id: int, *, gateway: Gateway, site: Site, now: datetime,
                  payer_email: str | None = None) -> None:
    """Follow-ups of a recorded payment, each idempotent: how it was paid, the receipt, then closing sessions
    it made stale. Inside a transaction (the inbox's), the provider calls wait until it has committed: the
    inbox asks how it was paid before (inbox.receive), and a receipt queued without it says "Card"."""
    # A payment this transaction wrote (the inbox's) is current as loaded; otherwise read what is committed.
    payment = held(Payment, payment_id) or db.session.get(Payment, payment_id, populate_existing=True)
    if payment is None:
        return
    if not payment.method_type:  # not known yet (the inbox notes it when it asked before its transaction)
        on_commit(lambda: describe_payment(payment_id, gateway=gateway))
    if payment.status in COUNTED:  # after its receipt number, which a larger transaction takes at its end
        before_commit(lambda: enqueue_receipt(payment_id, site=site, now=now, payer_email=payer_email))
    invoice_id = payment.invoice_id
    on_commit(lambda: expire_stale_sessions(invoice_id, gateway=gateway, site=site, now=now))


def describe_payment(payment_id: int, *, gateway: Gateway) -> None:
    """Ask the provider how a payment was made (card brand and last 4, or the bank debit) and note it once.
    The receipt, the invoice page and exports name it; an unreachable provider only leaves it unnamed ("Card")."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.method_type or payment.method not in PROVIDER_METHODS:
        return
    intent_id = payment.provider_intent_id
    if not intent_id:
        return
    try:
        intent = gateway.retrieve_payment_intent(intent_id)
    except GatewayError as exc:
        log.warning("payment method of %s not retrieved: %s", intent_id, exc.message)
        return
    if intent.method is not None:
        record_method(payment_id, intent.method)
        db.session.refresh(payment)


def _recipient(invoice: Invoice, fallback: str | None = None) -> str | None:
    return (invoice.contact.email if invoice.contact else None) or invoice.client.email or fallback


def _receipt_to(payment: Payment, payer_email: str | None) -> str | None:
    """A portal contact who paid gets the receipt; a pay-link payment's goes to the invoice's contact or client,
    else to the email typed at checkout."""
    if payment.contact is not None:
        return payment.contact.email
    return _recipient(payment.invoice, payer_email or payment.payer_email)


def queue_email(kind: str, template: str, invoice: Invoice, *, to: str, subject: str, dedupe_key: str, site: Site,
           now: datetime, **context: Any) -> OutboxEmail | None:
    """Render and queue one email in the current transaction; a bad address is logged, never fatal."""
    text, html = render_email(template, organization=invoice.organization, invoice=invoice, subject=subject,
                              pay_url=site.pay_url(invoice), **context)
    sender, reply_to = sender_for(invoice.organization, site.mail_sender)
    try:
        return enqueue(kind=kind, to=to, subject=subject, text_body=text, html_body=html, from_addr=sender,
                       reply_to=reply_to, now=now, organization_id=invoice.organization_id, invoice_id=invoice.id,
                       dedupe_key=dedupe_key)
    except DomainError as exc:
        log.warning("%s email not queued: %s", kind, exc, extra={"invoice_id": invoice.id})
        return None


def _lock_first(invoice_id: int) -> None:
    """On its own, a payment's email takes its invoice's row lock before queueing: the inbox's one transaction
    holds that lock while it queues the same email (same dedupe key), and an insert that waited on the other's
    key while holding the invoice's key-share (the outbox row's foreign key) would deadlock with it. Inside a
    larger transaction the lock is held already."""
    if not in_larger_transaction():
        lock_invoice(invoice_id)


def enqueue_receipt(payment_id: int, *, site: Site, now: datetime, payer_email: str | None = None) -> bool:
    """Queue the receipt of a card payment once (dedupe key receipt:{payment_id}); True if queued now."""
    with atomic():
        payment = db.session.get(Payment, payment_id)
        if payment is None or payment.status not in COUNTED or payment.method not in PROVIDER_METHODS:
            return False
        _lock_first(payment.invoice_id)
        key = f"receipt:{payment.id}"  # queued once: enqueue does nothing for a key it has seen
        if not in_larger_transaction() and db.session.execute(  # (the inbox's payment is new: nothing to find)
                select(OutboxEmail.id).where(OutboxEmail.dedupe_key == key)).first():
            return False
        invoice = payment.invoice
        to = _receipt_to(payment, payer_email)
        if not to:
            return False
        texts = client_texts.for_sending("receipt", invoice, client_texts.payment_values(
            payment, pay_url=site.pay_url(invoice)), now=now)
        return queue_email("receipt", "receipt", invoice, to=to, subject=texts["subject"], dedupe_key=key, site=site,
                           now=now, payment=payment, texts=texts) is not None


def notify_payment_failed(payment_id: int, *, site: Site, now: datetime) -> bool:
    """A payment that was accepted as processing (a bank debit, a settles-later card) did not go through: the
    invoice is open again, so tell the client (to pay another way) and the organization's admins (who may
    have counted on it), once per payment and recipient. True if the client's email was queued now."""
    with atomic():
        payment = db.session.get(Payment, payment_id)
        if payment is None or payment.status != "failed":
            return False
        _lock_first(payment.invoice_id)
        invoice = payment.invoice
        subject = (f"Payment failed: {format_money(payment.amount, payment.currency)} by {payment.method_label} "
                   f"on invoice {invoice.number}, now open again")
        email_admins(invoice, kind="payment_failed_admin", subject=subject, key=f"payment_failed_admin:{payment.id}",
                     now=now, site=site, payment=payment)
        to = _recipient(invoice)
        if not to:
            return False
        texts = client_texts.for_sending("payment_failed", invoice, client_texts.payment_values(
            payment, pay_url=site.pay_url(invoice)), now=now)
        return queue_email("payment_failed", "payment_failed", invoice, to=to, subject=texts["subject"],
                           dedupe_key=f"payment_failed:{payment.id}", site=site, now=now, payment=payment,
                           texts=texts) is not None


# --- closing sessions that should no longer be paid -------------------------------------------------------


def _expire_at_provider(session_id: str, gateway: Gateway) -> Checkout | None:
    try:
        return gateway.expire_checkout(session_id)
    except GatewayError as exc:  # best effort: the reconcile job tries again
        log.warning("could not expire checkout session %s: %s", session_id, exc.message)
        return None


def expire_stale_sessions(invoice_id: int, *, gateway: Gateway, site: Site, now: datetime) -> int:
    """Expire the invoice's open sessions that should not be paid any more (DESIGN rule 4): all of them once
    it is paid or void, and those above what is still due. A session that turns out to be complete already
    is recorded (it is money received: the door flags it as an overpayment if it is one)."""
    # One read, no write lock: what is still due (nothing unless open) from the invoice row as committed.
    due = case((Invoice.status == "open", Invoice.total - Invoice.amount_paid), else_=0)
    stale = db.session.execute(
        select(CheckoutSession.session_id, CheckoutSession.provider)
        .join(Invoice, Invoice.id == CheckoutSession.invoice_id)
        .where(CheckoutSession.invoice_id == invoice_id, CheckoutSession.status == "open",
               CheckoutSession.amount > due).order_by(CheckoutSession.id)
    ).all()
    # Imported here: the group checkouts build on this module (after_payment, its receipts and expiries).
    from invoicing.services.checkout_groups import expire_stale_groups

    expired = expire_stale_groups(invoice_id, gateway=gateway, site=site, now=now)
    for session_id, provider in stale:
        if provider != gateway.name:  # made with another provider (configuration changed): nothing to call
            _set_status(session_id, "expired")
            continue
        checkout = _expire_at_provider(session_id, gateway)
        if checkout is None:
            continue
        if checkout.status == "complete":
            apply_checkout(checkout, gateway=gateway, site=site, now=now, retrieved=True)
        else:
            mark_session(checkout, invoice_id, gateway.name, now=now)
            expired += checkout.status == "expired"
    return expired


def _set_status(session_id: str, status: str) -> None:
    with atomic():
        row = db.session.execute(
            select(CheckoutSession).where(CheckoutSession.session_id == session_id)).scalar_one_or_none()
        if row is not None and row.status == "open":
            row.status = status


# --- the return page --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnResult:
    checkout: Checkout
    payment: Payment | None


def confirm_return(invoice_id: int, session_id: str, *, gateway: Gateway, site: Site,
                   now: datetime) -> ReturnResult:
    """The client is back from the hosted page: ask the provider, and record what it says (rule 6)."""
    row = db.session.execute(
        select(CheckoutSession).where(CheckoutSession.session_id == session_id)).scalar_one_or_none()
    if row is not None and row.invoice_id != invoice_id:
        raise NotFound("Checkout not found.")
    try:
        checkout = gateway.retrieve_checkout(session_id)
    except GatewayError as exc:
        if exc.code == "resource_missing":
            raise NotFound("Checkout not found.") from None
        raise
    invoice = invoice_for(checkout.metadata)
    if invoice is None or invoice.id != invoice_id:
        raise NotFound("Checkout not found.")
    payment = apply_checkout(checkout, gateway=gateway, site=site, now=now, actor=RETURN_ACTOR, retrieved=True)
    return ReturnResult(checkout, payment)


def latest_payment(invoice_id: int, session_id: str) -> Payment | None:
    return db.session.execute(
        select(Payment).where(Payment.invoice_id == invoice_id, Payment.checkout_session_id == session_id)
    ).scalar_one_or_none()

