"""Exactly once through SIGKILL, and two workers sharing one PostgreSQL queue.

The service runs as real subprocesses (`publisher worker`); the far end is a
loopback server in this process that records every raw request.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from publisher.config import Config, load_config
from publisher.content import ItemCreate, content_from
from publisher.ledger import DeliveryState
from publisher.store import schema as t
from publisher.store import upgrade
from publisher.store.sql import SqlStore, make_engine
from tests.conftest import EDITOR, PG_URL, REPO, item_fields, publish
from tests.engine.conftest import engine_env, subscribe, wait_settled
from tests.fakes import RecordingServer

DATA_KEY = "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0uLi4uLi4uLi4="
CONCURRENCY = 16


def _env(storage_url: str, url: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    overrides = engine_env(url, **{"CHANNELS__SMS__CONCURRENCY": str(CONCURRENCY)})
    overrides.update(
        {
            "STORAGE__URL": storage_url,
            "STORAGE__ATTACHMENTS_DIR": str(tmp_path / "attachments"),
            "STORAGE__FEEDS_DIR": str(tmp_path / "feeds"),
            "SECURITY__DATA_KEY": DATA_KEY,
            "SECURITY__DATA_KEY_FILE": "",
            "DELIVERY__BATCH_SIZE": "50",
            "SCHEDULER__SWEEP_SECONDS": "0.5",
        }
    )
    env.update({f"PUBLISHER__{k}": v for k, v in overrides.items()})
    env["PYTHONPATH"] = str(REPO)
    return env


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "publisher", "--config", str(REPO / "config.yaml"), "worker"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


async def _recording_server() -> tuple[RecordingServer, TestServer]:
    rec = RecordingServer()
    server = TestServer(rec.app(), host="127.0.0.1")
    await server.start_server()
    return rec, server


async def _prepare(store: SqlStore, n: int, *, publish_now: bool = True) -> str:
    await subscribe(store, n)
    content = content_from(ItemCreate.model_validate(item_fields(channels=["sms"])), store.config)
    item = await store.create_item(content, actor=EDITOR)
    if publish_now:
        await publish(store, item)
    return item.id


async def _workers_registered(store: SqlStore, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with store.read() as conn:
            if await conn.scalar(sa.select(sa.func.count()).select_from(t.workers)) >= count:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} workers did not start")


async def _rows(store: SqlStore, item_id: str) -> list[tuple[int, str]]:
    async with store.read() as conn:
        return [
            (r.id, r.state)
            for r in await conn.execute(
                sa.select(t.deliveries.c.id, t.deliveries.c.state).where(
                    t.deliveries.c.item_id == item_id
                )
            )
        ]


def _assert_exactly_once(rows: list[tuple[int, str]], rec: RecordingServer, n: int) -> None:
    assert len(rows) == n, "one ledger row per target"
    per_row = Counter(int(r["delivery_id"]) for r in rec.requests)
    duplicates = {k: v for k, v in per_row.items() if v > 1}
    assert not duplicates, f"{len(duplicates)} targets got more than one request"
    by_state = Counter(state for _, state in rows)
    assert set(by_state) <= {DeliveryState.SENT.value, DeliveryState.UNKNOWN.value}, by_state
    for row_id, state in rows:
        if state == DeliveryState.SENT.value:
            assert per_row[row_id] == 1, f"row {row_id} is sent but the server never saw it"
    # rows in flight at the kill are counted, not lost, and never more than the concurrency
    assert by_state[DeliveryState.UNKNOWN.value] <= CONCURRENCY
    assert len(rec.per_target) == n - sum(
        1 for row_id, s in rows if s == DeliveryState.UNKNOWN.value and per_row[row_id] == 0
    )


def _config(storage_url: str, url: str, tmp_path: Path) -> Config:
    env = {k: v for k, v in _env(storage_url, url, tmp_path).items() if k.startswith("PUBLISHER__")}
    return load_config(REPO / "config.yaml", env)


async def test_sigkill_mid_fanout_delivers_each_target_once(tmp_path: Path) -> None:
    n = 20_000
    rec, server = await _recording_server()
    url = str(server.make_url("/send"))
    storage = f"sqlite:///{tmp_path}/crash.db"
    config = _config(storage, url, tmp_path)
    store = SqlStore(config)
    await upgrade(store)
    log = tmp_path / "worker.log"
    try:
        item_id = await _prepare(store, n)
        env = _env(storage, url, tmp_path)
        first = _start_worker(env, log)
        try:
            deadline = time.monotonic() + 120
            while len(rec.requests) < n // 4 and time.monotonic() < deadline:
                assert first.poll() is None, log.read_text()
                await asyncio.sleep(0.02)
            assert len(rec.requests) >= n // 4, "the worker did not get going"
        finally:  # killed whatever happens: no worker may outlive its test
            first.send_signal(signal.SIGKILL)
            first.wait()
        at_kill = len(rec.requests)
        assert at_kill < n, "the fan-out finished before the kill; nothing was tested"

        second = _start_worker(env, log)
        try:
            await wait_settled(store, item_id, within=180)
        finally:
            second.terminate()
            second.wait(timeout=30)
        _assert_exactly_once(await _rows(store, item_id), rec, n)
    finally:
        await store.close()
        await server.close()


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL: set PUBLISHER_TEST_DATABASE_URL to run the two-worker test")
    name = "gk_" + uuid.uuid4().hex[:10]
    admin = make_engine("postgresql+asyncpg://" + PG_URL.split("://", 1)[1])
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text(f"CREATE DATABASE {name}"))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()


async def test_two_workers_share_one_postgresql_queue(tmp_path: Path, pg_database: str) -> None:
    n = 5_000
    rec, server = await _recording_server()
    url = str(server.make_url("/send"))
    config = _config(pg_database, url, tmp_path)
    store = SqlStore(config)
    await upgrade(store)
    log = tmp_path / "workers.log"
    try:
        item_id = await _prepare(store, n, publish_now=False)
        env = _env(pg_database, url, tmp_path)
        workers = [_start_worker(env, log) for _ in range(2)]
        try:
            # both are up and polling before the item goes out, so both can take part
            await _workers_registered(store, 2)
            await publish(store, await store.get_item(item_id))
            await wait_settled(store, item_id, within=180)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(timeout=30)
        rows = await _rows(store, item_id)
        assert Counter(s for _, s in rows) == {"sent": n}
        assert len(rec.requests) == n
        assert set(Counter(int(r["delivery_id"]) for r in rec.requests).values()) == {1}
        async with store.read() as conn:
            claimers = set(
                (
                    await conn.scalars(
                        sa.select(t.delivery_events.c.detail).where(
                            t.delivery_events.c.to_state == "sending"
                        )
                    )
                ).all()
            )
        assert len(claimers) == 2, "both workers took part"
    finally:
        await store.close()
        await server.close()
