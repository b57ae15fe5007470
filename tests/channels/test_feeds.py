"""The rss channel end to end: a real worker regenerates the feeds, the app serves them,
feedparser (a real feed client) reads them, lxml checks Atom against RFC 4287 §4."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import feedparser
import lxml.html
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree

from channels.rss import CATALOGUE_NS
from publisher.config import Config
from publisher.models import Action, ItemStatus
from tests.conftest import EDITOR, EDITOR2, REVIEWER, Api
from tests.engine.helpers import (
    BOTH_BACKENDS,
    api_on,
    eventually,
    ledger_rows,
    new_sms_item,
    running,
    wait_channel_settled,
)

ATOM = "{http://www.w3.org/2005/Atom}"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
HOSTILE_TITLE = '关于<script>alert("x")</script>整治 & “公告” 😀 𠮷野家'


async def feed_item(store: Any, **overrides: Any) -> Any:
    overrides.setdefault("channels", ["rss"])
    return await new_sms_item(store, **overrides)


async def publish(store: Any, item: Any) -> Any:
    await store.transition(item.id, Action.SUBMIT, actor=EDITOR2)
    return await store.transition(item.id, Action.APPROVE, actor=REVIEWER)


async def fetch(api: Api, path: str, **headers: str) -> tuple[int, bytes, Any]:
    resp = await api.client.get(path, headers=headers)
    return resp.status, await resp.read(), resp.headers


async def parsed(api: Api, path: str) -> Any:
    status, body, _ = await fetch(api, path)
    assert status == 200, body
    feed = feedparser.parse(body)
    assert not feed.bozo, feed.bozo_exception
    return feed


def entry_for(feed: Any, item_id: str) -> Any:
    found = [e for e in feed.entries if e.id == f"urn:uuid:{item_id}"]
    assert len(found) <= 1
    return found[0] if found else None


@BOTH_BACKENDS
async def test_published_item_appears_in_every_feed_it_belongs_to(engine_store) -> None:
    store = engine_store
    item = await feed_item(
        store, title="关于2026年冬季农田水利建设的通知", doc_no="上政发〔2026〕12号"
    )
    async with running(store) as worker, api_on(store, worker) as api:
        live = await publish(store, item)
        worker.wake()
        await wait_channel_settled(store, item.id, "rss")
        for path in ("/feeds/all.rss", "/feeds/all.atom", "/feeds/nync.rss", "/feeds/nync.atom"):
            feed = await parsed(api, path)
            entry = entry_for(feed, item.id)
            assert entry is not None, path
            assert entry.title == "关于2026年冬季农田水利建设的通知"
            assert entry.link == f"{store.config.site.public_base}/items/{item.id}"
            assert "冬季农田水利建设工作" in entry.content[0].value
            # Atom: term slug with the name as label; RSS: the name, the catalogue as domain
            tag = entry.tags[0]
            assert (tag.term, tag.get("label") or tag.term) in (
                ("nync", "农业农村"),
                ("农业农村", "农业农村"),
            )
            assert entry.author == store.config.site.agency
            # the site's timezone shows in the dates: +08:00 for Asia/Shanghai
            published = entry.get("published") or entry.get("updated")
            assert "+08:00" in published or "+0800" in published
            # the catalogue metadata a portal files the item by, without retyping
            assert entry["gk_indexno"] == live.index_no
            assert entry["gk_agency"] == store.config.site.agency
            assert entry["gk_writtenat"] == "2026-11-20"
            assert entry["gk_docno"] == "上政发〔2026〕12号"
            assert entry["gk_category"] == "农业农村"
        # another category's feed does not carry it
        other = await parsed(api, "/feeds/zwgk.atom")
        assert entry_for(other, item.id) is None

        # the ledger says when each feed carried the publication
        rows = await ledger_rows(store, item.id, "rss")
        assert {r.state for r in rows} == {"delivered"}
        assert len(rows) == 2  # all + nync
        status, body, _ = await api.call("GET", f"/api/v1/items/{item.id}/deliveries")
        assert status == 200
        assert body["counts"]["rss"]["delivered"] == 2


@BOTH_BACKENDS
async def test_correction_updates_the_entry_and_withdrawal_removes_it(engine_store) -> None:
    store = engine_store
    item = await feed_item(store)
    async with running(store) as worker, api_on(store, worker) as api:
        live = await publish(store, item)
        worker.wake()
        await wait_channel_settled(store, item.id, "rss")
        before = entry_for(await parsed(api, "/feeds/all.atom"), item.id)

        edited = await store.update_item(
            item.id,
            {"title": "关于2026年冬季农田水利建设的通知（更正）", "correction_note": "日期有误"},
            actor=EDITOR2,
            if_match=live.etag,
        )
        await store.transition(edited.id, Action.SUBMIT, actor=EDITOR2)
        await store.transition(edited.id, Action.APPROVE, actor=REVIEWER)
        worker.wake()
        await wait_channel_settled(store, item.id, "rss")
        for path in ("/feeds/all.atom", "/feeds/nync.rss"):
            after = entry_for(await parsed(api, path), item.id)
            assert after is not None
            assert after.id == before.id  # the same entry, not a new one
            assert after.title == "关于2026年冬季农田水利建设的通知（更正）"
            assert after["gk_correction"] == "日期有误"
            assert after["gk_revision"] == "2"
        after = entry_for(await parsed(api, "/feeds/all.atom"), item.id)
        # feeds carry whole seconds (readers misread fractions): a correction in the same
        # second as the publication has the same `updated`, never an earlier one
        assert datetime.fromisoformat(after.updated) >= datetime.fromisoformat(before.updated)
        assert int(after.gk_revision) > int(before.gk_revision)
        assert after.published == before.published

        await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="文件废止")
        worker.wake()
        await wait_channel_settled(store, item.id, "rss")
        for path in ("/feeds/all.rss", "/feeds/all.atom", "/feeds/nync.atom"):
            assert entry_for(await parsed(api, path), item.id) is None, path
        rows = await ledger_rows(store, item.id, "rss")
        # published, corrected and withdrawn, each carried by both feeds
        assert len(rows) == 6
        assert {r.state for r in rows} == {"delivered"}
        assert (await store.get_item(item.id)).status is ItemStatus.WITHDRAWN


async def test_conditional_get_answers_304_until_the_feed_changes(sqlite_engine: Any) -> None:
    store = sqlite_engine
    async with running(store) as worker, api_on(store, worker) as api:
        status, _, headers = await fetch(api, "/feeds/all.atom")
        assert status == 200
        etag, modified = headers["ETag"], headers["Last-Modified"]
        assert headers["Content-Type"].startswith("application/atom+xml")
        status, body304, _ = await fetch(api, "/feeds/all.atom", **{"If-None-Match": etag})
        assert (status, body304) == (304, b"")
        status, _, _ = await fetch(api, "/feeds/all.atom", **{"If-Modified-Since": modified})
        assert status == 304
        # a different validator gets the feed
        status, _, _ = await fetch(api, "/feeds/all.atom", **{"If-None-Match": '"other"'})
        assert status == 200

        item = await feed_item(store)
        await publish(store, item)
        worker.wake()
        await wait_channel_settled(store, item.id, "rss")
        status, changed, headers2 = await fetch(api, "/feeds/all.atom", **{"If-None-Match": etag})
        assert status == 200
        assert headers2["ETag"] != etag
        assert entry_for(feedparser.parse(changed), item.id) is not None

        for bad in ("/feeds/nope.atom", "/feeds/all.json", "/feeds/..%2Fconfig.atom"):
            status, _, _ = await fetch(api, bad)
            assert status == 404, bad


async def test_atom_meets_rfc4287_and_hostile_text_stays_text(sqlite_engine: Any) -> None:
    store = sqlite_engine
    body = "第一段 <b>粗体</b> & <script>alert(1)</script> <img src=x onerror=alert(2)> 😀 𠮷"
    item = await feed_item(store, title=HOSTILE_TITLE, body=body, summary="摘要 <i>&amp;</i> 𠮷")
    async with running(store) as worker, api_on(store, worker) as api:
        await publish(store, item)
        worker.wake()
        await wait_channel_settled(store, item.id, "rss")
        _, raw, _ = await fetch(api, "/feeds/all.atom")
        root = etree.fromstring(raw)
        assert root.tag == f"{ATOM}feed"

        def one(parent: Any, name: str) -> Any:
            found = parent.findall(f"{ATOM}{name}")
            assert len(found) == 1, (name, len(found))
            return found[0]

        for el in [root, *root.findall(f"{ATOM}entry")]:
            one(el, "id")
            one(el, "title")
            assert RFC3339.match(one(el, "updated").text)
        assert root.find(f"{ATOM}author/{ATOM}name") is not None
        selfs = [ln for ln in root.findall(f"{ATOM}link") if ln.get("rel") == "self"]
        assert len(selfs) == 1 and selfs[0].get("href").endswith("/feeds/all.atom")
        entry = root.find(f"{ATOM}entry")
        assert entry.find(f"{ATOM}author") is not None
        assert RFC3339.match(entry.find(f"{ATOM}published").text)
        content = entry.find(f"{ATOM}content")
        assert content.get("type") == "html"
        # escaped HTML: the document has no script element, the HTML inside has none either
        assert not root.findall(".//script") and not root.findall(".//{*}script")
        # the HTML a reader renders: markup the editor typed is text in it, never elements
        fragment = lxml.html.fragment_fromstring(content.text, create_parent="div")
        assert not fragment.findall(".//script") and not fragment.findall(".//img")
        assert not [a for el in fragment.iter() for a in el.attrib if a.startswith("on")]
        assert "<script>alert(1)</script>" in fragment.text_content()
        assert "𠮷" in content.text and "😀" in content.text
        assert one(entry, "title").text == HOSTILE_TITLE

        for path in ("/feeds/all.rss", "/feeds/all.atom"):
            e = entry_for(await parsed(api, path), item.id)
            assert e.title == HOSTILE_TITLE
            assert "𠮷" in e.content[0].value


async def test_websub_hub_is_advertised_and_pinged_for_each_changed_feed(
    config_factory: Callable[..., Config], gateway: Any
) -> None:
    pings: list[dict[str, str]] = []

    async def hub(request: web.Request) -> web.Response:
        pings.append(dict(await request.post()))  # type: ignore[arg-type]
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hub", hub)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        hub_url = str(server.make_url("/hub"))
        async with engine_store_on(
            config_factory, gateway, CHANNELS__RSS__SETTINGS__HUB_URL=hub_url
        ) as store:
            item = await feed_item(store, category="shjz")
            async with running(store) as worker, api_on(store, worker) as api:
                for path in ("/feeds/all.atom", "/feeds/shjz.rss"):
                    feed = await parsed(api, path)
                    hubs = [ln.href for ln in feed.feed.links if ln.rel == "hub"]
                    assert hubs == [hub_url], path
                pings.clear()  # the start-up pass writes every feed; no event asked for a ping yet
                await publish(store, item)
                worker.wake()
                await wait_channel_settled(store, item.id, "rss")
                base = store.config.site.public_base

                async def all_pinged() -> bool:
                    return len(pings) >= 4

                await eventually(all_pinged, 10, "hub pings")
                assert all(p["hub.mode"] == "publish" for p in pings)
                assert sorted(p["hub.url"] for p in pings) == sorted(
                    f"{base}/feeds/{name}.{fmt}"
                    for name in ("all", "shjz")
                    for fmt in ("rss", "atom")
                )
    finally:
        await server.close()


async def test_catalogue_elements_live_in_the_documented_namespace(sqlite_engine: Any) -> None:
    store = sqlite_engine
    item = await feed_item(store, urgent=True)
    async with running(store) as worker, api_on(store, worker) as api:
        live = await publish(store, item)
        worker.wake()
        await wait_channel_settled(store, item.id, "rss")
        _, raw, _ = await fetch(api, "/feeds/all.rss")
        root = etree.fromstring(raw)
        rss_item = root.find("channel/item")
        assert rss_item.findtext(f"{{{CATALOGUE_NS}}}indexNo") == live.index_no
        assert rss_item.findtext(f"{{{CATALOGUE_NS}}}category") == "农业农村"
        assert rss_item.findtext(f"{{{CATALOGUE_NS}}}categorySlug") == "nync"
        assert rss_item.findtext(f"{{{CATALOGUE_NS}}}urgent") == "true"
        assert rss_item.findtext("guid") == f"urn:uuid:{item.id}"


@asynccontextmanager
async def engine_store_on(
    config_factory: Callable[..., Config], gateway: Any, **extra: str
) -> AsyncIterator[Any]:
    from tests.engine.helpers import engine_store_with

    _, url = gateway
    async with engine_store_with(config_factory, url, **extra) as store:
        yield store


@pytest.fixture
async def sqlite_engine(config_factory: Callable[..., Config], gateway: Any) -> AsyncIterator[Any]:
    async with engine_store_on(config_factory, gateway) as store:
        yield store


async def test_attachments_are_enclosures_and_an_expired_item_leaves_the_feeds(
    sqlite_engine: Any,
) -> None:
    store = sqlite_engine
    item = await feed_item(store, expires_at="2030-01-01T00:00:00+08:00")
    pdf = b"%PDF-1.4 water works"

    async def chunks() -> AsyncIterator[bytes]:
        yield pdf

    await store.add_attachment(item.id, "附件 1.pdf", "application/pdf", chunks(), actor=EDITOR)
    async with running(store) as worker, api_on(store, worker) as api:
        await publish(store, item)
        worker.wake()
        await wait_channel_settled(store, item.id, "rss")
        for path in ("/feeds/all.atom", "/feeds/all.rss"):
            entry = entry_for(await parsed(api, path), item.id)
            (enclosure,) = entry.enclosures
            assert enclosure.type == "application/pdf"
            assert int(enclosure.length) == len(pdf)
            # the enclosure is a URL the public route answers with the file itself
            url = enclosure.href.removeprefix(store.config.site.public_base)
            resp = await api.client.get(url)
            assert resp.status == 200 and await resp.read() == pdf

        expired = await store.expire_due(now=datetime(2030, 1, 2, tzinfo=UTC))
        assert expired == [item.id]
        worker.wake()
        await wait_channel_settled(store, item.id, "rss")
        for path in ("/feeds/all.atom", "/feeds/nync.rss"):
            assert entry_for(await parsed(api, path), item.id) is None, path
