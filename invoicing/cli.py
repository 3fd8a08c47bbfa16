"""Operator commands: `flask create-admin`, `flask demo`, `flask backup`/`restore`, and one group per scheduler job."""

from __future__ import annotations

import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask, current_app
from flask_migrate import upgrade
from sqlalchemy import select

from invoicing import pdf
from invoicing.backup import BackupError, restore_database
from invoicing.extensions import db
from invoicing.jobs import load_jobs, run_job
from invoicing.models import Organization
from invoicing.services import DomainError
from invoicing.services.audit import Actor
from invoicing.services.demo import DEMO_EMAIL, DEMO_PASSWORD, DEMO_PORTAL_EMAIL, DEMO_PORTAL_PASSWORD, load_demo
from invoicing.services.users import create_organization, create_user


def init_app(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(demo)
    app.cli.add_command(billing)
    app.cli.add_command(backup)
    app.cli.add_command(restore)


class _JobGroup(click.Group):
    """`flask billing <job> [--dry-run]`: one command per scheduler job (jobs.JOB_MODULES), for cron users."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(load_jobs())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        job = load_jobs().get(name)
        if job is None:
            return None

        @click.command(name, help=(job.run.__doc__ or "").strip().splitlines()[0] if job.run.__doc__ else None)
        @click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
        def command(dry_run: bool) -> None:
            outcome = run_job(name, now=datetime.now(UTC), dry_run=dry_run, force=True)
            click.echo(outcome if outcome is not None else f"{name}: another process is running it right now")

        return command


@click.group("billing", cls=_JobGroup)
def billing() -> None:
    """Scheduler jobs, runnable by hand or from cron."""


@click.command("create-admin")
@click.option("--email", required=True)
@click.option("--password", required=True, help="At least 10 characters.")
@click.option("--superadmin", is_flag=True, help="Sees every organization.")
@click.option("--org", "org_name", help="Organization name (created if missing).")
def create_admin(email: str, password: str, superadmin: bool, org_name: str | None) -> None:
    """Create a staff admin (or superadmin) user."""
    now = datetime.now(UTC)
    actor = Actor.system("cli")
    org = None
    try:
        if org_name:
            org = db.session.execute(select(Organization).where(Organization.name == org_name)).scalar_one_or_none()
            org = org or create_organization(org_name, now=now, actor=actor)
        elif not superadmin:
            raise DomainError("Give --org NAME (or --superadmin).")
        user = create_user(email, password, role="superadmin" if superadmin else "admin", organization=org,
                           now=now, actor=actor, hash_method=current_app.config["PASSWORD_HASH_METHOD"])
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {user.role} {user.email}" + (f" in {org.name}" if org else ""))


@click.command("demo")
@click.option("--serve", is_flag=True, help="Then serve the app with gunicorn and the scheduler on.")
@click.option("--port", default=5000, show_default=True)
def demo(serve: bool, port: int) -> None:
    """Migrate the database, load demo data once, print the login (and serve)."""
    upgrade(revision="heads")
    org = load_demo(now=datetime.now(UTC), hash_method=current_app.config["PASSWORD_HASH_METHOD"])
    click.echo("Demo data loaded." if org else "Demo data already present.")
    base = current_app.config["BASE_URL"]
    click.echo(f"\n  Log in at {base}/admin/login\n"
               f"  email:    {DEMO_EMAIL}\n  password: {DEMO_PASSWORD}\n")
    mailbox = ("it arrives by email" if current_app.config.get("MAIL_SERVER")
               else "with no MAIL_SERVER the link waits in the admin's Outbox page: open it there")
    click.echo(f"  Client portal (Wile Coyote of Acme Corporation) at {base}/portal/login\n"
               f"  email:    {DEMO_PORTAL_EMAIL}\n  password: {DEMO_PORTAL_PASSWORD}\n"
               f"  or \"Email me a sign-in link\": {mailbox}\n")
    problem = pdf.unavailable_reason()
    if problem:  # everything else works; say so now rather than on the first PDF download
        click.echo(f"  Note: {problem}\n", err=True)
    if serve:
        db.session.remove()
        gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
        os.environ.setdefault("SCHEDULER_ENABLED", "1")
        os.execv(gunicorn, [gunicorn, "-c", "python:invoicing.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
                            "wsgi:app"])  # the container's server settings



@click.command("backup")
def backup() -> None:
    """Copy the database now into BACKUP_DIR, keeping the newest BACKUP_KEEP copies (safe while serving)."""
    try:
        outcome = run_job("backup", now=datetime.now(UTC), force=True)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(outcome if outcome is not None else "backup: another process is running it right now")


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Confirm that the whole database is replaced by the backup.")
def restore(file: Path, yes: bool) -> None:
    """Replace the whole database with a backup FILE (stop the app first)."""
    url = db.engine.url
    where = url.database if url.get_backend_name() == "sqlite" else url.render_as_string()
    if not yes:
        raise click.ClickException(f"This replaces everything in {where} with {file}. Stop the app (every "
                                   "worker and the scheduler), then run the same command with --yes.")
    db.session.remove()
    db.engine.dispose()  # this command's own connections must not hold locks the restore needs
    try:
        restored = restore_database(url, file)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Restored {file} ({restored}) into {where}. Run `flask db upgrade` (the container does it at "
               "start), then start the app.")
