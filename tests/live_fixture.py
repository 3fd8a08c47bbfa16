"""The app under a real WSGI server (gunicorn) against the test database, and a real browser (Playwright
driving Debian's chromium). Missing pieces fail loudly; nothing here skips."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def live_server_factory(app: Flask, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LiveServer]]:
    """live_server_factory(**env) -> a gunicorn serving the app with these extra environment variables.

    Servers are cached per env for the whole session and share the tests' database.
    """
    servers: dict[tuple[tuple[str, str], ...], LiveServer] = {}

    def start(**extra: str) -> LiveServer:
        key = tuple(sorted(extra.items()))
        if key not in servers:
            servers[key] = start_live_server(app, tmp_path_factory.mktemp("live") / "gunicorn.log", **extra)
        return servers[key]

    yield start
    for server in servers.values():
        server.stop()


def start_live_server(app: Flask, log_path: Path, **extra: str) -> LiveServer:
    """gunicorn with the shared server settings (invoicing/gunicorn_conf.py), on the tests' database."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "BASE_URL": url,
        "PASSWORD_HASH_METHOD": app.config["PASSWORD_HASH_METHOD"],
        "SCHEDULER_ENABLED": "0",
        # Browser tests log the same persona in many times a minute on one shared server (one process: the
        # limits count across it); a test of the limits turns them on in a server of its own.
        "RATELIMIT_ENABLED": "0",
        # Pay page opens written in the request, not a second later when the next test's data is being set up
        # (tests/pay/test_page_cache.py starts servers with the writer thread on purpose).
        "PAY_VIEW_FLUSH_SECONDS": "0",
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    for name in ("INVOICING_DEMO", "FLASK_DEBUG"):
        env.pop(name, None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:invoicing.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
             "wsgi:app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    server = LiveServer(url, process, log_path)
    # Importing the app takes a few CPU seconds; a CI box running both suites over several workers, with other
    # jobs beside them, can stretch that past 20 s. Ready is as soon as /healthz answers.
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"gunicorn did not start at {url} within {START_TIMEOUT:.0f} s:\n{server.log()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); .ci/run does")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
