"""Who is signed in to the portal. Every portal view that shows or changes company data is `contact_required`
and scopes by `current_contact().client_id`; the contact is loaded by auth.load_contact, which refuses a
revoked contact, an old session version, an archived client or organization."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import redirect, request, url_for
from flask_login import current_user

from invoicing.auth import is_contact
from invoicing.models import Contact

F = TypeVar("F", bound=Callable[..., Any])


def current_contact() -> Contact:
    """The signed-in contact (only inside a contact_required view)."""
    contact = current_user._get_current_object()
    assert isinstance(contact, Contact)
    return contact


def contact_required(view: F) -> F:
    """Signed-in portal contacts only; anyone else goes to the portal sign-in (then back here)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not is_contact():
            target = request.full_path if request.method == "GET" else None
            return redirect(url_for("portal.login", next=target.rstrip("?") if target else None), code=303)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
