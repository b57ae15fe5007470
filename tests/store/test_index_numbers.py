"""索引号: assigned at first publication, per agency code and year, no gap, no reuse."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from publisher.content import ItemCreate, content_from
from publisher.errors import DuplicateIndexNo
from publisher.models import Action, Item, ItemStatus
from publisher.store.sql import SqlStore
from tests.conftest import EDITOR, REVIEWER, item_fields, publish

A = Action
CODE = "113308810026305088"  # site.agency_code in config.yaml


def year_now(store: SqlStore) -> int:
    return datetime.now(store.config.site.tz).year


def serial(index_no: str | None) -> int:
    assert index_no is not None
    return int(index_no.rsplit("-", 1)[1])


async def draft(store: SqlStore, **overrides) -> Item:
    content = content_from(ItemCreate.model_validate(item_fields(**overrides)), store.config)
    return await store.create_item(content, actor=EDITOR)


async def test_format_comes_from_config_serial_per_agency_code(store, new_item, config_factory):
    first = await publish(store, await new_item())
    second = await publish(store, await new_item())
    year = year_now(store)
    assert first.index_no == f"{CODE}/{year}-00001"
    assert second.index_no == f"{CODE}/{year}-00002"
    custom = SqlStore(
        config_factory(
            SITE__INDEX_FORMAT="GK{agency_code}-{year}-{serial:03d}", SITE__AGENCY_CODE="ABC"
        ),
        engine=store.engine,
    )
    other = SqlStore(
        config_factory(
            SITE__INDEX_FORMAT="GK{agency_code}-{year}-{serial:03d}", SITE__AGENCY_CODE="XYZ"
        ),
        engine=store.engine,
    )
    a1 = await publish(custom, await draft(custom))
    a2 = await publish(custom, await draft(custom))
    x1 = await publish(other, await draft(other))
    assert [a1.index_no, a2.index_no, x1.index_no] == [
        f"GKABC-{year}-001",
        f"GKABC-{year}-002",
        f"GKXYZ-{year}-001",
    ]


async def test_serial_starts_again_each_year_of_the_site_time_zone(store, new_item):
    async def publish_at(when: datetime) -> str:
        item = await new_item()
        await store.transition(item.id, A.SUBMIT, actor=EDITOR)
        live = await store.transition(item.id, A.APPROVE, actor=REVIEWER, now=when)
        assert live.status is ItemStatus.PUBLISHED
        assert live.index_no is not None
        return live.index_no

    assert await publish_at(datetime(2025, 6, 1, tzinfo=UTC)) == f"{CODE}/2025-00001"
    assert await publish_at(datetime(2025, 12, 31, 15, 0, tzinfo=UTC)) == f"{CODE}/2025-00002"
    # 16:30 UTC on 31 December is already New Year's Day in Shanghai
    assert await publish_at(datetime(2025, 12, 31, 16, 30, tzinfo=UTC)) == f"{CODE}/2026-00001"
    assert await publish_at(datetime(2025, 11, 1, tzinfo=UTC)) == f"{CODE}/2025-00003"
    assert await publish_at(datetime(2026, 3, 1, tzinfo=UTC)) == f"{CODE}/2026-00002"


async def test_concurrent_publication_has_no_gap_and_no_reuse(store, new_item):
    items = [await new_item(title=f"通知第{i}号") for i in range(20)]
    for item in items:
        await store.transition(item.id, A.SUBMIT, actor=EDITOR)

    published = await asyncio.gather(
        *(store.transition(i.id, A.APPROVE, actor=REVIEWER) for i in items)
    )

    assert all(p.status is ItemStatus.PUBLISHED for p in published)
    numbers = [p.index_no for p in published]
    assert len(set(numbers)) == 20
    assert sorted(serial(n) for n in numbers) == list(range(1, 21))
    # the numbers the store reports are the ones it keeps
    kept = [(await store.get_item(i.id)).index_no for i in items]
    assert kept == numbers
    nxt = await publish(store, await new_item())
    assert serial(nxt.index_no) == 21


async def test_concurrent_scheduled_publication_has_no_gap_and_no_reuse(store, new_item):
    due = datetime.now(UTC) + timedelta(hours=1)
    items = [await new_item(publish_at=due.isoformat()) for _ in range(8)]
    for item in items:
        assert (await publish(store, item)).status is ItemStatus.SCHEDULED
    later = due + timedelta(minutes=1)
    # two sweeps racing each other (two processes, or a slow sweep and a fast one)
    runs = await asyncio.gather(store.publish_due(later), store.publish_due(later))
    assert sorted(runs[0] + runs[1]) == sorted(i.id for i in items)  # each published once
    numbers = [(await store.get_item(i.id)).index_no for i in items]
    assert sorted(serial(n) for n in numbers) == list(range(1, 9))


async def test_items_withdrawn_before_publication_use_no_number(store, new_item):
    first = await publish(store, await new_item())
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    scheduled = await publish(store, await new_item(publish_at=future))
    assert scheduled.status is ItemStatus.SCHEDULED
    assert scheduled.index_no is None
    withdrawn = await store.transition(scheduled.id, A.WITHDRAW, actor=REVIEWER, reason="取消")
    assert withdrawn.status is ItemStatus.WITHDRAWN
    assert withdrawn.index_no is None

    nxt = await publish(store, await new_item())
    assert serial(first.index_no) == 1
    assert serial(nxt.index_no) == 2
    # nor does a withdrawn item get one later from the scheduler
    await store.publish_due(datetime.now(UTC) + timedelta(days=3))
    assert (await store.get_item(scheduled.id)).index_no is None


async def test_imported_item_keeps_its_own_index_no(store, config):
    content = content_from(
        ItemCreate.model_validate(item_fields(title="上余镇2013年政府信息公开年度报告")), config
    )
    when = datetime(2014, 3, 20, tzinfo=UTC)
    item = await store.import_item(
        content, index_no="002565143/2014-00012", published_at=when, actor="importer"
    )
    assert item.index_no == "002565143/2014-00012"
    assert item.imported and item.status is ItemStatus.PUBLISHED
    assert item.published_at == when
    with pytest.raises(DuplicateIndexNo) as err:
        await store.import_item(
            content, index_no="002565143/2014-00012", published_at=when, actor="importer"
        )
    assert err.value.status == 409
    # an archival item without one gets a number of its own publication year
    older = await store.import_item(
        content, index_no=None, published_at=datetime(2019, 5, 5, tzinfo=UTC), actor="importer"
    )
    assert older.index_no == f"{CODE}/2019-00001"


async def test_assigned_numbers_step_over_imported_ones(store, new_item, config):
    year = year_now(store)
    content = content_from(ItemCreate.model_validate(item_fields()), config)
    # someone imports the number the system would hand out next, and the one after that
    for n in (1, 2, 4):
        await store.import_item(
            content,
            index_no=f"{CODE}/{year}-{n:05d}",
            published_at=datetime.now(UTC),
            actor="importer",
        )
    got = [(await publish(store, await new_item())).index_no for _ in range(3)]
    assert got == [f"{CODE}/{year}-00003", f"{CODE}/{year}-00005", f"{CODE}/{year}-00006"]


async def test_index_no_never_changes_after_corrections(store, new_item):
    live = await publish(store, await new_item())
    number = live.index_no
    for n in range(2):
        item = await store.get_item(live.id)
        await store.update_item(
            live.id, {"title": f"更正{n}", "category": "zwgk"}, actor=EDITOR, if_match=item.etag
        )
        await store.transition(live.id, A.SUBMIT, actor=EDITOR)
        corrected = await store.transition(live.id, A.APPROVE, actor=REVIEWER)
        assert corrected.content.title == f"更正{n}"
        assert corrected.index_no == number
    # a correction does not consume a serial either
    assert serial((await publish(store, await new_item())).index_no) == 2
