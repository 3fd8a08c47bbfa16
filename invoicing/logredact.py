"""Pay-link and invitation tokens are capabilities: keep them out of access logs and error logs (DESIGN rule 8)."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from gunicorn.glogging import Logger

_TOKEN = re.compile(r"(/pay/(?!sandbox/)|/admin/invite/)[^/?#\s\"']+")


def redact(text: str) -> str:
    return _TOKEN.sub(r"\1<token>", text)


class RedactingGunicornLogger(Logger):
    """gunicorn's logger (invoicing/gunicorn_conf.py): tokens out of the request line, path and Referer."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.addFilter(_ERROR_LOG_FILTER)  # at LOG_LEVEL=DEBUG gunicorn logs every request's path

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        # A client that went silent mid-request hit the socket timeout (gunicorn_conf.SOCKET_TIMEOUT): routine,
        # not a traceback. gunicorn logs it as a socket error.
        if msg == "Socket error processing request." and isinstance(sys.exc_info()[1], TimeoutError):
            self.debug("closed a connection whose client went silent")
            return
        super().exception(msg, *args, **kwargs)

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


_ERROR_LOG_FILTER = RedactingFilter()  # one instance: setup() runs again on every log reopen
