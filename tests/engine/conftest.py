from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from publisher.config import Config
from publisher.ledger import FINAL
from publisher.recipients import Consent, Recipients, import_subscribers
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.fakes import RecordingServer

CONSENT = Consent(method="staff", text="同意接收上余镇政务信息短信", source="test")


def phone(i: int) -> str:
    return f"+86138{i:08d}"


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[RecordingServer, str]]:
    rec = RecordingServer()
    server = TestServer(rec.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield rec, str(server.make_url("/send"))
    finally:
        await server.close()


def engine_env(url: str, **extra: str) -> dict[str, str]:
    env = {
        "CHANNELS__SMS__ADAPTER": "tests.fakes:LoopbackHttpChannel",
        "CHANNELS__SMS__SETTINGS__URL": url,
        "CHANNELS__SMS__QUIET_HOURS": "null",
        "CHANNELS__SMS__RETRY_BASE_SECONDS": "0.05",
        "CHANNELS__SMS__RETRY_CAP_SECONDS": "0.2",
        "DELIVERY__POLL_SECONDS": "0.05",
        "DELIVERY__HEARTBEAT_SECONDS": "1",
    }
    env.update(extra)
    return env


async def subscribe(store: SqlStore, n: int, categories: list[str] | None = None) -> list[str]:
    numbers = [phone(i) for i in range(n)]
    await import_subscribers(Recipients(store), "sms", numbers, CONSENT, categories=categories)
    return numbers


async def wait_settled(store: SqlStore, item_id: str | None = None, within: float = 60) -> None:
    """Until every ledger row (of the item) is in a final state."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with store.read() as conn:
            q = (
                sa.select(sa.func.count())
                .select_from(t.deliveries)
                .where(t.deliveries.c.state.not_in([s.value for s in FINAL]))
            )
            if item_id:
                q = q.where(t.deliveries.c.item_id == item_id)
            open_rows = await conn.scalar(q)
            planned = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(t.item_events)
                .where(t.item_events.c.planned_at.is_(None))
            )
        if open_rows == 0 and planned == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("deliveries did not settle in time")


async def states(store: SqlStore, item_id: str) -> dict[str, int]:
    async with store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(t.deliveries.c.state, sa.func.count())
                .where(t.deliveries.c.item_id == item_id)
                .group_by(t.deliveries.c.state)
            )
        ).all()
    return {s: int(n) for s, n in rows}


@pytest.fixture
async def engine_store(
    request: pytest.FixtureRequest, config_factory: Callable[..., Config], gateway: Any
) -> AsyncIterator[SqlStore]:
    from tests.conftest import store_on

    _, url = gateway
    async with store_on(
        config_factory(**engine_env(url)), getattr(request, "param", "sqlite")
    ) as s:
        yield s
