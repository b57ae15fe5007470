"""Helpers shared by the engine tests: items, a running worker, the API on an engine store,
and reading the ledger back the way staff would see it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from publisher.config import Config
from publisher.content import ItemCreate, content_from
from publisher.delivery import DeliveryWorker
from publisher.ledger import FINAL
from publisher.models import Item
from publisher.store import schema as t
from publisher.store import upgrade
from publisher.store.sql import SqlStore
from publisher.web import make_app
from tests.conftest import (
    ADMIN,
    BACKENDS,
    EDITOR,
    EDITOR2,
    REPO,
    REVIEWER,
    REVIEWER2,
    Api,
    item_fields,
    publish,
)
from tests.engine.conftest import engine_env

#: run a test on SQLite and on PostgreSQL (the engine_store fixture, indirectly)
BOTH_BACKENDS = pytest.mark.parametrize("engine_store", BACKENDS, indirect=True)


def run_cli(store: SqlStore, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m publisher --config config.yaml ARGS…` on the SQLite engine store's
    database, storage folders and data key (no other PUBLISHER* variable passes through)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER")}
    env.update(
        {
            "PUBLISHER__STORAGE__URL": f"sqlite:///{store.engine.url.database}",
            "PUBLISHER__STORAGE__ATTACHMENTS_DIR": str(store.config.attachments_path),
            "PUBLISHER__STORAGE__FEEDS_DIR": str(store.config.feeds_path),
            "PUBLISHER__SECURITY__DATA_KEY": store.config.security.data_key or "",
            "PUBLISHER__SECURITY__DATA_KEY_FILE": "",
            "PYTHONPATH": str(REPO),
            "COLUMNS": "200",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--config", str(REPO / "config.yaml"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


async def new_sms_item(store: SqlStore, **overrides: Any) -> Item:
    """A draft item that reaches SMS only (unless `channels` says otherwise)."""
    overrides.setdefault("channels", ["sms"])
    content = content_from(ItemCreate.model_validate(item_fields(**overrides)), store.config)
    return await store.create_item(content, actor=EDITOR)


async def published_item(store: SqlStore, **overrides: Any) -> Item:
    return await publish(store, await new_sms_item(store, **overrides))


@asynccontextmanager
async def engine_store_with(
    config_factory: Callable[..., Config], url: str, **extra: str
) -> AsyncIterator[SqlStore]:
    """A SQLite engine store whose config adds `extra` (env-style keys) to engine_env."""
    store = SqlStore(config_factory(**engine_env(url, **extra)))
    await upgrade(store)
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def running(store: SqlStore) -> AsyncIterator[DeliveryWorker]:
    worker = DeliveryWorker(store)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


@asynccontextmanager
async def api_on(store: SqlStore, worker: DeliveryWorker | None = None) -> AsyncIterator[Api]:
    """The web app on `store` (with `worker` woken by approvals and retries), with staff
    alice and carol (editors), bob and dave (reviewers) and root-admin."""
    tokens = {}
    for actor in (EDITOR, EDITOR2, REVIEWER, REVIEWER2, ADMIN):
        await store.add_user(actor.name, actor.role)
        tokens[actor.name] = await store.create_token(actor.name)
    app = make_app(store.config, store, worker=worker)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, tokens)


async def ledger_rows(store: SqlStore, item_id: str, channel: str | None = None) -> list[Any]:
    d = t.deliveries
    q = sa.select(d).where(d.c.item_id == item_id).order_by(d.c.id)
    if channel is not None:
        q = q.where(d.c.channel == channel)
    async with store.read() as conn:
        return list((await conn.execute(q)).all())


async def transitions(store: SqlStore, delivery_id: int) -> list[str]:
    """The states a ledger row went through, in order (from its append-only events)."""
    e = t.delivery_events
    async with store.read() as conn:
        return list(
            (
                await conn.scalars(
                    sa.select(e.c.to_state).where(e.c.delivery_id == delivery_id).order_by(e.c.id)
                )
            ).all()
        )


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 30, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.03)
    raise AssertionError(f"{what}: not reached within {within}s")


async def wait_channel_settled(
    store: SqlStore, item_id: str, channel: str = "sms", within: float = 30
) -> None:
    """Until every event is planned and every row of the item on `channel` is final (other
    channels, which have no adapter in these tests, stay queued)."""
    final = {s.value for s in FINAL}

    async def settled() -> bool:
        async with store.read() as conn:
            unplanned = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(t.item_events)
                .where(t.item_events.c.planned_at.is_(None))
            )
        rows = await ledger_rows(store, item_id, channel)
        return unplanned == 0 and all(r.state in final for r in rows)

    await eventually(settled, within, f"{channel} deliveries of {item_id} settled")


def sqlite_file_bytes(store: SqlStore) -> bytes:
    """Every byte SQLite keeps for the store: the database and its WAL and shared memory."""
    path = Path(store.engine.url.database or "")
    assert path.is_file(), path
    return b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


async def rows_by_address(store: SqlStore, item_id: str) -> dict[str, Any]:
    """The item's SMS/email ledger rows keyed by the recipient's (decrypted) address."""
    from publisher.addresses import AddressBox

    box = AddressBox(store.config.data_key())
    rows = [r for r in await ledger_rows(store, item_id) if r.target.startswith("r:")]
    ids = [int(r.target[2:]) for r in rows]
    async with store.read() as conn:
        sealed = dict(
            (
                await conn.execute(
                    sa.select(t.recipients.c.id, t.recipients.c.address_enc).where(
                        t.recipients.c.id.in_(ids)
                    )
                )
            ).all()
        )
    return {box.open(sealed[int(r.target[2:])]): r for r in rows if int(r.target[2:]) in sealed}
