"""The canonical store: open it, migrate it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection

from publisher.config import Config
from publisher.store.sql import SqlStore

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection, revision: str = "head") -> None:
    command.upgrade(_alembic_config(connection), revision)


def _current(connection: Connection) -> Any:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(store: SqlStore, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (one transaction on PostgreSQL)."""
    async with store.engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


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
