"""Backups you can restore: `flask backup` (and the nightly `backup` job) and `flask restore FILE --yes`.

SQLite: the online backup API copies one consistent snapshot while the app keeps writing (in WAL mode a
reader never blocks writers); the copy is checked with PRAGMA integrity_check before it counts. PostgreSQL:
`pg_dump --format=custom` (one snapshot too), restored with `pg_restore --clean --if-exists`.
Files are named by UTC time, so names sort by age; only the newest BACKUP_KEEP are kept.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy.engine import URL

from invoicing import jobs
from invoicing.extensions import db

NAME = re.compile(r"^invoicing-\d{8}T\d{6}Z\.(sqlite3|dump)$")
SUFFIX = {"sqlite": ".sqlite3", "postgresql": ".dump"}
DAY = 24 * 3600


class BackupError(Exception):
    """A backup or restore that cannot be done; the message tells the operator why."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    deleted: tuple[Path, ...]

    def summary(self) -> str:
        return (f"backup wrote {self.path} ({self.size:,} bytes)"
                + (f", deleted {len(self.deleted)} older" if self.deleted else ""))


def backup_name(url: URL, now: datetime) -> str:
    return f"invoicing-{now:%Y%m%dT%H%M%SZ}{SUFFIX[url.get_backend_name()]}"


def backup_database(url: URL, directory: Path, *, now: datetime, keep: int) -> BackupResult:
    """Write a consistent copy of the database into `directory`, then keep only the newest `keep` copies."""
    final = directory / backup_name(url, now)
    partial = final.with_name(final.name + ".partial")  # never counted or restored while half written
    try:
        directory.mkdir(parents=True, exist_ok=True)
        try:
            if url.get_backend_name() == "sqlite":
                _sqlite_copy(_sqlite_path(url), partial)
            else:
                _run("pg_dump", "--format=custom", "--file", str(partial), "--dbname", _libpq_url(url), url=url)
                _run("pg_restore", "--list", str(partial))  # the archive opens and lists its contents
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
    except (OSError, sqlite3.Error) as exc:  # a full disk, a folder we may not write to
        raise BackupError(f"Cannot write the backup into {directory}: {exc}") from exc
    return BackupResult(final, final.stat().st_size, tuple(prune(directory, keep=keep)))


def prune(directory: Path, *, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups; other files in the folder are left alone."""
    backups = sorted(p for p in directory.iterdir() if NAME.match(p.name))
    old = backups[:-keep] if keep > 0 else backups
    for path in old:
        path.unlink()
    return old


def restore_database(url: URL, file: Path) -> str:
    """Replace the database at `url` with the backup `file`, after checking the file; say what was restored."""
    if not file.is_file():
        raise BackupError(f"{file} is not a file.")
    if url.get_backend_name() == "sqlite":
        revision = _check_sqlite_backup(file)
        target = Path(_sqlite_path(url))
        target.parent.mkdir(parents=True, exist_ok=True)
        with closing(_connect_read_only(file)) as source, closing(sqlite3.connect(target, timeout=30)) as live:
            source.backup(live)  # the backup API in reverse: page by page into the live file, under its locks
        return f"schema revision {revision}"
    _run("pg_restore", "--list", str(file))
    # One transaction: a restore that fails half way (a damaged archive) rolls back and changes nothing.
    _run("pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
         "--dbname", _libpq_url(url), str(file), url=url)
    return "PostgreSQL archive"


def _sqlite_path(url: URL) -> str:
    if not url.database or url.database == ":memory:":
        raise BackupError("Only a SQLite database in a file can be backed up or restored.")
    return url.database


def _sqlite_copy(path: str, target: Path) -> None:
    if not Path(path).is_file():
        raise BackupError(f"There is no database at {path}.")
    with closing(sqlite3.connect(path, timeout=30)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)  # one step: one read transaction, so one snapshot, while writers go on (WAL)
        copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file, not -wal/-shm siblings
        problems = _integrity_problems(copy)
    if problems:
        raise BackupError(f"The copy failed its integrity check: {problems}")


def _connect_read_only(file: Path) -> sqlite3.Connection:
    return sqlite3.connect(file.resolve().as_uri() + "?mode=ro", uri=True)


def _integrity_problems(connection: sqlite3.Connection) -> str:
    rows = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    return "" if rows == ["ok"] else "; ".join(rows[:5])


def _check_sqlite_backup(file: Path) -> str:
    """Refuse a file that is not a sound SQLite copy of this app's database; return its schema revision."""
    try:
        with closing(_connect_read_only(file)) as backup:
            problems = _integrity_problems(backup)
            if problems:
                raise BackupError(f"{file} failed its integrity check, nothing was changed: {problems}")
            revision = backup.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{file} is not a usable SQLite backup, nothing was changed: {exc}") from None
    if revision is None:
        raise BackupError(f"{file} holds no schema revision; it is not a backup of this app.")
    return str(revision[0])


def _libpq_url(url: URL) -> str:
    """The URL for pg_dump/pg_restore: no driver suffix, and no password (that goes in PGPASSWORD)."""
    return url._replace(drivername="postgresql", password=None).render_as_string(hide_password=False)


def _run(program: str, *args: str, url: URL | None = None) -> None:
    executable = shutil.which(program)
    if executable is None:
        raise BackupError(f"{program} is not installed: install the PostgreSQL client of the server's major "
                          "version (e.g. `apt-get install postgresql-client-15`).")
    env = dict(os.environ)
    if url is not None and url.password:
        env["PGPASSWORD"] = str(url.password)
    done = subprocess.run([executable, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        detail = done.stderr.strip().replace("\n", " ")[-1500:]
        raise BackupError(f"{program} failed (exit {done.returncode}), nothing was changed: {detail}")


@jobs.register("backup", every_seconds=DAY, tick_seconds=900, setting="BACKUP_ENABLED")
def backup_job(now: datetime, dry_run: bool) -> str:
    """Copy the database into BACKUP_DIR (named by UTC time) and keep the newest BACKUP_KEEP copies."""
    directory, keep = Path(current_app.config["BACKUP_DIR"]), current_app.config["BACKUP_KEEP"]
    if dry_run:
        existing = sum(1 for p in directory.iterdir() if NAME.match(p.name)) if directory.is_dir() else 0
        return (f"backup would write {directory / backup_name(db.engine.url, now)} "
                f"and delete {max(0, existing + 1 - keep)} older")
    return backup_database(db.engine.url, directory, now=now, keep=keep).summary()
