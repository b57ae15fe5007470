"""Daily spend counters kept in the store: billed units (SMS segments) per counter per local
day of the site, shared by every worker process.

A reservation is one atomic upsert that adds the units only if the day's total stays
within the cap (`INSERT … ON CONFLICT DO UPDATE … WHERE units + n <= cap RETURNING`), so
two workers can never both take the last room. Units are reserved before a message goes
out and given back if the gateway refused it, so the counter never lags behind what the
gateway may have billed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from publisher.store import schema as t
from publisher.store.sql import SqlStore, utcnow


def local_day(now: datetime, tz: ZoneInfo) -> date:
    """The site's calendar day at `now`."""
    return now.astimezone(tz).date()


def next_day_start(now: datetime, tz: ZoneInfo) -> datetime:
    """The next local midnight after `now`, in UTC (when a day's counters start again)."""
    tomorrow = local_day(now, tz) + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=tz).astimezone(UTC)


class DailySpend:
    """Units spent per counter (e.g. "sms:<gateway>") per local day of the site."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.tz = store.config.site.tz

    def day(self, now: datetime | None = None) -> str:
        return local_day(now or utcnow(), self.tz).isoformat()

    async def reserve(
        self, counter: str, units: int, *, cap: int | None, now: datetime | None = None
    ) -> bool:
        """Add `units` to today's count of `counter` if that keeps it within `cap` (None:
        add them whatever the total). Returns whether they were added."""
        now = now or utcnow()
        day = self.day(now)
        if cap is not None and units > cap:
            return False

        def add(conn: sa.Connection) -> bool:
            c = t.spend_counters
            insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(c).values(counter=counter, day=day, units=units, updated_at=now)
            stmt = stmt.on_conflict_do_update(
                index_elements=["counter", "day"],
                set_={"units": c.c.units + units, "updated_at": now},
                where=(c.c.units + units <= cap) if cap is not None else None,
            ).returning(c.c.units)
            return conn.execute(stmt).first() is not None

        return await self.store.run(add)

    async def release(self, counter: str, units: int, day: str) -> None:
        """Give back units reserved on `day` for a message that did not go out."""
        c = t.spend_counters

        def give_back(conn: sa.Connection) -> None:
            conn.execute(
                c.update()
                .where(c.c.counter == counter, c.c.day == day)
                .values(
                    units=sa.case((c.c.units > units, c.c.units - units), else_=0),
                    updated_at=utcnow(),
                )
            )

        await self.store.run(give_back)

    async def spent(self, counter: str, day: str | None = None) -> int:
        """Units counted for `counter` on `day` (default today)."""
        c = t.spend_counters
        async with self.store.read() as conn:
            units = await conn.scalar(
                sa.select(c.c.units).where(c.c.counter == counter, c.c.day == (day or self.day()))
            )
        return int(units or 0)
