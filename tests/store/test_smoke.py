from __future__ import annotations

from publisher.models import ItemStatus
from tests.conftest import publish


async def test_publish_assigns_index_no(store, new_item):
    item = await new_item()
    live = await publish(store, item)
    assert live.status is ItemStatus.PUBLISHED
    assert live.index_no is not None and live.index_no.endswith("-00001")
