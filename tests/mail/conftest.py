"""Fixtures of the email tests: a real SMTP server (aiosmtpd) on loopback that records every
message as the bytes it received and can refuse chosen recipients, and stores whose config
sends email through it."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from publisher.config import Config
from tests.sms.conftest import open_store

SENDER = "gongkai@shangyu.example.gov.cn"
#: engine settings that keep the tests quick; email only
ENGINE = {
    "CHANNELS__EMAIL__RETRY_BASE_SECONDS": "0.05",
    "CHANNELS__EMAIL__RETRY_CAP_SECONDS": "0.2",
    "DELIVERY__POLL_SECONDS": "0.05",
    "DELIVERY__HEARTBEAT_SECONDS": "1",
    **{f"CHANNELS__{name}__ENABLED": "false" for name in ("PORTAL", "RSS", "SMS", "BOARD")},
}


def free_port() -> int:
    # aiosmtpd's Controller cannot take port 0 (its self-check connects to the port given)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    def parsed(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class SmtpSink:
    """An aiosmtpd handler: records each accepted message; answers RCPT for an address in
    `refuse` with its code, as many times as given (then accepts), or always (None)."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    rcpt_attempts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            self.rcpt_attempts[address] += 1
            tries = self.rcpt_attempts[address]
        rule = self.refuse.get(address)
        if rule is not None:
            code, times = rule
            if times is None or tries <= times:
                text = "mailbox unavailable" if code >= 500 else "try again later"
                return f"{code} {'5.1.1' if code >= 500 else '4.2.0'} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 2.0.0 queued"

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def mail_config(config: Config, port: int, **settings: Any) -> Config:
    """`config` sending email through the loopback server on `port`."""
    tree = config.model_dump()
    tree["channels"]["email"]["settings"] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": SENDER,
        "local_hostname": "publisher.test",
        "connections": 4,
        "link_base_url": "https://gk.shangyu.example.gov.cn",
        **settings,
    }
    return Config.model_validate(tree)


@pytest.fixture
def mail_store_factory(config_factory: Callable[..., Config]) -> Callable[..., Any]:
    """A store (context manager) whose config sends email to the sink on `port`."""

    def make(
        port: int, backend: str = "sqlite", env: dict[str, str] | None = None, **settings: Any
    ) -> Any:
        config = config_factory(**(ENGINE | (env or {})))
        return open_store(mail_config(config, port, **settings), backend)

    return make
