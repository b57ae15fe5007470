"""Daily spend counters kept in the store: billed units (SMS segments) per counter per local
day of the site, shared by every worker process.

A reservation is one atomic upsert that adds the units only if the day's total stays
within the cap (`INSERT … ON CONFLICT DO UPDATE … WHERE units + n <= cap RETURNING`), so
two workers can never both take the last room. Units are reserved before a message goes
out and given back if the gateway refused it, so the counter never lags behind what the
gateway may have billed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
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


def block_for(cap: int) -> int:
    """How many units a worker reserves at a time under `cap`: a twentieth of it, at most
    100. A worker holds at most that much it has not used yet, so at worst a twentieth
    of the day's room waits in a worker, and none when the cap is small."""
    return min(100, cap // 20)


@dataclass
class _Held:
    day: str
    units: int


class SpendAllowance:
    """A worker's share of the daily counters, reserved from the store a block at a time.

    Reserving units in the store for every message costs a write transaction each (a
    hot row every worker updates); taking them from a block reserved ahead costs
    nothing. The cap holds exactly as before: every block is reserved atomically
    within it. What a worker holds and has not used is given back when it stops, or
    when the day changes; a worker that crashes leaves its unused block counted for
    that day, which errs on the side of sending less.
    """

    def __init__(self, spend: DailySpend) -> None:
        self.spend = spend
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def take(self, counter: str, units: int, *, cap: int) -> str | None:
        """Count `units` against `cap` for today; the day they were counted on, or None
        when the cap leaves no room for them."""
        lock = self._locks.setdefault(counter, asyncio.Lock())
        async with lock:
            day = self.spend.day()
            held = self._held.get(counter)
            if held is not None and held.day != day:  # a new day: yesterday's rest goes back
                await self.spend.release(counter, held.units, held.day)
                held = None
            have = held.units if held is not None else 0
            if have >= units:
                assert held is not None
                held.units -= units
                return day
            need = units - have
            ask = max(need, block_for(cap))
            if not await self.spend.reserve(counter, ask, cap=cap):
                if ask == need or not await self.spend.reserve(counter, need, cap=cap):
                    return None
                ask = need  # near the cap: exactly what this message needs
            self._held[counter] = _Held(day, have + ask - units)
            return day

    async def give_back(self, counter: str, units: int, day: str) -> None:
        """Units taken for a message that did not go out."""
        held = self._held.get(counter)
        if held is not None and held.day == day:
            held.units += units
        else:
            await self.spend.release(counter, units, day)

    async def close(self) -> None:
        """Give back every unused unit (the worker stops)."""
        for counter, held in list(self._held.items()):
            if held.units:
                await self.spend.release(counter, held.units, held.day)
        self._held.clear()
