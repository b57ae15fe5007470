from __future__ import annotations

from publisher.delivery import DeliveryWorker
from tests.conftest import publish
from tests.engine.conftest import states, subscribe, wait_settled


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
