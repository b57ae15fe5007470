"""Dry run: what would have been sent, written to files instead (one file per message).

The SMS gateway type `outbox` and the email setting `outbox_dir` use it, so a newcomer
can watch SMS and email go out without a real gateway. Staff see such a channel as a
dry run. Only for a service on this machine: a `site.base_url` that is not a loopback
address is refused at start (residents would be told a code was sent when none was).
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from publisher.config import Config
from publisher.errors import ConfigError

#: the default folder (relative to config.yaml's folder, as every data path)
DEFAULT_DIR = "data/outbox"


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback(config: Config, where: str) -> None:
    """ConfigError (one line) unless the service is served on a loopback address."""
    if not is_loopback_url(config.site.base_url):
        raise ConfigError(
            f"{where}: a dry-run outbox is for a service on this machine only, and "
            f"site.base_url ({config.site.base_url}) is not a loopback address"
        )


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def write_message(directory: Path, delivery_id: str, suffix: str, data: bytes) -> Path:
    """One file per message, named by the time and the ledger row (a retry overwrites
    its own file); written whole or not at all."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = f"{stamp}-{_UNSAFE.sub('_', delivery_id)}.{suffix}"
    path = directory / name
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def outbox_path(config: Config, value: str | None, channel: str) -> Path:
    """The folder a channel's dry run writes to: `value`, or data/outbox/<channel>."""
    return config.resolve_path(value or f"{DEFAULT_DIR}/{channel}")
