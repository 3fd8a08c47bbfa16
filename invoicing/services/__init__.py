"""The domain: plain functions on plain values. Services own transactions; views never change state."""


class DomainError(Exception):
    """A rule of the domain forbids this action; the message is safe to show to the user."""


class NotFound(DomainError):
    """The object does not exist, or belongs to another tenant (both answer 404)."""
