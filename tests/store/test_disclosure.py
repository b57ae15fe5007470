"""The disclosure rule, enforced in the core: only proactive items reach a channel."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from publisher import workflow
from publisher.content import ItemCreate, content_from
from publisher.errors import ValidationFailed
from publisher.models import Action, Channel, Disclosure, ItemStatus
from publisher.store.sql import EventKind, ItemQuery, SqlStore
from tests.conftest import EDITOR, REVIEWER, item_fields, publish

A = Action
ALL = set(Channel)


async def published_channels(store: SqlStore, item_id: str) -> set[Channel]:
    events = [e for e in await store.events(item_id) if e.kind == EventKind.PUBLISHED]
    assert len(events) == 1
    return set(events[0].channels)


async def test_proactive_item_reaches_its_channels(store, new_item):
    every = await publish(store, await new_item())
    assert await published_channels(store, every.id) == ALL
    some = await publish(store, await new_item(channels=["portal", "sms"]))
    assert await published_channels(store, some.id) == {Channel.PORTAL, Channel.SMS}


async def test_non_proactive_items_publish_to_no_channel(store, new_item):
    for disclosure in (Disclosure.ON_REQUEST, Disclosure.WITHHELD):
        item = await new_item(disclosure=disclosure.value, disclosure_reason="涉及第三方合法权益")
        live = await publish(store, item)
        # kept and counted for staff as published…
        assert live.status is ItemStatus.PUBLISHED
        assert live.index_no is not None
        # …but the event the channels read names none of them
        assert await published_channels(store, item.id) == set(), disclosure
        assert not workflow.is_publicly_visible(live.status, live.content.disclosure)

        # a correction and a withdrawal of it go nowhere either
        await store.update_item(item.id, {"title": "更正"}, actor=EDITOR, if_match=live.etag)
        await store.transition(item.id, A.SUBMIT, actor=EDITOR)
        await store.transition(item.id, A.APPROVE, actor=REVIEWER)
        await store.transition(item.id, A.WITHDRAW, actor=REVIEWER, reason="撤回")
        events = await store.events(item.id)
        assert [e.kind for e in events] == [
            EventKind.PUBLISHED,
            EventKind.CORRECTED,
            EventKind.WITHDRAWN,
        ]
        assert all(e.channels == () for e in events), disclosure
    _, counted = await store.list_items(ItemQuery(disclosure=Disclosure.ON_REQUEST))
    assert counted == 1
    # nor when the scheduler publishes it
    due = datetime.now(UTC) + timedelta(hours=1)
    item = await new_item(
        disclosure="withheld", disclosure_reason="国家秘密", publish_at=due.isoformat()
    )
    await publish(store, item)
    assert await store.publish_due(due + timedelta(minutes=1)) == [item.id]
    assert await published_channels(store, item.id) == set()


async def test_correction_to_on_request_stops_the_channels(store, new_item):
    live = await publish(store, await new_item())
    await store.update_item(
        live.id,
        {"disclosure": Disclosure.ON_REQUEST, "disclosure_reason": "含个人信息"},
        actor=EDITOR,
        if_match=live.etag,
    )
    await store.transition(live.id, A.SUBMIT, actor=EDITOR)
    corrected = await store.transition(live.id, A.APPROVE, actor=REVIEWER)
    assert corrected.content.disclosure is Disclosure.ON_REQUEST
    assert not workflow.is_publicly_visible(corrected.status, corrected.content.disclosure)
    correction = [e for e in await store.events(live.id) if e.kind == EventKind.CORRECTED]
    assert [e.channels for e in correction] == [()]


async def test_non_proactive_without_reason_is_refused(store, new_item):
    content = content_from(ItemCreate.model_validate(item_fields()), store.config)
    item = await new_item()
    for disclosure in ("on_request", "withheld"):
        for reason in (None, ""):
            with pytest.raises(ValidationFailed, match="disclosure_reason"):
                await new_item(disclosure=disclosure, disclosure_reason=reason)
        # nor through the store directly, nor by an edit
        with pytest.raises(ValidationFailed, match="disclosure_reason"):
            await store.create_item(
                replace(content, disclosure=Disclosure(disclosure)), actor=EDITOR
            )
        with pytest.raises(ValidationFailed, match="disclosure_reason"):
            await store.update_item(
                item.id, {"disclosure": Disclosure(disclosure)}, actor=EDITOR, if_match=item.etag
            )
    assert (await store.get_item(item.id)).content.disclosure is Disclosure.PROACTIVE
    _, total = await store.list_items(ItemQuery())
    assert total == 1  # nothing half-written


async def test_disabled_channels_are_left_out(store, config_factory):
    quiet = SqlStore(
        config_factory(CHANNELS__SMS__ENABLED="false", CHANNELS__BOARD__ENABLED="false"),
        engine=store.engine,
    )
    content = content_from(ItemCreate.model_validate(item_fields()), quiet.config)
    item = await quiet.create_item(content, actor=EDITOR)
    await publish(quiet, item)
    assert await published_channels(quiet, item.id) == {
        Channel.PORTAL,
        Channel.RSS,
        Channel.EMAIL,
    }


async def test_imported_items_reach_only_rss(store, config, config_factory):
    content = content_from(ItemCreate.model_validate(item_fields()), config)
    assert set(content.channels) == ALL
    item = await store.import_item(
        content, index_no="X/2013-00001", published_at=datetime(2014, 1, 2, tzinfo=UTC), actor="i"
    )
    assert await published_channels(store, item.id) == {Channel.RSS}
    hidden = content_from(
        ItemCreate.model_validate(item_fields(disclosure="on_request", disclosure_reason="依申请")),
        config,
    )
    item = await store.import_item(
        hidden, index_no="X/2013-00002", published_at=datetime(2014, 1, 2, tzinfo=UTC), actor="i"
    )
    assert await published_channels(store, item.id) == set()
    # and nothing at all when rss is switched off
    no_rss = SqlStore(config_factory(CHANNELS__RSS__ENABLED="false"), engine=store.engine)
    item = await no_rss.import_item(
        content, index_no=None, published_at=datetime(2014, 1, 2, tzinfo=UTC), actor="i"
    )
    assert await published_channels(no_rss, item.id) == set()
