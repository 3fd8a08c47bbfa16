"""Flask-Login wiring: staff users and portal contacts share one loader, told apart by prefix ("user:7",
"contact:12:3", where 3 is the contact's session version: bumping it ends every live session of that contact)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort
from flask_login import current_user
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from invoicing.extensions import db, login_manager
from invoicing.models import Contact, User

F = TypeVar("F", bound=Callable[..., Any])

# Built once: every signed-in request runs it, and a prepared statement skips session.get's per-call query building
# (about a quarter of loading the user). The organization comes in the same statement: every staff page shows it.
_USER = select(User).options(joinedload(User.organization)).where(User.id == bindparam("user_id"))


def init_app(app: Flask) -> None:
    login_manager.login_view = "admin.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    kind, _, ident = user_id.partition(":")
    if kind == "user" and ident.isdigit():
        user = db.session.execute(_USER, {"user_id": int(ident)}).unique().scalar_one_or_none()
        archived = user is not None and user.organization is not None and user.organization.is_archived
        return user if user is not None and user.active and not archived else None
    if kind == "contact":
        return load_contact(ident)
    return None


def load_contact(ident: str) -> Contact | None:
    """The contact of a portal session "id:version", if it still may sign in and the session is current."""
    contact_id, _, version = ident.partition(":")
    if not (contact_id.isdigit() and version.isdigit()):
        return None
    contact = db.session.get(Contact, int(contact_id), options=[joinedload(Contact.client), joinedload(
        Contact.organization)])
    if contact is None or contact.session_version != int(version) or not contact.portal_access:
        return None
    if contact.client.archived_at is not None or contact.organization.is_archived:
        return None
    return contact


def is_staff() -> bool:
    """A staff user is signed in (not a portal contact, not anonymous)."""
    return bool(current_user.is_authenticated) and isinstance(current_user._get_current_object(), User)


def is_contact() -> bool:
    """A portal contact is signed in."""
    return bool(current_user.is_authenticated) and isinstance(current_user._get_current_object(), Contact)


def staff_required(view: F) -> F:
    """Logged-in staff only; anyone else is sent to the admin login."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not is_staff():
            return login_manager.unauthorized()
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def superadmin_only(view: F) -> F:
    """Superadmins only; anyone else, signed in or not, gets the 404 of a missing page (nothing to discover)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not is_staff() or not current_user.is_superadmin:
            abort(404)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def role_required(*roles: str) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @wraps(view)
        @staff_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles and not current_user.is_superadmin:
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator
