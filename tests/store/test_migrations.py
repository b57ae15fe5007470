"""The migrations build exactly the tables the code uses, on both backends."""

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from publisher.content import ItemCreate, content_from
from publisher.models import BodyFormat
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


def _rows(connection: sa.Connection, item_id: str) -> dict[str, list[dict[str, object]]]:
    return {
        name: [
            dict(r._mapping)
            for r in connection.execute(
                sa.select(metadata.tables[name]).where(metadata.tables[name].c[key] == item_id)
            )
        ]
        for name, key in (("items", "id"), ("revisions", "item_id"))
    }


def _insert_as_of_now(connection: sa.Connection, rows: dict[str, list[dict[str, object]]]) -> None:
    """Insert rows the current code wrote, keeping the columns this older schema has."""
    for name, records in rows.items():
        table = sa.Table(name, sa.MetaData(), autoload_with=connection)
        for record in records:
            values = {k: v for k, v in record.items() if k in table.c}
            connection.execute(metadata.tables[name].insert().values(values))


def _titles(connection: sa.Connection, item_id: str) -> list[str]:
    sql = sa.text("SELECT title FROM revisions WHERE item_id = :id")
    return list(connection.execute(sql, {"id": item_id}).scalars())


async def test_each_migration_upgrades_a_store_with_data_and_downgrades_cleanly(store):
    """An operator on an older release upgrades step by step without losing items.

    The item is written by today's code, then loaded into the oldest schema with the
    columns it had (today's code cannot run against a schema missing its columns)."""
    revisions = [s.revision for s in reversed(list(_scripts().walk_revisions()))]
    item = await store.create_item(_content(store), actor=EDITOR)
    async with store.engine.connect() as conn:
        rows = await conn.run_sync(_rows, item.id)
    async with store.engine.begin() as conn:
        await conn.run_sync(_command, "downgrade", "base")
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_tables) == set()
    assert await current_revision(store) is None

    await upgrade(store, revisions[0])
    async with store.engine.begin() as conn:
        await conn.run_sync(_insert_as_of_now, rows)
    for rev in revisions[1:]:
        await upgrade(store, rev)
        assert await current_revision(store) == rev
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_titles, item.id) == [item.content.title]
    # an item written before bodies had a format was rendered as Markdown, and keeps that
    # rendering (0012): nothing published changes silently
    assert (await store.get_item(item.id)).content == replace(
        item.content, body_format=BodyFormat.MARKDOWN
    )
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_imported_items_become_plain_text_and_the_rest_keep_markdown(store):
    """0012: archival imports are official plain text (their numbering must stay as
    written); items composed here before the change keep their Markdown rendering."""
    written = await store.create_item(_content(store), actor=EDITOR)
    imported = await store.create_item(_content(store), actor=EDITOR)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE items SET imported = :yes WHERE id = :id"),
            {"yes": True, "id": imported.id},
        )
        await conn.run_sync(_command, "downgrade", "0011")
        await conn.run_sync(_command, "upgrade", "0012")
    assert (await store.get_item(written.id)).content.body_format is BodyFormat.MARKDOWN
    assert (await store.get_item(imported.id)).content.body_format is BodyFormat.TEXT
    # and a new item is plain text unless its author chooses Markdown
    fresh = await store.create_item(_content(store), actor=EDITOR)
    assert (await store.get_item(fresh.id)).content.body_format is BodyFormat.TEXT
