"""Read side for staff: every query is scoped to the user's organization (superadmin: all of them).

The invoice list is keyset-paginated on (sort column, id), so the 1,000th page costs what the first does, and
every sort has an index that starts with the organization (migration 0003a). The admin list reads plain rows
(InvoiceRow), ids first from an index that covers its filters, the usual shapes as SQL written once
(_fast_statement); a search finds clients through the search index (client_match, migration 0013) and reads
each of a few clients' first rows, or seeks by client or number when few invoices match. The tab counts
(`status_counts`) are one statement of index range counts that stop at COUNT_CAP, and the views run it on
full page loads only, never on the fragment that answers a keystroke.
Measured with bench/list_bench.py (100,000 invoices).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Date,
    Select,
    String,
    and_,
    bindparam,
    column,
    false,
    func,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import joinedload, load_only, selectinload
from sqlalchemy.sql.functions import FunctionElement

from invoicing.extensions import db
from invoicing.models import AuditEvent, Client, Invoice, Organization, OutboxEmail, Payment, User
from invoicing.services import NotFound
from invoicing.services.reports import cards
from invoicing.services.reports.period import Period

STORED_STATUSES = ("draft", "open", "processing", "paid", "void")
DERIVED_STATUSES = ("sent", "viewed", "partial", "overdue", "attention")  # attention: services/attention.py
STATUS_FILTERS = ("draft", "open", "processing", "paid", "void", *DERIVED_STATUSES)

# Sort keys as they appear in the URL ("-" = descending) and the column each one orders by (then by id).
SORTS: dict[str, Any] = {
    "issue_date": Invoice.issue_date,
    "due_date": Invoice.due_date,
    "total": Invoice.total,
    "number": Invoice.number,  # drafts have no number: they sort after every numbered invoice
}
SORT_CHOICES = ("-issue_date", "issue_date", "due_date", "-due_date", "-total", "total", "-number", "number")
DEFAULT_SORT = "-issue_date"
PAGE_SIZE = 50
# What a list row shows: number, client, dates, amounts and the badges (Invoice.badges, amount_due).
LIST_COLUMNS = (
    Invoice.organization_id, Invoice.client_id, Invoice.number, Invoice.status, Invoice.currency, Invoice.issue_date,
    Invoice.due_date, Invoice.total, Invoice.amount_paid, Invoice.sent_at, Invoice.viewed_at, Invoice.disputed_at,
    Invoice.attention_since,
)
# The status of the invoice's latest email (not reminders or receipts), read with the row: email_states in one.
LATEST_EMAIL = (select(OutboxEmail.status).where(OutboxEmail.invoice_id == Invoice.id, OutboxEmail.kind == "invoice")
                .order_by(OutboxEmail.id.desc()).limit(1).correlate(Invoice).scalar_subquery())
ROW_COLUMNS = (Invoice.id, *LIST_COLUMNS, Client.name, LATEST_EMAIL)


class InvoiceRow:
    """One line of the admin invoice list, read as a plain row (the ORM costs 5x more for 50 rows).

    Its badges and amount due are the model's own methods, so a row and an Invoice never disagree. `email` is
    what happened to its latest email (EMAIL_STATES: queued, held, delivered, failed), None without one."""

    __slots__ = ("id", "organization_id", "client_id", "number", "status", "currency", "issue_date", "due_date",
                 "total", "amount_paid", "sent_at", "viewed_at", "disputed_at", "attention_since", "client_name",
                 "email")

    def __init__(self, *values: Any):
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)
        status = values[-1]
        self.email: str | None = EMAIL_STATES.get(status, status) if status else None

    amount_due = Invoice.amount_due
    is_overdue = Invoice.is_overdue
    badges = Invoice.badges


def org_scope(user: User) -> int | None:
    """The organization a staff user may see; None means every organization (superadmin).

    A superadmin who switched organization (admin/settings.py keeps the choice in the session and sets
    `acting_organization_id` on the loaded user) is scoped to that one, like its own staff.
    """
    if user.is_superadmin:
        return getattr(user, "acting_organization_id", None)
    return user.organization_id


def scoped(query: Select[Any], model: Any, user: User) -> Select[Any]:
    org_id = org_scope(user)
    return query if org_id is None else query.where(model.organization_id == org_id)


def get_invoice(user: User, invoice_id: int) -> Invoice:
    """The invoice if this user may see it; another tenant's invoice is NotFound, like a missing one."""
    invoice = db.session.execute(
        scoped(select(Invoice), Invoice, user)
        .where(Invoice.id == invoice_id)
        .options(joinedload(Invoice.client), joinedload(Invoice.organization))
    ).scalar_one_or_none()
    if invoice is None:
        raise NotFound("Invoice not found.")
    return invoice


def get_invoice_detail(user: User, invoice_id: int) -> Invoice:
    """Everything the invoice page shows, loaded in a fixed number of queries (no N+1)."""
    invoice = db.session.execute(
        scoped(select(Invoice), Invoice, user)
        .where(Invoice.id == invoice_id)
        .options(
            joinedload(Invoice.client),
            joinedload(Invoice.organization),
            joinedload(Invoice.contact),
            selectinload(Invoice.lines),
            selectinload(Invoice.payments).selectinload(Payment.refunds),
            selectinload(Invoice.payments).selectinload(Payment.attempts),
        )
    ).scalar_one_or_none()
    if invoice is None:
        raise NotFound("Invoice not found.")
    return invoice


def visible_invoice_ids(user: User, ids: list[int]) -> list[int]:
    """The subset of ids this user may see, in the order given."""
    if not ids:
        return []
    found = set(db.session.execute(scoped(select(Invoice.id), Invoice, user).where(Invoice.id.in_(ids))).scalars())
    return [i for i in ids if i in found]


def selected_invoices(user: User, ids: list[int]) -> list[Invoice]:
    """The ticked invoices this user may see, newest first, with their clients: a list, loaded now, because a
    streamed response runs after the request's session has closed (a lazy result would fail half-way)."""
    return list(db.session.execute(
        scoped(select(Invoice), Invoice, user).where(Invoice.id.in_(ids)).options(joinedload(Invoice.client))
        .order_by(Invoice.issue_date.desc(), Invoice.id.desc())).scalars())


def organization(organization_id: int) -> Organization:
    """The organization, loaded once per session: the identity map holds objects weakly, so a lookup whose
    result nobody keeps would query it again each time. session.info keeps it until the request ends."""
    orgs = db.session.info.setdefault("organizations", {})
    if organization_id not in orgs:
        org = db.session.get(Organization, organization_id)
        if org is None:
            raise NotFound("Organization not found.")
        orgs[organization_id] = org
    return orgs[organization_id]


def _timezone(organization_id: int) -> str:
    return organization(organization_id).timezone


class unindexed(FunctionElement[Any]):
    """A column as SQLite's planner must not use an index for ("+col"; other databases: the plain column).

    With ORDER BY issue_date LIMIT 50, SQLite otherwise picks the due-date index for "overdue", reads every
    overdue row and sorts them (12 ms at 100k invoices) instead of walking the issue-date index (0.2 ms).
    PostgreSQL costs both plans and needs no hint.
    """

    inherit_cache = True
    name = "unindexed"

    def __init__(self, column: Any):
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


def overdue_clause(now: datetime, organization_id: int | None, *, due: Any = Invoice.due_date) -> Any:
    """Open and past due in each organization's own time zone."""
    is_open = Invoice.status == "open"
    if organization_id is not None:
        return and_(is_open, due < now.astimezone(ZoneInfo(_timezone(organization_id))).date())
    zones = db.session.execute(select(Organization.timezone).distinct()).scalars()
    return and_(is_open, or_(*[
        and_(
            Invoice.organization_id.in_(select(Organization.id).where(Organization.timezone == tz)),
            due < now.astimezone(ZoneInfo(tz)).date(),
        )
        for tz in zones
    ], false()))


def status_clause(status: str, now: datetime, organization_id: int | None, *, due: Any = Invoice.due_date) -> Any:
    unpaid = Invoice.status.in_(("open", "processing"))
    if status == "sent":
        return and_(unpaid, Invoice.sent_at.is_not(None))
    if status == "viewed":
        return and_(unpaid, Invoice.viewed_at.is_not(None))
    if status == "partial":
        return and_(unpaid, Invoice.amount_paid > 0)
    if status == "overdue":
        return overdue_clause(now, organization_id, due=due)
    if status == "attention":
        return Invoice.attention_since.is_not(None)
    return Invoice.status == status


@dataclass(frozen=True)
class InvoiceFilters:
    """What the invoice list shows; `params()` turns it back into the query string (filters live in the URL)."""

    status: str | None = None
    q: str = ""
    client_id: int | None = None
    currency: str | None = None
    date_from: date | None = None  # issue date, inclusive
    date_to: date | None = None
    due_from: date | None = None  # due date, inclusive (the API's filter; the admin list has no field for it)
    due_to: date | None = None
    sort: str = DEFAULT_SORT
    # A reports card's invoices (services/reports/cards.py): which card, and the period it covered.
    card: str | None = None
    card_from: date | None = None
    card_to: date | None = None

    def params(self, **changes: Any) -> dict[str, str]:
        f = replace(self, **changes)
        values = {
            "status": f.status, "q": f.q.strip() or None, "client": f.client_id, "currency": f.currency,
            "from": f.date_from.isoformat() if f.date_from else None,
            "to": f.date_to.isoformat() if f.date_to else None,
            "due_from": f.due_from.isoformat() if f.due_from else None,
            "due_to": f.due_to.isoformat() if f.due_to else None,
            "sort": f.sort if f.sort != DEFAULT_SORT else None,
            "card": f.card,
            "card_from": f.card_from.isoformat() if f.card and f.card_from else None,
            "card_to": f.card_to.isoformat() if f.card and f.card_to else None,
        }
        return {k: str(v) for k, v in values.items() if v is not None}

    @property
    def is_filtered(self) -> bool:
        return bool(self.params(sort=DEFAULT_SORT))


@dataclass(frozen=True)
class InvoicePage:
    invoices: list[Invoice]
    next_cursor: str | None
    filters: InvoiceFilters = field(default_factory=InvoiceFilters)


def encode_cursor(value: Any, ident: int) -> str:
    raw = json.dumps([value.isoformat() if isinstance(value, date) else value, ident], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str | None) -> tuple[Any, int] | None:
    """(value, id) from an opaque cursor, or None if it is missing or was tampered with."""
    if not cursor or len(cursor) > 200:
        return None
    try:
        value, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        return None
    if not isinstance(ident, int) or not (value is None or isinstance(value, str | int)):
        return None
    return value, ident


def _cursor_value(sort_key: str, value: Any) -> Any:
    if value is None:
        return None
    if sort_key in ("issue_date", "due_date"):
        return date.fromisoformat(str(value))
    if sort_key == "total":
        return int(value)
    return str(value)


def filtered_query(user: User, filters: InvoiceFilters, *, now: datetime, query: Select[Any] | None = None,
                   search: Search | None = None, by_client: bool = False) -> Select[Any]:
    """Invoices matching the filters, scoped to the user; not ordered. `query` selects something other than
    whole Invoice objects (the list's rows). `by_client`: the caller adds a client, whose index must lead."""
    org_id = org_scope(user)
    query = select(Invoice) if query is None else query
    if org_id is not None:
        query = query.where((unindexed(Invoice.organization_id) if by_client else Invoice.organization_id) == org_id)
    if filters.status in STATUS_FILTERS:
        due = Invoice.due_date if filters.sort.lstrip("-") == "due_date" else unindexed(Invoice.due_date)
        query = query.where(status_clause(filters.status, now, org_id, due=due))
    if filters.client_id is not None:
        query = query.where(Invoice.client_id == filters.client_id)
    if filters.currency:
        query = query.where(Invoice.currency == filters.currency)
    if filters.date_from:
        query = query.where(Invoice.issue_date >= filters.date_from)
    if filters.date_to:
        query = query.where(Invoice.issue_date <= filters.date_to)
    if filters.due_from:
        query = query.where(Invoice.due_date >= filters.due_from)
    if filters.due_to:
        query = query.where(Invoice.due_date <= filters.due_to)
    term = filters.q.strip()
    if term:
        query = query.where((search or search_clause(user, term)).clause)
    period = card_period(user, filters, now=now)
    if period is not None and filters.card:
        query = query.where(cards.invoice_clause(filters.card, period))
    return query


def card_period(user: User, filters: InvoiceFilters, *, now: datetime) -> Period | None:
    """The period of the reports card the list shows (None without a card, or for a superadmin who has not
    switched to an organization: a card is one organization's figure)."""
    org_id = org_scope(user)
    if filters.card not in cards.CARDS or org_id is None:
        return None
    tz = _timezone(org_id)
    today = now.astimezone(ZoneInfo(tz)).date()
    start = filters.card_from or today
    return Period(start, max(filters.card_to or today, start), tz, today)


def card_measure(user: User, filters: InvoiceFilters, *, now: datetime) -> Any:
    """What each listed invoice adds to the card (None when the list is not a card's)."""
    period = card_period(user, filters, now=now)
    return cards.invoice_measure(filters.card, period) if period is not None and filters.card else None


MAX_SEARCH_CLIENTS = 200


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _number_may_match(term: str, number_format: str | None) -> bool:
    """Could an invoice number start with this term? Numbers are the format's literal prefix, then a digit
    ("{year}-{seq:04d}": "2026-0001"; "INV-{seq}": "INV-1"). "Acme" cannot be a number of either."""
    if number_format is None:
        return True
    prefix, t = number_format.split("{", 1)[0].lower(), term.lower()
    if len(t) <= len(prefix):
        return prefix.startswith(t)
    return t.startswith(prefix) and t[len(prefix)].isdigit()


@dataclass(frozen=True)
class Search:
    clause: Any
    seeks: bool  # the database can find the matches through indexes (few of them) rather than walk the list
    clients: tuple[int, ...] | None = None  # the term matches these clients only (no number): few of them


SPARSE = 2000


def _few(clause: Any) -> bool:
    """Does this (index-friendly) clause match at most SPARSE invoices? The count stops there: cheap."""
    capped = select(Invoice.id).where(clause).limit(SPARSE + 1).subquery()
    return int(db.session.execute(select(func.count()).select_from(capped)).scalar_one()) <= SPARSE


TRIGRAM = 3  # the search index finds substrings this long or longer; shorter terms read the organization's clients


def _client_match_sql(term: str) -> tuple[str, dict[str, str]]:
    if db.session.get_bind().dialect.name == "sqlite":
        if len(term) >= TRIGRAM:
            phrase = '"' + term.replace('"', '""') + '"'  # an FTS5 string: the characters as they are
            return ("client.id IN (SELECT rowid FROM client_search WHERE client_search MATCH :client_phrase)",
                    {"client_phrase": phrase})
        like = "LIKE"  # SQLite's LIKE ignores (ASCII) case
    else:
        like = "ILIKE"
    return (f"(client.name {like} :client_like ESCAPE '\\' OR client.email {like} :client_like ESCAPE '\\')",
            {"client_like": f"%{_escape_like(term)}%"})


def client_match(term: str) -> Any:
    """A clause on Client: its name or email contains `term`, in any case (% and _ are plain characters).

    The one door to the search index (migration 0013): on SQLite an FTS5 trigram table kept in step with
    `client` by triggers, on PostgreSQL trigram (pg_trgm) indexes that ILIKE uses. Either way a search reads
    the index, not every client; a term under three characters has no trigram and reads the organization's
    clients (a bounded set: the caller scopes it)."""
    sql, params = _client_match_sql(term)
    return text(sql).bindparams(**params)


@functools.cache
def _client_ids_statement(match: str) -> Any:
    return text(f"SELECT client.id FROM client WHERE client.organization_id = :org AND {match} LIMIT :n")


def matching_client_ids(user: User, term: str, limit: int) -> list[int]:
    """Up to `limit` ids of the user's clients that client_match(term) finds (a statement written once)."""
    org_id = org_scope(user)
    if org_id is None:
        query = select(Client.id).where(client_match(term)).limit(limit)
        return list(db.session.execute(query).scalars())
    sql, params = _client_match_sql(term)
    return list(db.session.execute(_client_ids_statement(sql), {**params, "org": org_id, "n": limit}).scalars())


def number_match(term: str) -> Any:
    """A clause on Invoice: its number starts with `term`, in any case (PostgreSQL: the trigram index)."""
    return Invoice.number.ilike(f"{_escape_like(term)}%", escape="\\")


def search_clause(user: User, term: str, *, per_client: bool = False) -> Search:
    """Search by invoice number (prefix) or client (name or email contains), shaped so that the database
    can seek instead of reading every invoice: the matching clients are found through the search index
    (client_match; there are few), and the number test is only added when the term could start a number of
    this organization. `clients` (when few) lets the list seek each client's newest invoices."""
    client_ids = matching_client_ids(user, term, MAX_SEARCH_CLIENTS + 1)
    few_clients = len(client_ids) <= MAX_SEARCH_CLIENTS
    org_id = org_scope(user)
    org = organization(org_id) if org_id is not None else None
    number_like = None
    if _number_may_match(term, org.number_format if org else None):
        number_like = number_match(term)
    found = tuple(client_ids) if few_clients and number_like is None else None
    if per_client and found and len(found) <= PER_CLIENT:  # the caller seeks client by client: no count needed
        return Search(Invoice.client_id.in_(found), seeks=False, clients=found)
    clients = scoped(select(Client.id), Client, user).where(client_match(term))
    if db.session.get_bind().dialect.name != "sqlite":
        by_client = Invoice.client_id.in_(client_ids if few_clients else clients) if client_ids else None
        return Search(or_(*[c for c in (by_client, number_like) if c is not None], false()), seeks=False,
                      clients=found)
    # SQLite's LIKE ignores case and so cannot use the (organization, number) index; the same prefix as ranges
    # (exact, upper, lower case) can. Seeking pays when few invoices match ("2026-0042", a rare client);
    # when many do ("2026", "Studio"), walking the list by date finds 50 at once. A bounded count decides,
    # and "+column" (unindexed) keeps SQLite's planner to the way chosen.
    ranges: Any = None
    if number_like is not None:
        ranges = and_(Invoice.organization_id == org_id if org_id is not None else true(), or_(*[
            and_(Invoice.number >= v, Invoice.number < v + "\U0010ffff")
            for v in sorted({term, term.upper(), term.lower()})]))
    seekable = [c for c in (Invoice.client_id.in_(client_ids) if client_ids and few_clients else None, ranges)
                if c is not None]
    if not seekable and not client_ids:
        return Search(false(), seeks=True, clients=found)
    seeks = bool(seekable) and (few_clients or not client_ids) and _few(or_(*seekable))
    if seeks:
        return Search(or_(*seekable), seeks=True, clients=found) if number_like is None else Search(
            or_(*[c for c in (Invoice.client_id.in_(client_ids) if client_ids else None,
                              and_(number_like, ranges)) if c is not None]), seeks=True)
    by_client = unindexed(Invoice.client_id).in_(client_ids if few_clients else clients) if client_ids else None
    return Search(or_(*[c for c in (by_client, number_like) if c is not None], false()), seeks=False,
                  clients=found)


PER_CLIENT = 40  # a search that matches up to this many clients reads each one's newest invoices


def _row_query(ids: Any, order: tuple[Any, ...]) -> Select[Any]:
    return cast("Select[Any]", select(*ROW_COLUMNS).join(Client, Client.id == Invoice.client_id)
                .where(Invoice.id.in_(ids)).order_by(*order))


# The admin list's usual pages as SQL written once per shape (issue 14: building these statements with the ORM
# cost several times running them). A shape is the dialect, the status tab, the direction, a cursor or not, which
# optional filters are set, and whether a search picked a few clients (then each one's first rows are read
# through its (client, status, issue date) or (client, issue date) index and merged: a few hundred rows at most
# however many invoices those clients have). Other lists (other sorts, a client or a card, a superadmin across
# organizations, a number search) are built with the ORM below. The status rules are _TAB_SQL's.
FAST_FILTERS = {"currency": "currency = :currency", "date_from": "issue_date >= :date_from",
                "date_to": "issue_date <= :date_to", "due_from": "due_date >= :due_from",
                "due_to": "due_date <= :due_to"}
_ROW_SQL = ("SELECT invoice.id, invoice.organization_id, invoice.client_id, invoice.number, invoice.status, "
            "invoice.currency, invoice.issue_date, invoice.due_date, invoice.total, invoice.amount_paid, "
            "invoice.sent_at, invoice.viewed_at, invoice.disputed_at, invoice.attention_since, client.name, "
            "(SELECT outbox_email.status FROM outbox_email WHERE outbox_email.invoice_id = invoice.id "
            "AND outbox_email.kind = 'invoice' ORDER BY outbox_email.id DESC LIMIT 1) "
            "FROM invoice JOIN client ON client.id = invoice.client_id "
            "WHERE +invoice.organization_id = :org AND invoice.id IN ({ids}) "  # "+": find them by id
            "ORDER BY invoice.issue_date {dir}, invoice.id {dir}")


@functools.cache
def _fast_statement(dialect: str, status: str | None, desc: bool, after: bool, optional: tuple[str, ...],
                    per_client: int) -> Any:
    """`per_client`: how many clients a search picked (SQLite writes a subquery for each; PostgreSQL takes them
    as one parameter, so any count > 0 gives the same statement there)."""
    direction = "DESC" if desc else "ASC"
    where = [_TAB_SQL[status or "all"], *[f"AND {FAST_FILTERS[name]}" for name in optional]]
    if after:
        where.append(f"AND (issue_date, id) {'<' if desc else '>'} (:after_date, :after_id)")
    sqlite = dialect == "sqlite"
    if sqlite and status == "overdue":  # walk the issue-date index, not the due-date one (see `unindexed`)
        where[0] = where[0].replace("due_date <", "+due_date <")
    filters = " ".join(where)
    order = f"ORDER BY issue_date {direction}, id {direction} LIMIT :n"
    if not per_client:
        ids = f"SELECT id FROM invoice WHERE organization_id = :org {filters} {order}"
    else:  # the clients are the organization's; its invoices are theirs (the rows are checked once more below)
        each = "SELECT id, issue_date FROM invoice WHERE client_id = {client} " + f"{filters} {order}"
        merged = f"ORDER BY firsts.issue_date {direction}, firsts.id {direction} LIMIT :n"
        if sqlite:  # no LATERAL: one subquery per client, each read from a covering index
            ids = "SELECT firsts.id FROM (" + " UNION ALL ".join(
                f"SELECT * FROM ({each.format(client=f':c{i}')})" for i in range(per_client)) + f") AS firsts {merged}"
        else:
            ids = (f"SELECT firsts.id FROM client AS picked CROSS JOIN LATERAL ({each.format(client='picked.id')}) "
                   f"AS firsts WHERE picked.id IN :clients AND picked.organization_id = :org {merged}")
    params = [bindparam(name, type_=Date()) for name in ("today", "after_date", "date_from", "date_to", "due_from",
                                                         "due_to") if f":{name}" in ids]
    if per_client and not sqlite:
        params.append(bindparam("clients", expanding=True))
    return text(_ROW_SQL.format(ids=ids, dir=direction)).bindparams(*params).columns(
        *[c for c in ROW_COLUMNS[:-1]], column("email", String()))


def _fast_page(user: User, filters: InvoiceFilters, *, now: datetime, cursor: str | None, limit: int,
               clients: tuple[int, ...] | None) -> InvoicePage | None:
    """The page through a statement written once (see _fast_statement), or None when the list is not one of
    those shapes."""
    org_id = org_scope(user)
    if org_id is None or filters.sort.lstrip("-") != "issue_date" or filters.client_id is not None or filters.card:
        return None
    if filters.q.strip() and clients is None:
        return None
    desc = filters.sort.startswith("-")
    optional = tuple(name for name in FAST_FILTERS if getattr(filters, name))
    params: dict[str, Any] = {name: getattr(filters, name) for name in optional}
    params.update(org=org_id, n=limit + 1, today=now.astimezone(ZoneInfo(_timezone(org_id))).date())
    after = decode_cursor(cursor)
    if after is not None:
        try:
            params.update(after_date=_cursor_value("issue_date", after[0]), after_id=after[1])
        except ValueError:
            after = None
    if after is not None and params.get("after_date") is None:
        after = None
    dialect = db.session.get_bind().dialect.name
    per_client = 0 if clients is None else len(clients) if dialect == "sqlite" else 1
    if clients is not None:
        params.update({f"c{i}": c for i, c in enumerate(clients)} if dialect == "sqlite" else {
            "clients": list(clients)})
    status = filters.status if filters.status in STATUS_FILTERS else None
    statement = _fast_statement(dialect, status, desc, after is not None, optional, per_client)
    found: list[Any] = [InvoiceRow(*row) for row in db.session.execute(statement, params)]
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        next_cursor = encode_cursor(found[-1].issue_date, found[-1].id)
    return InvoicePage(found, next_cursor, filters)


def list_invoices(
    user: User,
    *,
    now: datetime,
    filters: InvoiceFilters | None = None,
    status: str | None = None,
    q: str = "",
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    full: bool = False,
    rows: bool = False,
) -> InvoicePage:
    """One page of invoices, keyset-paginated on (sort column, id) so deep pages cost the same as the first.

    By default only the columns a list row shows are loaded (half the time of loading whole rows);
    touching any other column raises instead of quietly querying once per row. `full=True` loads all.
    `rows=True` returns InvoiceRow tuples read without the ORM: what the busy admin list uses.
    """
    filters = filters or InvoiceFilters(status=status, q=q)
    sort = filters.sort if filters.sort in SORT_CHOICES else DEFAULT_SORT
    desc, key = sort.startswith("-"), sort.lstrip("-")
    column = SORTS[key]
    seeks = False
    if rows:
        # Ids first, from an index that covers the tabs' filters and the search (no table reads), then the 50
        # rows shown. Not when the filters can seek (a client; a rare number or client name): SQLite would
        # then walk a covering index instead of seeking (bench/list_bench.py; PostgreSQL chooses well).
        search = search_clause(user, filters.q.strip(), per_client=key == "issue_date" and filters.client_id is None
                               ) if filters.q.strip() else None
        fast = _fast_page(user, filters, now=now, cursor=cursor, limit=limit, clients=search.clients if search and (
            search.clients and len(search.clients) <= PER_CLIENT) else None)
        if fast is not None:
            return fast
        sqlite = db.session.get_bind().dialect.name == "sqlite"
        seeks = (search is not None and search.seeks) or (filters.client_id is not None and (
            not sqlite or _few(Invoice.client_id == filters.client_id)))
        selected = select(*ROW_COLUMNS).join(Client, Client.id == Invoice.client_id) if seeks else select(Invoice.id)
        base = filtered_query(user, filters, now=now, query=cast("Select[Any]", selected), search=search)
    else:
        client = joinedload(Invoice.client, innerjoin=True)
        options = [client] if full else [load_only(*LIST_COLUMNS, raiseload=True),
                                         client.load_only(Client.name, raiseload=True)]
        base = filtered_query(user, filters, now=now).options(*options)
    after = decode_cursor(cursor)
    position = None
    if after is not None:
        try:
            position = (_cursor_value(key, after[0]), after[1])
        except ValueError:
            position = None

    def run(phase: tuple[Select[Any], tuple[Any, ...]], n: int) -> list[Any]:
        query, order = phase
        if rows and not seeks:  # the ids in one subquery, the rows around it: one round trip
            query = _row_query(query.order_by(*order).limit(n), order)
        else:
            query = query.order_by(*order).limit(n)
        result = db.session.execute(query)
        return [InvoiceRow(*row) for row in result] if rows else list(result.scalars())

    def by_value(start: tuple[Any, int] | None) -> tuple[Select[Any], tuple[Any, ...]]:
        query = base.where(column.is_not(None)) if key == "number" else base
        if start is not None:
            bound = tuple_(column, Invoice.id)
            query = query.where(bound < tuple_(*start) if desc else bound > tuple_(*start))
        ordering = unindexed(column) if seeks else column  # sort the few matches; do not walk the sort index
        return query, (ordering.desc(), Invoice.id.desc()) if desc else (ordering.asc(), Invoice.id.asc())

    def by_id_without_number(start_id: int | None) -> tuple[Select[Any], tuple[Any, ...]]:
        query = base.where(Invoice.number.is_(None))
        if start_id is not None:
            query = query.where(Invoice.id < start_id if desc else Invoice.id > start_id)
        return query, (Invoice.id.desc() if desc else Invoice.id.asc(),)

    want = limit + 1
    if key != "number":
        found = run(by_value(position), want)
    else:
        # Drafts (no number) count as "after" every number: last when ascending, first when descending.
        in_drafts = position is not None and position[0] is None
        after_id = position[1] if in_drafts and position is not None else None
        phases: list[tuple[Select[Any], tuple[Any, ...]]]
        if desc:
            phases = [by_value(position)] if position and not in_drafts else [
                by_id_without_number(after_id), by_value(None)]
        else:
            phases = [by_id_without_number(after_id)] if in_drafts else [
                by_value(position), by_id_without_number(None)]
        found = []
        for phase in phases:
            found += run(phase, want - len(found))
            if len(found) >= want:
                break
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        last = found[-1]
        next_cursor = encode_cursor(getattr(last, key), last.id)
    return InvoicePage(found, next_cursor, filters)


def iter_invoices(user: User, filters: InvoiceFilters, *, now: datetime, batch: int = 1000) -> Iterator[Invoice]:
    """Every invoice matching the filters in the list's order, fetched page by page (for CSV export)."""
    cursor = None
    while True:
        page = list_invoices(user, now=now, filters=filters, cursor=cursor, limit=batch, full=True)
        for invoice in page.invoices:
            yield invoice
            db.session.expunge(invoice)  # keep memory flat on a 100k-row export
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


COUNT_CAP = 1000  # tabs show "1,000+" beyond this: exact where it matters (drafts, overdue), bounded everywhere

# What each tab counts, as SQL over the indexes of migration 0003a; the same rules as status_clause (a test
# holds them equal). Written out once because building this statement with the ORM each time cost 4x running it.
_TAB_SQL = {
    "all": "",
    "draft": "AND status = 'draft'",
    "open": "AND status = 'open'",
    "processing": "AND status = 'processing'",
    "paid": "AND status = 'paid'",
    "void": "AND status = 'void'",
    "sent": "AND status IN ('open', 'processing') AND sent_at IS NOT NULL",
    "viewed": "AND status IN ('open', 'processing') AND viewed_at IS NOT NULL",
    "partial": "AND status IN ('open', 'processing') AND amount_paid > 0",
    "overdue": "AND status = 'open' AND due_date < :today",
    "attention": "AND attention_since IS NOT NULL",
}
TABS = ("all", *STATUS_FILTERS)


@functools.cache
def _counts_statement(limit: int) -> Any:
    # The limit is written into the SQL, not bound: PostgreSQL's prepared (generic) plan must know it.
    return text("SELECT " + ", ".join(
        f"(SELECT count(*) FROM (SELECT 1 FROM invoice WHERE organization_id = :org {_TAB_SQL[tab]} "
        f"LIMIT {int(limit)}) AS t_{tab})" for tab in TABS
    )).bindparams(bindparam("today", type_=Date()))


def status_counts(user: User, *, now: datetime, cap: int = COUNT_CAP) -> dict[str, int]:
    """How many invoices each tab holds, counted up to `cap` (a value above cap means "more than cap").

    One statement of capped index range counts: its cost is bounded by the cap, not by the table (100k
    invoices: under a millisecond), and the views call it on full page loads only, never per keystroke.
    """
    org_id = org_scope(user)
    if org_id is not None:
        today = now.astimezone(ZoneInfo(_timezone(org_id))).date()
        row = db.session.execute(_counts_statement(cap + 1), {"org": org_id, "today": today}).one()
    else:  # superadmin: every organization, each with its own "today"

        def capped(clause: Any) -> Any:
            ids = select(Invoice.id).where(clause).limit(cap + 1).subquery()
            return select(func.count()).select_from(ids).scalar_subquery()

        row = db.session.execute(select(*[capped(true() if t == "all" else status_clause(t, now, None))
                                          for t in TABS])).one()
    return dict(zip(TABS, (int(n) for n in row), strict=True))


def timeline(invoice: Invoice) -> list[AuditEvent]:
    return list(
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.object_type == "invoice", AuditEvent.object_id == invoice.id)
            .order_by(AuditEvent.id)
        ).scalars()
    )


# What happened to an invoice's email, by outbox status: what a badge and the invoice page show.
EMAIL_STATES = {"queued": "queued", "sending": "queued", "held": "held", "sent": "delivered", "failed": "failed"}


def email_states(invoice_ids: Iterable[int]) -> dict[int, str]:
    """Each invoice's latest sent email (not reminders or receipts): queued, held, delivered or failed."""
    ids = list(invoice_ids)
    if not ids:
        return {}
    rows = db.session.execute(select(OutboxEmail.invoice_id, OutboxEmail.status).where(
        OutboxEmail.invoice_id.in_(ids), OutboxEmail.kind == "invoice").order_by(OutboxEmail.id))
    return {invoice_id: EMAIL_STATES.get(status, status) for invoice_id, status in rows if invoice_id is not None}


def invoice_emails(invoice: Invoice) -> list[OutboxEmail]:
    """The emails queued for this invoice (sends, reminders, receipts), oldest first."""
    return list(
        db.session.execute(
            select(OutboxEmail).where(OutboxEmail.invoice_id == invoice.id).order_by(OutboxEmail.id)
        ).scalars()
    )
