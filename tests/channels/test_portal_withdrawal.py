"""Withdrawal on the portal as the city sees it (issue 14): a refused push of an item that
is then withdrawn is never pushed again by a staff retry, and an endpoint whose push was in
flight when the item was withdrawn still gets exactly one `item.withdrawn`, after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer

from publisher.config import Config
from publisher.fanout import FanOut
from publisher.ledger import Ledger
from publisher.models import Action
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.channels.test_portal import (
    COUNTY_SECRET_ENV,
    PORTAL_ONLY,
    SECRETS,
    PortalServer,
    portal_config,
    portal_item,
)
from tests.conftest import BACKENDS, REVIEWER, publish
from tests.conftest import store_on as open_store
from tests.engine.helpers import api_on, eventually, ledger_rows, running, wait_channel_settled


class HoldingPortal(PortalServer):
    """A portal that keeps each request to /city waiting until `release` is set."""

    def __init__(self) -> None:
        super().__init__(SECRETS)
        self.release = asyncio.Event()
        self.release.set()
        self.waiting = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/city" and not self.release.is_set():
            self.waiting.set()
            await self.release.wait()
        return await super().handle(request)

    def types(self, path: str) -> list[str]:
        return [r.event["type"] for r in self.at(path) if r.status == 204]


@pytest.fixture
async def holding() -> AsyncIterator[tuple[HoldingPortal, str]]:
    server = HoldingPortal()
    test_server = TestServer(server.app(), host="127.0.0.1")
    await test_server.start_server()
    try:
        yield server, str(test_server.make_url("")).rstrip("/")
    finally:
        await test_server.close()


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest,
    config_factory: Callable[..., Config],
    holding: tuple[HoldingPortal, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[SqlStore]:
    monkeypatch.setenv(COUNTY_SECRET_ENV, SECRETS["/county"])
    _, base = holding
    config = portal_config(config_factory(**PORTAL_ONLY), base)
    async with open_store(config, request.param) as s:
        yield s


async def test_a_staff_retry_does_not_push_a_withdrawn_item(
    store: SqlStore, holding: tuple[HoldingPortal, str]
) -> None:
    server, _ = holding
    server.refuse["/strict"] = "缺少必填字段"
    item = await publish(store, await portal_item(store, category="qt"))
    async with running(store) as worker, api_on(store, worker) as api:
        await wait_channel_settled(store, item.id, "portal")
        status, body, _ = await api.call(
            "POST", f"/api/v1/items/{item.id}/withdraw", who="bob", json={"reason": "政策调整"}
        )
        assert status == 200, body
        await wait_channel_settled(store, item.id, "portal")
        server.refuse.clear()  # the portal is healthy again
        status, body, _ = await api.call(
            "POST", f"/api/v1/items/{item.id}/deliveries/retry", who="bob"
        )
        assert status == 200, body
        assert (body["requeued"], body["left"], body["left_reason"]) == (0, 1, "withdrawn")
        await wait_channel_settled(store, item.id, "portal")
        await asyncio.sleep(0.2)
    # /strict refused the publication once and was never asked to publish it again; it
    # never had the item, so it is not told to take it down either
    assert [r.status for r in server.at("/strict")] == [400]
    assert server.types("/city") == ["item.published", "item.withdrawn"]


async def test_an_endpoint_in_flight_at_the_withdrawal_gets_its_retraction(
    store: SqlStore, holding: tuple[HoldingPortal, str]
) -> None:
    server, _ = holding
    server.release.clear()  # /city's push of the publication hangs until released
    item = await portal_item(store)
    async with running(store):
        await publish(store, item)
        await asyncio.wait_for(server.waiting.wait(), 10)
        await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="撤回")

        async def withdrawal_planned() -> bool:
            async with store.read() as conn:
                return bool(
                    await conn.scalar(
                        sa.select(sa.func.count()).where(
                            t.item_events.c.item_id == item.id,
                            t.item_events.c.kind == "withdrawn",
                            t.item_events.c.planned_at.is_not(None),
                        )
                    )
                )

        # the take-down is planned while /city's push is still out, so it is not yet
        # among the endpoints that have the item
        await eventually(withdrawal_planned, within=10, what="withdrawal planned")
        server.release.set()
        await eventually(
            lambda: _has(server, "/city", "item.withdrawn"), within=15, what="retraction"
        )
        await wait_channel_settled(store, item.id, "portal")
        await asyncio.sleep(0.2)
    assert server.types("/city") == ["item.published", "item.withdrawn"]
    assert server.types("/county") == ["item.published", "item.withdrawn"]
    rows = await ledger_rows(store, item.id, "portal")
    assert len(rows) == 4 and {r.state for r in rows} == {"delivered"}


async def _has(server: HoldingPortal, path: str, kind: str) -> bool:
    return kind in server.types(path)


async def test_a_publication_a_crash_cut_off_is_taken_down_too(store: SqlStore) -> None:
    """The worker died with the push out (it may have arrived); the item is withdrawn before
    recovery requeues it. Nobody can know whether the city has it: the row ends `unknown`
    (never `skipped`, never sent again) and the endpoint gets the withdrawal."""
    ledger = Ledger(store)
    fanout = FanOut(store, ledger)
    await fanout.ensure_endpoints()
    item = await publish(store, await portal_item(store))
    await fanout.plan_pending()
    claimed = await ledger.cycle("dead-worker", [], "portal", 10, retracts=True)
    assert len(claimed) == 2  # city and county; the worker dies with both pushes out
    assert await ledger.recover(timedelta(0), {"portal": True}) == {"requeued": 2, "unknown": 0}
    await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="撤回")
    await fanout.plan_pending()
    rows = await ledger_rows(store, item.id, "portal")
    published = {r.target: r for r in rows if r.subject == "event:1"}
    assert {(r.state, r.reason) for r in published.values()} == {("unknown", "interrupted")}
    retractions = {r.target for r in rows if r.subject != "event:1"}
    assert retractions == set(published)  # each endpoint that may have it is told
