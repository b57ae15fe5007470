"""Fan-out: an item event becomes ledger rows, one per (channel, target).

Recipients are read in keyset-paged batches and inserted as they are read, so
memory stays flat however long the list is; the unique key on the ledger makes
a repeated or interrupted plan harmless.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from publisher.atrest import ENDPOINT_SECRET, FieldBox, seal_settings
from publisher.config import ALL_FEED, Config
from publisher.ledger import PRIORITY_NORMAL, PRIORITY_URGENT, HotSql, Ledger
from publisher.store import schema as t
from publisher.store.sql import EventKind, SqlStore, insert_for, utcnow

if TYPE_CHECKING:
    from publisher.packs import PackPlanner

log = logging.getLogger("publisher.fanout")

#: channels whose targets are residents (recipients); the others have endpoints
SUBSCRIBER_CHANNELS = frozenset({"sms", "email"})
#: channels that can take back what they sent: feeds drop the entry, the portal
#: is told, boards get a take-down
RETRACTING_CHANNELS = frozenset({"portal", "rss", "board"})
RETRACT_EVENTS = frozenset({EventKind.WITHDRAWN, EventKind.EXPIRED})
#: channels whose every attempt rebuilds its target from the store (a feed lists every
#: live item of its category, whichever item's pass wrote it): an item may be in a feed
#: its own rows never reached, so a take-down goes to every feed that could hold it
REBUILT_CHANNELS = frozenset({"rss"})
#: events whose rows put the item out (deliveries.publishes)
PUBLISH_EVENTS = frozenset({EventKind.PUBLISHED, EventKind.CORRECTED})


class FanOut:
    def __init__(self, store: SqlStore, ledger: Ledger) -> None:
        self.store = store
        self.ledger = ledger
        self.config: Config = store.config
        self._pack_planner: PackPlanner | None = None

    async def ensure_endpoints(self) -> None:
        """Create the endpoints config.yaml declares, and one per feed, if missing."""
        # each feed is a target of its own, so the ledger shows when each one
        # carried a change: the feed of every category and one per category
        declared: list[tuple[str, str, str, list[str], dict[str, Any]]] = [
            ("rss", ALL_FEED, ALL_FEED, [], {})
        ]
        declared += [("rss", c.slug, c.slug, [c.slug], {}) for c in self.config.taxonomy]
        for channel in ("portal", "rss", "sms", "email", "board"):
            for ep in self.config.channels.get(channel).endpoints:
                declared.append((channel, ep.name, ep.address, ep.categories, ep.settings))
        now = utcnow()
        box = None
        if any("secret" in settings for *_, settings in declared):
            box = FieldBox(self.config.data_key(), ENDPOINT_SECRET)
        async with self.store.write() as conn:
            insert = insert_for(conn)
            for channel, name, address, categories, declared_settings in declared:
                # an inline webhook secret is stored sealed with the data key
                settings = seal_settings(box, declared_settings) if box else declared_settings
                # several workers may start at once: the first one creates it; config.yaml
                # stays the source of a declared endpoint, so an edit there (a new address,
                # categories, a rotated secret) takes effect at the next start
                stmt = insert(t.endpoints).values(
                    channel=channel,
                    name=name,
                    address=address,
                    categories=categories,
                    settings=settings,
                    enabled=True,
                    created_at=now,
                )
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["channel", "name"],
                        set_={
                            "address": stmt.excluded.address,
                            "categories": stmt.excluded.categories,
                            "settings": stmt.excluded.settings,
                        },
                    )
                )

    async def plan_pending(self) -> int:
        """Plan every event not yet planned; returns how many rows were queued."""
        total = 0
        for event in await self.ledger.pending_events():
            total += await self.plan(event)
        return total

    async def plan(self, event: Any) -> int:
        subject = f"event:{event.id}"
        category = event_category = None
        async with self.store.read() as conn:
            event_category = await conn.scalar(
                sa.select(t.revisions.c.category).where(
                    t.revisions.c.item_id == event.item_id,
                    t.revisions.c.number == event.revision,
                )
            )
        category = event_category or ""
        priority = PRIORITY_URGENT if event.urgent else PRIORITY_NORMAL
        queued = 0
        if event.kind in RETRACT_EVENTS:
            cancelled = await self.ledger.cancel_open(
                event.item_id, except_subject=subject, reason=event.kind
            )
            if cancelled:
                log.info(
                    "item %s %s: %d deliveries cancelled", event.item_id, event.kind, cancelled
                )
        for channel in event.channels:
            if channel == "board":  # print packs, one per board concerned (publisher.packs)
                queued += await self._packs().plan(event, category, priority)
                continue
            if event.kind in RETRACT_EVENTS:
                if channel not in RETRACTING_CHANNELS:
                    continue
                targets = await self.ledger.delivered_targets(event.item_id, channel)
                if channel in REBUILT_CHANNELS:
                    async for batch in self._targets(channel, category):
                        targets = sorted(set(targets) | set(batch))
                queued += await self.ledger.insert_rows(
                    subject, channel, targets, item_id=event.item_id,
                    priority=priority, bypass_quiet=True,
                )  # fmt: skip
                continue
            async for batch in self._targets(channel, category):
                queued += await self.ledger.insert_rows(
                    subject, channel, batch, item_id=event.item_id,
                    priority=priority, bypass_quiet=bool(event.urgent),
                    publishes=event.kind in PUBLISH_EVENTS,
                )  # fmt: skip
        if event.kind == EventKind.CORRECTED:
            # a target the correction reaches needs the earlier text no more: rows still
            # waiting would carry the corrected text anyway (the claim reads the live
            # revision), so they would only send it twice
            superseded = await self.ledger.supersede(event.item_id)
            if superseded:
                log.info("item %s corrected: %d deliveries superseded", event.item_id, superseded)
        await self.ledger.mark_planned(event.id)
        log.info("item %s %s: %d deliveries queued", event.item_id, event.kind, queued)
        return queued

    def _packs(self) -> PackPlanner:
        from publisher.packs import PackPlanner  # boards build on the channel's layouts

        if self._pack_planner is None:
            self._pack_planner = PackPlanner(self.store, self.ledger)
        return self._pack_planner

    async def _targets(self, channel: str, category: str) -> AsyncIterator[list[str]]:
        size = self.config.delivery.plan_batch
        if channel not in SUBSCRIBER_CHANNELS:
            async with self.store.read() as conn:
                rows = (
                    await conn.execute(
                        sa.select(t.endpoints.c.id, t.endpoints.c.categories).where(
                            t.endpoints.c.channel == channel, t.endpoints.c.enabled.is_(True)
                        )
                    )
                ).all()
            batch = [f"e:{r.id}" for r in rows if not r.categories or category in r.categories]
            if batch:
                yield batch
            return
        last = 0
        page = (
            "SELECT r.id, r.categories FROM recipients r LEFT JOIN suppressions s "
            "ON s.channel = r.channel AND s.address_hash = r.address_hash "
            "WHERE r.channel = ? AND r.status = 'active' AND r.frequency = 'immediate' "
            "AND s.address_hash IS NULL AND r.id > ? ORDER BY r.id LIMIT ?"
        )
        while True:

            def read_page(conn: sa.Connection, after: int = last) -> Sequence[Any]:
                return HotSql(conn).execute(page, (channel, after, size))

            rows = await self.store.run(read_page, write=False)
            if not rows:
                return
            last = rows[-1][0]
            batch = [f"r:{rid}" for rid, cats in rows if _takes(cats, category)]
            if batch:
                yield batch


def _takes(categories: Any, category: str) -> bool:
    """Whether a subscriber's categories (JSON text or list; empty: all) include `category`."""
    if isinstance(categories, str):
        # most residents take every category: parse the list only when there is one
        if categories.replace(" ", "") == "[]":
            return True
        categories = json.loads(categories)
    return not categories or category in categories
