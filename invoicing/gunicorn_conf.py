"""gunicorn settings shared by the container, `flask demo --serve`, the tests and bench/: `gunicorn -c
python:invoicing.gunicorn_conf --bind HOST:PORT wsgi:app`.

No reverse proxy stands in front of the container, so the server itself must cope with browsers: Chromium
pre-connects sockets it may never use and keeps idle keep-alive connections. A sync worker sits on each such
socket until its 30 s timeout (`WORKER TIMEOUT ... no URI read`) and the app freezes. One process with a pool
of threads (gthread) does not: an idle connection waits in the worker's poller, costing no thread, and only a
request that is actually arriving takes one. One process also keeps the in-memory rate limits and the
scheduler in one place. More processes (`WEB_CONCURRENCY`) need a shared rate-limit store.
"""

from __future__ import annotations

import os
import selectors
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

# A client that sends nothing for this long in the middle of a request (or does not take the response)
# gives its thread back. Slow but moving clients are served.
SOCKET_TIMEOUT = 30.0


class _Conn(TConn):
    def init(self) -> None:
        super().init()
        self.sock.settimeout(SOCKET_TIMEOUT)  # re-armed for each request: the worker resets it to blocking


class Worker(ThreadWorker):
    """gunicorn 27's gthread worker hands every new connection to a thread, which then waits up to 5 s for
    its first byte: 50 pre-connected sockets held every thread and queued real requests behind them. Here a
    new connection waits in the poller like a kept-alive one and gets a thread once it is readable."""

    def accept(self, listener: Any) -> None:
        try:
            sock, client = listener.accept()
        except BlockingIOError:
            return  # another worker took it
        except ConnectionAbortedError:
            return
        self.nr_conns += 1
        conn = _Conn(self.cfg, sock, client, listener.getsockname())  # non-blocking until it has a thread
        conn.timeout = time.monotonic() + self.cfg.keepalive  # silent that long: closed by murder_pending
        self.pending_conns.append(conn)
        self.poller.register(sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))


def _workers() -> int:
    count = int(os.environ.get("WEB_CONCURRENCY") or 1)
    storage = os.environ.get("RATELIMIT_STORAGE_URI") or "memory://"
    if count > 1 and storage.startswith("memory://"):
        raise SystemExit(f"WEB_CONCURRENCY={count} needs a shared rate-limit store (RATELIMIT_STORAGE_URI="
                         "redis://...): with memory:// every process would count separately")
    return count


worker_class = "invoicing.gunicorn_conf.Worker"
workers = _workers()
threads = int(os.environ.get("GUNICORN_THREADS") or 16)
worker_connections = 1000  # open connections per process, idle ones included; then new ones wait in the backlog
keepalive = 5  # seconds an idle connection (kept-alive or pre-connected) is kept
timeout = 30  # the worker's main loop must check in this often, or the master restarts it
graceful_timeout = 8  # requests in flight get this long on stop, inside `docker/podman stop`'s 10 s
limit_request_line = 4094
limit_request_fields = 100
control_socket_disable = True  # gunicorn 27 opens a control socket in $HOME by default; nothing here uses it
accesslog = "-"
logger_class = "invoicing.logredact.RedactingGunicornLogger"  # tokens never reach the access log
loglevel = (os.environ.get("LOG_LEVEL") or "info").lower()
