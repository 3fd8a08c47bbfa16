"""The outbox (DESIGN rule 7): emails are rows written in the caller's transaction; a job delivers them.

This module is the only code that talks to SMTP.

Delivery (`deliver_due`, the `deliver-mail` job) claims one due row at a time in a short write transaction
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite): status `sending`, one more attempt,
and a lease (`next_attempt_at` = now + 5 minutes). It then talks to SMTP outside any transaction, with a
socket timeout, and records the outcome in a second transaction: `sent`, or `queued` again after a backoff
(1 min, 5 min, 30 min, 2 h, 12 h), or `failed` after the last attempt or a permanent refusal (5xx). A process
that dies mid-send leaves a `sending` row whose lease runs out; the next run sends it again with the same
Message-ID, so a receiving server can recognise the repeat.

Statuses: queued -> sending -> sent | queued (retry) | failed; `held` when no MAIL_SERVER is configured.
Held emails are never sent by themselves (an operator who configures SMTP later must not blast weeks-old
demo mail at clients): staff release them from the Outbox page ("Send now" / "Send all held").
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import formataddr, parseaddr
from typing import Any

from flask import current_app, render_template
from flask_mail import BadHeaderError, Connection, Mail, Message
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from invoicing import jobs
from invoicing.extensions import db
from invoicing.models import Invoice, Organization, OutboxEmail, not_archived
from invoicing.services import DomainError, NotFound
from invoicing.services.audit import Actor, record
from invoicing.services.billing.opens import with_pixel
from invoicing.services.db import atomic, begin_write
from invoicing.services.site import Site
from invoicing.services.users import normalize_email

log = logging.getLogger(__name__)

BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
           timedelta(hours=12))
MAX_ATTEMPTS = len(BACKOFF) + 1  # the first try and five retries, about 15 hours in all
LEASE = timedelta(minutes=5)
BATCH = 50  # per run; the job runs every 15 s
BATCH_SECONDS = 120  # no new claim after this: every lease (taken with the run's `now`) outlives its send
STATUSES = ("queued", "sending", "sent", "failed", "held")
NO_SERVER = "No MAIL_SERVER is configured: kept in the outbox."
SYSTEM = Actor.system("mail")


def _no_newlines(label: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise DomainError(f"The {label} cannot contain line breaks.")  # header injection
    return value


def sender_for(organization: Organization | None, default_sender: str) -> tuple[str, str | None]:
    """(From, Reply-To): our configured sender address with the organization's name; replies go to it."""
    _, address = parseaddr(default_sender)
    if organization is None:
        return default_sender, None
    return formataddr((organization.name, address)), organization.sender_email or None


def render_email(name: str, **context: Any) -> tuple[str, str]:
    """(text, html) from templates/emails/<name>.txt and .html, both extending the branded layout."""
    return render_template(f"emails/{name}.txt", **context), render_template(f"emails/{name}.html", **context)


def enqueue(
    *,
    kind: str,
    to: str,
    subject: str,
    text_body: str,
    html_body: str,
    from_addr: str,
    now: datetime,
    organization_id: int | None = None,
    invoice_id: int | None = None,
    reply_to: str | None = None,
    attachments: Sequence[dict[str, Any]] = (),
    dedupe_key: str | None = None,
) -> OutboxEmail | None:
    """Queue an email in the caller's transaction (no commit). Returns None if the dedupe key was used."""
    to = normalize_email(_no_newlines("recipient", to))
    subject = _no_newlines("subject", subject.strip())
    _no_newlines("sender", from_addr)
    if reply_to:
        reply_to = normalize_email(_no_newlines("reply-to address", reply_to))
    for spec in attachments:
        if spec.get("kind") not in ATTACHMENT_KINDS:
            raise DomainError(f"Unknown attachment kind {spec.get('kind')!r}.")
    values = dict(
        kind=kind, to_addr=to, from_addr=from_addr, reply_to=reply_to, subject=subject, text_body=text_body,
        html_body=html_body, attachments=list(attachments), dedupe_key=dedupe_key, status="queued",
        next_attempt_at=now, organization_id=organization_id, invoice_id=invoice_id, created_at=now,
    )
    # One statement: a row with the same dedupe key (queued earlier, or by a concurrent writer, which wins) makes
    # the insert do nothing and return no row.
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return db.session.scalars(insert(OutboxEmail).values(**values).on_conflict_do_nothing()
                              .returning(OutboxEmail)).first()


# --- attachments -----------------------------------------------------------------------------------------

ATTACHMENT_KINDS = ("invoice_pdf", "statement_pdf")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


def attachment_label(spec: dict[str, Any]) -> str:
    if spec.get("kind") == "invoice_pdf":
        return "Invoice PDF"
    if spec.get("kind") == "statement_pdf":
        return "Statement PDF"
    return str(spec.get("kind"))


def build_attachment(spec: dict[str, Any], organization_id: int | None) -> Attachment:
    """Turn an attachment spec into bytes, rendered now (the PDF comes from its per-version cache)."""
    from invoicing import pdf  # WeasyPrint's import is slow; only pay for it when a PDF is needed
    from invoicing.services.reports import statements  # it queues its emails here: imported when used

    if spec.get("kind") == "statement_pdf":
        statement = statements.from_spec(spec, organization_id)
        return Attachment(statements.filename_for(statement), "application/pdf", pdf.statement_pdf(statement))
    if spec.get("kind") != "invoice_pdf":
        raise DomainError(f"Unknown attachment kind {spec.get('kind')!r}.")
    invoice = db.session.get(Invoice, int(spec.get("invoice_id") or 0))
    if invoice is None or (organization_id is not None and invoice.organization_id != organization_id):
        raise NotFound("The invoice of this attachment is gone.")
    return Attachment(pdf.filename_for(invoice), "application/pdf", pdf.invoice_pdf(invoice))


# --- delivery --------------------------------------------------------------------------------------------


class _TimeoutConnection(Connection):
    """Flask-Mail's connection with a socket timeout: it has none, and a hung server would block forever."""

    def __init__(self, state: Any, timeout: float):
        super().__init__(state)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        state = self.mail
        smtp_class = smtplib.SMTP_SSL if state.use_ssl else smtplib.SMTP
        host = smtp_class(state.server, state.port, timeout=self.timeout)
        try:
            if state.use_tls:
                host.starttls()
            if state.username and state.password:
                host.login(state.username, state.password)
        except BaseException:
            host.close()
            raise
        return host

    def close(self) -> None:
        if self.host is None:
            return
        try:
            self.host.quit()
        except (smtplib.SMTPException, OSError):
            self.host.close()
        self.host = None


def mail_configured() -> bool:
    return bool(current_app.config.get("MAIL_SERVER"))


def _connect() -> _TimeoutConnection:
    state = Mail().init_mail(current_app.config)
    connection = _TimeoutConnection(state, float(current_app.config.get("MAIL_TIMEOUT") or 15))
    connection.host = connection.configure_host()
    return connection


def _message_id(email: OutboxEmail) -> str:
    """Stable across retries, so a repeat after a crash is recognisable as the same message."""
    domain = parseaddr(email.from_addr)[1].rpartition("@")[2] or "localhost"
    return f"<outbox-{email.id}-{email.created_at:%Y%m%d%H%M%S}@{domain}>"


def build_message(email: OutboxEmail) -> Message:
    message = Message(
        subject=email.subject, recipients=[email.to_addr], body=email.text_body,
        html=with_pixel(email, Site.from_config(current_app.config)),  # invoice and reminder emails: open tracking
        sender=email.from_addr, reply_to=email.reply_to or None,
    )
    message.msgId = _message_id(email)
    for spec in email.attachments or []:
        item = build_attachment(spec, email.organization_id)
        message.attach(item.filename, item.content_type, item.data)
    return message


def _classify(exc: BaseException) -> tuple[bool, bool]:
    """(permanent, connection_broken). 5xx refusals of the recipient or the message are permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes), any(code == 421 for code in codes)
    if isinstance(exc, smtplib.SMTPDataError):
        return exc.smtp_code >= 500, exc.smtp_code == 421
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return False, exc.smtp_code == 421  # our sender setting is wrong: retry once the operator fixes it
    if isinstance(exc, DomainError | BadHeaderError):
        return True, False  # the message itself can never be sent (its invoice is gone, a bad header)
    if isinstance(exc, smtplib.SMTPException | OSError):
        return False, True  # refused, timed out, disconnected, TLS or login failed: the server, not the message
    return False, False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{to}: {code} {msg.decode(errors='replace')}" for to, (code, msg) in exc.recipients.items())
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return f"{exc.smtp_code} {error}"
    return f"{exc.__class__.__name__}: {exc}"[:1000]


def _claim_next(now: datetime) -> int | None:
    """Take the oldest due row for this process (a `sending` row whose lease ran out counts as due)."""
    while True:
        begin_write()
        email = db.session.execute(
            select(OutboxEmail)
            .where(OutboxEmail.status.in_(("queued", "sending")), OutboxEmail.next_attempt_at <= now,
                   not_archived(OutboxEmail.organization_id))
            .order_by(OutboxEmail.next_attempt_at, OutboxEmail.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if email is None:
            db.session.rollback()
            return None
        if email.status == "sending" and email.attempts >= MAX_ATTEMPTS:
            email.status = "failed"  # it crashed the sender on every attempt: stop and show it
            email.last_error = (email.last_error or "") + " (gave up: delivery was interrupted every time)"
            _audit_failure(email, now)
            db.session.commit()
            continue
        email.status = "sending"
        email.attempts += 1
        email.next_attempt_at = now + LEASE
        email_id = email.id
        db.session.commit()
        return email_id


def _audit_failure(email: OutboxEmail, now: datetime) -> None:
    target = db.session.get(Invoice, email.invoice_id) if email.invoice_id else email
    record("email.failed", target, actor=SYSTEM, now=now, organization_id=email.organization_id,
           details={"outbox_id": email.id, "to": email.to_addr, "kind": email.kind, "error": email.last_error})


def _mark_sent(email_id: int, now: datetime) -> None:
    with atomic():
        email = db.session.execute(
            select(OutboxEmail).where(OutboxEmail.id == email_id).with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        if email.status == "sent":
            return
        email.status, email.sent_at, email.next_attempt_at, email.last_error = "sent", now, None, None
        target = db.session.get(Invoice, email.invoice_id) if email.invoice_id else email
        record("email.delivered", target, actor=SYSTEM, now=now, organization_id=email.organization_id,
               details={"outbox_id": email.id, "to": email.to_addr, "subject": email.subject, "kind": email.kind})


def _mark_failed(email_id: int, now: datetime, error: str, *, permanent: bool) -> str:
    with atomic():
        email = db.session.execute(
            select(OutboxEmail).where(OutboxEmail.id == email_id).with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        if email.status != "sending":
            return email.status
        email.last_error = error
        if permanent or email.attempts >= MAX_ATTEMPTS:
            email.status, email.next_attempt_at = "failed", None
            _audit_failure(email, now)
        else:
            email.status = "queued"
            email.next_attempt_at = now + BACKOFF[min(email.attempts, len(BACKOFF)) - 1]
        return email.status


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    held: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.held:
            return f"deliver-mail: {self.held} held (no MAIL_SERVER configured)"
        text = f"deliver-mail: {self.sent} sent, {self.retrying} to retry, {self.failed} failed"
        return text + (f" ({self.errors[-1]})" if self.errors else "")


def hold_due(now: datetime) -> int:
    """No SMTP server: keep due emails as `held`, visible on the Outbox page, until staff release them."""
    with atomic():
        result = db.session.execute(
            update(OutboxEmail)
            .where(OutboxEmail.status.in_(("queued", "sending")), OutboxEmail.next_attempt_at <= now,
                   not_archived(OutboxEmail.organization_id))
            .values(status="held", next_attempt_at=None, last_error=NO_SERVER)
        )
    return int(getattr(result, "rowcount", 0) or 0)


def deliver_due(*, now: datetime, limit: int = BATCH) -> DeliveryReport:
    """Send due emails, one claimed row at a time, over one SMTP connection; never inside a transaction."""
    report = DeliveryReport()
    if not mail_configured():
        report.held = hold_due(now)
        return report
    connection: _TimeoutConnection | None = None
    deadline = time.monotonic() + BATCH_SECONDS
    try:
        for _ in range(limit):
            if time.monotonic() > deadline:
                break
            email_id = _claim_next(now)
            if email_id is None:
                break
            try:
                email = db.session.get_one(OutboxEmail, email_id)
                message = build_message(email)
                db.session.rollback()  # end the read transaction before the network conversation
                connection = connection or _connect()
                connection.send(message)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row and retried
                db.session.rollback()
                permanent, broken = _classify(exc)
                error = _describe(exc)
                log.warning("email %s not delivered: %s", email_id, error)
                report.errors.append(error)
                status = _mark_failed(email_id, now, error, permanent=permanent)
                report.failed += status == "failed"
                report.retrying += status == "queued"
                if broken:
                    if connection is not None:
                        connection.close()
                    break  # the server is down or hanging: the rest waits for the next run
                continue
            _mark_sent(email_id, now)
            report.sent += 1
    finally:
        if connection is not None:
            connection.close()
    return report


@jobs.register("deliver-mail", 15)
def deliver_mail(now: datetime, dry_run: bool) -> str:
    """Send the outbox's due emails over SMTP (with retries and backoff)."""
    if dry_run:
        due = db.session.execute(
            select(func.count()).select_from(OutboxEmail)
            .where(OutboxEmail.status.in_(("queued", "sending")), OutboxEmail.next_attempt_at <= now,
                   not_archived(OutboxEmail.organization_id))
        ).scalar_one()
        db.session.rollback()
        action = "send" if mail_configured() else "hold (no MAIL_SERVER)"
        return f"deliver-mail: would {action} {due} email(s)"
    return str(deliver_due(now=now))


# --- the Outbox page's services ---------------------------------------------------------------------------


def _scoped(query: Any, organization_id: int | None) -> Any:
    return query if organization_id is None else query.where(OutboxEmail.organization_id == organization_id)


@dataclass(frozen=True)
class OutboxPage:
    emails: list[OutboxEmail]
    counts: dict[str, int]
    next_before: int | None


def list_outbox(organization_id: int | None, *, status: str | None = None, before: int | None = None,
                limit: int = 50) -> OutboxPage:
    """Newest first, keyset-paginated on id; `organization_id` None means every organization (superadmin)."""
    counts: dict[str, int] = {
        status: count for status, count in db.session.execute(
            _scoped(select(OutboxEmail.status, func.count()), organization_id).group_by(OutboxEmail.status)
        )
    }
    query = _scoped(select(OutboxEmail), organization_id)
    if status in STATUSES:
        query = query.where(OutboxEmail.status == status)
    if before:
        query = query.where(OutboxEmail.id < before)
    rows = list(db.session.execute(query.order_by(OutboxEmail.id.desc()).limit(limit + 1)).scalars())
    next_before = rows[limit - 1].id if len(rows) > limit else None
    return OutboxPage(rows[:limit], {s: int(counts.get(s, 0)) for s in STATUSES}, next_before)


def get_email(email_id: int, organization_id: int | None) -> OutboxEmail:
    email = db.session.execute(_scoped(select(OutboxEmail), organization_id).where(OutboxEmail.id == email_id))
    found = email.scalar_one_or_none()
    if found is None:
        raise NotFound("Email not found.")
    return found


def retry_email(email_id: int, organization_id: int | None, *, actor: Actor, now: datetime) -> OutboxEmail:
    """Send a failed or held email again now, with a fresh set of attempts."""
    with atomic():
        email = db.session.execute(
            _scoped(select(OutboxEmail), organization_id).where(OutboxEmail.id == email_id).with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if email is None:
            raise NotFound("Email not found.")
        if email.status not in ("failed", "held", "queued"):
            raise DomainError(f"This email is {email.status}; only failed, held or waiting emails can be sent again.")
        previous = email.status
        email.status, email.next_attempt_at, email.attempts = "queued", now, 0
        record("email.retried", email, actor=actor, now=now, details={"from": previous, "to": email.to_addr})
    return email


def release_held(organization_id: int | None, *, actor: Actor, now: datetime) -> int:
    """Queue every held email of the organization (or all, for a superadmin) for delivery now."""
    with atomic():
        emails = db.session.execute(
            _scoped(select(OutboxEmail), organization_id).where(OutboxEmail.status == "held").with_for_update()
        ).scalars().all()
        for email in emails:
            email.status, email.next_attempt_at, email.attempts = "queued", now, 0
            record("email.retried", email, actor=actor, now=now, details={"from": "held", "to": email.to_addr})
    return len(emails)

