"""Fixed-window rate limits kept in the store, so they hold across processes and restarts.

Each (bucket, key, window) is one counter row, incremented by one upsert; keys are
keyed hashes, never a number or an address in clear.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from publisher.store import schema as t
from publisher.store.sql import SqlStore, insert_for

#: counters older than this are deleted now and then
KEEP_SECONDS = 2 * 86400


@dataclass(frozen=True, slots=True)
class Limit:
    bucket: str  #: what is counted: "code_number_hour", "code_ip_hour" …
    limit: int  #: hits allowed per window
    window_seconds: int


async def hit(
    store: SqlStore, hits: Sequence[tuple[Limit, str]], *, now: float | None = None
) -> float | None:
    """Count one hit on each (limit, key); returns None if all are within their limits,
    else the seconds until the last exceeded window ends (for Retry-After)."""
    now = time.time() if now is None else now
    c = t.rate_counters
    wait: float | None = None
    async with store.write() as conn:
        insert = insert_for(conn)
        for limit, key in hits:
            start = int(now // limit.window_seconds) * limit.window_seconds
            stmt = insert(c).values(bucket=limit.bucket, key=key, window_start=start, count=1)
            count = (
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["bucket", "key", "window_start"],
                        set_={"count": c.c.count + 1},
                    ).returning(c.c.count)
                )
            ).scalar_one()
            if count > limit.limit:
                left = start + limit.window_seconds - now
                wait = left if wait is None else max(wait, left)
        if random.random() < 0.01:
            await conn.execute(sa.delete(c).where(c.c.window_start < int(now) - KEEP_SECONDS))
    return wait
