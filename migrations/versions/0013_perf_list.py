"""search index for the admin invoice list and the client pickers (clients by any part of their name or email),
and an index for the "viewed" tab's count

- SQLite: an FTS5 table `client_search` (trigram tokenizer: any 3+ character substring, case-insensitive) over
  client.name and client.email, external content (the rows stay in `client`), kept in step by triggers on
  insert, update of name or email, and delete; filled from the existing clients here.
- PostgreSQL: the pg_trgm extension and GIN trigram indexes on client.name, client.email and invoice.number,
  which ILIKE '%term%' (and 'term%') use; PostgreSQL keeps them in step itself.

- invoice (organization_id, status, viewed_at): the "viewed" tab's capped count seeks its first viewed invoice
  instead of reading every unviewed open one first (both databases; in models.py).

services/queries.py:client_match is the one function that queries the search index. The objects are not in models.py
(a virtual table, trigram operator classes): migrations/env.py leaves them out of `flask db check`.

Revision ID: 0013_perf_list
Revises: 0013_perf_pay
Create Date: 2026-12-01 20:15:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0013_perf_list'
down_revision = '0013_perf_pay'
branch_labels = None
depends_on = None

SQLITE_UP = [
    "CREATE VIRTUAL TABLE client_search USING fts5(name, email, content='client', content_rowid='id', "
    "tokenize='trigram')",
    "CREATE TRIGGER client_search_insert AFTER INSERT ON client BEGIN "
    "INSERT INTO client_search(rowid, name, email) VALUES (new.id, new.name, new.email); END",
    "CREATE TRIGGER client_search_delete AFTER DELETE ON client BEGIN "
    "INSERT INTO client_search(client_search, rowid, name, email) VALUES ('delete', old.id, old.name, old.email); "
    "END",
    "CREATE TRIGGER client_search_update AFTER UPDATE OF name, email ON client BEGIN "
    "INSERT INTO client_search(client_search, rowid, name, email) VALUES ('delete', old.id, old.name, old.email); "
    "INSERT INTO client_search(rowid, name, email) VALUES (new.id, new.name, new.email); END",
    "INSERT INTO client_search(client_search) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS client_search_update",
    "DROP TRIGGER IF EXISTS client_search_delete",
    "DROP TRIGGER IF EXISTS client_search_insert",
    "DROP TABLE IF EXISTS client_search",
]
POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_search_client_name ON client USING gin (name gin_trgm_ops)",
    "CREATE INDEX ix_search_client_email ON client USING gin (email gin_trgm_ops)",
    "CREATE INDEX ix_search_invoice_number ON invoice USING gin (number gin_trgm_ops)",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS ix_search_invoice_number",
    "DROP INDEX IF EXISTS ix_search_client_email",
    "DROP INDEX IF EXISTS ix_search_client_name",
]  # the extension stays: other objects may use it by now


def upgrade():
    op.create_index('ix_invoice_org_status_viewed', 'invoice', ['organization_id', 'status', 'viewed_at'],
                    unique=False)
    for statement in POSTGRES_UP if op.get_bind().dialect.name == "postgresql" else SQLITE_UP:
        op.execute(statement)


def downgrade():
    for statement in POSTGRES_DOWN if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWN:
        op.execute(statement)
    op.drop_index('ix_invoice_org_status_viewed', table_name='invoice')
