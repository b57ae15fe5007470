from __future__ import annotations

import asyncio

import sqlalchemy as sa

from publisher.config import Config
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
    expected = [("rss", "all")] + [("rss", c.slug) for c in engine_store.config.taxonomy]
    assert sorted(tuple(n) for n in names) == sorted(expected)


@BOTH_BACKENDS
async def test_an_endpoint_edited_in_config_takes_effect_at_the_next_start(
    engine_store, config_factory
) -> None:
    # config.yaml is the source of a declared endpoint: a new address or a rotated
    # secret must not be ignored because the row already exists
    from publisher.fanout import FanOut
    from publisher.ledger import Ledger

    def declared(address: str, secret_env: str) -> Config:
        tree = config_factory().model_dump()
        tree["channels"]["portal"]["endpoints"] = [
            {
                "name": "city",
                "address": address,
                "categories": ["nync"],
                "settings": {"secret_env": secret_env},
            }
        ]
        return Config.model_validate(tree)

    first = FanOut(engine_store, Ledger(engine_store))
    first.config = declared("http://127.0.0.1:9/old", "PORTAL_SECRET_A")
    await first.ensure_endpoints()
    again = FanOut(engine_store, Ledger(engine_store))
    again.config = declared("http://127.0.0.1:9/new", "PORTAL_SECRET_B")
    await again.ensure_endpoints()
    async with engine_store.read() as conn:
        rows = (
            await conn.execute(sa.select(t.endpoints).where(t.endpoints.c.channel == "portal"))
        ).all()
    assert len(rows) == 1
    assert rows[0].address == "http://127.0.0.1:9/new"
    assert rows[0].settings == {"secret_env": "PORTAL_SECRET_B"}
    assert rows[0].categories == ["nync"]


async def test_an_unreadable_address_fails_its_own_delivery_not_the_others(
    engine_store, gateway
) -> None:
    # a damaged ciphertext (a bad restore, a disk error) must not stall the turn that
    # claimed it: that resident's row retries and fails; everyone else gets the message
    rec, _ = gateway
    numbers = await subscribe(engine_store, 20)
    async with engine_store.write() as conn:
        # (not the first row: the worker's start-up check reads that one to test the key)
        damaged = await conn.scalar(sa.select(sa.func.max(t.recipients.c.id)))
        await conn.execute(
            t.recipients.update().where(t.recipients.c.id == damaged).values(address_enc="AAAA")
        )
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
        await wait_settled(engine_store, item.id, within=120)
    finally:
        await worker.stop()
    assert await states(engine_store, item.id) == {"sent": 19, "failed": 1}
    async with engine_store.read() as conn:
        row = (
            await conn.execute(
                sa.select(t.deliveries.c.reason, t.deliveries.c.last_error).where(
                    t.deliveries.c.target == f"r:{damaged}"
                )
            )
        ).one()
    assert row.reason == "retries_exhausted" and "cannot decrypt" in row.last_error
    assert sorted(rec.per_target) == sorted(numbers[:-1])
