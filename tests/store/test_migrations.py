"""The migrations build exactly the tables the code uses, on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from publisher.content import ItemCreate, content_from
from publisher.store import MIGRATIONS, current_revision, upgrade
from publisher.store.schema import metadata
from tests.conftest import EDITOR, item_fields


def _alembic(connection: sa.Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic())


def _command(connection: sa.Connection, name: str, revision: str) -> None:
    getattr(command, name)(_alembic(connection), revision)


def head() -> str:
    rev = _scripts().get_current_head()
    assert rev is not None
    return rev


def _content(store):
    return content_from(ItemCreate.model_validate(item_fields()), store.config)


def _diff(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names()) - {"alembic_version"}


async def test_upgraded_database_matches_the_schema_module(store):
    """`publisher db upgrade` gives the tables, columns, indexes and keys the code expects."""
    async with store.engine.connect() as conn:
        diffs = await conn.run_sync(_diff)
        tables = await conn.run_sync(_tables)
    assert diffs == []
    assert tables == set(metadata.tables)
    assert await current_revision(store) == head()

    # every start runs the upgrade again: it changes nothing and keeps the data
    item = await store.create_item(_content(store), actor=EDITOR)
    await upgrade(store)
    assert await current_revision(store) == head()
    assert (await store.get_item(item.id)).content.title == item.content.title


async def test_each_migration_upgrades_a_store_with_data_and_downgrades_cleanly(store):
    """An operator on an older release upgrades step by step without losing items."""
    revisions = [s.revision for s in reversed(list(_scripts().walk_revisions()))]
    async with store.engine.begin() as conn:
        await conn.run_sync(_command, "downgrade", "base")
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_tables) == set()
    assert await current_revision(store) is None

    await upgrade(store, revisions[0])
    item = await store.create_item(_content(store), actor=EDITOR)
    for rev in revisions[1:]:
        await upgrade(store, rev)
        assert await current_revision(store) == rev
        assert (await store.get_item(item.id)).content.title == item.content.title
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
