"""The canonical store: open it, migrate it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection

from publisher.config import Config
from publisher.store.sql import SqlStore

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(
    connection: Connection, data_key: Callable[[], bytes] | None = None
) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    # migrations that seal existing rows (0015) ask for the data key only when they must
    cfg.attributes["data_key"] = data_key
    return cfg


def _upgrade(
    connection: Connection, revision: str = "head", data_key: Callable[[], bytes] | None = None
) -> None:
    command.upgrade(_alembic_config(connection, data_key), revision)


def _current(connection: Connection) -> Any:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(store: SqlStore, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (one transaction on PostgreSQL)."""
    async with store.engine.begin() as conn:
        await conn.run_sync(_upgrade, revision, store.config.data_key)
    private_files(store.config)


def sqlite_file(config: Config) -> Path | None:
    url = config.storage.url
    if not url.startswith("sqlite:///"):
        return None
    rest = url[len("sqlite:///") :].split("?", 1)[0]
    if not rest or rest == ":memory:" or rest.startswith("file:"):
        return None
    return config.resolve_path(rest)


def private_files(config: Config) -> None:
    """The SQLite file (and its journal files) 0600, its folder and the attachments folder
    0700: residents' data and staff credentials are for this service's user alone. Done at
    `db upgrade` and on every start, so an older install is tightened too. A folder that is
    not the store's own (the config's folder, the working directory, home) is left as is."""
    db = sqlite_file(config)
    if db is not None:
        for path in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))):
            if path.exists():
                path.chmod(0o600)
        _private_dir(config, db.parent)
    _private_dir(config, config.attachments_path)


def _private_dir(config: Config, folder: Path) -> None:
    if not folder.is_dir():
        return
    shared = {config.base_dir.resolve(), Path.cwd().resolve(), Path.home().resolve(), Path("/")}
    if folder.resolve() not in shared:
        folder.chmod(0o700)


async def current_revision(store: SqlStore) -> str | None:
    async with store.engine.connect() as conn:
        rev = await conn.run_sync(_current)
    return str(rev) if rev else None


async def open_store(config: Config, *, migrate: bool = True) -> SqlStore:
    store = SqlStore(config)
    if migrate:
        await upgrade(store)
    return store


__all__ = ["SqlStore", "current_revision", "open_store", "upgrade"]
