"""One entry XML cannot hold (old data, from before the store refused control characters)
never fails a feed: it is left out, logged, counted and shown on its item's deliveries,
while other items still appear and a withdrawal still removes its entry."""

from __future__ import annotations

from typing import Any

import feedparser
import pytest

from channels.rss import (
    LEFT_OUT_REASON,
    EntryData,
    build_feeds,
    build_feeds_safely,
    entry_problem,
)
from publisher.config import Config
from publisher.models import Action, Role
from publisher.store import schema as t
from publisher.web.keys import STORE
from tests.channels.entries import sample_entry
from tests.channels.test_feeds import entry_for, feed_item, parsed, publish
from tests.conftest import REVIEWER, item_fields
from tests.engine.helpers import BOTH_BACKENDS, api_on, ledger_rows, running, wait_channel_settled
from tests.web.test_staff_ui import PASSWORD, Browser

BAD_TITLES = ["坏\x0b标题", "坏\x1b标题", "坏\ufffe标题"]


def _entry(item_id: str, **overrides: Any) -> EntryData:
    return sample_entry(item_id, **overrides)


@pytest.mark.parametrize("title", BAD_TITLES)
def test_a_bad_entry_is_left_out_and_the_others_written(config: Config, title: str) -> None:
    good, bad = _entry("a"), _entry("b", title=title)
    with pytest.raises(ValueError):  # what every feed pass did before
        build_feeds(config, "all", [good, bad], good.updated, None)
    docs, left_out = build_feeds_safely(config, "all", [good, bad], good.updated, None)
    assert [lo.item_id for lo in left_out] == ["b"]
    assert "title holds U+" in left_out[0].reason
    for fmt in ("atom", "rss"):
        feed = feedparser.parse(docs[fmt])
        assert not feed.bozo, feed.bozo_exception
        assert [e.id for e in feed.entries] == ["urn:uuid:a"]


def test_every_text_of_an_entry_is_screened() -> None:
    assert entry_problem(_entry("a")) is None
    assert entry_problem(_entry("a", body_html="<p>\x0c</p>")) is not None
    assert entry_problem(_entry("a", correction_note="\x1b")) is not None
    attachment = {"filename": "a\x0b.pdf", "url": "u", "sha256": "0", "size": 1}
    assert "attachment filename" in str(entry_problem(_entry("a", attachments=(attachment,))))


def test_an_entry_failing_for_another_reason_is_found_alone(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    import channels.rss as rss

    real = rss.build_feeds

    def picky(config: Config, name: str, entries: list[EntryData], *a: Any) -> dict[str, bytes]:
        if any(e.item_id == "b" for e in entries):
            raise ValueError("lxml says no")
        return real(config, name, entries, *a)

    monkeypatch.setattr(rss, "build_feeds", picky)
    good = _entry("a")
    docs, left_out = build_feeds_safely(config, "all", [good, _entry("b")], good.updated, None)
    assert [(lo.item_id, lo.reason) for lo in left_out] == [("b", "ValueError: lxml says no")]
    assert [e.id for e in feedparser.parse(docs["atom"]).entries] == ["urn:uuid:a"]


async def _corrupt_title(store: Any, item_id: str, title: str) -> None:
    """Old data: a title the API refuses today, written straight into the store."""
    async with store.write() as conn:
        await conn.execute(
            t.revisions.update().where(t.revisions.c.item_id == item_id).values(title=title)
        )


@BOTH_BACKENDS
async def test_feeds_survive_a_bad_entry_and_withdrawals_still_apply(engine_store: Any) -> None:
    store = engine_store
    bad = await feed_item(store, title="旧数据")
    await _corrupt_title(store, bad.id, "旧\x0b数据")
    good = await feed_item(store, title="关于2026年冬季农田水利建设的通知")
    async with running(store) as worker, api_on(store, worker) as api:
        await publish(store, bad)
        worker.wake()
        await wait_channel_settled(store, bad.id, "rss")
        await publish(store, good)
        worker.wake()
        await wait_channel_settled(store, good.id, "rss")

        # the later item appears; the bad one is left out, not the feed
        for path in ("/feeds/all.atom", "/feeds/all.rss", "/feeds/nync.atom"):
            feed = await parsed(api, path)
            assert entry_for(feed, good.id) is not None, path
            assert entry_for(feed, bad.id) is None, path

        # the staff see why on the bad item's deliveries
        rows = await ledger_rows(store, bad.id, "rss")
        assert rows and {r.state for r in rows} == {"failed"}
        assert {r.reason for r in rows} == {LEFT_OUT_REASON}
        status, body, _ = await api.call("GET", f"/api/v1/items/{bad.id}/deliveries")
        assert status == 200 and body["counts"]["rss"]["failed"] == len(rows)
        assert {r.state for r in await ledger_rows(store, good.id, "rss")} == {"delivered"}
        # and on the item's page, in words
        await store.add_user("erin", Role.EDITOR, PASSWORD)
        browser = Browser(api.client)
        await browser.login("erin")
        status, html, _ = await browser.get(f"/staff/items/{bad.id}")
        assert status == 200 and "未列入订阅源" in html and "U+000B" in html

        # counted in /metrics
        text = (await api.call("GET", "/metrics", who=None))[1].decode()
        assert 'publisher_feed_entries_left_out{feed="all"} 1.0' in text

        # the preview says what is wrong instead of a 500
        status, body, _ = await api.call("GET", f"/api/v1/items/{bad.id}/preview")
        assert status == 200, body
        assert body["channels"]["rss"]["available"] is False
        assert "U+000B" in body["channels"]["rss"]["detail"]

        # a withdrawal removes its entry while the bad entry is still in the store
        await store.transition(good.id, Action.WITHDRAW, actor=REVIEWER, reason="文件废止")
        worker.wake()
        await wait_channel_settled(store, good.id, "rss")
        for path in ("/feeds/all.atom", "/feeds/all.rss", "/feeds/nync.rss"):
            feed = await parsed(api, path)
            assert entry_for(feed, good.id) is None, path
            assert "冬季农田水利" not in str(feed.entries), path

        # once the bad item is withdrawn (no feed ever carried it: nothing to retract),
        # the next pass leaves nothing out
        await store.transition(bad.id, Action.WITHDRAW, actor=REVIEWER, reason="旧数据")
        later = await feed_item(store, title="关于冬季防火的通知")
        await publish(store, later)
        worker.wake()
        await wait_channel_settled(store, later.id, "rss")
        assert entry_for(await parsed(api, "/feeds/all.atom"), later.id) is not None
        text = (await api.call("GET", "/metrics", who=None))[1].decode()
        assert 'publisher_feed_entries_left_out{feed="all"} 0.0' in text


async def test_preview_of_an_item_with_a_bad_title_is_never_a_500(api: Any) -> None:
    channels = ["portal", "rss", "email", "board", "sms"]
    status, item, _ = await api.call("POST", "/api/v1/items", json=item_fields(channels=channels))
    assert status == 201, item
    store = api.client.app[STORE]
    for title in BAD_TITLES:
        await _corrupt_title(store, item["id"], title)
        status, body, _ = await api.call("GET", f"/api/v1/items/{item['id']}/preview")
        assert status == 200, body
        assert body["channels"]["rss"]["available"] is False
        assert "left out of the feeds" in body["channels"]["rss"]["detail"]
        assert set(body["channels"]) == set(channels)
