"""Fixtures: one app and one migrated schema per session, tables emptied after each test, personas.

SQLite (a temp file) by default; PostgreSQL when TEST_DATABASE_URL is set (CI sets it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask, g, request_started
from flask.testing import FlaskClient
from flask_migrate import upgrade
from hypothesis import HealthCheck, settings
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.exc import IntegrityError

from invoicing import create_app
from invoicing.extensions import db, limiter
from invoicing.models import Client, Contact, Invoice, Organization, User
from invoicing.services.audit import Actor
from invoicing.services.db import atomic
from invoicing.services.invoices import DraftData, LineData, create_draft, finalize_invoice
from invoicing.services.users import create_organization, create_user

# Property tests judge the code, not the machine: a loaded CI box must not fail them for being slow.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

pytest_plugins = ["tests.stripe_fixture", "tests.live_fixture", "tests.smtp_fixture"]

PASSWORD = "correct horse battery"
FAST_HASH = "pbkdf2:sha256:1000"  # tests only: real logins use scrypt
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`-n N`) each worker gets a PostgreSQL database of its own, beside TEST_DATABASE_URL's
    (named after it with the worker's id), created empty now and dropped at the end. TEST_DATABASE_URL is
    pointed at it in the worker, so everything that derives databases from it (tests/test_migrations.py, the
    processes tests start) stays within the worker's. SQLite needs nothing: each worker has its own temp dir."""
    worker, url = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("TEST_DATABASE_URL")
    if not worker or not url or getattr(config, "workerinput", None) is None:
        return
    server = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"{server.database}_{worker}"
    _admin_sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    os.environ["TEST_DATABASE_URL"] = server.set(database=name).render_as_string(hide_password=False)
    config.add_cleanup(lambda: _admin_sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _admin_sql(server: URL, *statements: str) -> None:
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        admin.dispose()


def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url(tmp_path_factory),
            "SECRET_KEY": "test-secret-key-" + "x" * 32,
            "WTF_CSRF_ENABLED": False,
            "PASSWORD_HASH_METHOD": FAST_HASH,
            "BASE_URL": "http://billing.test",
            "MAIL_SERVER": None,
            "PAY_VIEW_FLUSH_SECONDS": 0,  # pay page opens written in the request (tests/pay/test_page_cache.py: later)
            "SCHEDULER_BANNER_CACHE_SECONDS": 0,  # the banner reads the leases each time (test_scheduler: kept)
        }
    )
    # Tests hold one app context open, and a request reuses it, so `g` would carry the last request's signed-in
    # user into the next one (another test client, or a session since revoked): forget it, like a real server.
    request_started.connect(lambda sender, **_: g.pop("_login_user", None), app, weak=False)
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            # A commit waits 5-10 ms for its WAL to reach the disk on a busy CI box, and a test commits dozens of
            # times. Tests never need their data to survive a crash of the PostgreSQL server itself, so its
            # connections (this app's, the served app's and the worker processes', all made after this) skip the
            # wait; locking, isolation and visibility are unchanged.
            with db.engine.begin() as conn:
                conn.execute(text(f'ALTER DATABASE "{db.engine.url.database}" SET synchronous_commit = off'))
            db.engine.dispose()
        with db.engine.begin() as conn:  # a stale schema from an earlier run must not hide a migration bug
            if db.engine.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade(revision="heads")
    yield app
    with app.app_context():
        db.engine.dispose()


def _empty_tables() -> None:
    # DELETE beats TRUNCATE on tables this small (PostgreSQL: ~10x faster per test). A served app may still be
    # writing for a moment after its test (a deferred view count, the outgoing webhook it makes): a row added
    # between two DELETEs breaks the order, so then empty everything at once (PostgreSQL: one TRUNCATE, which
    # waits for that writer), or go round again (SQLite).
    for _attempt in range(5):
        try:
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(table.delete())
            db.session.commit()
            return
        except IntegrityError:
            db.session.rollback()
            if db.engine.dialect.name == "postgresql":
                names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
                db.session.execute(text(f"TRUNCATE {names} CASCADE"))
                db.session.commit()
                return
    raise RuntimeError("could not empty the test database")


@pytest.fixture(autouse=True)
def _ctx(app: Flask) -> Iterator[None]:
    with app.app_context():
        limiter.reset()
        yield
        db.session.rollback()
        _empty_tables()
        db.session.remove()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def is_postgres(app: Flask) -> bool:
    return db.engine.dialect.name == "postgresql"


# --- factories -------------------------------------------------------------------------------------------

SYSTEM = Actor.system("tests")


def make_org(name: str = "Org A", **settings: Any) -> Organization:
    settings.setdefault("timezone", "UTC")
    return create_organization(name, now=NOW, actor=SYSTEM, **settings)


def make_user(org: Organization | None, email: str, role: str = "admin") -> User:
    return create_user(email, PASSWORD, role=role, organization=org, now=NOW, actor=SYSTEM, hash_method=FAST_HASH)


def make_client(org: Organization, name: str = "Client", currency: str = "USD", contacts: int = 1) -> Client:
    client = Client(organization_id=org.id, name=name, email=f"{name.lower().replace(' ', '')}@clients.test",
                    currency=currency)
    client.contacts = [
        Contact(organization_id=org.id, name=f"{name} contact {n}", email=f"c{n}@{name.lower().replace(' ', '')}.test",
                portal_access=True)
        for n in range(1, contacts + 1)
    ]
    with atomic():  # BEGIN IMMEDIATE on SQLite, like the services: a served app may be writing too
        db.session.add(client)
    return client


def draft_data(client: Client, **overrides: Any) -> DraftData:
    issue = overrides.pop("issue_date", NOW.date())
    values: dict[str, Any] = dict(
        client_id=client.id,
        currency=client.currency,
        issue_date=issue,
        due_date=issue + timedelta(days=30),
        lines=(LineData("Consulting", Decimal("2"), 10000, Decimal("10")), LineData("Travel", Decimal("1"), 5000)),
    )
    values.update(overrides)
    return DraftData(**values)


def make_invoice(client: Client, *, status: str = "draft", now: datetime = NOW, **overrides: Any) -> Invoice:
    """A draft, or an open invoice finalized through the real service (numbered)."""
    org = db.session.get(Organization, client.organization_id)
    assert org is not None
    invoice = create_draft(org, draft_data(client, **overrides), actor=SYSTEM, now=now)
    if status == "open":
        invoice = finalize_invoice(invoice.id, actor=SYSTEM, now=now)
    return invoice


def login(client: FlaskClient, user: User) -> None:
    response = client.post("/admin/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 303, response.text


def portal_login(client: FlaskClient, contact: Contact, *, now: datetime | None = None) -> None:
    """Sign a contact in to the portal the way a person does: a magic link, then its Sign in button."""
    from invoicing.services.portal.auth import issue_magic_link

    token = issue_magic_link(contact.id, now=now or datetime.now(UTC))
    response = client.post(f"/portal/login/{token}")
    assert response.status_code == 303, response.text


# --- personas --------------------------------------------------------------------------------------------


@dataclass
class World:
    org_a: Organization
    org_b: Organization
    alice: User  # admin of org A
    bob: User  # staff of org B
    root: User  # superadmin
    client_a: Client  # contacts 1 and 2
    client_b: Client


@pytest.fixture
def world(app: Flask) -> World:
    org_a = make_org("Org A", timezone="America/New_York", allow_partial_payments=True)
    org_b = make_org("Org B", timezone="Asia/Tokyo", default_currency="JPY")
    return World(
        org_a=org_a,
        org_b=org_b,
        alice=make_user(org_a, "alice@a.test", "admin"),
        bob=make_user(org_b, "bob@b.test", "staff"),
        root=make_user(None, "root@ops.test", "superadmin"),
        client_a=make_client(org_a, "Client A", contacts=2),
        client_b=make_client(org_b, "Client B", currency="JPY"),
    )


def today() -> date:
    return NOW.date()
