"""Outgoing webhooks: the endpoints admins register, and delivering their events (the only code that calls them).

Delivery (`deliver_due`, the `deliver-webhooks` job) mirrors the mail outbox: claim one due delivery in a short
write transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite) with a lease, POST it
outside any transaction with a timeout, record the outcome in a second transaction. A delivery is due when no
earlier delivery of the same invoice to the same endpoint is still pending, so an invoice's events arrive in the
order they happened. A 2xx answer is success; anything else (an error status, a redirect, a timeout, a refused
address) is retried with backoff until 3 days after the event, then the delivery is failed. An endpoint that has
failed continuously for WEBHOOK_DISABLE_AFTER_DAYS is disabled and the organization's admins are emailed.

Signature, like Stripe's: header `Invoicing-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
with the endpoint's secret (docs/api.md has a verification snippet).

Server-side request forgery: only http(s) URLs, and the host must resolve to public addresses only (not
loopback, private, link-local, multicast or reserved), checked when the endpoint is saved and again at every
delivery, which then connects to the address it checked (no second lookup a DNS answer could change).
WEBHOOKS_ALLOW_PRIVATE lets an operator reach their own network on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.orm import aliased, joinedload

from invoicing import jobs
from invoicing.extensions import db
from invoicing.mail import enqueue, render_email, sender_for
from invoicing.models import (
    WEBHOOK_EVENT_TYPES,
    Organization,
    OutgoingEvent,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    not_archived,
)
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.db import atomic, begin_write
from invoicing.services.site import Site

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Invoicing-Signature"
USER_AGENT = "invoicing-webhooks/1"
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
           timedelta(hours=5), timedelta(hours=10), timedelta(hours=12))
LEASE = timedelta(minutes=2)  # longer than a delivery can take (timeout x the few reads of one response)
BATCH = 100
BATCH_SECONDS = 60
MAX_URL = 2000
MAX_DESCRIPTION = 200
SYSTEM = Actor.system("webhooks")


# --- the URL rules (SSRF) ---------------------------------------------------------------------------------


class RefusedAddress(DomainError):
    """The URL is not one the app will call."""


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(url: str, *, allow_private: bool) -> list[str]:
    """The addresses to connect to for this URL, all of them allowed; RefusedAddress otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedAddress("The URL must start with https:// (or http://) and name a host.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        raise RefusedAddress(f"The host {parts.hostname} could not be found.") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private and not all(_public(a) for a in addresses):
        raise RefusedAddress(f"{parts.hostname} is a private, loopback or link-local address: webhooks only go to "
                             "public addresses (an operator can allow private ones with WEBHOOKS_ALLOW_PRIVATE).")
    return addresses


def check_url(url: str, *, allow_private: bool) -> str:
    url = url.strip()
    if not url:
        raise DomainError("Enter the endpoint's URL.")
    if len(url) > MAX_URL:
        raise DomainError(f"The URL can have at most {MAX_URL} characters.")
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise DomainError("Leave user names and passwords out of the URL: check the signature instead.")
    if any(c.isspace() for c in url):
        raise DomainError("The URL cannot contain spaces.")
    resolve(url, allow_private=allow_private)
    return url


# --- endpoints --------------------------------------------------------------------------------------------


def secret_for(endpoint: WebhookEndpoint, secret_key: str) -> str:
    """The endpoint's signing secret: derived, never stored; bumping `secret_version` replaces it."""
    mac = hmac.new(secret_key.encode(), f"webhook-endpoint:{endpoint.public_id}:{endpoint.secret_version}".encode(),
                   hashlib.sha256).digest()
    return "whsec_" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _check_events(events: list[str]) -> list[str]:
    chosen = [e for e in WEBHOOK_EVENT_TYPES if e in events]
    if not chosen or set(events) - set(WEBHOOK_EVENT_TYPES):
        raise DomainError("Choose at least one event to send.")
    return chosen


def create_endpoint(organization_id: int, *, url: str, description: str, events: list[str], allow_private: bool,
                    actor: Actor, now: datetime) -> WebhookEndpoint:
    chosen = _check_events(events)
    description = description.strip()
    if len(description) > MAX_DESCRIPTION:
        raise DomainError(f"The description can have at most {MAX_DESCRIPTION} characters.")
    url = check_url(url, allow_private=allow_private)  # last: it looks the host up
    with atomic():
        endpoint = WebhookEndpoint(organization_id=organization_id, url=url, description=description, events=chosen,
                                   enabled=True, created_at=now,
                                   created_by_id=actor.id if actor.type == "user" else None)
        db.session.add(endpoint)
        db.session.flush()
        record("webhook_endpoint.created", endpoint, actor=actor, now=now, details={"url": url, "events": chosen})
    return endpoint


def _lock_endpoint(endpoint_id: int, organization_id: int | None) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).with_for_update()
    if organization_id is not None:
        query = query.where(WebhookEndpoint.organization_id == organization_id)
    endpoint = db.session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
    if endpoint is None:
        raise NotFound("Webhook endpoint not found.")
    return endpoint


def get_endpoint(endpoint_id: int, organization_id: int | None) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if organization_id is not None:
        query = query.where(WebhookEndpoint.organization_id == organization_id)
    endpoint = db.session.execute(query).scalar_one_or_none()
    if endpoint is None:
        raise NotFound("Webhook endpoint not found.")
    return endpoint


def list_endpoints(organization_id: int | None) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.id)
    if organization_id is not None:
        query = query.where(WebhookEndpoint.organization_id == organization_id)
    return list(db.session.execute(query).scalars())


def set_enabled(endpoint_id: int, organization_id: int | None, enabled: bool, *, actor: Actor,
                now: datetime) -> WebhookEndpoint:
    with atomic():
        endpoint = _lock_endpoint(endpoint_id, organization_id)
        if endpoint.enabled == enabled:
            raise DomainError(f"This endpoint is already {'enabled' if enabled else 'disabled'}.")
        endpoint.enabled = enabled
        endpoint.failing_since = None
        endpoint.disabled_at = None if enabled else now
        endpoint.disabled_reason = "" if enabled else f"Disabled by {actor.label}"
        record("webhook_endpoint.enabled" if enabled else "webhook_endpoint.disabled", endpoint, actor=actor, now=now)
    return endpoint


def rotate_secret(endpoint_id: int, organization_id: int | None, *, actor: Actor, now: datetime) -> WebhookEndpoint:
    with atomic():
        endpoint = _lock_endpoint(endpoint_id, organization_id)
        endpoint.secret_version += 1
        record("webhook_endpoint.secret_rotated", endpoint, actor=actor, now=now,
               details={"secret_version": endpoint.secret_version})
    return endpoint


def delete_endpoint(endpoint_id: int, organization_id: int | None, *, actor: Actor, now: datetime) -> None:
    """Remove the endpoint and its delivery log; the events stay (other endpoints may have them)."""
    with atomic():
        endpoint = _lock_endpoint(endpoint_id, organization_id)
        db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
        record("webhook_endpoint.deleted", endpoint, actor=actor, now=now, details={"url": endpoint.url})
        db.session.delete(endpoint)


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[WebhookDelivery]
    next_before: int | None


def list_deliveries(endpoint: WebhookEndpoint, *, before: int | None = None, limit: int = 50) -> DeliveryPage:
    """The endpoint's delivery log, newest first, keyset-paginated on id."""
    query = (select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
             .options(joinedload(WebhookDelivery.event)).order_by(WebhookDelivery.id.desc()).limit(limit + 1))
    if before:
        query = query.where(WebhookDelivery.id < before)
    rows = list(db.session.execute(query).scalars())
    return DeliveryPage(rows[:limit], rows[limit - 1].id if len(rows) > limit else None)


def resend(delivery_id: int, organization_id: int | None, *, actor: Actor, now: datetime) -> WebhookDelivery:
    """Send a delivery again now (a failed one, or one the receiver lost), with 3 more days of retries."""
    with atomic():
        query = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
        if organization_id is not None:
            query = query.where(WebhookDelivery.organization_id == organization_id)
        delivery = db.session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
        if delivery is None:
            raise NotFound("Delivery not found.")
        previous = delivery.status
        delivery.status, delivery.next_attempt_at, delivery.attempts = "pending", now, 0
        delivery.retry_until = now + timedelta(days=3)
        endpoint = db.session.get_one(WebhookEndpoint, delivery.endpoint_id)
        record("webhook_delivery.resent", endpoint, actor=actor, now=now,
               details={"delivery_id": delivery.id, "from": previous, "event": delivery.event.type})
    return delivery


# --- sending ------------------------------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address we already checked, with the certificate verified for the URL's host name."""

    def __init__(self, address: str, hostname: str, port: int, timeout: float):
        super().__init__(hostname, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, address: str, hostname: str, port: int, timeout: float):
        super().__init__(hostname, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


@dataclass(frozen=True)
class Answer:
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool) -> Answer:
    """POST once, to the checked address, without following redirects; never raises."""
    parts = urlsplit(url)
    try:
        address = resolve(url, allow_private=allow_private)[0]
    except RefusedAddress as exc:
        return Answer(None, str(exc))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(address, parts.hostname or "", port, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(4096)  # a little of the answer, so the receiver is not cut off mid-write
        return Answer(response.status, None if 200 <= response.status < 300 else f"HTTP {response.status}")
    except TimeoutError:
        return Answer(None, f"No answer within {timeout:g} s")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, f"{exc.__class__.__name__}: {exc}"[:300])
    finally:
        connection.close()


# --- the delivery job -----------------------------------------------------------------------------------------


def _claim_next(now: datetime, skip: set[int]) -> int | None:
    """Take the oldest due delivery whose invoice has no earlier delivery pending to the same endpoint."""
    earlier = aliased(WebhookDelivery)
    try:
        begin_write()
        query = (
            select(WebhookDelivery)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                   WebhookEndpoint.enabled.is_(True), not_archived(WebhookDelivery.organization_id),
                   ~exists().where(and_(earlier.endpoint_id == WebhookDelivery.endpoint_id,
                                        earlier.invoice_id == WebhookDelivery.invoice_id,
                                        earlier.status == "pending", earlier.id < WebhookDelivery.id)))
            .order_by(WebhookDelivery.id).limit(1)
            .with_for_update(of=WebhookDelivery, skip_locked=True)
            .execution_options(populate_existing=True)
        )
        if skip:
            query = query.where(WebhookDelivery.endpoint_id.not_in(skip))
        delivery = db.session.execute(query).scalar_one_or_none()
        if delivery is None:
            db.session.rollback()
            return None
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.next_attempt_at = now + LEASE
        db.session.commit()
        return delivery.id
    except Exception:
        db.session.rollback()
        raise


def _record(delivery_id: int, answer: Answer, *, now: datetime, disable_after: timedelta, site: Site) -> str:
    with atomic():
        delivery = db.session.execute(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                                      .with_for_update().execution_options(populate_existing=True)).scalar_one()
        endpoint = _lock_endpoint(delivery.endpoint_id, None)
        delivery.last_status_code, delivery.last_error = answer.status, answer.error
        if answer.ok:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = "succeeded", now, None
            endpoint.failing_since = None
            return "succeeded"
        if now >= delivery.retry_until:
            delivery.status, delivery.next_attempt_at = "failed", None
        else:
            delivery.next_attempt_at = min(now + BACKOFF[min(delivery.attempts, len(BACKOFF)) - 1],
                                           delivery.retry_until)
        endpoint.failing_since = endpoint.failing_since or now
        if endpoint.enabled and now - endpoint.failing_since >= disable_after:
            _disable(endpoint, now=now, site=site)
        return delivery.status


def _disable(endpoint: WebhookEndpoint, *, now: datetime, site: Site) -> None:
    """Failing for days: stop sending (its deliveries wait, in case it is enabled again) and tell the admins."""
    days = (now - (endpoint.failing_since or now)).days
    endpoint.enabled, endpoint.disabled_at = False, now
    endpoint.disabled_reason = f"Every delivery failed for {days} days"
    record("webhook_endpoint.disabled", endpoint, actor=SYSTEM, now=now, details={"reason": endpoint.disabled_reason})
    organization = db.session.get_one(Organization, endpoint.organization_id)
    admins = db.session.execute(select(User.email).where(
        User.organization_id == endpoint.organization_id, User.role == "admin", User.active.is_(True))).scalars().all()
    subject = f"Webhook endpoint disabled: {endpoint.url[:80]}"
    text, html = render_email("webhook_disabled", subject=subject, organization=organization, endpoint=endpoint,
                              days=days, settings_url=site.url(f"/admin/settings/webhooks/{endpoint.id}", organization))
    sender, reply_to = sender_for(organization, site.mail_sender)
    for to in [e for e in (list(admins) or [organization.sender_email or ""]) if e]:
        try:
            enqueue(kind="webhook_disabled", to=to, subject=subject, text_body=text, html_body=html, from_addr=sender,
                    reply_to=reply_to, now=now, organization_id=organization.id,
                    dedupe_key=f"webhook_disabled:{endpoint.id}:{now.isoformat()}:{to}")
        except DomainError as exc:
            log.warning("webhook-disabled email not queued: %s", exc)


@dataclass
class DeliveryReport:
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"deliver-webhooks: {self.succeeded} delivered, {self.retrying} to retry, {self.failed} failed"
        return text + (f" ({self.errors[-1]})" if self.errors else "")


def deliver_due(*, now: datetime, limit: int = BATCH, clock: Callable[[], float] = time.time) -> DeliveryReport:
    """Deliver due events, one claimed delivery at a time, never inside a transaction. An endpoint that fails
    is left alone for the rest of the run (its other events wait for their retry)."""
    config = current_app.config
    site = Site.from_config(config)
    timeout = float(config.get("WEBHOOK_TIMEOUT", 10))
    allow_private = bool(config.get("WEBHOOKS_ALLOW_PRIVATE", False))
    disable_after = timedelta(days=int(config.get("WEBHOOK_DISABLE_AFTER_DAYS", 3)))
    report = DeliveryReport()
    skip: set[int] = set()
    deadline = time.monotonic() + BATCH_SECONDS
    for _ in range(limit):
        if time.monotonic() > deadline:
            break
        delivery_id = _claim_next(now, skip)
        if delivery_id is None:
            break
        delivery = db.session.get_one(WebhookDelivery, delivery_id)
        endpoint = db.session.get_one(WebhookEndpoint, delivery.endpoint_id)
        event = db.session.get_one(OutgoingEvent, delivery.event_id)
        url, body, secret = endpoint.url, event.payload.encode(), secret_for(endpoint, site.secret_key)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   SIGNATURE_HEADER: sign(secret, body, int(clock())),
                   "Invoicing-Event-Id": f"evt_{event.public_id}", "Invoicing-Event-Type": event.type}
        db.session.rollback()  # end the read transaction before the network conversation
        answer = post(url, body, headers, timeout=timeout, allow_private=allow_private)
        status = _record(delivery_id, answer, now=now, disable_after=disable_after, site=site)
        if status == "succeeded":
            report.succeeded += 1
            continue
        log.warning("webhook delivery %s to endpoint %s failed: %s", delivery_id, endpoint.id,
                    answer.error, extra={"delivery_id": delivery_id})
        report.errors.append(answer.error or "")
        report.failed += status == "failed"
        report.retrying += status == "pending"
        skip.add(delivery.endpoint_id)
    return report


@jobs.register("deliver-webhooks", 15)
def deliver_webhooks(now: datetime, dry_run: bool) -> str:
    """Send the outgoing webhook events that are due (with retries and backoff for 3 days)."""
    if dry_run:
        due = db.session.execute(select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)).scalar_one()
        db.session.rollback()
        return f"deliver-webhooks: would try {due} delivery(ies)"
    return str(deliver_due(now=now))


def pending_count(endpoint: WebhookEndpoint) -> int:
    return int(db.session.execute(select(func.count()).select_from(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")).scalar_one())
