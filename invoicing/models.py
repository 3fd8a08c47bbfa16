"""SQLAlchemy models: the nouns of DESIGN.md. Money columns are integer minor units beside a currency."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    exists,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, synonym

from invoicing.extensions import db

if TYPE_CHECKING:
    from invoicing.extensions import Base as Model
else:
    Model = db.Model

MILLI = Decimal(1000)


def _plain(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent form: 10.000 -> 10, 2.500 -> 2.5 (never 1E+1)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_public_id() -> str:
    return secrets.token_hex(16)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (naive storage) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Organization(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    address: Mapped[str] = mapped_column(Text, default="")
    sender_email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(50), default="")
    website: Mapped[str] = mapped_column(String(200), default="")
    logo: Mapped[bytes | None] = mapped_column(LargeBinary)
    logo_mime: Mapped[str | None] = mapped_column(String(50))
    brand_color: Mapped[str] = mapped_column(String(7), default="#1f4e79")
    accent_color: Mapped[str] = mapped_column(String(7), default="#f2a900")
    default_currency: Mapped[str] = mapped_column(String(3), default="USD")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    number_format: Mapped[str] = mapped_column(String(64), default="{year}-{seq:04d}")
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    allow_partial_payments: Mapped[bool] = mapped_column(Boolean, default=False)
    min_partial_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    payment_instructions: Mapped[str] = mapped_column(Text, default="")
    # Email the client a receipt when staff record a cash, bank transfer or cheque payment (card payers always get one).
    manual_payment_receipts: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Automatic reminders: which steps go and at what local hour (services/billing/reminders.Policy; {} = defaults).
    reminder_policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Invoice and reminder emails carry an open-tracking pixel (services/billing/opens.py) while this is on.
    track_email_opens: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Its own address for clients (e.g. https://billing.acme.test): every link in its emails and PDFs starts
    # here instead of BASE_URL. Stored normalized (scheme://host[:port], lower case), so UNIQUE means one host.
    public_url: Mapped[str | None] = mapped_column(String(200), unique=True, index=True)
    # Archived: its staff cannot log in, its pay links answer 410, the scheduler skips it; nothing is deleted.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A subscription whose invoice stays unpaid when the autopay ladder ends: "cancel" it, or "leave_unpaid"
    # (past_due until paid or canceled by staff). services/subscriptions/lifecycle.py.
    subscription_unpaid: Mapped[str] = mapped_column(String(12), default="cancel", server_default="cancel")

    def __repr__(self) -> str:
        return f"<Organization {self.slug}>"

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


def not_archived(organization_id: Any) -> Any:
    """A WHERE clause for scheduler work: rows of an archived organization wait until it is restored (rows of no
    organization pass)."""
    return ~exists().where(Organization.id == organization_id, Organization.archived_at.is_not(None))


ROLES = ("superadmin", "admin", "staff")


# A password hash starting with this can never match a password (no hashing method produces it); what follows
# is random, so replacing it (a resent invitation) changes the invitation's fingerprint.
UNUSABLE_PASSWORD_PREFIX = "!"


class User(UserMixin, Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="staff")
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization | None] = relationship()

    __table_args__ = (CheckConstraint("role IN ('superadmin', 'admin', 'staff')", name="role"),)

    def get_id(self) -> str:
        # Prefixed so staff and portal contacts can share Flask-Login's single user loader.
        return f"user:{self.id}"

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_superadmin(self) -> bool:
        return self.role == "superadmin"

    @property
    def is_invited(self) -> bool:
        """Invited and not yet accepted: the password hash is an unusable marker (UNUSABLE_PASSWORD_PREFIX)."""
        return self.password_hash.startswith(UNUSABLE_PASSWORD_PREFIX)


class Client(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    # The id the API shows ("cli_" + this); random, so ids reveal nothing about how many clients there are.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True, default=new_public_id)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), default="")
    address: Mapped[str] = mapped_column(Text, default="")
    tax_id: Mapped[str] = mapped_column(String(64), default="", server_default="")  # VAT number, EIN...: on the PDF
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    autopay_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    autopay_payment_method: Mapped[str | None] = mapped_column(String(255))
    autopay_consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The client asked not to get automatic reminders (staff can still send one by hand).
    reminders_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization] = relationship()
    contacts: Mapped[list[Contact]] = relationship(back_populates="client", order_by="Contact.id")

    __table_args__ = (Index("ix_client_org_name", "organization_id", "name"),)


class Contact(UserMixin, Model):
    """A person at a client company. With `portal_access` they sign in to the portal, where they act for this
    contact's client only (the same email at two companies is two contacts: picking a company is signing in as
    the other one)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True, default=new_public_id)  # API: con_
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    portal_access: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Part of every portal session's id: bumping it (access revoked, password changed) ends the live sessions.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    client: Mapped[Client] = relationship(back_populates="contacts")
    organization: Mapped[Organization] = relationship()

    __table_args__ = (UniqueConstraint("client_id", "email"),)

    def get_id(self) -> str:
        return f"contact:{self.id}:{self.session_version}"

    @property
    def is_active(self) -> bool:
        return self.portal_access


class PortalLogin(Model):
    """An emailed magic link of a contact: only the SHA-256 of its token is stored; single use, short-lived."""

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    contact: Mapped[Contact] = relationship()


INVOICE_STATUSES = ("draft", "open", "processing", "paid", "void")


class Invoice(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    number: Mapped[str | None] = mapped_column(String(64))
    number_year: Mapped[int | None] = mapped_column(Integer)
    number_seq: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    notes: Mapped[str] = mapped_column(Text, default="")
    project_ref: Mapped[str] = mapped_column(String(120), default="")
    discount_kind: Mapped[str | None] = mapped_column(String(10))
    discount_value: Mapped[int] = mapped_column(BigInteger, default=0)
    subtotal: Mapped[int] = mapped_column(BigInteger, default=0)
    discount_total: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_total: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)  # succeeded payments minus refunds
    link_version: Mapped[int] = mapped_column(Integer, default=1)
    # Counts the changes a client could see on the pay page: this row, its payments, refunds and lines
    # (services/pageversion.py bumps it); the pay page's rendering is kept per process under it.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    link_expires_on: Mapped[date | None] = mapped_column(Date)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    viewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str] = mapped_column(Text, default="")
    disputed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Since when money on it needs a person (an open AttentionCase): the "needs attention" tab and badge.
    attention_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Automatic reminders (services/billing/reminders.py): paused by staff for this invoice, and the policy's
    # steps done up to this one (its offset in days from the due date: -7 ... 14), sent or passed over.
    reminders_paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_through: Mapped[int | None] = mapped_column(Integer)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    organization: Mapped[Organization] = relationship()
    client: Mapped[Client] = relationship()
    contact: Mapped[Contact | None] = relationship()
    lines: Mapped[list[LineItem]] = relationship(
        back_populates="invoice", order_by="LineItem.position", cascade="all, delete-orphan"
    )
    payments: Mapped[list[Payment]] = relationship(back_populates="invoice", order_by="Payment.id")

    __table_args__ = (
        CheckConstraint("status IN ('draft', 'open', 'processing', 'paid', 'void')", name="status"),
        CheckConstraint("amount_paid >= 0", name="amount_paid_not_negative"),
        UniqueConstraint("organization_id", "number"),
        UniqueConstraint("organization_id", "number_year", "number_seq"),
        Index("ix_invoice_org_status_due", "organization_id", "status", "due_date"),
        Index("ix_invoice_org_issue", "organization_id", "issue_date", "id"),
    )

    @property
    def amount_due(self) -> int:
        return max(self.total - self.amount_paid, 0) if self.status in ("open", "processing") else 0

    @property
    def amount_overpaid(self) -> int:
        """Money received beyond what the invoice asks (all of it once void): staff refund it."""
        asked = self.total if self.status in ("open", "processing", "paid") else 0
        return max(self.amount_paid - asked, 0)

    @property
    def is_editable(self) -> bool:
        return self.status == "draft"

    def is_overdue(self, today: date) -> bool:
        return self.status == "open" and self.due_date < today

    def badges(self, today: date, email: str | None = None) -> list[str]:
        """The stored status plus the derived ones a person looks for (sent, viewed, partial, overdue). Given
        what happened to its email (queries.email_states), "sent" says so: email queued, held, delivered, failed."""
        badges = [self.status]
        if self.status in ("open", "processing"):
            if self.sent_at:
                badges.append(f"email_{email}" if email else "sent")
            if self.viewed_at:
                badges.append("viewed")
            if self.amount_paid > 0:
                badges.append("partial")
            if self.is_overdue(today):
                badges.append("overdue")
        if self.disputed_at:
            badges.append("disputed")
        if self.attention_since:
            badges.append("attention")
        return badges


class LineItem(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(Text)
    # Decimals kept as integer thousandths: exact on every database, no float anywhere.
    quantity_milli: Mapped[int] = mapped_column(BigInteger, default=1000)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    tax_rate_milli: Mapped[int] = mapped_column(Integer, default=0)  # percent x 1000
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    discount: Mapped[int] = mapped_column(BigInteger, default=0)  # this line's share of the invoice discount
    tax: Mapped[int] = mapped_column(BigInteger, default=0)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")

    @property
    def quantity(self) -> Decimal:
        return _plain(Decimal(self.quantity_milli) / MILLI)

    @property
    def tax_rate(self) -> Decimal:
        return _plain(Decimal(self.tax_rate_milli) / MILLI)


PAYMENT_METHODS = ("card", "sandbox", "cash", "bank_transfer", "cheque", "other")
MANUAL_METHODS = ("cash", "bank_transfer", "cheque", "other")
MANUAL_LABELS = {"cash": "Cash", "bank_transfer": "Bank transfer", "cheque": "Cheque", "other": "Other"}
CARD_BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover",
               "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay", "cartes_bancaires": "Cartes Bancaires"}
WALLETS = {"apple_pay": "Apple Pay", "google_pay": "Google Pay", "link": "Link", "samsung_pay": "Samsung Pay"}
DEBITS = {"us_bank_account": "ACH bank debit", "sepa_debit": "SEPA Direct Debit", "bacs_debit": "Bacs Direct Debit",
          "acss_debit": "Pre-authorized debit", "au_becs_debit": "BECS Direct Debit", "link": "Link"}
PAYMENT_STATUSES = ("processing", "succeeded", "failed", "refunded", "partially_refunded")


class Payment(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True, default=new_public_id)  # API: pay_
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    # Each provider reference maps to at most one payment: the database guards idempotency.
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    charge_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    reference: Mapped[str] = mapped_column(String(200), default="")
    receipt_number: Mapped[str | None] = mapped_column(String(64))
    paid_on: Mapped[date | None] = mapped_column(Date)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    overpayment: Mapped[bool] = mapped_column(Boolean, default=False)
    # How a provider payment was actually made (gateways.base.MethodDetails, filled in once it is known): the
    # provider's method type (card, us_bank_account, sepa_debit, ...), a card's brand and wallet, last 4
    # digits of the card or account, and a debit's bank. Never more card or account data than that.
    method_type: Mapped[str | None] = mapped_column(String(40))
    method_brand: Mapped[str | None] = mapped_column(String(40))
    method_last4: Mapped[str | None] = mapped_column(String(4))
    method_wallet: Mapped[str | None] = mapped_column(String(40))
    method_bank: Mapped[str | None] = mapped_column(String(100))
    failure_code: Mapped[str | None] = mapped_column(String(100))
    failure_message: Mapped[str | None] = mapped_column(Text)
    # The provider's time of the observation that last moved it between processing and failed (an event's
    # `created`, or when we retrieved the object): an older observation arriving later is stale.
    provider_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who paid: a signed-in portal contact (contact_id, also named paid_by_contact_id), or for a pay link
    # opened without signing in, the email the payer typed at the provider's checkout.
    payer_email: Mapped[str | None] = mapped_column(String(254))
    # One provider payment for several invoices (the portal's "pay several at once"): each invoice's share is a
    # Payment of its own, keyed `{session}:{invoice}`; the provider references are on the group, shared.
    group_id: Mapped[int | None] = mapped_column(ForeignKey("checkout_group.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    invoice: Mapped[Invoice] = relationship(back_populates="payments")
    refunds: Mapped[list[Refund]] = relationship(back_populates="payment", order_by="Refund.id")
    attempts: Mapped[list[PaymentAttempt]] = relationship(order_by="PaymentAttempt.id", viewonly=True)
    contact: Mapped[Contact | None] = relationship(viewonly=True)
    group: Mapped[CheckoutGroup | None] = relationship(back_populates="payments")
    paid_by_contact_id = synonym("contact_id")

    @property
    def payer_label(self) -> str:
        """Who paid, as staff and the client read it: the portal contact (name and email), else the email typed
        at checkout; "" when nobody is known (staff recorded it, or the provider told no email)."""
        if self.contact is not None:
            name = self.contact.name.strip()
            return f"{name} ({self.contact.email})" if name and name != self.contact.email else self.contact.email
        return self.payer_email or ""

    @property
    def provider_intent_id(self) -> str | None:
        """The provider's PaymentIntent that moved this money: its own, or the one its group shares."""
        return self.payment_intent_id or (self.group.payment_intent_id if self.group is not None else None)

    @property
    def method_label(self) -> str:
        """What the client used, for receipts, pages and exports: "Visa •••• 4242", "ACH bank debit,
        SANDBOX TEST BANK •••• 6789", "Bank transfer"; the sandbox's say that no money moved."""
        if self.method in MANUAL_METHODS:
            return MANUAL_LABELS[self.method]
        label = "Card"
        if self.method_type == "card":
            brand = CARD_BRANDS.get(self.method_brand or "", (self.method_brand or "card").replace("_", " ").title())
            wallet = f" ({WALLETS.get(self.method_wallet, self.method_wallet.replace('_', ' ').title())})" \
                if self.method_wallet else ""
            label = f"{brand} •••• {self.method_last4}{wallet}" if self.method_last4 else brand + wallet
        elif self.method_type:
            kind = DEBITS.get(self.method_type, self.method_type.replace("_", " ").capitalize())
            account = " ".join(x for x in (self.method_bank, f"•••• {self.method_last4}" if self.method_last4 else "")
                               if x)
            label = f"{kind}, {account}" if account else kind
        return f"{label} (sandbox, no money moved)" if self.method == "sandbox" else label

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount", name="refund_within_amount"),
    )


class Refund(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # succeeded (counted in the payment's amount_refunded), or failed / canceled at the provider (not counted:
    # the client never got the money, services/payments.reverse_refund gave it back to the invoice).
    status: Mapped[str] = mapped_column(String(20), default="succeeded")
    provider_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    failure_reason: Mapped[str | None] = mapped_column(String(100))  # the provider's, e.g. expired_or_canceled_card
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    payment: Mapped[Payment] = relationship(back_populates="refunds")

    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)


class PaymentAttempt(Model):
    """One try to pay that did not go through (a declined card, a debit the bank refused), kept for staff:
    a checkout retried after a decline is one Payment (one PaymentIntent) but several attempts."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id"), index=True)
    # The provider's charge of this try (each try is its own charge), else the payment's failure: heard twice
    # (webhook, return page, reconcile), it is recorded once.
    attempt_key: Mapped[str] = mapped_column(String(255), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    failure_code: Mapped[str | None] = mapped_column(String(100))
    failure_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


ATTENTION_KINDS = ("overpayment", "void_payment", "dispute", "refund_failed")


class AttentionCase(Model):
    """Money that needs a person: an overpayment, money on a void invoice, a dispute, a refund that failed.
    Opened once per case (`case_key`) in the transaction of the money change; staff resolve it (audited)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    case_key: Mapped[str] = mapped_column(String(255), unique=True)  # overpayment:{payment}, dispute:{dispute}...
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # what is at stake: the excess, the disputed or unrefunded sum
    currency: Mapped[str] = mapped_column(String(3))
    detail: Mapped[str] = mapped_column(String(200), default="")  # the provider's reason, if any
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    resolution: Mapped[str] = mapped_column(Text, default="")

    invoice: Mapped[Invoice] = relationship()

    __table_args__ = (
        CheckConstraint("kind IN ('overpayment', 'void_payment', 'dispute', 'refund_failed')", name="kind"),
        Index("ix_attention_case_org_open", "organization_id", "resolved_at", "id"),
    )


class ReceiptCounter(Model):
    """The last receipt number of an organization: numbers go to money received only, without gaps."""

    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class InvoiceCounter(Model):
    """The last number handed out per organization and year, locked while the next one is taken."""

    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class AuditEvent(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"))
    actor_type: Mapped[str] = mapped_column(String(10))  # user, contact, system
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_label: Mapped[str] = mapped_column(String(254), default="")
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_audit_object", "object_type", "object_id", "id"),
        Index("ix_audit_org_created", "organization_id", "created_at"),
    )


class WebhookEvent(Model):
    """The inbox: every provider event stored once, applied in a transaction, retried if applying failed."""

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="received")  # received, processed, failed, ignored
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Which invoice (and so which organization's staff) the event is about, known once it has been applied;
    # NULL for events about nothing of ours, which only a superadmin sees.
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id"))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"))

    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index("ix_webhook_event_status", "status", "received_at"),
        Index("ix_webhook_event_organization", "organization_id", "id"),
    )


class OutboxEmail(Model):
    """An email written in the same transaction as the change that caused it; the deliver job sends it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"), index=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    to_addr: Mapped[str] = mapped_column(String(254))
    from_addr: Mapped[str] = mapped_column(String(254))
    reply_to: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued, sent, failed, held
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The client's mail program loaded its tracking pixel (invoice and reminder emails: billing/opens.py).
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    open_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)


class ChargeAttempt(Model):
    """An autopay attempt, written (with its deterministic idempotency key) before the provider is called.

    `pending` from the moment it is written until the provider's answer is recorded: a crash or a timeout in
    between leaves it pending, and reconciliation replays the very same request (same key, same parameters,
    kept here) so the provider answers with the first outcome instead of charging again
    (services/billing/charges.py). Then succeeded, processing, or failed (`decline_kind`: soft, hard,
    authentication); `canceled` was planned and never sent."""

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"))
    attempt_number: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Autopay (migration 0013_autopay): what was sent, so a replay sends exactly the same request.
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"))
    provider: Mapped[str | None] = mapped_column(String(20))
    payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_method.id"))  # the card charged
    provider_method_id: Mapped[str | None] = mapped_column(String(255))  # its pm_... as sent
    customer_id: Mapped[str | None] = mapped_column(String(255))
    charge_id: Mapped[str | None] = mapped_column(String(255))
    error_message: Mapped[str | None] = mapped_column(Text)
    decline_kind: Mapped[str | None] = mapped_column(String(20))  # soft, hard, authentication
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when the ladder tries again, if it does
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id"))  # the money it moved

    payment_method: Mapped[PaymentMethod | None] = relationship()

    __table_args__ = (
        UniqueConstraint("invoice_id", "attempt_number"),
        Index("ix_charge_attempt_status", "status", "created_at"),
    )


AUTOPAY_STATUSES = ("scheduled", "processing", "succeeded", "failed", "cancelled")


class InvoiceAutopay(Model):
    """An invoice's autopay (services/billing/autopay.py): present when the invoice was opted in (its client had
    autopay on when it was issued), with the ladder's state. Changed only under the invoice's row lock.

    scheduled (next_charge_at says when: the due date or at issue, then 3, 7 and 14 days after the first
    failure), processing (an attempt is at the provider), succeeded, failed (for good: a hard decline, an
    authentication needed, or the last retry declined) or cancelled (autopay turned off, paid another way...)."""

    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), primary_key=True, autoincrement=False)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    mode: Mapped[str] = mapped_column(String(20))  # the consent's: due_date, on_issue
    status: Mapped[str] = mapped_column(String(20), default="scheduled")
    payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_method.id"))  # the card last used
    next_charge_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure_code: Mapped[str | None] = mapped_column(String(100))
    last_failure_message: Mapped[str | None] = mapped_column(Text)
    end_reason: Mapped[str | None] = mapped_column(String(40))  # why it failed for good or was cancelled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    payment_method: Mapped[PaymentMethod | None] = relationship()
    invoice: Mapped[Invoice] = relationship()

    __table_args__ = (
        CheckConstraint("status IN ('scheduled', 'processing', 'succeeded', 'failed', 'cancelled')", name="status"),
        Index("ix_invoice_autopay_due", "status", "next_charge_at"),
        Index("ix_invoice_autopay_client", "client_id", "status"),
        Index("ix_invoice_autopay_org", "organization_id", "status", "next_charge_at"),
    )


class JobRun(Model):
    """The lease of one scheduler job: the last slot done, updated in the same transaction as the work."""

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_slot: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outcome: Mapped[str] = mapped_column(Text, default="")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)  # of the last run, success or not


RECURRING_UNITS = ("week", "month", "quarter", "year")
RECURRING_STATUSES = ("active", "paused", "ended")


class RecurringProfile(Model):
    """What to invoice a client every N weeks, months, quarters or years (services/billing/recurring.py).

    Period k starts `k - anchor_index` intervals after `anchor_date`, on `anchor_day` clamped to the month's
    length (started on the 31st: the last day of shorter months, then the 31st again). Editing the interval
    re-anchors at the next period; `next_index`/`next_period_start` is the next period to invoice."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    # [{"description": str, "quantity": "2.5", "unit_price": minor units, "tax_rate": "8.5"}]
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    interval_unit: Mapped[str] = mapped_column(String(10))
    interval_count: Mapped[int] = mapped_column(Integer, default=1)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)  # no period starts after it
    max_invoices: Mapped[int | None] = mapped_column(Integer)  # ends after this many invoices
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    auto_send: Mapped[bool] = mapped_column(Boolean, default=True)  # else each invoice is left as a draft
    autopay: Mapped[bool] = mapped_column(Boolean, default=False)  # charge the saved card (autopay, later)
    status: Mapped[str] = mapped_column(String(10), default="active")
    anchor_date: Mapped[date] = mapped_column(Date)
    anchor_day: Mapped[int] = mapped_column(Integer)
    anchor_index: Mapped[int] = mapped_column(Integer, default=0)
    next_index: Mapped[int] = mapped_column(Integer, default=0)
    next_period_start: Mapped[date | None] = mapped_column(Date)  # None once ended
    invoices_made: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization] = relationship()
    client: Mapped[Client] = relationship()

    __table_args__ = (
        CheckConstraint("status IN ('active', 'paused', 'ended')", name="status"),
        CheckConstraint("interval_unit IN ('week', 'month', 'quarter', 'year')", name="interval_unit"),
        CheckConstraint("interval_count >= 1", name="interval_count_positive"),
        Index("ix_recurring_profile_due", "status", "next_period_start"),
        Index("ix_recurring_profile_org", "organization_id", "id"),
    )


class RecurringPeriod(Model):
    """One period of a profile, invoiced: UNIQUE(profile, period start) makes each period one invoice, however
    many schedulers tick at once."""

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("recurring_profile.id"))
    period_start: Mapped[date] = mapped_column(Date)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    invoice: Mapped[Invoice] = relationship()

    __table_args__ = (UniqueConstraint("profile_id", "period_start"),)


class InvoicePdf(Model):
    """Rendered PDF bytes per invoice version (WeasyPrint is slow: render once, serve the stored bytes)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64))  # hash of what the PDF shows
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("invoice_id", "version"),)


class TemplateOverride(Model):
    """One saved version of the staff's text for what clients receive (an email's subject and body, the PDF's
    notes). Never updated: each save adds a row, the latest per organization and template is active, and a
    reset adds a row with `is_default` (the app's own text again) so every earlier version stays on record."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    template: Mapped[str] = mapped_column(String(40))  # invoice, reminder, receipt, payment_failed, pdf
    parts: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # {"subject": ..., "body": ...}
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    created_by: Mapped[User | None] = relationship()

    __table_args__ = (Index("ix_template_override_latest", "organization_id", "template", "id"),)


class CheckoutSession(Model):
    """A hosted checkout opened for an invoice: reused on a double click, expired when the invoice is paid."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))  # stripe, sandbox
    session_id: Mapped[str] = mapped_column(String(255), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open, complete, expired
    url: Mapped[str] = mapped_column(Text)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # hosted (the provider's page, or the sandbox's) or embedded (Stripe's Checkout inside the portal page): an
    # open session is handed out again only to the same kind of request from the same payer.
    ui_mode: Mapped[str] = mapped_column(String(20), default="hosted", server_default="hosted")

    __table_args__ = (Index("ix_checkout_session_open", "invoice_id", "status"),)


class CheckoutGroup(Model):
    """One checkout for several invoices of one client and currency (portal: "pay several at once"). The
    provider sees one session and one PaymentIntent for the sum; when it completes, each invoice is credited its
    own item amount through the money door (services/payments.apply_group_payment), in one transaction.

    `ref` goes into the provider's metadata (`checkout_group`): derived from the request's idempotency key with
    an HMAC of SECRET_KEY, so a double click finds the same row and another installation's sessions never match."""

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    provider: Mapped[str] = mapped_column(String(20))
    ui_mode: Mapped[str] = mapped_column(String(20), default="hosted")
    # Set once the provider made the session (NULL: being made, or a crash before; never paid without one).
    session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    charge_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open, complete, expired
    url: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    items: Mapped[list[CheckoutGroupItem]] = relationship(order_by="CheckoutGroupItem.invoice_id",
                                                          cascade="all, delete-orphan")
    payments: Mapped[list[Payment]] = relationship(back_populates="group", order_by="Payment.invoice_id")
    contact: Mapped[Contact | None] = relationship()

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_checkout_group_open", "status", "created_at"),
    )


class CheckoutGroupItem(Model):
    """One invoice of a group checkout and the amount it is to be credited (its amount due when selected)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("checkout_group.id", ondelete="CASCADE"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)

    invoice: Mapped[Invoice] = relationship()

    __table_args__ = (
        UniqueConstraint("group_id", "invoice_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )


# --- Sandbox payment provider (issue 4) ------------------------------------------------------------------


class SandboxObject(Model):
    """State of the built-in sandbox provider (used when no Stripe key is set): its checkout sessions,
    payment intents, refunds and idempotency keys, shaped like Stripe's objects. The provider's side of the
    world, never our ledger: payments are recorded only from its signed events and lookups, like Stripe's."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # cs_sbx_..., pi_sbx_..., idem_...
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_sandbox_object_kind", "kind", "created_at"),)


# --- Client portal (issue 9): saved cards and autopay consent (migration 0012_portal_cards) ----------------


class PaymentMethod(Model):
    """A client's card saved at the provider (Stripe, or the sandbox): what the portal lists and autopay charges.
    Only what a person needs to recognise it (brand, last 4, expiry), never card data. `provider_id` (pm_...)
    is stored once: reloading the return page of the same setup adds nothing. The client's default card is
    `Client.autopay_payment_method` (one pointer, so never two defaults). A removed card is detached at the
    provider and kept here with `removed_at` (history, and its provider id can never be stored again)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    provider: Mapped[str] = mapped_column(String(20))  # stripe, sandbox
    provider_id: Mapped[str] = mapped_column(String(255), unique=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))  # the provider customer it is attached to
    setup_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    brand: Mapped[str] = mapped_column(String(40), default="")
    last4: Mapped[str] = mapped_column(String(4), default="")
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    added_by_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    client: Mapped[Client] = relationship()

    __table_args__ = (Index("ix_payment_method_client", "client_id", "removed_at"),)

    @property
    def label(self) -> str:
        """"Visa •••• 4242", as receipts name a card."""
        brand = CARD_BRANDS.get(self.brand, (self.brand or "card").replace("_", " ").title())
        return f"{brand} •••• {self.last4}"

    @property
    def expiry(self) -> str:
        return f"{self.exp_month:02d}/{self.exp_year % 100:02d}"


AUTOPAY_MODES = ("due_date", "on_issue")


class AutopayConsent(Model):
    """A contact's agreement that the client's default card is charged automatically: the exact text shown
    (and its version), when, from which IP, and when to charge. One is active per client (ended_at NULL) while
    autopay is on; turning autopay off ends it. Rows are never deleted: they are the record of the mandate."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_method.id"))  # default card then
    mode: Mapped[str] = mapped_column(String(20))  # due_date (charge on the due date), on_issue (when issued)
    text_version: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    ip: Mapped[str] = mapped_column(String(45), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by_type: Mapped[str | None] = mapped_column(String(10))  # contact, user, system
    ended_by_id: Mapped[int | None] = mapped_column(Integer)
    ended_by_label: Mapped[str] = mapped_column(String(254), default="")
    end_reason: Mapped[str | None] = mapped_column(String(40))  # turned_off, replaced, card_removed

    contact: Mapped[Contact] = relationship()
    payment_method: Mapped[PaymentMethod | None] = relationship()

    __table_args__ = (
        CheckConstraint("mode IN ('due_date', 'on_issue')", name="mode"),
        Index("ix_autopay_consent_client", "client_id", "ended_at"),
    )


# --- Staff invoicing (issue 3): indexes for the admin invoice list (migration 0003a) ---------------------
# Each list sort is keyset-paginated on (column, id) within an organization, so each has an index in that
# order. The two widest carry the columns the filters test (due date, client, number) so that a tab or a
# search walks the index alone and reads table rows only for the 50 it shows (bench/list_bench.py).
Index("ix_invoice_org_due_id", Invoice.organization_id, Invoice.due_date, Invoice.id)
Index("ix_invoice_org_total_id", Invoice.organization_id, Invoice.total, Invoice.id)
Index("ix_invoice_org_status_issue", Invoice.organization_id, Invoice.status, Invoice.issue_date, Invoice.id,
      Invoice.due_date, Invoice.client_id, Invoice.number)
Index("ix_invoice_org_issue_search", Invoice.organization_id, Invoice.issue_date, Invoice.id, Invoice.client_id,
      Invoice.number)
# A client's invoices by date, carrying what the client portal's search and "all" tab test (migration 0012
# widened ix_invoice_client_issue): a search through 5,000 invoices of one company reads this index, not the rows.
Index("ix_invoice_client_issue_search", Invoice.client_id, Invoice.issue_date, Invoice.id, Invoice.status,
      Invoice.number, Invoice.project_ref)
# The client portal (migration 0012): a company's amounts due per currency read this index alone, and its open,
# overdue and paid tabs range over one status instead of walking every invoice of the company.
Index("ix_invoice_client_status", Invoice.client_id, Invoice.status, Invoice.issue_date, Invoice.id, Invoice.currency,
      Invoice.due_date, Invoice.total, Invoice.amount_paid)
# Covers the derived tabs (sent, viewed, partial) so their counts never read table rows.
Index("ix_invoice_org_attention", Invoice.organization_id, Invoice.attention_since)
Index("ix_invoice_org_unpaid_flags", Invoice.organization_id, Invoice.status, Invoice.amount_paid,
      Invoice.viewed_at, Invoice.sent_at)
# The "viewed" tab's count seeks its first viewed invoice (in the index above the unviewed, unpaid ones come
# first: 21,000 entries read at a million invoices before the first viewed one; issue 14).
Index("ix_invoice_org_status_viewed", Invoice.organization_id, Invoice.status, Invoice.viewed_at)


# --- JSON API and outgoing webhooks (issue 13) -------------------------------------------------------------

API_SCOPES = ("read", "write")


class ApiKey(Model):
    """An organization's key for /api/v1. The secret is shown once at creation; only its SHA-256 is stored, so a
    lookup is one indexed equality. Revoking is immediate (the next request is refused); rows are never deleted."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(24))  # the key's first characters, e.g. "inv_live_4f9A": lists show it
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)  # ["read"] or ["read", "write"]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    organization: Mapped[Organization] = relationship()
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    def is_usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class IdempotencyRecord(Model):
    """One `Idempotency-Key` of one API key: claimed (UNIQUE) in the same transaction as the work it guards, then
    given the response, which a repeat of the same request gets back for 24 hours."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of method, path and the canonical JSON body
    status: Mapped[str] = mapped_column(String(20), default="in_progress")  # in_progress, done
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    response_headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("api_key_id", "key"),
        Index("ix_idempotency_record_created", "created_at"),
    )


WEBHOOK_EVENT_TYPES = ("invoice.created", "invoice.sent", "invoice.viewed", "invoice.paid", "invoice.overdue",
                       "invoice.voided", "payment.succeeded", "payment.failed", "payment.refunded")


class WebhookEndpoint(Model):
    """A URL of an organization's that hears about its events. The signing secret is derived (HMAC of SECRET_KEY,
    the public id and `secret_version`), never stored: shown once, and rotated by bumping the version."""

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_version: Mapped[int] = mapped_column(Integer, default=1)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str] = mapped_column(String(200), default="")
    # The first failure since the last success: failing for WEBHOOK_DISABLE_AFTER_DAYS disables the endpoint.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutgoingEvent(Model):
    """Something that happened, for the organization's webhook endpoints: written in the same transaction as the
    change (services/api/events.py), with its JSON body as it will be signed and sent."""

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)  # evt_...
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    type: Mapped[str] = mapped_column(String(40))
    invoice_id: Mapped[int | None] = mapped_column(Integer)  # no FK: a deleted draft keeps its events' history
    payload: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)  # once-only events (overdue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_outgoing_event_org", "organization_id", "id"),)


class WebhookDelivery(Model):
    """One event for one endpoint: pending until the endpoint answers 2xx, retried with backoff for 3 days."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("outgoing_event.id"))
    invoice_id: Mapped[int | None] = mapped_column(Integer)  # the event's: an invoice's events go out in order
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending, succeeded, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_until: Mapped[datetime] = mapped_column(UTCDateTime)  # 3 days after the event (or a resend): then failed
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event: Mapped[OutgoingEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()

    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_delivery_order", "endpoint_id", "invoice_id", "status", "id"),
    )


# --- Reports (issue 12): indexes for the figures (migration 0012_reports) --------------------------------
# Each figure is an aggregate over one range of one of these (a period of issue dates, of paid-on dates, of
# success instants...), carrying the columns it adds up, so that it reads the index alone (bench/reports_bench.py).
Index("ix_invoice_org_issue_money", Invoice.organization_id, Invoice.issue_date, Invoice.status, Invoice.currency,
      Invoice.total, Invoice.amount_paid)
Index("ix_invoice_org_paid_at", Invoice.organization_id, Invoice.paid_at, Invoice.status, Invoice.currency,
      Invoice.issue_date, Invoice.due_date)
Index("ix_invoice_org_unpaid_money", Invoice.organization_id, Invoice.status, Invoice.currency, Invoice.due_date,
      Invoice.client_id, Invoice.total, Invoice.amount_paid)
Index("ix_payment_org_paid_on", Payment.organization_id, Payment.paid_on, Payment.status, Payment.currency,
      Payment.amount, Payment.method, Payment.method_type, Payment.contact_id, Payment.invoice_id)
Index("ix_payment_org_succeeded", Payment.organization_id, Payment.succeeded_at, Payment.paid_on, Payment.status,
      Payment.currency, Payment.amount, Payment.method, Payment.method_type, Payment.contact_id, Payment.invoice_id)
Index("ix_refund_org_created", Refund.organization_id, Refund.created_at)
Index("ix_invoice_org_updated", Invoice.organization_id, Invoice.updated_at)  # figures.ledger_version
Index("ix_charge_attempt_payment_intent", ChargeAttempt.payment_intent_id)


# --- Subscriptions (issue 11): plans, subscriptions, plan changes, client credit (migration 0013_subscriptions) ---
# Ours, not Stripe Billing's: our scheduler makes each period's invoice and autopay charges it through the money
# door (services/subscriptions/). Stripe only moves the money.

PLAN_INTERVAL_UNITS = ("month", "year")
SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "paused", "canceled", "ended")


class Plan(Model):
    """What a client can subscribe to: one or more prices (one per currency and interval), an optional trial,
    a tax rate, seats or not, and a public sign-up page at /subscribe/<slug> when `public`. An archived plan takes
    no new subscribers; its subscribers keep billing."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    slug: Mapped[str] = mapped_column(String(80), unique=True)  # the public sign-up URL: unique across the site
    public: Mapped[bool] = mapped_column(Boolean, default=False)  # sign-up page open
    trial_days: Mapped[int] = mapped_column(Integer, default=0)
    tax_rate_milli: Mapped[int] = mapped_column(Integer, default=0)  # percent x 1000, as LineItem
    per_seat: Mapped[bool] = mapped_column(Boolean, default=False)  # quantity (seats) may be more than 1
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization] = relationship()
    prices: Mapped[list[PlanPrice]] = relationship(back_populates="plan", order_by="PlanPrice.id")

    __table_args__ = (
        CheckConstraint("trial_days >= 0", name="trial_days_not_negative"),
        Index("ix_plan_org", "organization_id", "archived_at", "id"),
    )


class PlanPrice(Model):
    """One price of a plan: amount per seat (or per subscription) in minor units, every N months or years, and a
    one-off setup fee on the first invoice. Never edited once a subscription uses it: a new price is a new row and
    the old one is archived, so existing subscriptions keep their price until staff migrate them (audited, the
    client emailed)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    interval_unit: Mapped[str] = mapped_column(String(10))  # month, year
    interval_count: Mapped[int] = mapped_column(Integer, default=1)
    setup_fee: Mapped[int] = mapped_column(BigInteger, default=0)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    plan: Mapped[Plan] = relationship(back_populates="prices")

    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("setup_fee >= 0", name="setup_fee_not_negative"),
        CheckConstraint("interval_unit IN ('month', 'year')", name="interval_unit"),
        CheckConstraint("interval_count >= 1", name="interval_count_positive"),
        Index("ix_plan_price_plan", "plan_id", "archived_at"),
    )


class Subscription(Model):
    """A client on a plan price, `quantity` seats. Periods run from `current_period_start` to
    `current_period_end` (exclusive: the next period's start), on `anchor_day` clamped to short months like
    recurring profiles. `pending_price_id`/`pending_quantity` is a downgrade that takes effect at period end;
    `cancel_at_period_end` a cancellation that can be undone until then. Every status move is an AuditEvent."""

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))  # who signed up, if a contact did
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"))
    price_id: Mapped[int] = mapped_column(ForeignKey("plan_price.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    currency: Mapped[str] = mapped_column(String(3))  # the price's, copied: figures group by it
    status: Mapped[str] = mapped_column(String(10), default="active")
    anchor_day: Mapped[int] = mapped_column(Integer)  # day of month periods start on (clamped)
    current_period_start: Mapped[date] = mapped_column(Date)
    current_period_end: Mapped[date] = mapped_column(Date)  # exclusive: the next period starts here
    trial_end: Mapped[date | None] = mapped_column(Date)  # the first paid period starts on it
    trial_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # "trial ends in 3 days" sent
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    pending_price_id: Mapped[int | None] = mapped_column(ForeignKey("plan_price.id"))  # downgrade at period end
    pending_quantity: Mapped[int | None] = mapped_column(Integer)
    past_due_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str] = mapped_column(String(200), default="")
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consent_id: Mapped[int | None] = mapped_column(ForeignKey("autopay_consent.id"))  # recurring-charge consent
    signup_key: Mapped[str | None] = mapped_column(String(64), unique=True)  # a form's token: resubmits make one
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization] = relationship()
    client: Mapped[Client] = relationship()
    contact: Mapped[Contact | None] = relationship()
    plan: Mapped[Plan] = relationship()
    price: Mapped[PlanPrice] = relationship(foreign_keys=[price_id])
    pending_price: Mapped[PlanPrice | None] = relationship(foreign_keys=[pending_price_id])

    __table_args__ = (
        CheckConstraint("status IN ('trialing', 'active', 'past_due', 'paused', 'canceled', 'ended')",
                        name="status"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        Index("ix_subscription_org_status", "organization_id", "status", "id"),
        Index("ix_subscription_due", "status", "current_period_end"),
        Index("ix_subscription_client", "client_id", "status"),
        Index("ix_subscription_plan", "plan_id", "status"),
    )


# The staff list (services/subscriptions/queries.py): an organization's subscriptions newest first, one seek a page.
Index("ix_subscription_org_id", Subscription.organization_id, Subscription.id)


class SubscriptionPeriod(Model):
    """One period of a subscription, invoiced: UNIQUE(subscription, period start) makes each period one invoice
    however many schedulers tick at once (as RecurringPeriod)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id"))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    invoice: Mapped[Invoice] = relationship()

    __table_args__ = (UniqueConstraint("subscription_id", "period_start"),)


class SubscriptionChange(Model):
    """A plan or seat change asked by a contact or staff: from/to, when it takes effect, and the proration it
    made (credit for the unused part at the old price, charge for the rest at the new one, in minor units), with
    the invoice that charged the difference or the credit kept. `request_key` makes a resubmitted form one change."""

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # upgrade, downgrade, quantity, migration
    from_price_id: Mapped[int] = mapped_column(ForeignKey("plan_price.id"))
    to_price_id: Mapped[int] = mapped_column(ForeignKey("plan_price.id"))
    from_quantity: Mapped[int] = mapped_column(Integer)
    to_quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default="applied")  # applied, scheduled, canceled
    effective_on: Mapped[date] = mapped_column(Date)
    credit: Mapped[int] = mapped_column(BigInteger, default=0)  # unused part at the old price (>= 0)
    charge: Mapped[int] = mapped_column(BigInteger, default=0)  # rest of the period at the new price (>= 0)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id"), index=True)  # the difference, invoiced
    request_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    actor_type: Mapped[str] = mapped_column(String(10))  # user, contact, system
    actor_label: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CreditEntry(Model):
    """A client's credit balance per currency as a ledger: a positive entry when a plan change leaves a net
    credit (or staff grant one), a negative one when an invoice uses it. Balance = SUM(amount) per (client,
    currency), never below zero. UNIQUE(invoice, reason): an invoice uses credit once."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(20))  # proration, applied, granted, refunded
    description: Mapped[str] = mapped_column(String(300), default="")
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscription.id"))
    change_id: Mapped[int | None] = mapped_column(ForeignKey("subscription_change.id"))
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        UniqueConstraint("invoice_id", "reason"),
        Index("ix_credit_entry_client", "client_id", "currency"),
    )


class SubscriptionSignup(Model):
    """A public sign-up (/subscribe/<slug>, services/subscriptions/signup.py) from its form to its subscription.
    `signup_key` is the form's token, UNIQUE: a form submitted twice finds this row, so it makes one client, one
    contact and one subscription. The consent to recurring charges given on the form is an AutopayConsent row
    (the text and IP shown and sent); the subscription is made when the card is saved. status: card (waiting for
    the card), done (subscribed)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"))
    price_id: Mapped[int] = mapped_column(ForeignKey("plan_price.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    signup_key: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    consent_id: Mapped[int] = mapped_column(ForeignKey("autopay_consent.id"))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscription.id"))
    status: Mapped[str] = mapped_column(String(10), default="card")
    ip: Mapped[str] = mapped_column(String(45), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    plan: Mapped[Plan] = relationship()
    price: Mapped[PlanPrice] = relationship()
    client: Mapped[Client] = relationship()
    contact: Mapped[Contact] = relationship()
    consent: Mapped[AutopayConsent] = relationship()
    subscription: Mapped[Subscription | None] = relationship()

    __table_args__ = (
        CheckConstraint("status IN ('card', 'done')", name="status"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        Index("ix_subscription_signup_org", "organization_id", "created_at"),
    )
