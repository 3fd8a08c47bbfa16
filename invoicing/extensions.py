"""Extensions live at module level and are bound to the app in create_app (no side effects at import)."""

from __future__ import annotations

from typing import Any

from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names so migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



def outside_models(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's include_name: the search index (migration 0013) is not in models.py, so `flask db check` must
    not see its objects (SQLite's FTS5 table `client_search` and its shadow tables, PostgreSQL's trigram
    indexes `ix_search_*`)."""
    if type_ == "table" and name is not None and name.startswith("client_search"):
        return False
    return not (type_ == "index" and name is not None and name.startswith("ix_search_"))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
mail = Mail()
htmx = HTMX()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def configure_sqlite(engine: Engine) -> None:
    """Make SQLite safe for several workers: WAL, a busy timeout, and BEGIN IMMEDIATE for writes.

    SQLAlchemy drops FOR UPDATE on SQLite, so a write transaction must take the database's write lock
    when it starts; a deferred BEGIN that upgrades later fails with "database is locked" under load
    (notes/stack.md: 348 of 400 concurrent finalizations). Services mark their connection with the
    execution option `sqlite_immediate` (services/db.py:atomic); reads keep a plain BEGIN so pages never
    wait for the write lock.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
