"""Pay-link and invitation tokens are capabilities: keep them out of access logs and error logs (DESIGN rule 8)."""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

_TOKEN = re.compile(r"(/pay/(?!sandbox/)|/admin/invite/)[^/?#\s\"']+")


def redact(text: str) -> str:
    return _TOKEN.sub(r"\1<token>", text)


class RedactingGunicornLogger(Logger):
    """gunicorn --logger-class invoicing.logredact.RedactingGunicornLogger: request line, path and Referer."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()}


class RedactingFilter(logging.Filter):
    """For the app's own logger: Flask logs "Exception on /pay/<token> [GET]" on a 500."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
