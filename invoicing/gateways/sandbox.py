"""The sandbox provider: a Stripe look-alike inside the app, used when STRIPE_SECRET_KEY is unset.

No money moves. It keeps its own state (checkout sessions, payment intents, charges, refunds, idempotency
keys) in the `sandbox_object` table, shaped like Stripe's JSON, and serves a hosted checkout page under
/pay/sandbox/<session id> (invoicing/pay/views.py). Whatever happens there is announced the way Stripe does
it: as events signed with an HMAC (a key derived from SECRET_KEY, header `Sandbox-Signature`, the same
`t=...,v1=...` scheme) and delivered to the same inbox and the same handlers as Stripe's (services/inbox.py).
Delivery is in-process right after the sandbox commits its own state; /webhooks/sandbox takes the same
events over HTTP. The return page and reconciliation look sessions up here exactly as they do at Stripe.

Test cards (any expiry and CVC): see CARDS. Test bank accounts for a US bank debit (ACH), which is accepted at
once and settles or fails days later at a real bank (here: two minutes later, or at once from the page): see
ACCOUNTS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from invoicing.extensions import db
from invoicing.gateways.base import (
    REFUND_REVERSED,
    CardDeclined,
    ChargeInfo,
    ChargeResult,
    Checkout,
    CheckoutRequest,
    Event,
    Gateway,
    GatewayError,
    PaymentIntentInfo,
    RefundInfo,
    SetupCheckout,
    SetupRequest,
    SignatureError,
    charge_from,
    checkout_from,
    event_from_body,
    event_from_payload,
    payment_intent_from,
    refund_from,
    setup_checkout_from,
)
from invoicing.models import SandboxObject
from invoicing.services.db import atomic

log = logging.getLogger(__name__)

TOLERANCE = 300
SESSION_LIFETIME = timedelta(hours=24)
SETUP_PREFIX = "cs_sbx_setup_"


@dataclass(frozen=True)
class Card:
    number: str
    label: str
    outcome: str  # success, decline, authenticate, later
    code: str | None = None
    message: str | None = None


CARDS = {c.number: c for c in (
    Card("4242424242424242", "Succeeds", "success"),
    Card("4000000000000002", "Declined", "decline", "card_declined", "Your card was declined."),
    Card("4000000000009995", "Insufficient funds", "decline", "insufficient_funds",
         "Your card has insufficient funds."),
    Card("4000002500003155", "Needs authentication (an extra confirm step)", "authenticate"),
    Card("4000000000000077", "Settles later (processing, then paid)", "later"),
)}
# Saved payment methods for off-session charges.
PAYMENT_METHODS = {"pm_sandbox_visa": "success", "pm_sandbox_decline": "decline", "pm_sandbox_auth": "authenticate",
                   "pm_sandbox_lost": "lost"}
# What an off-session charge of a saved card does when it does not succeed: (code, advice_code, message).
DECLINES = {
    "decline": ("card_declined", "try_again_later", "Your card was declined."),
    "lost": ("lost_card", "do_not_try_again", "Your card was declined."),
    "authenticate": ("authentication_required", None, "This payment needs the cardholder to authenticate."),
}


@dataclass(frozen=True)
class SetupCard:
    number: str
    label: str
    saved: bool  # the setup succeeds and the card is kept
    charges: str = "success"  # what later off-session charges do: success, decline, authenticate
    message: str | None = None  # why it was not saved


# The setup form's test cards (any other valid 16-digit number is saved, and its charges succeed).
SETUP_CARDS = {c.number: c for c in (
    SetupCard("4242424242424242", "Saved; charges succeed", True),
    SetupCard("4000000000000341", "Saved; charges are declined later (to try a failed autopay)", True, "decline"),
    SetupCard("4000002500003155", "Saved; charges need the cardholder to authenticate", True, "authenticate"),
    SetupCard("4000000000009987", "Saved; charges are refused as a lost card (autopay never retries it)", True, "lost"),
    SetupCard("4000000000000002", "Declined: not saved", False, message="Your card was declined."),
)}


@dataclass(frozen=True)
class Account:
    number: str
    label: str
    settles: str  # succeeded or failed, when the bank answers
    code: str | None = None
    message: str | None = None


ACCOUNTS = {a.number: a for a in (
    Account("000123456789", "Accepted, then settles (processing, then paid)", "succeeded"),
    Account("000111111113", "Accepted, then fails days later (account closed)", "failed", "account_closed",
            "The bank account is closed."),
)}
BANK_NAME = "SANDBOX TEST BANK"
BRANDS = {"4": "visa", "5": "mastercard", "3": "amex", "6": "discover"}


def card_details(number: str) -> dict[str, Any]:
    """Stripe-shaped `payment_method_details` of a card: brand and last 4, nothing more."""
    return {"type": "card", "card": {"brand": BRANDS.get(number[:1], "unknown"), "last4": number[-4:],
                                     "wallet": None}}


def debit_details(account: str) -> dict[str, Any]:
    return {"type": "us_bank_account", "us_bank_account": {"bank_name": BANK_NAME, "last4": account[-4:],
                                                           "account_type": "checking"}}

Deliver = Callable[[bytes, str], None]


@dataclass(frozen=True)
class PayOutcome:
    """What the hosted page shows next: redirect to success_url, ask for authentication, or say why not."""

    kind: str  # paid, processing, authenticate, declined, invalid, closed; saved (the setup page)
    message: str | None = None
    redirect_url: str | None = None


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _new_id(prefix: str) -> str:
    return f"{prefix}_sbx_{secrets.token_hex(12)}"


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    return (sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])) % 10 == 0


def webhook_secret(secret_key: str) -> str:
    return hmac.new(secret_key.encode(), b"sandbox-webhooks", hashlib.sha256).hexdigest()


def sign(raw: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class SandboxGateway(Gateway):
    name = "sandbox"
    method = "sandbox"
    signature_header = "Sandbox-Signature"

    def __init__(self, *, secret_key: str, base_url: str, deliver: Deliver | None = None):
        self._secret = webhook_secret(secret_key)
        self._base_url = base_url.rstrip("/")
        self._deliver = deliver

    # --- storage ----------------------------------------------------------------------------------------

    def _load(self, object_id: str, *, lock: bool = False) -> SandboxObject:
        query = select(SandboxObject).where(SandboxObject.id == object_id)
        if lock:
            query = query.with_for_update()
        row = db.session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
        if row is None:
            raise GatewayError(f"No such sandbox object: {object_id}", code="resource_missing")
        return row

    def _add(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        db.session.add(SandboxObject(id=data["id"], kind=kind, data=data, created_at=now, updated_at=now))
        return data

    def _save(self, row: SandboxObject, data: dict[str, Any]) -> None:
        row.data = dict(data)  # a new dict: the JSON column sees the change
        row.updated_at = datetime.now(UTC)

    def _idempotent(self, key: str, create: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Create once per key (like Stripe's Idempotency-Key): a replay returns the first result."""
        idem_id = "idem_" + hashlib.sha256(key.encode()).hexdigest()[:40]
        for _ in range(2):
            try:
                with atomic():
                    known = db.session.get(SandboxObject, idem_id)
                    if known is not None:
                        return dict(self._load(known.data["object_id"]).data)
                    data = create()
                    self._add("idempotency", {"id": idem_id, "object_id": data["id"]})
                return data
            except IntegrityError:  # a concurrent request with the same key won: replay its result
                continue
        raise GatewayError("The sandbox could not store the request.", retryable=True)

    # --- events -----------------------------------------------------------------------------------------

    def _emit(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Deliver signed events after our state is committed, like a provider's webhook sender."""
        for type_, obj in events:
            payload = {"id": _new_id("evt"), "object": "event", "type": type_, "created": int(time.time()),
                       "livemode": False, "api_version": "sandbox", "data": {"object": self._export(obj)}}
            raw = json.dumps(payload, sort_keys=True).encode()
            if self._deliver is None:
                continue
            try:
                self._deliver(raw, sign(raw, self._secret))
            except Exception:  # noqa: BLE001 - a failed delivery stays failed in the inbox; reconcile re-applies
                log.exception("sandbox event %s could not be delivered", type_)

    def _export(self, obj: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in obj.items() if not k.startswith("_")}
        if data.get("object") == "checkout.session":
            data["url"] = f"{self._base_url}/pay/sandbox/{data['id']}" if data["status"] == "open" else None
        return data

    # --- the Gateway interface --------------------------------------------------------------------------

    def create_customer(self, *, name: str, email: str | None, metadata: Mapping[str, str],
                        idempotency_key: str) -> str | None:
        data = self._idempotent(f"customer:{idempotency_key}", lambda: self._add("customer", {
            "id": _new_id("cus"), "object": "customer", "name": name, "email": email, "metadata": dict(metadata)}))
        return str(data["id"])

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        self.check_amount(request.amount, request.currency)

        def create() -> dict[str, Any]:
            now = datetime.now(UTC)
            return self._add("checkout.session", {
                "id": _new_id("cs"), "object": "checkout.session", "mode": "payment", "status": "open",
                "payment_status": "unpaid", "amount_total": request.amount,
                "currency": request.currency.lower(), "metadata": dict(request.metadata),
                "success_url": request.success_url, "cancel_url": request.cancel_url,
                "customer": request.customer_id, "customer_email": request.customer_email,
                "customer_details": None, "payment_intent": None, "created": _ts(now),
                "expires_at": _ts(now + SESSION_LIFETIME), "_product_name": request.product_name,
                "_attempt": None,
            })

        return self._checkout(self._idempotent(f"checkout:{request.idempotency_key}", create))

    def _checkout(self, data: dict[str, Any]) -> Checkout:
        return checkout_from(self._export(data), lambda amount, currency: amount)

    def retrieve_checkout(self, session_id: str) -> Checkout:
        events: list[tuple[str, dict[str, Any]]] = []
        with atomic():
            row = self._load(session_id, lock=True)
            data = dict(row.data)
            if data["status"] == "open" and time.time() >= data["expires_at"]:
                data["status"] = "expired"
                self._save(row, data)
                events.append(("checkout.session.expired", data))
        self._emit(events)
        return self._checkout(data)

    def expire_checkout(self, session_id: str) -> Checkout:
        events: list[tuple[str, dict[str, Any]]] = []
        with atomic():
            row = self._load(session_id, lock=True)
            data = dict(row.data)
            if data["status"] == "open":
                data["status"] = "expired"
                self._save(row, data)
                events.append(("checkout.session.expired", data))
        self._emit(events)
        return self._checkout(data)

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentInfo:
        with atomic():
            data = dict(self._load(payment_intent_id).data)
            if data.get("latest_charge"):  # expanded, as the Stripe gateway asks for it
                data["latest_charge"] = dict(self._load(data["latest_charge"]).data)
        return payment_intent_from(data, lambda amount, currency: amount)

    def retrieve_charge(self, charge_id: str) -> ChargeInfo:
        with atomic():
            data = dict(self._load(charge_id).data)
        return charge_from(data, lambda amount, currency: amount)

    def refund(self, *, amount: int, currency: str, idempotency_key: str, payment_intent_id: str | None = None,
               charge_id: str | None = None, reason: str = "", payment_ref: str = "") -> RefundInfo:
        events: list[tuple[str, dict[str, Any]]] = []

        def create() -> dict[str, Any]:
            if not charge_id and not payment_intent_id:
                raise GatewayError("This payment has no provider reference to refund.")
            target = charge_id or self._load(str(payment_intent_id)).data.get("latest_charge")
            row = self._load(str(target), lock=True)
            charge = dict(row.data)
            left = charge["amount"] - charge["amount_refunded"]
            if charge["status"] != "succeeded":
                raise GatewayError("Only a succeeded payment can be refunded.", code="charge_not_refundable")
            if not 0 < amount <= left:
                raise GatewayError(f"The refund is more than what is left of the payment ({left}).",
                                   code="amount_too_large")
            refund = self._add("refund", {
                "id": _new_id("re"), "object": "refund", "amount": amount, "currency": charge["currency"],
                "status": "succeeded", "charge": charge["id"], "payment_intent": charge["payment_intent"],
                "metadata": {"reason": reason[:500], **({"payment_id": payment_ref} if payment_ref else {})},
                "created": int(time.time())})
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            charge["refunds"] = {"object": "list", "data": [*charge["refunds"]["data"], refund]}
            self._save(row, charge)
            events.append(("charge.refunded", charge))
            return refund

        data = self._idempotent(f"refund:{idempotency_key}", create)
        self._emit(events)
        return RefundInfo(id=data["id"], amount=data["amount"], currency=currency, status=data["status"],
                          charge_id=data["charge"], payment_intent_id=data["payment_intent"], reason=reason,
                          payment_ref=payment_ref)

    def fail_refund(self, refund_id: str, *, status: str = "failed",
                    failure_reason: str = "expired_or_canceled_card") -> RefundInfo:
        """The card network sends a refund back (or it is canceled), as happens at Stripe days later: the
        charge counts it as not refunded again, and the same events as Stripe's are emitted."""
        if status not in REFUND_REVERSED:
            raise GatewayError("A refund can only fail or be canceled.", code="invalid_status")
        events: list[tuple[str, dict[str, Any]]] = []
        with atomic():
            row = self._load(refund_id, lock=True)
            refund = dict(row.data)
            if refund.get("object") != "refund" or refund["status"] not in ("pending", "succeeded"):
                raise GatewayError("Only a pending or succeeded refund can fail.", code="refund_not_pending")
            refund.update(status=status, failure_reason=failure_reason if status == "failed" else None)
            charge_row = self._load(refund["charge"], lock=True)
            charge = dict(charge_row.data)
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = False
            charge["refunds"] = {"object": "list", "data": [refund if r["id"] == refund_id else r
                                                            for r in charge["refunds"]["data"]]}
            self._save(row, refund)
            self._save(charge_row, charge)
            events += [("refund.updated", refund), ("charge.refund.updated", refund)]
            if status == "failed":
                events.append(("refund.failed", refund))
        self._emit(events)
        return refund_from(self._export(refund), lambda amount, currency: amount)

    def charge_off_session(self, *, customer_id: str, payment_method_id: str, amount: int, currency: str,
                           idempotency_key: str, metadata: Mapping[str, str]) -> ChargeResult:
        self.check_amount(amount, currency)
        outcome, method = PAYMENT_METHODS.get(payment_method_id), card_details("4242424242424242")
        if outcome is None:  # a card saved through the setup form
            outcome, method = self._saved_card_outcome(payment_method_id, customer_id)
        events: list[tuple[str, dict[str, Any]]] = []

        def create() -> dict[str, Any]:
            intent = self._new_intent(amount, currency, dict(metadata), customer_id)
            intent["_method"] = method
            if outcome == "success":
                self._succeed(intent, events)
            else:
                code, advice, message = DECLINES.get(outcome, DECLINES["decline"])
                self._fail(intent, code, message, events)
                intent["last_payment_error"]["advice_code"] = advice
            return intent

        intent = self._idempotent(f"offsession:{idempotency_key}", create)
        self._emit(events)
        info = payment_intent_from(intent, lambda a, c: a)
        if info.status != "succeeded":
            status = "requires_action" if info.failure_code == "authentication_required" else "failed"
            return ChargeResult(info.id, status, amount, currency, failure_code=info.failure_code,
                                failure_message=info.failure_message,
                                advice_code=(intent.get("last_payment_error") or {}).get("advice_code"))
        return ChargeResult(info.id, "succeeded", amount, currency, charge_id=info.charge_id)

    def parse_event(self, raw: bytes, signature: str | None) -> Event:
        parts = dict(p.split("=", 1) for p in (signature or "").split(",") if "=" in p)
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError:
            raise SignatureError("missing or malformed Sandbox-Signature header") from None
        expected = sign(raw, self._secret, timestamp).partition("v1=")[2]
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            raise SignatureError("the signature does not match")
        if abs(time.time() - timestamp) > TOLERANCE:
            raise SignatureError("the signature is too old")
        return event_from_body(self.name, raw)

    def event_from_payload(self, payload: Mapping[str, Any]) -> Event:
        return event_from_payload(self.name, payload)

    # --- the hosted page (the client's side of the sandbox) ---------------------------------------------

    def session_page(self, session_id: str) -> dict[str, Any]:
        """What the hosted page shows: the session, its product name, and where the attempt stands."""
        if session_id.startswith(SETUP_PREFIX):  # a setup session has its own page (setup_page)
            raise GatewayError(f"No such sandbox checkout: {session_id}", code="resource_missing")
        checkout = self.retrieve_checkout(session_id)
        with atomic():
            data = dict(self._load(session_id).data)
            attempt = dict(self._load(data["_attempt"]).data) if data.get("_attempt") else None
        return {"checkout": checkout, "product_name": data["_product_name"], "cancel_url": data["cancel_url"],
                "attempt_status": attempt["status"] if attempt else None,
                "error": (attempt or {}).get("last_payment_error") or None}

    def pay(self, session_id: str, *, card: str = "", email: str, account: str = "") -> PayOutcome:
        """One payment attempt with a test card, or a bank debit from a test account, as the hosted page's
        form submits it."""
        number = re.sub(r"[\s-]", "", card)
        known = CARDS.get(number)
        debit = ACCOUNTS.get(re.sub(r"[\s-]", "", account)) if account.strip() else None
        if account.strip() and debit is None:
            return PayOutcome("invalid", "Use one of the test bank account numbers listed below.")
        if debit is None and known is None and not (len(number) == 16 and number.isdigit() and luhn_ok(number)):
            return PayOutcome("invalid", "Your card number is incorrect.")
        outcome = "later" if debit else known.outcome if known else "success"
        events: list[tuple[str, dict[str, Any]]] = []
        with atomic():
            row = self._load(session_id, lock=True)
            session = dict(row.data)
            if session["status"] != "open" or time.time() >= session["expires_at"]:
                return PayOutcome("closed", "This checkout is no longer open.")
            session["customer_details"] = {"email": email.strip() or session.get("customer_email")}
            intent_row = self._attempt(session)
            intent = dict(intent_row.data)
            intent["_method"] = debit_details(debit.number) if debit else card_details(number)
            intent["_settles"] = debit.settles if debit else "succeeded"
            intent["_fails_with"] = [debit.code, debit.message] if debit and debit.code else None
            result: PayOutcome
            if outcome == "decline":
                assert known is not None
                self._fail(intent, str(known.code), str(known.message), events)
                result = PayOutcome("declined", known.message)
            elif outcome == "authenticate":
                intent.update(status="requires_action", last_payment_error=None)
                result = PayOutcome("authenticate")
            else:
                self._complete(session, intent, later=outcome == "later", events=events)
                result = PayOutcome("processing" if outcome == "later" else "paid",
                                    redirect_url=session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id))
            self._save(intent_row, intent)
            self._save(row, session)
        self._emit(events)
        return result

    def authenticate(self, session_id: str, *, approve: bool) -> PayOutcome:
        """The bank's confirm step for the needs-authentication card."""
        events: list[tuple[str, dict[str, Any]]] = []
        with atomic():
            row = self._load(session_id, lock=True)
            session = dict(row.data)
            if session["status"] != "open" or not session.get("_attempt"):
                return PayOutcome("closed", "This checkout is no longer open.")
            intent_row = self._load(session["_attempt"], lock=True)
            intent = dict(intent_row.data)
            if intent["status"] != "requires_action":
                return PayOutcome("closed", "There is no payment waiting for authentication.")
            if approve:
                self._complete(session, intent, later=False, events=events)
                result = PayOutcome("paid", redirect_url=session["success_url"].replace(
                    "{CHECKOUT_SESSION_ID}", session_id))
            else:
                self._fail(intent, "authentication_failed", "We could not authenticate your payment.", events)
                result = PayOutcome("declined", "We could not authenticate your payment.")
            self._save(intent_row, intent)
            self._save(row, session)
        self._emit(events)
        return result

    def settle(self, session_id: str, *, succeeded: bool | None = None) -> Checkout:
        """The bank's answer for a settles-later payment (the demo page's buttons say which; the CLI job lets
        the test card or account decide: a failing test account fails)."""
        events: list[tuple[str, dict[str, Any]]] = []
        with atomic():
            row = self._load(session_id, lock=True)
            session = dict(row.data)
            intent_row = self._load(session["payment_intent"], lock=True) if session.get("payment_intent") else None
            if intent_row is None or intent_row.data["status"] != "processing":
                raise GatewayError("This checkout has no payment waiting to settle.", code="not_processing")
            intent = dict(intent_row.data)
            if succeeded is None:
                succeeded = intent.get("_settles", "succeeded") == "succeeded"
            if succeeded:
                self._succeed(intent, [])
                session["payment_status"] = "paid"
                events += [("payment_intent.succeeded", intent),
                           ("checkout.session.async_payment_succeeded", session)]
            else:
                code, message = intent.get("_fails_with") or ("payment_failed", "The bank refused the payment.")
                self._fail(intent, code, message, [])
                events += [("payment_intent.payment_failed", intent),
                           ("checkout.session.async_payment_failed", session)]
            self._save(intent_row, intent)
            self._save(row, session)
        self._emit(events)
        return self._checkout(session)

    def pending_settlements(self, *, older_than: datetime) -> list[str]:
        """Sessions whose settles-later payment is still processing and was made before `older_than`."""
        with atomic():
            rows = db.session.execute(
                select(SandboxObject).where(SandboxObject.kind == "checkout.session",
                                            SandboxObject.updated_at < older_than)
            ).scalars().all()
            candidates = [r.data for r in rows
                          if r.data["status"] == "complete" and r.data["payment_status"] == "unpaid"]
            return [s["id"] for s in candidates
                    if s.get("payment_intent") and self._load(s["payment_intent"]).data["status"] == "processing"]

    # --- saving a card for later: the setup page (Checkout in setup mode, the sandbox's way) -------------

    def create_setup_checkout(self, request: SetupRequest) -> SetupCheckout:
        def create() -> dict[str, Any]:
            now = datetime.now(UTC)
            # Its own kind: payment-session code (settlements, the pay page) never meets a setup session.
            return self._add("setup_session", {
                "id": f"{SETUP_PREFIX}{secrets.token_hex(12)}", "object": "checkout.session", "mode": "setup",
                "status": "open", "currency": request.currency.lower(), "customer": request.customer_id,
                "metadata": dict(request.metadata), "success_url": request.success_url,
                "cancel_url": request.cancel_url, "setup_intent": None, "created": _ts(now),
                "expires_at": _ts(now + SESSION_LIFETIME),
            })

        data = self._idempotent(f"setup:{request.idempotency_key}", create)
        with atomic():
            return self._setup_checkout(data)

    def _setup_checkout(self, data: dict[str, Any]) -> SetupCheckout:
        """Like Stripe's session with `setup_intent.payment_method` expanded (inside a transaction)."""
        out = {k: v for k, v in data.items() if not k.startswith("_")}
        out["url"] = f"{self._base_url}/pay/sandbox/setup/{data['id']}" if data["status"] == "open" else None
        if data.get("setup_intent"):
            intent = dict(self._load(data["setup_intent"]).data)
            if intent.get("payment_method"):
                intent["payment_method"] = {k: v for k, v in self._load(intent["payment_method"]).data.items()
                                            if not k.startswith("_")}
            out["setup_intent"] = intent
        return setup_checkout_from(out)

    def _setup_session(self, session_id: str, *, lock: bool = False) -> SandboxObject:
        row = self._load(session_id, lock=lock)
        if row.kind != "setup_session":
            raise GatewayError(f"No such sandbox setup session: {session_id}", code="resource_missing")
        if row.data["status"] == "open" and time.time() >= row.data["expires_at"]:
            self._save(row, {**row.data, "status": "expired"})
        return row

    def retrieve_setup_checkout(self, session_id: str) -> SetupCheckout:
        with atomic():
            return self._setup_checkout(dict(self._setup_session(session_id, lock=True).data))

    def save_card(self, session_id: str, *, number: str, exp_month: int, exp_year: int,
                  today: date | None = None) -> PayOutcome:
        """The setup page's form: keep a test card (attached to the session's customer) or say why not."""
        number = re.sub(r"[\s-]", "", number)
        known = SETUP_CARDS.get(number)
        if known is None and not (len(number) == 16 and number.isdigit() and luhn_ok(number)):
            return PayOutcome("invalid", "Your card number is incorrect.")
        today = today or datetime.now(UTC).date()
        if not 1 <= exp_month <= 12:
            return PayOutcome("invalid", "Your card's expiration month is invalid.")
        if (exp_year, exp_month) < (today.year, today.month):
            return PayOutcome("invalid", "Your card has expired.")
        if exp_year > today.year + 50:
            return PayOutcome("invalid", "Your card's expiration year is invalid.")
        with atomic():
            row = self._setup_session(session_id, lock=True)
            session = dict(row.data)
            if session["status"] != "open":
                return PayOutcome("closed", "This page is no longer open.")
            if known is not None and not known.saved:
                return PayOutcome("declined", known.message)
            method = self._add("payment_method", {
                "id": _new_id("pm"), "object": "payment_method", "type": "card", "customer": session["customer"],
                "card": {"brand": BRANDS.get(number[:1], "unknown"), "last4": number[-4:], "exp_month": exp_month,
                         "exp_year": exp_year},
                "created": int(time.time()), "_charges": known.charges if known else "success"})
            intent = self._add("setup_intent", {
                "id": _new_id("seti"), "object": "setup_intent", "status": "succeeded", "usage": "off_session",
                "customer": session["customer"], "payment_method": method["id"],
                "metadata": dict(session["metadata"]), "created": int(time.time())})
            session.update(status="complete", setup_intent=intent["id"])
            self._save(row, session)
        return PayOutcome("saved", redirect_url=session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id))

    def setup_page(self, session_id: str) -> dict[str, Any]:
        """What the setup page shows: the session's state and where Cancel goes."""
        with atomic():
            data = dict(self._setup_session(session_id, lock=True).data)
        return {"status": data["status"], "cancel_url": data["cancel_url"], "currency": data["currency"].upper()}

    def detach_payment_method(self, payment_method_id: str) -> None:
        with atomic():
            row = self._load(payment_method_id, lock=True)
            if row.kind != "payment_method":
                raise GatewayError(f"No such sandbox payment method: {payment_method_id}", code="resource_missing")
            if row.data.get("customer") is not None:
                self._save(row, {**row.data, "customer": None})

    def retrieve_payment_method(self, payment_method_id: str) -> dict[str, Any]:
        """A saved card as the sandbox keeps it (tests and the demo look at it; Stripe-shaped)."""
        with atomic():
            return {k: v for k, v in self._load(payment_method_id).data.items() if not k.startswith("_")}

    def _saved_card_outcome(self, payment_method_id: str, customer_id: str) -> tuple[str, dict[str, Any]]:
        """What an off-session charge of a card saved on the setup page does, and the card it names."""
        with atomic():
            row = db.session.get(SandboxObject, payment_method_id)
            data = dict(row.data) if row is not None and row.kind == "payment_method" else None
        if data is None:
            raise GatewayError(f"No such sandbox payment method: {payment_method_id}", code="resource_missing")
        if data.get("customer") != customer_id:  # detached (or someone else's): Stripe refuses it too
            raise GatewayError("This card is no longer saved for the customer.", code="payment_method_unattached")
        card = data["card"]
        return data.get("_charges", "success"), {"type": "card", "card": {
            "brand": card["brand"], "last4": card["last4"], "wallet": None}}

    # --- state changes of intents and charges (inside the caller's transaction) -------------------------

    def _new_intent(self, amount: int, currency: str, metadata: dict[str, str], customer: str | None) -> dict[str, Any]:
        return self._add("payment_intent", {
            "id": _new_id("pi"), "object": "payment_intent", "amount": amount, "currency": currency.lower(),
            "status": "requires_payment_method", "metadata": metadata, "customer": customer,
            "latest_charge": None, "last_payment_error": None, "created": int(time.time())})

    def _attempt(self, session: dict[str, Any]) -> SandboxObject:
        """The session's payment intent, made at its first payment attempt (as at Stripe)."""
        if not session.get("_attempt"):
            intent = self._new_intent(session["amount_total"], session["currency"], dict(session["metadata"]),
                                      session.get("customer"))
            db.session.flush()
            session["_attempt"] = intent["id"]
        return self._load(session["_attempt"], lock=True)

    def _complete(self, session: dict[str, Any], intent: dict[str, Any], *, later: bool,
                  events: list[tuple[str, dict[str, Any]]]) -> None:
        session.update(status="complete", payment_intent=intent["id"])
        if later:
            charge = self._new_charge(intent, status="pending")
            intent.update(status="processing", latest_charge=charge["id"], last_payment_error=None)
            events.append(("payment_intent.processing", intent))
        else:
            session["payment_status"] = "paid"
            self._succeed(intent, events)
        events.append(("checkout.session.completed", session))

    def _new_charge(self, intent: dict[str, Any], *, status: str) -> dict[str, Any]:
        return self._add("charge", {
            "id": _new_id("ch"), "object": "charge", "amount": intent["amount"], "amount_refunded": 0,
            "currency": intent["currency"], "payment_intent": intent["id"], "metadata": dict(intent["metadata"]),
            "payment_method_details": intent.get("_method"), "status": status, "refunded": False,
            "refunds": {"object": "list", "data": []},
            "created": int(time.time())})

    def _succeed(self, intent: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> None:
        pending = self._load(intent["latest_charge"], lock=True) if intent.get("latest_charge") else None
        if pending is not None and pending.data["status"] == "pending":  # a settles-later charge that cleared
            self._save(pending, {**pending.data, "status": "succeeded"})
            charge_id = pending.id
        else:
            charge_id = self._new_charge(intent, status="succeeded")["id"]
        intent.update(status="succeeded", latest_charge=charge_id, last_payment_error=None)
        events.append(("payment_intent.succeeded", intent))

    def _fail(self, intent: dict[str, Any], code: str, message: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        """A pending charge that failed, or (a card refused now) a new failed charge: each try is its own charge."""
        pending = self._load(intent["latest_charge"], lock=True) if intent.get("latest_charge") else None
        if pending is not None and pending.data["status"] == "pending":
            self._save(pending, {**pending.data, "status": "failed"})
        else:
            intent["latest_charge"] = self._new_charge(intent, status="failed")["id"]
        intent.update(status="requires_payment_method",
                      last_payment_error={"code": code, "decline_code": code, "message": message})
        events.append(("payment_intent.payment_failed", intent))


__all__ = ["ACCOUNTS", "CARDS", "SETUP_CARDS", "CardDeclined", "PayOutcome", "SandboxGateway", "sign", "webhook_secret"]
