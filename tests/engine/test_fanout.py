from __future__ import annotations

import asyncio

import sqlalchemy as sa

from publisher.delivery import DeliveryWorker
from publisher.store import schema as t
from tests.conftest import publish
from tests.engine.conftest import states, subscribe, wait_settled
from tests.engine.helpers import BOTH_BACKENDS


async def test_every_subscriber_gets_one_message(engine_store, gateway, new_item_factory=None):
    rec, _ = gateway
    numbers = await subscribe(engine_store, 300)
    from publisher.content import ItemCreate, content_from
    from tests.conftest import EDITOR, item_fields

    content = content_from(
        ItemCreate.model_validate(item_fields(channels=["sms"])), engine_store.config
    )
    item = await engine_store.create_item(content, actor=EDITOR)
    worker = DeliveryWorker(engine_store)
    await worker.start()
    try:
        await publish(engine_store, item)
        await wait_settled(engine_store, item.id)
    finally:
        await worker.stop()
    assert await states(engine_store, item.id) == {"sent": 300}
    assert sorted(rec.per_target) == sorted(numbers)
    assert set(rec.per_target.values()) == {1}


@BOTH_BACKENDS
async def test_workers_starting_together_create_each_endpoint_once(engine_store) -> None:
    # two `publisher worker` processes starting at the same moment both ensure the
    # configured endpoints; neither may fail on the other's insert
    from publisher.fanout import FanOut
    from publisher.ledger import Ledger

    fanouts = [FanOut(engine_store, Ledger(engine_store)) for _ in range(4)]
    await asyncio.gather(*(f.ensure_endpoints() for f in fanouts))
    async with engine_store.read() as conn:
        names = (await conn.execute(sa.select(t.endpoints.c.channel, t.endpoints.c.name))).all()
    assert [tuple(n) for n in names] == [("rss", "feeds")]
