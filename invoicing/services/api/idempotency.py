"""`Idempotency-Key` for the API's POSTs: the same key with the same request replays the stored response for
24 hours; with a different request it is refused.

How a request is made safe to repeat (even two at once):
1. `claim` inserts the record (UNIQUE per API key and key) *in the write transaction that then does the work*:
   the service's own `atomic()` commits the claim and the invoice together, or rolls both back. A second
   request with the same key waits on the unique index (PostgreSQL) or the write lock (SQLite) until the first
   commits, then finds the record instead of doing the work again.
2. `complete` stores the response (2xx only: an error is not replayed, a retry simply runs again).
3. A request that finds the record in progress (between the two commits) polls it briefly, then replays; if
   the first request died in that instant, the record stays in progress and later requests get a 409 until it
   expires, rather than risk doing the work twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from invoicing import jobs
from invoicing.extensions import db
from invoicing.models import IdempotencyRecord
from invoicing.services.db import atomic, begin_write

KEEP_FOR = timedelta(hours=24)
MAX_KEY = 255
WAIT_SECONDS = 5.0  # how long a repeat waits for the first request's response before answering 409


def request_hash(method: str, path: str, body: bytes) -> str:
    """The request's fingerprint: the same JSON in another key order or spacing is the same request."""
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


@dataclass(frozen=True)
class Stored:
    status: int
    body: str
    headers: dict[str, str]


class KeyReused(Exception):
    """The key was used with a different request."""


class InProgress(Exception):
    """The first request with this key has not finished (or died before storing its response)."""


def _find(api_key_id: int, key: str) -> IdempotencyRecord | None:
    return db.session.execute(
        select(IdempotencyRecord).where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)).scalar_one_or_none()


def claim(*, organization_id: int, api_key_id: int, key: str, fingerprint: str, now: datetime) -> Stored | None:
    """Claim the key for this request inside a write transaction left open for the work (None), or return the
    stored response of the earlier identical request. Raises KeyReused or InProgress."""
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        begin_write()
        claimed = db.session.execute(insert(IdempotencyRecord).values(
            organization_id=organization_id, api_key_id=api_key_id, key=key, request_hash=fingerprint,
            status="in_progress", response_headers={}, created_at=now).on_conflict_do_nothing()
            .returning(IdempotencyRecord.id)).scalar_one_or_none()  # rowcount is -1 here on PostgreSQL
        if claimed is not None:
            return None  # the transaction stays open: the work commits the claim with itself
        record = _find(api_key_id, key)
        if record is None:  # released between our insert and our read: claim again
            db.session.rollback()
            continue
        if record.created_at <= now - KEEP_FOR:  # expired: as if never used
            db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record.id))
            db.session.commit()
            continue
        db.session.rollback()
        if record.request_hash != fingerprint:
            raise KeyReused()
        if record.status == "done" and record.response_status is not None:
            return Stored(record.response_status, record.response_body or "", dict(record.response_headers or {}))
        if time.monotonic() > deadline:
            raise InProgress()
        time.sleep(0.05)


def complete(*, api_key_id: int, key: str, status: int, body: str, headers: dict[str, str], now: datetime) -> None:
    """Store the response of the request that holds the claim (2xx only), or drop the claim (an error)."""
    with atomic():
        record = _find(api_key_id, key)
        if record is None:
            return
        if 200 <= status < 300:
            record.status, record.response_status, record.response_body = "done", status, body
            record.response_headers, record.completed_at = headers, now
        else:
            db.session.delete(record)


def expire(*, now: datetime) -> int:
    with atomic():
        result = db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at <= now - KEEP_FOR))
    return int(getattr(result, "rowcount", 0) or 0)


@jobs.register("api-idempotency-expire", 3600)
def expire_job(now: datetime, dry_run: bool) -> str:
    """Forget Idempotency-Key records older than 24 hours."""
    if dry_run:
        return "api-idempotency-expire: dry run"
    return f"api-idempotency-expire: {expire(now=now)} record(s) removed"
