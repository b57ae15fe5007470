"""Issue 16 (B): the SQLite file is 0600 and its folder 0700, from the first connection
and again at every `db upgrade` / start (an older install is tightened)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from publisher.config import Config
from publisher.store import sqlite_file, upgrade
from publisher.store.sql import SqlStore


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_a_new_store_is_private(
    config_factory: Callable[..., Config], tmp_path: Path
) -> None:
    config = config_factory(STORAGE__URL=f"sqlite:///{tmp_path}/data/publisher.db")
    store = SqlStore(config)
    try:
        await upgrade(store)
    finally:
        await store.close()
    db = sqlite_file(config)
    assert db is not None and db.exists()
    assert _mode(db) == 0o600
    assert _mode(db.parent) == 0o700


async def test_an_older_install_is_tightened_at_upgrade(
    config_factory: Callable[..., Config], tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    (folder / "publisher.db").touch(mode=0o644)
    os.chmod(folder / "publisher.db", 0o644)
    attachments = tmp_path / "files"
    attachments.mkdir(mode=0o755)
    config = config_factory(
        STORAGE__URL=f"sqlite:///{folder}/publisher.db",
        STORAGE__ATTACHMENTS_DIR=str(attachments),
    )
    store = SqlStore(config)
    try:
        await upgrade(store)
    finally:
        await store.close()
    assert _mode(folder / "publisher.db") == 0o600
    assert _mode(folder) == 0o700
    assert _mode(attachments) == 0o700
