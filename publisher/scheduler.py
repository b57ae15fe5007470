"""Publication on schedule with APScheduler 3.

The store is the authoritative schedule: the scheduler only decides when to look.
It sweeps on an interval (so whatever fell due while the service was down goes
out at start) and also sets one date job at the next known due time, so a
publication does not wait for the next sweep.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from publisher.store.sql import SqlStore

log = logging.getLogger("publisher.scheduler")

SWEEP_JOB = "sweep"
WAKE_JOB = "wake"


class PublicationScheduler:
    def __init__(self, store: SqlStore, sweep_seconds: float) -> None:
        self.store = store
        self.sweep_seconds = sweep_seconds
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._scheduler.add_job(
            self.sweep,
            "interval",
            seconds=self.sweep_seconds,
            id=SWEEP_JOB,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()

    async def stop(self) -> None:
        self._scheduler.shutdown(wait=False)
        async with self._lock:  # let a running sweep finish its transaction
            pass

    async def sweep(self) -> None:
        """Publish and expire everything due, then arm a wake-up for the next due time."""
        async with self._lock:
            try:
                published = await self.store.publish_due()
                expired = await self.store.expire_due()
                if published or expired:
                    log.info("published %d, expired %d", len(published), len(expired))
                await self._arm()
            except Exception:
                # the next sweep tries again; nothing is half-done (one transaction per item)
                log.exception("scheduler sweep failed")

    async def wake(self) -> None:
        """Call after anything that may change the next due time (approval, edits)."""
        async with self._lock:
            await self._arm()

    async def _arm(self) -> None:
        due = await self.store.next_due()
        if due is None:
            return
        run_at = max(due, datetime.now(UTC)) + timedelta(milliseconds=50)
        self._scheduler.add_job(
            self.sweep,
            "date",
            run_date=run_at,
            id=WAKE_JOB,
            replace_existing=True,
            misfire_grace_time=None,
        )
