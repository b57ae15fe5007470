"""Publication on schedule: the store's due sweeps and the APScheduler driver."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from publisher.models import Action, ItemStatus
from publisher.scheduler import PublicationScheduler
from publisher.store.sql import EventKind, SqlStore
from tests.conftest import EDITOR, REVIEWER, publish

A = Action


async def wait_for_status(store: SqlStore, item_id: str, status: ItemStatus, within: float):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        item = await store.get_item(item_id)
        if item.status is status:
            return item
        await asyncio.sleep(0.1)
    raise AssertionError(f"item {item_id} not {status.value} within {within} s: {item.status}")


async def test_publish_due_publishes_what_is_due_oldest_first(store, new_item):
    t0 = datetime.now(UTC).replace(microsecond=0)
    # created in a different order from their publish_at
    at2 = await publish(store, await new_item(publish_at=(t0 + timedelta(hours=2)).isoformat()))
    at3 = await publish(store, await new_item(publish_at=(t0 + timedelta(hours=3)).isoformat()))
    at1 = await publish(store, await new_item(publish_at=(t0 + timedelta(hours=1)).isoformat()))
    assert {i.status for i in (at1, at2, at3)} == {ItemStatus.SCHEDULED}
    assert await store.next_due() == t0 + timedelta(hours=1)

    assert await store.publish_due(t0 + timedelta(minutes=30)) == []
    now = t0 + timedelta(hours=2, minutes=30)
    assert await store.publish_due(now) == [at1.id, at2.id]

    first, second, later = [await store.get_item(i.id) for i in (at1, at2, at3)]
    assert first.status is second.status is ItemStatus.PUBLISHED
    assert first.published_at == second.published_at == now
    # oldest due gets the lower 索引号
    assert first.index_no is not None and second.index_no is not None
    assert first.index_no < second.index_no
    assert later.status is ItemStatus.SCHEDULED and later.index_no is None
    assert await store.next_due() == t0 + timedelta(hours=3)
    # nothing twice
    assert await store.publish_due(now) == []
    assert [e.kind for e in await store.events(at1.id)] == [EventKind.PUBLISHED]
    # a withdrawn item is never published, and nothing is due any more
    await store.transition(at3.id, A.WITHDRAW, actor=REVIEWER, reason="取消发布")
    assert await store.publish_due(t0 + timedelta(hours=4)) == []
    assert (await store.get_item(at3.id)).status is ItemStatus.WITHDRAWN
    assert await store.events(at3.id) == []
    assert await store.next_due() is None


async def test_expire_due_moves_items_past_expiry_to_expired(store, new_item):
    t0 = datetime.now(UTC)
    soon = await publish(store, await new_item(expires_at=(t0 + timedelta(hours=1)).isoformat()))
    late = await publish(store, await new_item(expires_at=(t0 + timedelta(days=5)).isoformat()))
    never = await publish(store, await new_item())
    assert await store.next_due() == soon.content.expires_at

    now = t0 + timedelta(hours=2)
    assert await store.expire_due(now) == [soon.id]
    gone = await store.get_item(soon.id)
    assert gone.status is ItemStatus.EXPIRED
    assert gone.expired_at == now
    assert gone.index_no == soon.index_no
    expired = [e for e in await store.events(soon.id) if e.kind == EventKind.EXPIRED]
    assert len(expired) == 1
    assert set(expired[0].channels) == set(soon.content.channels)
    row = (await store.audit(soon.id))[-1]
    assert (row.action, row.actor, row.from_status, row.to_status) == (
        "expire",
        "system",
        "published",
        "expired",
    )
    for other in (late, never):
        assert (await store.get_item(other.id)).status is ItemStatus.PUBLISHED
    assert await store.expire_due(now) == []


async def test_scheduler_publishes_an_item_when_it_falls_due(store, new_item):
    scheduler = PublicationScheduler(store, sweep_seconds=0.5)
    await scheduler.start()
    try:
        # far enough ahead that a loaded machine still approves it before it is due
        due = datetime.now(UTC) + timedelta(seconds=4)
        item = await publish(store, await new_item(publish_at=due.isoformat()))
        assert item.status is ItemStatus.SCHEDULED
        live = await wait_for_status(store, item.id, ItemStatus.PUBLISHED, within=30)
    finally:
        await scheduler.stop()
    assert live.published_at is not None and live.published_at >= due
    assert live.index_no is not None


async def test_scheduler_wakes_at_the_due_time_between_sweeps(store, new_item):
    """With a long sweep interval, the wake-up job still publishes on time."""
    due = datetime.now(UTC) + timedelta(seconds=1)
    item = await publish(store, await new_item(publish_at=due.isoformat()))
    scheduler = PublicationScheduler(store, sweep_seconds=3600)
    await scheduler.start()  # the first sweep arms a wake-up for `item`
    try:
        await wait_for_status(store, item.id, ItemStatus.PUBLISHED, within=15)
        # an approval after start tells the scheduler through wake()
        due = datetime.now(UTC) + timedelta(seconds=4)
        other = await publish(store, await new_item(publish_at=due.isoformat()))
        assert other.status is ItemStatus.SCHEDULED
        await scheduler.wake()
        await wait_for_status(store, other.id, ItemStatus.PUBLISHED, within=15)
    finally:
        await scheduler.stop()


async def test_scheduler_catches_up_on_start_and_records_lateness(store, new_item):
    real_now = datetime.now(UTC)
    due = real_now - timedelta(minutes=10)
    item = await new_item(publish_at=due.isoformat())
    await store.transition(item.id, A.SUBMIT, actor=EDITOR)
    # approved an hour ago, then the service was down while it fell due
    approved = await store.transition(
        item.id, A.APPROVE, actor=REVIEWER, now=real_now - timedelta(hours=1)
    )
    assert approved.status is ItemStatus.SCHEDULED

    scheduler = PublicationScheduler(store, sweep_seconds=3600)
    await scheduler.start()
    try:
        await wait_for_status(store, item.id, ItemStatus.PUBLISHED, within=15)
    finally:
        await scheduler.stop()
    row = [e for e in await store.audit(item.id) if e.to_status == "published"][-1]
    assert row.actor == "system"
    assert 600 <= row.details["late_seconds"] < 600 + 60

    # approval with a past publish_at is late too; without publish_at it is not
    on_time = await publish(store, await new_item())
    past = await publish(
        store, await new_item(publish_at=(real_now - timedelta(hours=1)).isoformat())
    )
    rows = {
        i.id: [e for e in await store.audit(i.id) if e.to_status == "published"][-1]
        for i in (on_time, past)
    }
    assert "late_seconds" not in rows[on_time.id].details
    assert rows[on_time.id].details["index_no"] == on_time.index_no
    assert 3600 <= rows[past.id].details["late_seconds"] < 3600 + 60
