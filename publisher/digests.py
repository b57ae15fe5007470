"""Daily email digests: one mail per local day to each daily subscriber, listing the items
published since the previous digest in the subscriber's categories.

- **When.** At `channels.email.settings.digest_time` in the site's time zone. The digest
  of local day D covers publications from the previous digest time up to D's (the first
  one ever: the 24 hours before), so every publication falls in exactly one digest and
  no item is in two digests of one subscriber. After downtime the next digest takes up
  where the last one ended (at most 7 days back).
- **What.** Subscribers with the same list of items share one ledger subject,
  "digest:<day>:<hash of the item ids>", rendered once; `digest_items` records which
  items each subject lists, so an item's deliveries include the digest rows that
  carried it. A day without items, or a subscriber whose categories had none, gets no
  mail.
- **Exactly once.** `digest_runs` has one row per day, written before planning and
  stamped after; planning again (two workers, a crash mid-plan) inserts nothing twice,
  because subjects are derived from their content and the ledger is unique on
  (subject, channel, target).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import sqlalchemy as sa

from channels.base import PermanentDeliveryError, Subject
from publisher.config import Config
from publisher.errors import ItemNotFound
from publisher.ledger import PRIORITY_NORMAL, HotSql, Ledger
from publisher.models import Disclosure, ItemStatus
from publisher.store import schema as t
from publisher.store.sql import EventKind, SqlStore, insert_for, utcnow
from publisher.text import derive_summary

log = logging.getLogger("publisher.digests")

#: Subject.kind of a digest (a subject that lists several items)
DIGEST_KIND = "digest"

CHANNEL = "email"
#: how far back a digest reaches after downtime
MAX_WINDOW = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Window:
    day: date  #: the local day of the digest (its send time's date)
    start: datetime  #: UTC, inclusive
    end: datetime  #: UTC, exclusive: the digest time


def digest_time(config: Config) -> dtime:
    from channels.mail import mail_settings

    return dtime.fromisoformat(mail_settings(config).digest_time)


def latest_boundary(config: Config, now: datetime) -> datetime:
    """The last digest time at or before `now`, as an aware datetime in the site's zone."""
    tz = config.site.tz
    local = now.astimezone(tz)
    at = digest_time(config)
    boundary = datetime.combine(local.date(), at, tzinfo=tz)
    if local < boundary:
        boundary = datetime.combine(local.date() - timedelta(days=1), at, tzinfo=tz)
    return boundary


def subject_key(day: date, item_ids: tuple[str, ...]) -> str:
    digest = hashlib.sha256(",".join(item_ids).encode()).hexdigest()[:16]
    return f"digest:{day.isoformat()}:{digest}"


def _takes(categories: Any, category: str) -> bool:
    if isinstance(categories, str):
        categories = json.loads(categories)
    return not categories or category in categories


class Digests:
    def __init__(self, store: SqlStore, ledger: Ledger | None = None) -> None:
        self.store = store
        self.config: Config = store.config
        self.ledger = ledger or Ledger(store)
        #: the last day seen fully planned (saves a query per planner tick)
        self._planned_day: date | None = None

    # -- planning ----------------------------------------------------------------------------

    async def plan_due(self, now: datetime | None = None) -> int:
        """Plan the digest of the latest digest time if nobody has; returns rows queued."""
        if not self.config.channels.email.enabled:
            return 0
        now = now or utcnow()
        boundary = latest_boundary(self.config, now)
        day = boundary.date()
        if self._planned_day == day:
            return 0
        window = await self._window(day, boundary.astimezone(UTC), now)
        if window is None:
            self._planned_day = day
            return 0
        queued = await self.plan(window)
        async with self.store.write() as conn:
            await conn.execute(
                t.digest_runs.update()
                .where(t.digest_runs.c.day == day, t.digest_runs.c.planned_at.is_(None))
                .values(planned_at=utcnow())
            )
        self._planned_day = day
        log.info("digest of %s: %d deliveries queued", day, queued)
        return queued

    async def _window(self, day: date, end: datetime, now: datetime) -> Window | None:
        """The run of `day` (created if missing); None once it has been planned."""
        runs = t.digest_runs
        async with self.store.write() as conn:
            run = (await conn.execute(sa.select(runs).where(runs.c.day == day))).first()
            if run is None:
                previous = await conn.scalar(
                    sa.select(sa.func.max(runs.c.window_end)).where(runs.c.day < day)
                )
                start = end - timedelta(days=1)
                if previous is not None:
                    start = max(min(previous, end), end - MAX_WINDOW)
                await conn.execute(
                    insert_for(conn)(runs)
                    .values(day=day, window_start=start, window_end=end, created_at=now)
                    .on_conflict_do_nothing(index_elements=["day"])
                )
                run = (await conn.execute(sa.select(runs).where(runs.c.day == day))).first()
        assert run is not None
        if run.planned_at is not None:
            return None
        return Window(day, run.window_start, run.window_end)

    async def published_in(self, window: Window) -> list[tuple[int, str, str]]:
        """(event id, item id, category) of the items first published in the window that
        are still published, proactive and meant for email; oldest first."""
        ev, it = t.item_events, t.items
        async with self.store.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(ev.c.id, ev.c.item_id, ev.c.channels, it.c.category)
                    .join(it, it.c.id == ev.c.item_id)
                    .where(
                        ev.c.kind == EventKind.PUBLISHED,
                        ev.c.created_at >= window.start,
                        ev.c.created_at < window.end,
                        it.c.status == ItemStatus.PUBLISHED.value,
                        it.c.disclosure == Disclosure.PROACTIVE.value,
                    )
                    .order_by(ev.c.created_at, ev.c.id)
                )
            ).all()
        out: list[tuple[int, str, str]] = []
        seen: set[str] = set()
        for r in rows:
            channels = json.loads(r.channels) if isinstance(r.channels, str) else r.channels
            if CHANNEL in channels and r.item_id not in seen:
                seen.add(r.item_id)
                out.append((int(r.id), str(r.item_id), str(r.category)))
        return out

    async def plan(self, window: Window) -> int:
        items = await self.published_in(window)
        if not items:
            return 0  # no items: no digest that day
        groups: dict[tuple[int, ...], list[str]] = {}
        page = (
            "SELECT r.id, r.categories FROM recipients r LEFT JOIN suppressions s "
            "ON s.channel = r.channel AND s.address_hash = r.address_hash "
            "WHERE r.channel = ? AND r.status = 'active' AND r.frequency = 'daily' "
            "AND s.address_hash IS NULL AND r.id > ? ORDER BY r.id LIMIT ?"
        )
        size = self.config.delivery.plan_batch
        last = 0
        while True:

            def read_page(conn: sa.Connection, after: int = last) -> list[Any]:
                return HotSql(conn).execute(page, (CHANNEL, after, size))

            rows = await self.store.run(read_page, write=False)
            if not rows:
                break
            last = rows[-1][0]
            for rid, cats in rows:
                chosen = tuple(n for n, (_, _, cat) in enumerate(items) if _takes(cats, cat))
                if chosen:
                    groups.setdefault(chosen, []).append(f"r:{rid}")
        queued = 0
        for chosen, targets in groups.items():
            listed = [items[n] for n in chosen]
            subject = subject_key(window.day, tuple(item_id for _, item_id, _ in listed))
            async with self.store.write() as conn:
                await conn.execute(
                    insert_for(conn)(t.digest_items)
                    .values(
                        [
                            {"subject": subject, "item_id": item_id, "event_id": event_id}
                            for event_id, item_id, _ in listed
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["subject", "item_id"])
                )
            for start in range(0, len(targets), size):
                queued += await self.ledger.insert_rows(
                    subject,
                    CHANNEL,
                    targets[start : start + size],
                    item_id=None,
                    priority=PRIORITY_NORMAL,
                    bypass_quiet=False,
                )
        return queued

    # -- the subject a worker renders ----------------------------------------------------------

    async def load_subject(self, key: str) -> Subject:
        """The digest behind a ledger subject: the items it lists that are still published."""
        parts = key.split(":")
        try:
            day = date.fromisoformat(parts[1])
        except (IndexError, ValueError):
            raise PermanentDeliveryError(f"no digest {key}", reason="unknown_subject") from None
        di = t.digest_items
        async with self.store.read() as conn:
            listed = (
                await conn.execute(
                    sa.select(di.c.item_id).where(di.c.subject == key).order_by(di.c.event_id)
                )
            ).all()
            window_end = await conn.scalar(
                sa.select(t.digest_runs.c.window_end).where(t.digest_runs.c.day == day)
            )
        config = self.config
        base = config.site.public_base
        tz = config.site.tz
        items: list[dict[str, Any]] = []
        for (item_id,) in listed:
            try:
                item = await self.store.get_item(item_id)
            except ItemNotFound:
                continue
            if item.status is not ItemStatus.PUBLISHED:
                continue  # withdrawn or expired since: not listed
            c = item.content
            cat = config.category(c.category)
            items.append(
                {
                    "id": item.id,
                    "title": c.title,
                    "summary": c.summary
                    or derive_summary(c.body, config.items.summary_chars, c.body_format),
                    "category_name": cat.name if cat else c.category,
                    "index_no": item.index_no,
                    "published_at": (
                        item.published_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
                        if item.published_at
                        else ""
                    ),
                    "url": f"{base}/items/{item.id}",
                }
            )
        site = config.site
        return Subject(
            key=key, kind=DIGEST_KIND, item_id=None, revision=None,
            title=f"{site.name}每日摘要（{day.year}年{day.month}月{day.day}日）",
            summary="", body="", body_html="", category="", category_name="",
            agency=site.agency, index_no=None, doc_no=None, written_at=None,
            published_at=None, urgent=False, public_url=f"{base}/", site_name=site.name,
            event_at=window_end, items=tuple(items),
        )  # fmt: skip
