"""What the app needs from a payment provider, and the small result types it gets back.

Two implementations: gateways/stripe.py (the only module that imports `stripe`) and gateways/sandbox.py (a
provider inside the app for demos and trials). Amounts in and out of a gateway are our integer minor units
(ISO 4217 precision from Babel); a gateway converts at its own boundary. Provider events are Stripe-shaped
JSON for both, normalized here into `Event` with typed views of its object.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from invoicing.money import format_money

# Stripe takes card amounts in these 3-decimal currencies only in steps of 10 minor units (the last digit 0).
TEN_STEP_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


class GatewayError(Exception):
    """The provider refused or could not be reached. `message` is safe to show; `retryable` means the same
    request (with the same idempotency key) may succeed later."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


class CardDeclined(GatewayError):
    """The card was refused when charged (off-session); `code` is the decline code, `advice_code` the issuer's
    advice when the provider gives one (try_again_later, do_not_try_again, confirm_card_data)."""

    def __init__(self, message: str, *, code: str | None = None, advice_code: str | None = None,
                 payment_intent_id: str | None = None):
        super().__init__(message, code=code)
        self.advice_code = advice_code
        self.payment_intent_id = payment_intent_id


class SignatureError(Exception):
    """A webhook whose signature is missing, wrong, or older than the tolerance."""


class NotAnEvent(ValueError):
    """A webhook body that cannot be an event (not JSON, not an object, no id, type or data.object); nothing
    of it is stored, since there is no event id to store it under and nothing a retry could change."""


def check_chargeable(amount: int, currency: str) -> None:
    """Refuse amounts a card provider cannot take exactly (we never round money silently)."""
    if amount <= 0:
        raise GatewayError("The amount must be above zero.")
    if currency.upper() in TEN_STEP_CURRENCIES and amount % 10:
        raise GatewayError(
            f"Cards take {currency.upper()} amounts in steps of {format_money(10, currency.upper())}: "
            f"{format_money(amount, currency.upper())} cannot be charged by card. "
            "Ask the sender for an amount that ends in 0, or pay another way.",
            code="amount_not_chargeable",
        )


@dataclass(frozen=True)
class CheckoutRequest:
    amount: int  # minor units
    currency: str
    product_name: str
    success_url: str  # may contain {CHECKOUT_SESSION_ID}
    cancel_url: str
    idempotency_key: str
    metadata: Mapping[str, str]
    customer_id: str | None = None
    customer_email: str | None = None
    description: str = ""
    # hosted: the provider's page at `url` (success_url and cancel_url); embedded: the provider's form inside
    # our page, started with `client_secret` (Stripe's embedded_page: success_url is its return_url, no cancel).
    ui_mode: str = "hosted"


@dataclass(frozen=True)
class Checkout:
    id: str
    url: str | None  # only while open
    status: str  # open, complete, expired
    payment_status: str  # paid, unpaid, no_payment_required
    amount: int
    currency: str
    payment_intent_id: str | None
    metadata: Mapping[str, str]
    expires_at: datetime | None = None
    customer_id: str | None = None
    payer_email: str | None = None
    client_secret: str | None = None  # embedded sessions: what the provider's script mounts the form with

    @property
    def invoice_id(self) -> int | None:
        return _int(self.metadata.get("invoice_id"))


@dataclass(frozen=True)
class MethodDetails:
    """How a payment was actually made, from the provider's `payment_method_details`: never card data beyond
    what a receipt shows (brand, last 4 digits) and never a full account number."""

    type: str  # card, us_bank_account, sepa_debit, bacs_debit, acss_debit, au_becs_debit, link, ...
    brand: str = ""  # cards: visa, mastercard, amex, ...
    last4: str = ""
    wallet: str = ""  # cards paid through apple_pay, google_pay, link, ...
    bank_name: str = ""  # debits, when the provider knows it


def method_details_from(details: Any) -> MethodDetails | None:
    """Stripe's `payment_method_details` ({"type": "card", "card": {...}}), or None when there are none."""
    if not isinstance(details, Mapping) or not details.get("type"):
        return None
    kind = str(details["type"])
    inner: Mapping[str, Any] = details[kind] if isinstance(details.get(kind), Mapping) else {}
    wallet: Mapping[str, Any] = inner["wallet"] if isinstance(inner.get("wallet"), Mapping) else {}
    return MethodDetails(
        type=kind[:40], brand=str(inner.get("brand") or "")[:40], last4=str(inner.get("last4") or "")[-4:],
        wallet=str(wallet.get("type") or "")[:40], bank_name=str(inner.get("bank_name") or "")[:100],
    )


@dataclass(frozen=True)
class PaymentIntentInfo:
    id: str
    amount: int
    currency: str
    status: str  # succeeded, processing, requires_payment_method, requires_action, canceled, ...
    metadata: Mapping[str, str]
    charge_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    method: MethodDetails | None = None  # when its latest charge came expanded

    @property
    def invoice_id(self) -> int | None:
        return _int(self.metadata.get("invoice_id"))


# Refund statuses that mean the money never reached the client: it stays with us (Stripe puts it back in the
# balance). Both are final at the provider: a refund in one of them never succeeds later.
REFUND_REVERSED = ("failed", "canceled")
# Events about a refund whose status changed; each carries the Refund object (Stripe sends all three for a
# failed card refund, in no guaranteed order).
REFUND_UPDATE_EVENTS = ("charge.refund.updated", "refund.updated", "refund.failed")


@dataclass(frozen=True)
class RefundInfo:
    id: str
    amount: int
    currency: str
    status: str = "succeeded"  # pending, requires_action, succeeded, failed, canceled
    charge_id: str | None = None
    payment_intent_id: str | None = None
    reason: str = ""  # what staff wrote (metadata.reason)
    failure_reason: str = ""  # when failed: lost_or_stolen_card, expired_or_canceled_card, unknown, ...
    payment_ref: str = ""  # our payment id (metadata.payment_id): which invoice's share of a shared payment

    @property
    def reversed(self) -> bool:
        """The provider could not complete it (failed or canceled): the client did not get the money."""
        return self.status in REFUND_REVERSED


@dataclass(frozen=True)
class ChargeInfo:
    id: str
    payment_intent_id: str | None
    amount: int
    amount_refunded: int
    currency: str
    metadata: Mapping[str, str]
    refunds: tuple[RefundInfo, ...] = ()

    @property
    def invoice_id(self) -> int | None:
        return _int(self.metadata.get("invoice_id"))


@dataclass(frozen=True)
class DisputeInfo:
    id: str
    charge_id: str | None
    payment_intent_id: str | None
    amount: int
    currency: str
    reason: str
    status: str


@dataclass(frozen=True)
class ChargeResult:
    """Outcome of an off-session charge. A decline is an outcome (status failed), not an exception."""

    payment_intent_id: str | None
    status: str  # succeeded, processing, requires_action, failed
    amount: int
    currency: str
    charge_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    advice_code: str | None = None  # a decline's: do_not_try_again means never retry this card


AmountConverter = Any  # Callable[[int, str], int]: provider units -> our minor units


@dataclass(frozen=True)
class Event:
    """A verified provider event. `object` is the provider's JSON for the thing the event is about."""

    provider: str
    id: str
    type: str
    created: datetime
    object: Mapping[str, Any]
    to_minor: AmountConverter = field(default=lambda amount, currency: amount, repr=False, compare=False)

    @property
    def observed_at(self) -> datetime | None:
        """When the provider saw `object` in this state (the event's `created`); None if the event had none."""
        return self.created if self.created.timestamp() > 0 else None

    def checkout(self) -> Checkout:
        return checkout_from(self.object, self.to_minor)

    def payment_intent(self) -> PaymentIntentInfo:
        return payment_intent_from(self.object, self.to_minor)

    def charge(self) -> ChargeInfo:
        return charge_from(self.object, self.to_minor)

    def refund(self) -> RefundInfo:
        """The Refund object of charge.refund.updated, refund.updated and refund.failed."""
        return refund_from(self.object, self.to_minor)

    def dispute(self) -> DisputeInfo:
        obj, currency = self.object, str(self.object.get("currency") or "").upper()
        return DisputeInfo(
            id=str(obj["id"]), charge_id=_id(obj.get("charge")), payment_intent_id=_id(obj.get("payment_intent")),
            amount=self.to_minor(int(obj.get("amount") or 0), currency), currency=currency,
            reason=str(obj.get("reason") or ""), status=str(obj.get("status") or ""),
        )


def event_from_body(provider: str, raw: bytes, to_minor: AmountConverter | None = None) -> Event:
    """The event in a webhook body whose signature was checked; NotAnEvent when the JSON is not one."""
    try:
        payload = json.loads(raw)
    except ValueError:
        raise NotAnEvent("the body is not JSON") from None
    return event_from_payload(provider, payload, to_minor)


def event_from_payload(provider: str, payload: Mapping[str, Any], to_minor: AmountConverter | None = None) -> Event:
    """Normalize a Stripe-shaped event dict; raises NotAnEvent (a ValueError) when it is not one."""
    if not isinstance(payload, Mapping):  # valid JSON may still be a list, a string or null
        raise NotAnEvent("the body is JSON but not an object")
    try:
        obj = payload["data"]["object"]
        if not isinstance(obj, Mapping):
            raise TypeError("data.object is not an object")
        return Event(
            provider=provider, id=str(payload["id"]), type=str(payload["type"]),
            created=datetime.fromtimestamp(int(payload.get("created") or 0), UTC), object=obj,
            **({"to_minor": to_minor} if to_minor else {}),
        )
    except KeyError as exc:
        raise NotAnEvent(f"no {exc} in the event") from None
    except (TypeError, ValueError) as exc:
        raise NotAnEvent(str(exc)) from None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _id(value: Any) -> str | None:
    """An id, or the id of an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _meta(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def checkout_from(obj: Mapping[str, Any], to_minor: AmountConverter) -> Checkout:
    currency = str(obj.get("currency") or "").upper()
    details = obj.get("customer_details") or {}
    return Checkout(
        id=str(obj["id"]), url=obj.get("url"), status=str(obj.get("status") or ""),
        payment_status=str(obj.get("payment_status") or ""),
        amount=to_minor(int(obj.get("amount_total") or 0), currency), currency=currency,
        payment_intent_id=_id(obj.get("payment_intent")), metadata=_meta(obj.get("metadata")),
        expires_at=_ts(obj.get("expires_at")), customer_id=_id(obj.get("customer")),
        payer_email=details.get("email") or obj.get("customer_email"), client_secret=obj.get("client_secret"),
    )


def payment_intent_from(obj: Mapping[str, Any], to_minor: AmountConverter) -> PaymentIntentInfo:
    currency = str(obj.get("currency") or "").upper()
    error = obj.get("last_payment_error") or {}
    charge = obj.get("latest_charge")
    return PaymentIntentInfo(
        id=str(obj["id"]), amount=to_minor(int(obj.get("amount") or 0), currency), currency=currency,
        status=str(obj.get("status") or ""), metadata=_meta(obj.get("metadata")),
        charge_id=_id(obj.get("latest_charge")),
        failure_code=error.get("decline_code") or error.get("code"), failure_message=error.get("message"),
        method=method_details_from(charge.get("payment_method_details")) if isinstance(charge, Mapping) else None,
    )


def refund_from(obj: Mapping[str, Any], to_minor: AmountConverter, *, charge: Mapping[str, Any] | None = None
                ) -> RefundInfo:
    """A Refund object, on its own (refund events) or listed on its charge (`charge`, for the ids it omits)."""
    currency = str(obj.get("currency") or (charge or {}).get("currency") or "").upper()
    return RefundInfo(
        id=str(obj["id"]), amount=to_minor(int(obj.get("amount") or 0), currency), currency=currency,
        status=str(obj.get("status") or "succeeded"),
        charge_id=_id(obj.get("charge")) or (str(charge["id"]) if charge else None),
        payment_intent_id=_id(obj.get("payment_intent")) or _id((charge or {}).get("payment_intent")),
        reason=str((obj.get("metadata") or {}).get("reason") or ""),
        failure_reason=str(obj.get("failure_reason") or ""),
        payment_ref=str((obj.get("metadata") or {}).get("payment_id") or ""),
    )


def charge_from(obj: Mapping[str, Any], to_minor: AmountConverter) -> ChargeInfo:
    currency = str(obj.get("currency") or "").upper()
    refunds = tuple(refund_from(r, to_minor, charge=obj) for r in ((obj.get("refunds") or {}).get("data") or []))
    return ChargeInfo(
        id=str(obj["id"]), payment_intent_id=_id(obj.get("payment_intent")),
        amount=to_minor(int(obj.get("amount") or 0), currency),
        amount_refunded=to_minor(int(obj.get("amount_refunded") or 0), currency), currency=currency,
        metadata=_meta(obj.get("metadata")), refunds=refunds,
    )


# --- saving a card for later (portal payment methods, autopay) ----------------------------------------------


@dataclass(frozen=True)
class SetupRequest:
    """A hosted page where the client saves a card without paying (Stripe Checkout in setup mode)."""

    currency: str  # Stripe needs one in setup mode (what the card will be charged in)
    success_url: str  # contains {CHECKOUT_SESSION_ID}
    cancel_url: str
    idempotency_key: str
    metadata: Mapping[str, str]
    customer_id: str | None = None  # the card is attached to this customer when the setup succeeds


@dataclass(frozen=True)
class SavedCard:
    """A saved card as the provider describes it: enough to recognise it, never card data."""

    id: str  # pm_...
    customer_id: str | None  # None once detached
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class SetupCheckout:
    id: str
    url: str | None  # only while open
    status: str  # open, complete, expired
    mode: str  # setup (a payment session's id answers with mode payment and no card)
    customer_id: str | None
    metadata: Mapping[str, str]
    setup_intent_id: str | None = None
    setup_status: str | None = None  # the SetupIntent's: succeeded, requires_action, canceled, ...
    card: SavedCard | None = None  # once the setup succeeded

    @property
    def saved(self) -> bool:
        return self.status == "complete" and self.setup_status == "succeeded" and self.card is not None


def saved_card_from(obj: Mapping[str, Any]) -> SavedCard | None:
    """A PaymentMethod object of type card, or None for anything else."""
    card = obj.get("card")
    if obj.get("type") != "card" or not isinstance(card, Mapping):
        return None
    return SavedCard(id=str(obj["id"]), customer_id=_id(obj.get("customer")), brand=str(card.get("brand") or "")[:40],
                     last4=str(card.get("last4") or "")[-4:], exp_month=int(card.get("exp_month") or 0),
                     exp_year=int(card.get("exp_year") or 0))


def setup_checkout_from(obj: Mapping[str, Any]) -> SetupCheckout:
    """A Checkout Session with `setup_intent.payment_method` expanded (or not: then no card)."""
    intent = obj.get("setup_intent")
    intent_obj: Mapping[str, Any] = intent if isinstance(intent, Mapping) else {}
    method = intent_obj.get("payment_method")
    return SetupCheckout(
        id=str(obj["id"]), url=obj.get("url"), status=str(obj.get("status") or ""), mode=str(obj.get("mode") or ""),
        customer_id=_id(obj.get("customer")), metadata=_meta(obj.get("metadata")), setup_intent_id=_id(intent),
        setup_status=str(intent_obj["status"]) if intent_obj.get("status") else None,
        card=saved_card_from(method) if isinstance(method, Mapping) else None,
    )


class Gateway(ABC):
    """A payment provider. Calls go over the network (or to the sandbox's tables): never call one while
    holding a database row lock; pass an idempotency key to everything that creates or moves money."""

    name: str  # stored as CheckoutSession.provider and WebhookEvent.provider
    method: str  # Payment.method of what it collects
    signature_header: str

    def check_amount(self, amount: int, currency: str) -> None:
        check_chargeable(amount, currency)

    @abstractmethod
    def create_customer(self, *, name: str, email: str | None, metadata: Mapping[str, str],
                        idempotency_key: str) -> str | None:
        """A provider customer id to reuse on later checkouts, or None if the provider keeps none."""

    @abstractmethod
    def create_checkout(self, request: CheckoutRequest) -> Checkout: ...

    @abstractmethod
    def retrieve_checkout(self, session_id: str) -> Checkout: ...

    @abstractmethod
    def expire_checkout(self, session_id: str) -> Checkout:
        """Expire an open session; a session that is no longer open is returned as it is (no error)."""

    @abstractmethod
    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentInfo:
        """The intent with its latest charge expanded, so `method` says how it was paid."""

    @abstractmethod
    def retrieve_charge(self, charge_id: str) -> ChargeInfo:
        """The charge with its refunds listed (Stripe webhooks since API 2022-11-15 leave them out)."""

    @abstractmethod
    def refund(self, *, amount: int, currency: str, idempotency_key: str, payment_intent_id: str | None = None,
               charge_id: str | None = None, reason: str = "", payment_ref: str = "") -> RefundInfo:
        """Refund `amount` of a charge (or of an intent's charge). `payment_ref` (our payment id) goes into the
        refund's metadata: a payment shared by several invoices says whose share it gives back."""

    @abstractmethod
    def charge_off_session(self, *, customer_id: str, payment_method_id: str, amount: int, currency: str,
                           idempotency_key: str, metadata: Mapping[str, str]) -> ChargeResult: ...

    @abstractmethod
    def parse_event(self, raw: bytes, signature: str | None) -> Event:
        """Verify the signature over the raw body (SignatureError if bad or too old) and normalize it."""

    @abstractmethod
    def event_from_payload(self, payload: Mapping[str, Any]) -> Event:
        """Normalize an event already verified and stored (re-applying from the inbox)."""

    # --- saving a card for later ----------------------------------------------------------------------------

    @abstractmethod
    def create_setup_checkout(self, request: SetupRequest) -> SetupCheckout:
        """A hosted page that saves a card to `request.customer_id` (no payment)."""

    @abstractmethod
    def retrieve_setup_checkout(self, session_id: str) -> SetupCheckout:
        """The setup session with its SetupIntent and card, as the provider says now (verify on return)."""

    @abstractmethod
    def detach_payment_method(self, payment_method_id: str) -> None:
        """Detach a saved card from its customer, for good; a card already detached is not an error."""
