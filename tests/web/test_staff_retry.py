"""The staff retry button (issue 14): offered only while a retry would requeue something,
and never for the publication of a withdrawn item; pressed anyway (a stale page), it says
in Chinese how many deliveries it left and why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from publisher.config import Config
from publisher.fanout import FanOut
from publisher.ledger import Ledger
from publisher.models import Action
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import REVIEWER, publish
from tests.engine.helpers import new_sms_item
from tests.web.test_staff_ui import Browser, _open, new_browser


@pytest.fixture
async def ui(config: Config) -> AsyncIterator[tuple[TestClient[Any, Any], SqlStore]]:
    async for pair in _open(config):
        yield pair


async def _failed_item(store: SqlStore) -> str:
    item = await publish(store, await new_sms_item(store, channels=["rss"]))
    fanout = FanOut(store, Ledger(store))
    await fanout.ensure_endpoints()
    assert await fanout.plan_pending() > 0
    async with store.write() as conn:  # every feed write failed for good
        await conn.execute(
            t.deliveries.update()
            .where(t.deliveries.c.item_id == item.id)
            .values(state="failed", reason="rejected")
        )
    return item.id


async def test_retry_is_not_offered_for_a_withdrawn_item(ui: Any) -> None:
    client, store = ui
    item_id = await _failed_item(store)
    bob: Browser = await new_browser(client)
    async with bob.client:
        await bob.login("bob")
        retry_form = f'action="/staff/items/{item_id}/retry"'
        status, html, _ = await bob.get(f"/staff/items/{item_id}")
        assert status == 200 and retry_form in html
        await store.transition(item_id, Action.WITHDRAW, actor=REVIEWER, reason="撤回")
        status, html, _ = await bob.get(f"/staff/items/{item_id}")
        assert status == 200 and retry_form not in html
        # the button pressed on a page loaded before the withdrawal
        status, _, headers = await bob.post(f"/staff/items/{item_id}/retry")
        assert status == 303
        status, html, _ = await bob.get(headers["Location"])
        assert status == 200
        assert "条投递未重新排队：该信息已撤回" in html
    async with store.read() as conn:
        left = set(
            (
                await conn.scalars(
                    sa.select(t.deliveries.c.state).where(t.deliveries.c.item_id == item_id)
                )
            ).all()
        )
    assert left == {"failed"}
