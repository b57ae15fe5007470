"""The rss channel: RSS 2.0 and Atom 1.0 feeds of the disclosure catalogue, as static files.

Each feed is a target in the ledger: `all` (every category) and one per category
of the taxonomy. Delivering an item event to a feed regenerates that feed from the
store (so a correction updates the entry and a withdrawal drops it), writes both
files atomically, and pings the WebSub hub. The files are plain static files: the
app serves them with ETag / Last-Modified, and so can nginx or a CDN.

Regeneration reads the whole feed, so one pass covers every change committed before
it began: attempts for the same feed that were already waiting when a pass started
are covered by it and do not regenerate again (a burst of imports costs a few
passes, not one per item).

One entry XML cannot hold (a text with a control character, stored before the store
refused them) never fails a whole feed: it is left out of the documents, logged, counted
in /metrics (publisher_feed_entries_left_out) and its item's own rss delivery fails with
the reason `entry_left_out`, which the staff see on the item's deliveries. The other
entries, and every withdrawal, still reach the files.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import sqlalchemy as sa
from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree
from pydantic import Field

from channels.base import (
    AdapterContext,
    ChannelAdapter,
    ChannelSettings,
    Limits,
    PermanentDeliveryError,
    Receipt,
    ReceiptState,
    Rendered,
    Subject,
    Target,
    TransientDeliveryError,
)
from publisher.config import ALL_FEED, Config
from publisher.metrics import METRICS
from publisher.models import Disclosure, Item, ItemStatus
from publisher.store import schema as t
from publisher.store.sql import EventKind, ItemQuery, SqlStore, utcnow
from publisher.text import derive_summary, render_body
from publisher.textclean import describe, forbidden_chars

log = logging.getLogger("publisher.channels.rss")

#: the namespace of the catalogue metadata in every entry (documented in the README)
CATALOGUE_NS = "urn:gongkai-publisher:catalogue:1"
CATALOGUE_PREFIX = "gk"
ATOM_NS = "http://www.w3.org/2005/Atom"
#: RFC 6721: at:deleted-entry, the tombstone of an entry that left the feed
TOMBSTONE_NS = "http://purl.org/atompub/tombstones/1.0"
TOMBSTONE_PREFIX = "at"
FEED_FORMATS = {"rss": "application/rss+xml", "atom": "application/atom+xml"}
#: before any item was published, a feed is still valid: it says it changed at the epoch
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the delivery reason of an item whose entry the feeds leave out
LEFT_OUT_REASON = "entry_left_out"
#: events after which an item has no entry: their delivery only regenerates the feed
RETRACT_KINDS = frozenset({EventKind.WITHDRAWN, EventKind.EXPIRED})


class FeedSettings(ChannelSettings):
    #: WebSub hub advertised in every feed and pinged when a feed changes (none: no hub)
    hub_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    #: the newest entries each feed carries
    entries: int = Field(default=50, ge=1, le=10000)
    #: seconds to wait for the hub
    timeout: float = Field(default=10.0, gt=0)
    #: days an Atom feed keeps the RFC 6721 tombstone of a withdrawn or expired entry (0: none)
    tombstone_days: int = Field(default=30, ge=0, le=3650)


@dataclass(frozen=True, slots=True)
class EntryData:
    """What one feed entry shows, from the store (a feed pass) or from a Subject (a preview)."""

    item_id: str
    title: str
    summary: str
    body_html: str
    category: str
    category_name: str
    agency: str
    index_no: str | None
    doc_no: str | None
    #: 成文日期 as the site's calendar shows it (YYYY-MM-DD)
    written_on: str | None
    published: datetime
    updated: datetime
    revision: int
    correction_note: str | None
    urgent: bool
    public_url: str
    attachments: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Tombstone:
    """An entry that left the feed (its item withdrawn or expired), and when."""

    item_id: str
    when: datetime


def feed_time(value: datetime, tz: tzinfo) -> datetime:
    """A feed date: the site's offset, whole seconds. A fraction of a second is valid
    RFC 3339, but some readers (newsboat) then misread the offset and show the date hours
    off; RSS 2.0's RFC 822 dates have no fraction anyway."""
    return value.astimezone(tz).replace(microsecond=0)


class CatalogueFeedExtension(BaseExtension):  # type: ignore[misc]
    """Declares the catalogue namespace, writes the WebSub hub in RSS (feedgen only writes
    rel=self) and the tombstones in Atom."""

    def __init__(self) -> None:
        self.hub: str | None = None
        #: set for the Atom document only (RSS 2.0 has no tombstones)
        self.tombstones: tuple[Tombstone, ...] = ()
        self.tz: tzinfo = UTC

    def extend_ns(self) -> dict[str, str]:
        ns = {CATALOGUE_PREFIX: CATALOGUE_NS}
        if self.tombstones:
            ns[TOMBSTONE_PREFIX] = TOMBSTONE_NS
        return ns

    def extend_atom(self, feed: Any) -> Any:
        # feedgen appends the entries after this: the tombstones precede them, as RFC 4287's
        # schema wants extension elements of atom:feed (RFC 6721 allows them anywhere)
        for ts in self.tombstones:
            etree.SubElement(
                feed,
                f"{{{TOMBSTONE_NS}}}deleted-entry",
                ref=f"urn:uuid:{ts.item_id}",
                when=feed_time(ts.when, self.tz).isoformat(),
            )
        return feed

    def extend_rss(self, feed: Any) -> Any:
        if self.hub:
            channel = feed[0]
            etree.SubElement(channel, f"{{{ATOM_NS}}}link", href=self.hub, rel="hub")
        return feed


class CatalogueEntryExtension(BaseEntryExtension):  # type: ignore[misc]
    """The catalogue metadata of one entry: 索引号, 主题分类, 发文机关, 成文日期, 文号 …"""

    def __init__(self) -> None:
        self.data: EntryData | None = None

    def extend_atom(self, entry: Any) -> Any:
        d = self.data
        if d is not None:
            # feedgen 1.0 writes an entry's atom:link without its rel, type and length
            # (a shadowed variable), so every link would read as rel="alternate": write them
            # here instead. feedgen builds the entry in no namespace and appends it to a feed
            # whose default namespace is Atom, so its links are plain `link` elements: ours
            # are too (an Atom-qualified element would carry its own ns0: declaration)
            for old in [*entry.findall("link"), *entry.findall(f"{{{ATOM_NS}}}link")]:
                entry.remove(old)
            etree.SubElement(entry, "link", href=d.public_url, rel="alternate", type="text/html")
            for a in d.attachments:
                etree.SubElement(
                    entry,
                    "link",
                    href=a["url"],
                    rel="enclosure",
                    type=a.get("content_type") or "application/octet-stream",
                    length=str(a["size"]),
                )
        return self._extend(entry)

    def extend_rss(self, entry: Any) -> Any:
        return self._extend(entry)

    def _extend(self, entry: Any) -> Any:
        d = self.data
        if d is None:
            return entry

        def add(name: str, text: str | None, **attrs: str) -> None:
            if text is None:
                return
            el = etree.SubElement(entry, f"{{{CATALOGUE_NS}}}{name}", **attrs)
            el.text = text

        add("indexNo", d.index_no)
        # text-only elements (no attributes) read simply in every feed library
        add("category", d.category_name)
        add("categorySlug", d.category)
        add("agency", d.agency)
        add("writtenAt", d.written_on)
        add("docNo", d.doc_no)
        add("revision", str(d.revision))
        if d.urgent:
            add("urgent", "true")
        if d.correction_note is not None:
            add("correction", d.correction_note)
        for a in d.attachments:
            add("attachment", a["filename"], href=a["url"], sha256=a["sha256"], size=str(a["size"]))
        return entry


_ENTRY_TEXTS = (
    "title",
    "summary",
    "body_html",
    "category",
    "category_name",
    "agency",
    "index_no",
    "doc_no",
    "written_on",
    "correction_note",
    "public_url",
)


def entry_problem(d: EntryData) -> str | None:
    """Why XML cannot hold entry `d` (which text holds which characters), or None."""
    texts: list[tuple[str, Any]] = [(name, getattr(d, name)) for name in _ENTRY_TEXTS]
    for a in d.attachments:
        texts += [(f"attachment {key}", a.get(key)) for key in ("filename", "url", "content_type")]
    for name, value in texts:
        if isinstance(value, str):
            bad = forbidden_chars(value)
            if bad:
                return f"{name} holds {describe(bad)}, which XML cannot"
    return None


@dataclass(frozen=True, slots=True)
class LeftOut:
    """An entry a feed pass could not write, and why."""

    item_id: str
    reason: str


def feed_url(config: Config, name: str, fmt: str) -> str:
    return f"{config.site.public_base}/feeds/{name}.{fmt}"


def build_feeds(
    config: Config,
    name: str,
    entries: list[EntryData],
    updated: datetime,
    hub: str | None,
    tombstones: tuple[Tombstone, ...] = (),
) -> dict[str, bytes]:
    """Both documents of feed `name` ("all" or a category slug); the Atom one also carries
    `tombstones`. Pure and deterministic: the same entries give the same bytes, so an
    unchanged feed keeps its ETag."""
    tz = config.site.tz
    site = config.site
    category = config.category(name)
    fg = FeedGenerator()
    fg.register_extension(
        CATALOGUE_PREFIX, CatalogueFeedExtension, CatalogueEntryExtension, atom=True, rss=True
    )
    # RSS 2.0's <author> must be an email address: the agency goes in dc:creator there
    fg.load_extension("dc", atom=False, rss=True)
    ext: CatalogueFeedExtension = getattr(fg, CATALOGUE_PREFIX)
    ext.hub = hub
    ext.tz = tz
    title = site.name if category is None else f"{site.name} · {category.name}"
    fg.id(feed_url(config, name, "atom"))
    fg.title(title)
    fg.description(
        f"{site.agency}主动公开的政府信息" + (f"（{category.name}）" if category else "")
    )
    fg.author({"name": site.agency})
    fg.language("zh-CN")
    fg.generator("Gongkai Publisher")
    catalogue = f"{site.public_base}/" + (f"?category={name}" if category else "")
    fg.updated(feed_time(updated, tz))
    for d in entries:
        fe: FeedEntry = fg.add_entry(order="append")
        getattr(fe, CATALOGUE_PREFIX).data = d
        # urn:uuid of the item: the same through every revision and any change of address
        fe.id(f"urn:uuid:{d.item_id}")
        fe.guid(f"urn:uuid:{d.item_id}", permalink=False)
        fe.title(d.title)
        fe.link(href=d.public_url, rel="alternate", type="text/html")
        fe.summary(d.summary or d.title)
        fe.description(d.summary or d.title)
        fe.content(d.body_html, type="html")
        fe.category(term=d.category, label=d.category_name, scheme=f"{site.public_base}/")
        fe.author({"name": d.agency})
        fe.dc.dc_creator(d.agency)
        fe.published(feed_time(d.published, tz))
        fe.updated(feed_time(d.updated, tz))
        # RSS 2.0's one <enclosure> (Atom's links are the extension's: one rel="enclosure" each)
        for a in d.attachments[:1]:
            fe.link(
                href=a["url"],
                rel="enclosure",
                type=a.get("content_type") or "application/octet-stream",
                length=str(a["size"]),
            )
    out: dict[str, bytes] = {}
    for fmt in ("rss", "atom"):
        fg.link(href=feed_url(config, name, fmt), rel="self", type=FEED_FORMATS[fmt], replace=True)
        if hub:
            fg.link(href=hub, rel="hub")
        # last: feedgen takes the feed's last link for RSS's <channel><link>, which is the
        # HTML page of the feed (RSS 2.0), not the feed itself
        fg.link(href=catalogue, rel="alternate", type="text/html")
        if fmt == "atom":
            ext.tombstones = tombstones  # RSS 2.0 has no tombstones
            out[fmt] = fg.atom_str(pretty=False)
        else:
            out[fmt] = fg.rss_str(pretty=False)
    return out


def build_feeds_safely(
    config: Config,
    name: str,
    entries: list[EntryData],
    updated: datetime,
    hub: str | None,
    tombstones: tuple[Tombstone, ...] = (),
) -> tuple[dict[str, bytes], list[LeftOut]]:
    """`build_feeds` without the entries that cannot be written, and those left out.

    The entries are screened for characters XML cannot hold; should the build still
    fail (something else in an entry lxml refuses), each entry is tried on its own and
    the ones that fail are left out too: one bad entry never stops the others."""
    left_out: list[LeftOut] = []
    kept: list[EntryData] = []
    for d in entries:
        why = entry_problem(d)
        if why is None:
            kept.append(d)
        else:
            left_out.append(LeftOut(d.item_id, why))
    try:
        return build_feeds(config, name, kept, updated, hub, tombstones), left_out
    except Exception:  # whatever an entry holds, the other entries are still written
        survivors = []
        for d in kept:
            try:
                build_feeds(config, name, [d], updated, None)
            except Exception as exc:
                left_out.append(LeftOut(d.item_id, f"{type(exc).__name__}: {exc}"[:300]))
            else:
                survivors.append(d)
        return build_feeds(config, name, survivors, updated, hub, tombstones), left_out


def entry_from_item(config: Config, item: Item, corrected_at: datetime | None) -> EntryData:
    c = item.content
    base = config.site.public_base
    cat = config.category(c.category)
    published = item.published_at or item.created_at
    rev = item.revision
    return EntryData(
        item_id=item.id,
        title=c.title,
        summary=c.summary or derive_summary(c.body, config.items.summary_chars, c.body_format),
        body_html=render_body(c.body, c.body_format),
        category=c.category,
        category_name=cat.name if cat else c.category,
        agency=c.agency,
        index_no=item.index_no,
        doc_no=c.doc_no,
        written_on=c.written_at.astimezone(config.site.tz).date().isoformat(),
        published=published,
        updated=max(published, corrected_at) if corrected_at else published,
        revision=rev.number,
        correction_note=rev.correction_note if rev.number > 1 else None,
        urgent=c.urgent,
        public_url=f"{base}/items/{item.id}",
        attachments=tuple(
            {
                "filename": a.filename,
                # percent-encoded: a name with a space or Chinese is still one valid URL
                "url": f"{base}/items/{item.id}/attachments/{a.id}/{quote(a.filename)}",
                "sha256": a.sha256,
                "size": a.size,
                "content_type": a.content_type,
            }
            for a in item.attachments
            if a.revision <= rev.number
        ),
    )


def entry_from_subject(s: Subject, tz: tzinfo) -> EntryData:
    published = s.published_at or EPOCH
    return EntryData(
        item_id=s.item_id or s.key,
        title=s.title,
        summary=s.summary,
        body_html=s.body_html,
        category=s.category,
        category_name=s.category_name,
        agency=s.agency,
        index_no=s.index_no,
        doc_no=s.doc_no,
        written_on=s.written_at.astimezone(tz).date().isoformat() if s.written_at else None,
        published=published,
        updated=published,
        revision=s.revision or 1,
        correction_note=s.correction_note if (s.revision or 1) > 1 else None,
        urgent=s.urgent,
        public_url=s.public_url,
        attachments=s.attachments,
    )


class EntryCache:
    """Entries already rendered, by (item, version): a body is rendered once, not once
    per feed and per pass (rendering Markdown is most of a pass's cost)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, int, datetime | None], EntryData] = OrderedDict()

    def get(self, config: Config, item: Item, corrected_at: datetime | None) -> EntryData:
        key = (item.id, item.version, corrected_at)
        entry = self._entries.get(key)
        if entry is None:
            entry = entry_from_item(config, item, corrected_at)
            self._entries[key] = entry
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry


async def read_feed(
    config: Config, store: SqlStore, name: str, limit: int, cache: EntryCache | None = None
) -> tuple[list[EntryData], datetime]:
    """The newest published proactive items of feed `name`, and when the feed last changed."""
    category = None if name == ALL_FEED else name
    items, _ = await store.list_items(
        ItemQuery(
            status=ItemStatus.PUBLISHED,
            disclosure=Disclosure.PROACTIVE,
            category=category,
            limit=limit,
        )
    )
    corrected = await store.latest_event_times(
        [EventKind.CORRECTED], item_ids=[i.id for i in items]
    )
    entries = [
        cache.get(config, i, corrected.get(i.id))
        if cache
        else entry_from_item(config, i, corrected.get(i.id))
        for i in items
    ]
    # a withdrawal or expiry changes the feed too, though its entry is gone
    changes = await store.latest_event_times(
        [EventKind.PUBLISHED, EventKind.CORRECTED, EventKind.WITHDRAWN, EventKind.EXPIRED],
        category=category,
    )
    updated = max([e.updated for e in entries] + list(changes.values()), default=EPOCH)
    return entries, updated


async def read_tombstones(
    store: SqlStore, name: str, days: int, now: datetime | None = None
) -> tuple[Tombstone, ...]:
    """The proactive items of feed `name` withdrawn or expired in the last `days` days,
    newest first: their entries' tombstones (RFC 6721). An item that is published again
    has its entry back, and no tombstone."""
    if days <= 0:
        return ()
    since = (now or utcnow()) - timedelta(days=days)
    when = sa.func.coalesce(t.items.c.withdrawn_at, t.items.c.expired_at)
    stmt = (
        sa.select(t.items.c.id, t.items.c.withdrawn_at, t.items.c.expired_at)
        .where(
            t.items.c.status.in_([ItemStatus.WITHDRAWN.value, ItemStatus.EXPIRED.value]),
            t.items.c.disclosure == Disclosure.PROACTIVE.value,
            t.items.c.published_at.is_not(None),
            when >= since,
        )
        .order_by(when.desc(), t.items.c.id)
    )
    if name != ALL_FEED:
        stmt = stmt.where(t.items.c.category == name)
    async with store.read() as conn:
        rows = (await conn.execute(stmt)).all()
    return tuple(
        Tombstone(item_id, withdrawn_at or expired_at)
        for item_id, withdrawn_at, expired_at in rows
        if (withdrawn_at or expired_at) is not None
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def feed_lock(directory: Path, name: str) -> Iterator[None]:
    """One writer per feed across the processes sharing this directory (several workers)."""
    with open(directory / f".{name}.lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class FeedChannel(ChannelAdapter):
    name: ClassVar[str] = "rss"
    # repeatable: a pass only rewrites files; retracts: a withdrawn item leaves the feeds
    limits: ClassVar[Limits] = Limits(concurrency=8, repeatable=True, retracts=True)
    Settings: ClassVar[type[ChannelSettings]] = FeedSettings

    def __init__(
        self, settings: ChannelSettings, site: Any, context: AdapterContext | None = None
    ) -> None:
        super().__init__(settings, site, context)
        assert isinstance(settings, FeedSettings)
        self.feed_settings = settings
        if context is None:
            raise TypeError("the rss channel reads the catalogue: it needs an AdapterContext")
        self.config = context.config
        self.store = context.store
        self.directory = context.config.feeds_path
        self._locks: dict[str, asyncio.Lock] = {}
        #: per feed, when the latest pass began (monotonic): attempts waiting since before are covered
        self._pass_started: dict[str, float] = {}
        self._http: aiohttp.ClientSession | None = None
        # room for every feed's entries: "all" and the categories share most of them
        self._entries = EntryCache(2 * settings.entries + 100)

    async def start(self, stack: AsyncExitStack) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.feed_settings.hub_url:
            timeout = aiohttp.ClientTimeout(total=self.feed_settings.timeout)
            self._http = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        # the files reflect the store from the start (a new install, a restore, a new category)
        for name in self.feed_names():
            await self.regenerate(name)

    def feed_names(self) -> list[str]:
        return [ALL_FEED] + [c.slug for c in self.config.taxonomy]

    def render(self, subject: Subject, target: Target) -> Rendered:
        """The entry this subject puts in the feed, as Atom (what a preview shows)."""
        if target.address not in self.feed_names():
            raise PermanentDeliveryError(f"no feed named {target.address!r}", reason="no_feed")
        entry = entry_from_subject(subject, self.config.site.tz)
        docs, left_out = build_feeds_safely(
            self.config, target.address, [entry], entry.updated, None
        )
        if left_out and subject.kind not in RETRACT_KINDS:
            # the feeds leave this entry out: its delivery says so (the staff see it)
            raise PermanentDeliveryError(
                f"the entry is left out of the feeds: {left_out[0].reason}",
                reason=LEFT_OUT_REASON,
            )
        root = etree.fromstring(docs["atom"])
        entry_el = root.find(f"{{{ATOM_NS}}}entry")
        preview = etree.tostring(entry_el, encoding="unicode") if entry_el is not None else ""
        return Rendered(body=b"", content_type=FEED_FORMATS["atom"], preview=preview)

    async def deliver(self, rendered: Rendered, target: Target, *, delivery_id: str) -> Receipt:
        name = target.address
        if name not in self.feed_names():
            raise PermanentDeliveryError(f"no feed named {name!r}", reason="no_feed")
        arrived = time.monotonic()
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if self._pass_started.get(name, -1.0) > arrived:
                # a pass that began after this attempt arrived read the store after the
                # event was committed (it was planned, then claimed, before arriving)
                return Receipt(ReceiptState.DELIVERED, provider_id="covered")
            self._pass_started[name] = time.monotonic()
            digest = await self.regenerate(name)
        await self.ping_hub(name)
        return Receipt(ReceiptState.DELIVERED, provider_id=digest)

    async def regenerate(self, name: str) -> str:
        """Rebuild feed `name` from the store and write both files; returns a short digest."""
        entries, updated = await read_feed(
            self.config, self.store, name, self.feed_settings.entries, self._entries
        )
        tombstones = await read_tombstones(self.store, name, self.feed_settings.tombstone_days)
        docs, left_out = await asyncio.to_thread(
            build_feeds_safely,
            self.config,
            name,
            entries,
            updated,
            self.feed_settings.hub_url,
            tombstones,
        )
        for lo in left_out:
            log.warning("feed %s: left out the entry of item %s: %s", name, lo.item_id, lo.reason)
        METRICS.feed_left_out(name, len(left_out))
        await asyncio.to_thread(self._write, name, docs)
        digest = f"{len(entries) - len(left_out)} entries, updated {updated.isoformat()}"
        return digest + (f", {len(left_out)} left out" if left_out else "")

    def _write(self, name: str, docs: dict[str, bytes]) -> None:
        with feed_lock(self.directory, name):
            for fmt, data in docs.items():
                path = self.directory / f"{name}.{fmt}"
                try:
                    if path.read_bytes() == data:
                        continue  # unchanged: keep the file's date, so its ETag holds
                except FileNotFoundError:
                    pass
                write_atomically(path, data)

    async def ping_hub(self, name: str) -> None:
        """WebSub publish ping (hub.mode=publish, hub.url) for both documents of the feed."""
        hub = self.feed_settings.hub_url
        if not hub or self._http is None:
            return
        for fmt in FEED_FORMATS:
            url = feed_url(self.config, name, fmt)
            try:
                async with self._http.post(
                    hub, data={"hub.mode": "publish", "hub.url": url}
                ) as resp:
                    body = (await resp.content.read(500)).decode("utf-8", "replace")
                    status = resp.status
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientDeliveryError(f"WebSub hub unreachable: {exc!r}") from None
            if status in (408, 429) or status >= 500:
                raise TransientDeliveryError(
                    f"WebSub hub answered {status}: {body}", retry_after=retry_after
                )
            if not 200 <= status < 300:
                raise PermanentDeliveryError(
                    f"WebSub hub refused the ping with {status}: {body}", reason="hub_rejected"
                )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
