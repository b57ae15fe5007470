"""The feeds as other software reads them (issue 18): lxml validates Atom against the
RELAX NG schema of RFC 4287 Appendix B (tests/channels/atom.rng), feedparser and Debian's
newsboat read both documents, and the tombstones of withdrawn and expired entries follow
RFC 6721.

newsboat runs non-interactively (`newsboat -x reload` on a urls file of file:// URLs, with
its own cache and config in a temporary HOME); the test reads its sqlite cache. Without
newsboat the newsboat test is skipped with the reason, except in CI (CI=true), where it
fails: `apt-get install newsboat` (Makefile APT_PACKAGES).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree

from channels.base import validated_settings
from channels.rss import (
    TOMBSTONE_NS,
    EntryData,
    FeedSettings,
    Tombstone,
    build_feeds,
    read_tombstones,
)
from publisher.config import Config
from publisher.errors import ConfigError
from publisher.models import Action
from tests.channels.entries import sample_entry
from tests.channels.test_feeds import entry_for, feed_item, fetch, publish
from tests.conftest import EDITOR, REVIEWER, unavailable
from tests.engine.helpers import BOTH_BACKENDS, api_on, running, wait_channel_settled

ATOM = "{http://www.w3.org/2005/Atom}"
AT = f"{{{TOMBSTONE_NS}}}"
SCHEMA = Path(__file__).resolve().parent / "atom.rng"
#: RFC 3339 in whole seconds, with an offset
WHOLE_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
#: RFC 822 as RSS 2.0 writes it (no fraction possible)
RFC822 = re.compile(r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")
#: a time with a fraction of a second, as the store's clock gives
WHEN = datetime(2026, 12, 3, 16, 22, 22, 807261, tzinfo=UTC)


def atom_schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(SCHEMA)))


def assert_valid_atom(doc: bytes) -> etree._Element:
    """RFC 4287: the Appendix B schema, and the §4.1.1 / §4.1.2 rules it leaves to prose."""
    root = etree.fromstring(doc)
    schema = atom_schema()
    assert schema.validate(root), schema.error_log
    # no element of the document carries a generated prefix (ns0:, ns1: …)
    assert not re.search(rb"<ns\d+:", doc), doc
    for el in [root, *root.findall(f"{ATOM}entry")]:
        alternates: dict[tuple[str | None, str | None], str] = {}
        for link in el.findall(f"{ATOM}link"):
            if link.get("rel", "alternate") != "alternate":
                continue
            key = (link.get("type"), link.get("hreflang"))
            # §4.1.1, §4.1.2: at most one alternate link with the same type and hreflang
            assert key not in alternates, (el.findtext(f"{ATOM}id"), key)
            alternates[key] = link.get("href")
    return root


def _entry(item_id: str, **overrides: Any) -> EntryData:
    return sample_entry(item_id, WHEN, **overrides)


ATTACHMENTS = (
    {
        "filename": "名单.csv",
        "url": "https://example.org/items/a/attachments/1/%E5%90%8D%E5%8D%95.csv",
        "sha256": "0" * 64,
        "size": 1234,
        "content_type": "text/csv",
    },
    {
        "filename": "通知.pdf",
        "url": "https://example.org/items/a/attachments/2/%E9%80%9A%E7%9F%A5.pdf",
        "sha256": "1" * 64,
        "size": 56789,
        "content_type": "application/pdf",
    },
)


# -- 11: an attachment is one rel="enclosure" link ------------------------------------------


def test_an_attachment_is_one_enclosure_link_and_the_page_the_only_alternate(
    config: Config,
) -> None:
    entry = _entry("a", attachments=ATTACHMENTS)
    atom = build_feeds(config, "all", [entry], WHEN, None)["atom"]
    root = assert_valid_atom(atom)
    (el,) = root.findall(f"{ATOM}entry")
    links = [
        (ln.get("rel"), ln.get("href"), ln.get("type"), ln.get("length"))
        for ln in el.findall(f"{ATOM}link")
    ]
    assert links == [
        ("alternate", entry.public_url, "text/html", None),
        ("enclosure", ATTACHMENTS[0]["url"], "text/csv", "1234"),
        ("enclosure", ATTACHMENTS[1]["url"], "application/pdf", "56789"),
    ]
    # nothing else in the entry is a link, in any namespace
    assert len(el.findall(".//{*}link")) == 3

    feed = feedparser.parse(atom)
    assert not feed.bozo, feed.bozo_exception
    (fe,) = feed.entries
    assert fe.link == entry.public_url
    assert [ln.href for ln in fe.links if ln.rel == "alternate"] == [entry.public_url]
    assert [(e.href, e.type, e.length) for e in fe.enclosures] == [
        (a["url"], a["content_type"], str(a["size"])) for a in ATTACHMENTS
    ]


# -- 12: whole seconds ----------------------------------------------------------------------


def test_every_date_is_whole_seconds_in_the_sites_offset(config: Config) -> None:
    entry = _entry("a", updated=WHEN + timedelta(hours=1, microseconds=3))
    gone = (Tombstone("b", WHEN - timedelta(microseconds=5)),)
    docs = build_feeds(config, "all", [entry], entry.updated, None, gone)
    root = assert_valid_atom(docs["atom"])
    dates = [
        el.text
        for el in root.iter(f"{ATOM}updated", f"{ATOM}published")
        if isinstance(el.text, str)
    ]
    dates += [el.get("when") for el in root.iter(f"{AT}deleted-entry")]
    assert len(dates) == 4
    for value in dates:
        assert WHOLE_SECONDS.match(value), value
        assert value.endswith("+08:00"), value
    assert root.findtext(f"{ATOM}entry/{ATOM}published") == "2026-12-04T00:22:22+08:00"
    assert root.findtext(f"{ATOM}entry/{ATOM}updated") == "2026-12-04T01:22:22+08:00"

    rss = etree.fromstring(docs["rss"])
    rss_dates = [rss.findtext("channel/lastBuildDate"), rss.findtext("channel/item/pubDate")]
    for value in rss_dates:
        assert value is not None and RFC822.match(value), value
    assert rss.findtext("channel/item/pubDate") == "Fri, 04 Dec 2026 00:22:22 +0800"


# -- 13: RSS <channel><link> is the HTML page -----------------------------------------------


@pytest.mark.parametrize(("name", "page"), [("all", "/"), ("nync", "/?category=nync")])
def test_rss_channel_link_is_the_html_page(config: Config, name: str, page: str) -> None:
    base = config.site.public_base
    hub = "https://hub.example.org/"
    docs = build_feeds(config, name, [_entry("a")], WHEN, hub)
    rss = etree.fromstring(docs["rss"])
    assert rss.findtext("channel/link") == base + page
    # the feed itself is the atom:link rel="self", and the hub is still advertised
    atom_links = {ln.get("rel"): ln.get("href") for ln in rss.findall(f"channel/{ATOM}link")}
    assert atom_links == {"self": f"{base}/feeds/{name}.rss", "hub": hub}
    parsed = feedparser.parse(docs["rss"])
    assert parsed.feed.link == base + page
    # Atom: the same page as the feed's alternate, the Atom document as self
    root = assert_valid_atom(docs["atom"])
    links = {ln.get("rel"): ln.get("href") for ln in root.findall(f"{ATOM}link")}
    assert links == {"self": f"{base}/feeds/{name}.atom", "hub": hub, "alternate": base + page}


# -- 14: tombstones -------------------------------------------------------------------------


def test_tombstones_are_rfc6721_in_atom_only(config: Config) -> None:
    gone = (
        Tombstone("b", datetime(2026, 12, 2, 1, 2, 3, tzinfo=UTC)),
        Tombstone("c", datetime(2026, 12, 1, tzinfo=UTC)),
    )
    docs = build_feeds(config, "all", [_entry("a")], WHEN, None, gone)
    root = assert_valid_atom(docs["atom"])
    stones = root.findall(f"{AT}deleted-entry")
    assert [(s.get("ref"), s.get("when")) for s in stones] == [
        ("urn:uuid:b", "2026-12-02T09:02:03+08:00"),
        ("urn:uuid:c", "2026-12-01T08:00:00+08:00"),
    ]
    for s in stones:
        # ref and when only: no title, no content, nothing of the withdrawn text
        assert set(s.attrib) == {"ref", "when"}
        assert len(s) == 0 and not (s.text or "").strip()
    # before the entries (RFC 4287's schema puts extension elements of a feed there)
    children = [c.tag for c in root]
    assert children.index(f"{ATOM}entry") > max(
        i for i, tag in enumerate(children) if tag == f"{AT}deleted-entry"
    )
    assert TOMBSTONE_NS.encode() not in docs["rss"]
    # no tombstones, no namespace declaration for them
    plain = build_feeds(config, "all", [_entry("a")], WHEN, None)
    assert TOMBSTONE_NS.encode() not in plain["atom"]


def test_tombstone_days_is_validated_like_the_other_settings() -> None:
    assert FeedSettings().tombstone_days == 30
    assert validated_settings(FeedSettings, "x", {"tombstone_days": 0}).tombstone_days == 0
    for bad in (-1, "many", 100000):
        with pytest.raises(ConfigError, match=r"channels\.rss\.settings\.tombstone_days"):
            validated_settings(FeedSettings, "channels.rss.settings", {"tombstone_days": bad})


# -- end to end: the served feeds, feedparser, the schema and newsboat ---------------------


def need_newsboat() -> str:
    found = shutil.which("newsboat")
    if found is None:
        message = "newsboat missing: apt-get install newsboat"
        unavailable(message)
    return found


def newsboat_read(tmp: Path, docs: dict[str, bytes]) -> sqlite3.Connection:
    """newsboat reloads the documents (file:// URLs) and answers with its cache."""
    newsboat = need_newsboat()
    urls = []
    for name, data in docs.items():
        path = tmp / name
        path.write_bytes(data)
        urls.append(path.as_uri())
    (tmp / "urls").write_text("\n".join(urls) + "\n")
    (tmp / "config").write_text("")
    env = {
        "HOME": str(tmp),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    cmd = [newsboat, "-u", "urls", "-c", "cache.db", "-C", "config", "-x", "reload"]
    done = subprocess.run(
        cmd, cwd=tmp, env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    return sqlite3.connect(tmp / "cache.db")


@BOTH_BACKENDS
async def test_served_feeds_validate_and_read_right_in_feedparser_and_newsboat(
    engine_store: Any, tmp_path: Path
) -> None:
    store = engine_store
    base = store.config.site.public_base
    kept = await feed_item(store, title="关于冬季农田水利建设的通知")

    async def chunks() -> Any:
        yield b"name,village\n"

    await store.add_attachment(kept.id, "名单.csv", "text/csv", chunks(), actor=EDITOR)
    gone = await feed_item(store, title="关于征收补偿方案的公告")
    expiring = await feed_item(
        store,
        title="关于2026年度防汛值班的通知",
        category="zwgk",
        expires_at="2030-01-01T00:00:00+08:00",
    )
    async with running(store) as worker, api_on(store, worker) as api:
        for item in (kept, gone, expiring):
            await publish(store, item)
        worker.wake()
        for item in (kept, gone, expiring):
            await wait_channel_settled(store, item.id, "rss")
        _, before, _ = await fetch(api, "/feeds/all.atom")
        assert_valid_atom(before)
        assert b"deleted-entry" not in before

        await store.transition(gone.id, Action.WITHDRAW, actor=REVIEWER, reason="方案调整")
        assert await store.expire_due(now=datetime(2030, 1, 2, tzinfo=UTC)) == [expiring.id]
        worker.wake()
        await wait_channel_settled(store, gone.id, "rss")
        await wait_channel_settled(store, expiring.id, "rss")

        docs = {}
        for path in ("/feeds/all.atom", "/feeds/all.rss", "/feeds/nync.atom", "/feeds/zwgk.atom"):
            status, raw, _ = await fetch(api, path)
            assert status == 200
            docs[path.rsplit("/", 1)[1]] = raw
            feed = feedparser.parse(raw)
            assert not feed.bozo, (path, feed.bozo_exception)
            assert entry_for(feed, gone.id) is None, path
            assert entry_for(feed, expiring.id) is None, path
            if path.endswith(".atom"):
                assert_valid_atom(raw)

    live_kept = await store.get_item(kept.id)
    live_gone = await store.get_item(gone.id)
    live_expired = await store.get_item(expiring.id)

    def stones(doc: bytes) -> list[tuple[str | None, str | None]]:
        root = etree.fromstring(doc)
        return [(s.get("ref"), s.get("when")) for s in root.iter(f"{AT}deleted-entry")]

    def stamp(when: datetime) -> str:
        return when.astimezone(store.config.site.tz).replace(microsecond=0).isoformat()

    gone_stone = (f"urn:uuid:{gone.id}", stamp(live_gone.withdrawn_at))
    expired_stone = (f"urn:uuid:{expiring.id}", stamp(live_expired.expired_at))
    assert sorted(stones(docs["all.atom"])) == sorted([gone_stone, expired_stone])
    assert stones(docs["nync.atom"]) == [gone_stone]  # each category feed: its own
    assert stones(docs["zwgk.atom"]) == [expired_stone]
    assert b"deleted-entry" not in docs["all.rss"]

    # the window: none once tombstone_days have passed, none with tombstone_days 0
    later = live_gone.withdrawn_at + timedelta(days=31)
    assert [ts.item_id for ts in await read_tombstones(store, "nync", 30, later)] == []
    assert await read_tombstones(store, "all", 0) == ()

    # newsboat (one cache per document: it keeps one item per guid across its feeds): one
    # item per live entry, its title, the page as its link, the time it was published
    published = int(live_kept.published_at.timestamp())  # a fraction of a second in the store
    for fmt in ("atom", "rss"):
        workdir = tmp_path / f"newsboat-{fmt}"
        workdir.mkdir()
        cache = newsboat_read(workdir, {f"all.{fmt}": docs[f"all.{fmt}"]})
        rows = cache.execute("SELECT guid, title, url, pubDate FROM rss_item").fetchall()
        assert rows == [
            (
                f"urn:uuid:{kept.id}",
                "关于冬季农田水利建设的通知",
                f"{base}/items/{kept.id}",
                published,
            )
        ], fmt
        # the feed's own link: the catalogue page, not the feed document
        assert cache.execute("SELECT url FROM rss_feed").fetchall() == [(f"{base}/",)], fmt
        cache.close()
