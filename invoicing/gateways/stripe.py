"""Stripe: hosted and embedded Checkout Sessions, refunds, off-session PaymentIntents and signed webhooks.

The only module that imports `stripe`. It uses one `StripeClient` (never the SDK's globals) with explicit
timeouts and network retries; every call that creates or moves money carries our idempotency key, so the
SDK's retries (and ours) replay instead of repeating.

Amounts: Stripe's "smallest currency unit" equals our minor unit for almost every currency (USD cents,
JPY yen, KWD fils). Where they differ (ISK and a few others that Stripe still counts in hundredths)
`to_stripe`/`from_stripe` convert exactly, and refuse what cannot be converted exactly. Stripe also takes
card amounts in BHD, JOD, KWD, OMR and TND only in steps of 10 fils: such amounts are refused with a clear
message before any session is made (base.check_chargeable), never rounded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import stripe

from invoicing.gateways.base import (
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
    check_chargeable,
    checkout_from,
    event_from_body,
    event_from_payload,
    payment_intent_from,
    refund_from,
    setup_checkout_from,
)
from invoicing.money import precision

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE = 300  # seconds: an older signature is refused (replay protection)
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
UNREACHABLE = "The payment provider could not be reached. Please try again in a minute."


def stripe_exponent(currency: str) -> int:
    """How many decimals Stripe's amount for this currency has (its docs' currency list)."""
    code = currency.upper()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def to_stripe(amount: int, currency: str) -> int:
    shift = stripe_exponent(currency) - precision(currency)
    if shift >= 0:
        return amount * 10**shift
    whole, rest = divmod(amount, 10**-shift)
    if rest:
        raise GatewayError(f"Stripe cannot take {currency.upper()} amounts this precise.", code="amount_precision")
    return whole


def from_stripe(amount: int, currency: str) -> int:
    shift = stripe_exponent(currency) - precision(currency)
    if shift <= 0:
        return amount * 10**-shift
    whole, rest = divmod(amount, 10**shift)
    if rest:  # Stripe never sends fractions of our minor unit; refuse rather than round money
        raise ValueError(f"{amount} {currency} from Stripe is not a whole number of minor units")
    return whole


@contextmanager
def _errors() -> Iterator[None]:
    """Translate SDK exceptions into GatewayError (safe message, code, retryable)."""
    try:
        yield
    except stripe.CardError as exc:
        error = exc.error
        code = (error.decline_code if error else None) or exc.code or "card_declined"
        intent = error.payment_intent if error else None
        raise CardDeclined(exc.user_message or "The card was declined.", code=code,
                           advice_code=getattr(error, "advice_code", None) if error else None,
                           payment_intent_id=getattr(intent, "id", None) if intent else None) from None
    except stripe.IdempotencyError as exc:
        retryable = exc.http_status == 409  # a concurrent request with the same key is still in flight
        log.warning("stripe idempotency error: %s", exc.user_message)
        raise GatewayError(UNREACHABLE if retryable else "The payment provider refused a repeated request.",
                           code="idempotency_error", retryable=retryable) from None
    except stripe.InvalidRequestError as exc:
        log.warning("stripe refused a request: %s (code %s, param %s)", exc.user_message, exc.code, exc.param)
        raise GatewayError(exc.user_message or "The payment provider refused the request.", code=exc.code) from None
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        log.error("stripe rejected our API key: %s", exc.user_message)
        raise GatewayError("Card payments are not set up correctly. Please contact the sender.",
                           code="authentication") from None
    except stripe.StripeError as exc:  # connection errors, 5xx, rate limits: the outcome is unknown
        log.warning("stripe unreachable: %s: %s", type(exc).__name__, exc.user_message)
        raise GatewayError(UNREACHABLE, code=type(exc).__name__, retryable=True) from None


def _to_minor(amount: int, currency: str) -> int:
    return from_stripe(amount, currency)


class StripeGateway(Gateway):
    name = "stripe"
    method = "card"
    signature_header = "Stripe-Signature"

    def __init__(self, *, api_key: str, webhook_secret: str | None, api_base: str | None = None,
                 timeout: tuple[float, float] = (5.0, 30.0), max_network_retries: int = 2):
        self._http = stripe.RequestsClient(timeout=timeout)
        options: dict[str, Any] = {"base_addresses": {"api": api_base}} if api_base else {}
        self._client = stripe.StripeClient(api_key, http_client=self._http,
                                           max_network_retries=max_network_retries, **options)
        self._webhook_secret = webhook_secret

    def check_amount(self, amount: int, currency: str) -> None:
        check_chargeable(amount, currency)
        with _errors():
            to_stripe(amount, currency)

    def create_customer(self, *, name: str, email: str | None, metadata: Mapping[str, str],
                        idempotency_key: str) -> str | None:
        params: dict[str, Any] = {"name": name, "metadata": dict(metadata)}
        if email:
            params["email"] = email
        with _errors():
            customer = self._client.v1.customers.create(params, {"idempotency_key": idempotency_key})  # type: ignore[arg-type]
        return str(customer.id)

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        self.check_amount(request.amount, request.currency)
        metadata = dict(request.metadata)
        intent_data: dict[str, Any] = {"metadata": metadata}
        if request.description:
            intent_data["description"] = request.description
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": request.currency.lower(),
                "unit_amount": to_stripe(request.amount, request.currency),
                "product_data": {"name": request.product_name},
            }}],
            "metadata": metadata,
            "payment_intent_data": intent_data,
        }
        if request.ui_mode == "embedded":  # API 2026-03-25.dahlia and later: "embedded_page", no success/cancel URL
            params.update(ui_mode="embedded_page", return_url=request.success_url)
        else:
            params.update(success_url=request.success_url, cancel_url=request.cancel_url)
        if metadata.get("invoice_id"):
            params["client_reference_id"] = metadata["invoice_id"]
        if request.customer_id:
            params["customer"] = request.customer_id
        elif request.customer_email:
            params["customer_email"] = request.customer_email
        with _errors():
            session = self._client.v1.checkout.sessions.create(
                params, {"idempotency_key": request.idempotency_key})  # type: ignore[arg-type]
        return checkout_from(session.to_dict(), _to_minor)

    def retrieve_checkout(self, session_id: str) -> Checkout:
        with _errors():
            session = self._client.v1.checkout.sessions.retrieve(session_id)
        return checkout_from(session.to_dict(), _to_minor)

    def expire_checkout(self, session_id: str) -> Checkout:
        try:
            with _errors():
                session = self._client.v1.checkout.sessions.expire(session_id)
            return checkout_from(session.to_dict(), _to_minor)
        except GatewayError as exc:
            if exc.retryable:
                raise
            return self.retrieve_checkout(session_id)  # already complete or expired: say what it is

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentInfo:
        with _errors():
            intent = self._client.v1.payment_intents.retrieve(payment_intent_id, {"expand": ["latest_charge"]})
        return payment_intent_from(intent.to_dict(), _to_minor)

    def retrieve_charge(self, charge_id: str) -> ChargeInfo:
        with _errors():
            charge = self._client.v1.charges.retrieve(charge_id, {"expand": ["refunds"]})
        return charge_from(charge.to_dict(), _to_minor)

    def refund(self, *, amount: int, currency: str, idempotency_key: str, payment_intent_id: str | None = None,
               charge_id: str | None = None, reason: str = "", payment_ref: str = "") -> RefundInfo:
        metadata = {"reason": reason[:500], **({"payment_id": payment_ref} if payment_ref else {})}
        params: dict[str, Any] = {"amount": to_stripe(amount, currency), "metadata": metadata}
        if charge_id:
            params["charge"] = charge_id
        elif payment_intent_id:
            params["payment_intent"] = payment_intent_id
        else:
            raise GatewayError("This payment has no provider reference to refund.")
        with _errors():
            refund = self._client.v1.refunds.create(params, {"idempotency_key": idempotency_key})  # type: ignore[arg-type]
        return refund_from(refund.to_dict(), _to_minor)

    def charge_off_session(self, *, customer_id: str, payment_method_id: str, amount: int, currency: str,
                           idempotency_key: str, metadata: Mapping[str, str]) -> ChargeResult:
        self.check_amount(amount, currency)
        params: dict[str, Any] = {
            "amount": to_stripe(amount, currency), "currency": currency.lower(), "customer": customer_id,
            "payment_method": payment_method_id, "off_session": True, "confirm": True, "metadata": dict(metadata),
        }
        try:
            with _errors():
                intent = self._client.v1.payment_intents.create(
                    params, {"idempotency_key": idempotency_key})  # type: ignore[arg-type]
        except CardDeclined as exc:
            status = "requires_action" if exc.code == "authentication_required" else "failed"
            return ChargeResult(payment_intent_id=exc.payment_intent_id, status=status, amount=amount,
                                currency=currency, failure_code=exc.code, failure_message=exc.message,
                                advice_code=exc.advice_code)
        info = payment_intent_from(intent.to_dict(), _to_minor)
        status = info.status if info.status in ("succeeded", "processing", "requires_action") else "failed"
        return ChargeResult(payment_intent_id=info.id, status=status, amount=amount, currency=currency,
                            charge_id=info.charge_id, failure_code=info.failure_code,
                            failure_message=info.failure_message)

    def parse_event(self, raw: bytes, signature: str | None) -> Event:
        if not signature:
            raise SignatureError("missing Stripe-Signature header")
        if not self._webhook_secret:
            raise SignatureError("STRIPE_WEBHOOK_SECRET is not set")
        try:  # the signature only: the SDK's construct_event fails on valid JSON that is not an object
            stripe.WebhookSignature.verify_header(raw, signature, self._webhook_secret, tolerance=WEBHOOK_TOLERANCE)
        except stripe.SignatureVerificationError as exc:
            raise SignatureError(str(exc.user_message or exc)) from None
        except UnicodeDecodeError:
            raise SignatureError("the body is not UTF-8 text, so it cannot carry a valid signature") from None
        return event_from_body(self.name, raw, _to_minor)

    def event_from_payload(self, payload: Mapping[str, Any]) -> Event:
        return event_from_payload(self.name, payload, _to_minor)

    # --- saving a card for later (Checkout in setup mode) ---------------------------------------------------

    def create_setup_checkout(self, request: SetupRequest) -> SetupCheckout:
        metadata = dict(request.metadata)
        params: dict[str, Any] = {
            "mode": "setup", "currency": request.currency.lower(), "success_url": request.success_url,
            "cancel_url": request.cancel_url, "metadata": metadata, "setup_intent_data": {"metadata": metadata},
        }
        if request.customer_id:
            params["customer"] = request.customer_id
        with _errors():
            session = self._client.v1.checkout.sessions.create(
                params, {"idempotency_key": request.idempotency_key})  # type: ignore[arg-type]
        return setup_checkout_from(session.to_dict())

    def retrieve_setup_checkout(self, session_id: str) -> SetupCheckout:
        with _errors():
            session = self._client.v1.checkout.sessions.retrieve(
                session_id, {"expand": ["setup_intent.payment_method"]})
        return setup_checkout_from(session.to_dict())

    def detach_payment_method(self, payment_method_id: str) -> None:
        try:
            with _errors():
                self._client.v1.payment_methods.detach(payment_method_id)
        except GatewayError as exc:
            if exc.retryable:
                raise
            with _errors():  # refused: fine if it is detached already (a retry after a lost answer)
                method = self._client.v1.payment_methods.retrieve(payment_method_id)
            if method.customer:
                raise
