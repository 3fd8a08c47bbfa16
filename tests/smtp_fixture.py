"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1), with switches to make it misbehave.

`smtp_server` (session): `.host`, `.port`, `.messages` (parsed EmailMessage objects), `.envelopes`,
`.clear()`, `.wait_for(n, timeout)`, and failure modes: `.refuse(code, message, stage="RCPT"|"DATA",
times=None)` answers with an SMTP error, `.hang(seconds)` stops answering in the middle of DATA.
`.blackhole_port` accepts TCP connections and never says a word (a hung server from the first byte);
`.closed_port` refuses connections.

`smtp` (per test): clears the server and points the app's MAIL_* settings at it, restoring them after.
Flask-Mail itself is never patched: the app talks to this server over a socket.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_tos: list[str]


class _Handler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self.fault: tuple[str, str] | None = None  # (stage, response)
        self.fault_times: int | None = None  # None: until cleared
        self.hang_seconds = 0.0
        self.release = threading.Event()

    def _fault(self, stage: str) -> str | None:
        with self.lock:
            if self.fault is None or self.fault[0] != stage:
                return None
            response = self.fault[1]
            if self.fault_times is not None:
                self.fault_times -= 1
                if self.fault_times <= 0:
                    self.fault, self.fault_times = None, None
            return response

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        response = self._fault("RCPT")
        if response:
            return response
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hang_seconds:
            deadline = time.monotonic() + self.hang_seconds
            while time.monotonic() < deadline and not self.release.is_set():
                await asyncio.sleep(0.05)
            return "451 4.4.2 Timed out"
        response = self._fault("DATA")
        if response:
            return response
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
            self.envelopes.append(Envelope(envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SMTPServer:
    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.handler = _Handler()
        self.controller = Controller(self.handler, hostname=self.host, port=self.port)
        # Listening but never accepting: the kernel completes the TCP handshake, then nothing is ever said.
        self._blackhole = socket.socket()
        self._blackhole.bind(("127.0.0.1", 0))
        self._blackhole.listen(16)
        self.blackhole_port = int(self._blackhole.getsockname()[1])
        self.closed_port = _free_port()

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.handler.release.set()
        self.controller.stop()
        self._blackhole.close()

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def envelopes(self) -> list[Envelope]:
        with self.handler.lock:
            return list(self.handler.envelopes)

    def clear(self) -> None:
        """Forget received messages and return to normal behaviour."""
        with self.handler.lock:
            self.handler.messages.clear()
            self.handler.envelopes.clear()
            self.handler.fault, self.handler.fault_times = None, None
        self.handler.hang_seconds = 0.0
        self.handler.release.set()
        self.handler.release = threading.Event()

    def refuse(self, code: int = 451, message: str = "4.3.0 Try again later", *, stage: str = "RCPT",
               times: int | None = None) -> None:
        """Answer RCPT or DATA with this error (`times` deliveries, or until clear())."""
        with self.handler.lock:
            self.handler.fault = (stage, f"{code} {message}")
            self.handler.fault_times = times

    def hang(self, seconds: float = 30.0) -> None:
        """Stop answering after the message data was sent (until `seconds` pass or clear())."""
        self.handler.hang_seconds = seconds

    def recover(self) -> None:
        """Behave normally again, keeping what was received."""
        with self.handler.lock:
            self.handler.fault, self.handler.fault_times = None, None
        self.handler.hang_seconds = 0.0
        self.handler.release.set()
        self.handler.release = threading.Event()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.messages
            if len(messages) >= count:
                return messages
            time.sleep(0.02)
        raise AssertionError(f"expected {count} message(s) at the SMTP server, got {len(self.messages)}")


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


MAIL_KEYS = ("MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS", "MAIL_USE_SSL", "MAIL_USERNAME", "MAIL_PASSWORD",
             "MAIL_TIMEOUT")


@pytest.fixture
def smtp(app: Flask, smtp_server: SMTPServer) -> Iterator[SMTPServer]:
    """The SMTP server, cleared, with the app's mail settings pointing at it for this test."""
    saved = {key: app.config.get(key) for key in MAIL_KEYS}
    smtp_server.clear()
    app.config.update(MAIL_SERVER=smtp_server.host, MAIL_PORT=smtp_server.port, MAIL_USE_TLS=False,
                      MAIL_USE_SSL=False, MAIL_USERNAME=None, MAIL_PASSWORD=None, MAIL_TIMEOUT=2)
    try:
        yield smtp_server
    finally:
        app.config.update(saved)
        smtp_server.clear()
