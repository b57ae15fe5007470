"""The delivery ledger: one row per (subject, channel, target), and every state change.

Planning inserts rows with ON CONFLICT DO NOTHING on the unique key, so planning
an event twice (a double approve, a crash mid-plan, two workers) never
duplicates. Workers claim due rows atomically: FOR UPDATE SKIP LOCKED on
PostgreSQL, BEGIN IMMEDIATE (one writer) on SQLite.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from publisher.store import schema as t
from publisher.store.sql import EventKind, SqlStore, utcnow


class DeliveryState(StrEnum):
    QUEUED = "queued"  #: planned, waiting for a worker
    SENDING = "sending"  #: claimed by a worker; an attempt is in flight
    SENT = "sent"  #: the provider accepted it (final where no receipts come)
    DELIVERED = "delivered"  #: the far end confirmed it
    RETRYING = "retrying"  #: a transient failure; due again after a backoff
    FAILED = "failed"  #: given up, with a reason (bounced, rejected, expired …)
    DEFERRED = "deferred"  #: held back (quiet hours, spend cap, rate window) until due_at
    SKIPPED = "skipped"  #: not sent, with a reason (opted out, suppressed, withdrawn)
    UNKNOWN = "unknown"  #: found in flight after a crash on a channel that must not repeat


#: states a worker may claim once due
CLAIMABLE = (DeliveryState.QUEUED, DeliveryState.RETRYING, DeliveryState.DEFERRED)
#: states that may still change without a worker (cancellable by withdrawal)
OPEN = (*CLAIMABLE,)
#: states after which nothing more happens unless staff retry
FINAL = (
    DeliveryState.SENT,
    DeliveryState.DELIVERED,
    DeliveryState.FAILED,
    DeliveryState.SKIPPED,
    DeliveryState.UNKNOWN,
)
#: what staff may requeue
RETRYABLE_BY_STAFF = (DeliveryState.FAILED, DeliveryState.UNKNOWN)

PRIORITY_NORMAL = 0
PRIORITY_URGENT = 10
PRIORITY_TRANSACTIONAL = 20


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    subject: str
    channel: str
    target: str
    item_id: str | None
    attempts: int
    bypass_quiet: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt, as the worker reports it."""

    delivery_id: int
    state: DeliveryState
    provider_id: str | None = None
    units: int | None = None
    reason: str | None = None
    error: str | None = None
    due_at: datetime | None = None  #: for retrying / deferred


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:12]}"


class Ledger:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    # -- planning --------------------------------------------------------------

    async def pending_events(self, limit: int = 20) -> list[Any]:
        async with self.store.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.item_events)
                    .where(t.item_events.c.planned_at.is_(None))
                    .order_by(t.item_events.c.urgent.desc(), t.item_events.c.id)
                    .limit(limit)
                )
            ).all()
        return list(rows)

    async def insert_rows(
        self,
        subject: str,
        channel: str,
        targets: Sequence[str],
        *,
        item_id: str | None,
        priority: int,
        bypass_quiet: bool,
        due_at: datetime | None = None,
    ) -> int:
        """Queue one row per target; rows that already exist are left alone. Returns how many are new."""
        if not targets:
            return 0
        now = utcnow()
        rows = [
            {
                "subject": subject,
                "channel": channel,
                "target": target,
                "item_id": item_id,
                "state": DeliveryState.QUEUED.value,
                "priority": priority,
                "bypass_quiet": bypass_quiet,
                "attempts": 0,
                "due_at": due_at or now,
                "created_at": now,
                "updated_at": now,
            }
            for target in targets
        ]
        async with self.store.write() as conn:
            insert = _insert_for(conn)
            stmt = (
                insert(t.deliveries)
                .on_conflict_do_nothing(index_elements=["subject", "channel", "target"])
                .returning(t.deliveries.c.id)
            )
            new_ids = (await conn.execute(stmt, rows)).scalars().all() if rows else []
            # one "queued" event per new row: the ledger's history starts here
            if new_ids:
                await conn.execute(
                    t.delivery_events.insert(),
                    [
                        {"delivery_id": i, "at": now, "from_state": None, "to_state": "queued"}
                        for i in new_ids
                    ],
                )
        return len(new_ids)

    async def mark_planned(self, event_id: int) -> None:
        async with self.store.write() as conn:
            await conn.execute(
                t.item_events.update()
                .where(t.item_events.c.id == event_id, t.item_events.c.planned_at.is_(None))
                .values(planned_at=utcnow())
            )

    async def cancel_open(self, item_id: str, *, except_subject: str, reason: str) -> int:
        """Skip what has not gone out for an item (withdrawal); returns how many rows."""
        return await self._bulk_move(
            sa.and_(
                t.deliveries.c.item_id == item_id,
                t.deliveries.c.subject != except_subject,
                t.deliveries.c.state.in_([s.value for s in OPEN]),
            ),
            DeliveryState.SKIPPED,
            reason=reason,
        )

    async def delivered_targets(self, item_id: str, channel: str) -> list[str]:
        """Targets that got something of this item on `channel` (to retract from)."""
        async with self.store.read() as conn:
            rows = await conn.scalars(
                sa.select(t.deliveries.c.target)
                .where(
                    t.deliveries.c.item_id == item_id,
                    t.deliveries.c.channel == channel,
                    t.deliveries.c.state.in_(
                        [DeliveryState.SENT.value, DeliveryState.DELIVERED.value]
                    ),
                    t.deliveries.c.subject.in_(
                        sa.select(sa.literal("event:") + sa.cast(t.item_events.c.id, sa.String))
                        .where(
                            t.item_events.c.item_id == item_id,
                            t.item_events.c.kind.in_([EventKind.PUBLISHED, EventKind.CORRECTED]),
                        )
                        .scalar_subquery()
                    ),
                )
                .distinct()
            )
            return list(rows.all())

    # -- claiming ----------------------------------------------------------------

    async def defer_quiet(self, channel: str, until: datetime, now: datetime) -> int:
        """Quiet hours: hold back due rows that may not bypass them, until the window ends."""
        return await self._bulk_move(
            sa.and_(
                t.deliveries.c.channel == channel,
                t.deliveries.c.state.in_(
                    [DeliveryState.QUEUED.value, DeliveryState.RETRYING.value]
                ),
                t.deliveries.c.bypass_quiet.is_(False),
                t.deliveries.c.due_at <= now,
            ),
            DeliveryState.DEFERRED,
            reason="quiet_hours",
            due_at=until,
            detail=f"quiet hours until {until.isoformat()}",
        )

    async def claim(
        self, channel: str, worker_id: str, limit: int, *, quiet: bool = False
    ) -> list[Claimed]:
        """Atomically move up to `limit` due rows of `channel` to `sending` for this worker.

        Urgent and transactional rows come first. In quiet hours only rows that
        bypass them are taken.
        """
        now = utcnow()
        d = t.deliveries
        cond = [
            d.c.channel == channel,
            d.c.state.in_([s.value for s in CLAIMABLE]),
            d.c.due_at <= now,
        ]
        if quiet:
            cond.append(d.c.bypass_quiet.is_(True))
        pick = (
            sa.select(d.c.id, d.c.state)
            .where(*cond)
            .order_by(d.c.priority.desc(), d.c.due_at, d.c.id)
            .limit(limit)
        )
        async with self.store.write() as conn:
            if not self.store.is_sqlite:
                pick = pick.with_for_update(skip_locked=True)
            picked = (await conn.execute(pick)).all()
            if not picked:
                return []
            ids = [r.id for r in picked]
            rows = (
                await conn.execute(
                    d.update()
                    .where(d.c.id.in_(ids))
                    .values(
                        state=DeliveryState.SENDING.value,
                        claimed_by=worker_id,
                        attempts=d.c.attempts + 1,
                        updated_at=now,
                    )
                    .returning(
                        d.c.id,
                        d.c.subject,
                        d.c.channel,
                        d.c.target,
                        d.c.item_id,
                        d.c.attempts,
                        d.c.bypass_quiet,
                    )
                )
            ).all()
            await conn.execute(
                t.delivery_events.insert(),
                [
                    {
                        "delivery_id": r.id,
                        "at": now,
                        "from_state": r.state,
                        "to_state": "sending",
                        "detail": f"claimed by {worker_id}",
                    }
                    for r in picked
                ],
            )
        claimed = [
            Claimed(r.id, r.subject, r.channel, r.target, r.item_id, r.attempts, r.bypass_quiet)
            for r in rows
        ]
        claimed.sort(key=lambda c: ids.index(c.id))
        return claimed

    async def record(self, worker_id: str, outcomes: Iterable[Outcome]) -> int:
        """Write the outcomes of this worker's attempts in one transaction.

        A row is only updated while it is still `sending` under this worker, so a
        row recovered from a worker presumed dead is never overwritten by it.
        """
        outcomes = list(outcomes)
        if not outcomes:
            return 0
        now = utcnow()
        d = t.deliveries
        params = []
        events = []
        for o in outcomes:
            params.append(
                {
                    "b_id": o.delivery_id,
                    "b_worker": worker_id,
                    "b_state": o.state.value,
                    "b_provider_id": o.provider_id,
                    "b_units": o.units,
                    "b_reason": o.reason,
                    "b_error": o.error,
                    "b_due_at": o.due_at or now,
                    "b_sent_at": now
                    if o.state in (DeliveryState.SENT, DeliveryState.DELIVERED)
                    else None,
                    "b_delivered_at": now if o.state is DeliveryState.DELIVERED else None,
                }
            )
            detail = o.reason or ""
            if o.error:
                detail = f"{detail}: {o.error}" if detail else o.error
            events.append(
                {
                    "delivery_id": o.delivery_id,
                    "at": now,
                    "from_state": DeliveryState.SENDING.value,
                    "to_state": o.state.value,
                    "detail": detail[:2000] or None,
                }
            )
        stmt = (
            d.update()
            .where(
                d.c.id == sa.bindparam("b_id"),
                d.c.state == DeliveryState.SENDING.value,
                d.c.claimed_by == sa.bindparam("b_worker"),
            )
            .values(
                state=sa.bindparam("b_state"),
                provider_id=sa.func.coalesce(sa.bindparam("b_provider_id"), d.c.provider_id),
                units=sa.func.coalesce(sa.bindparam("b_units", type_=sa.Integer), d.c.units),
                reason=sa.bindparam("b_reason"),
                last_error=sa.func.coalesce(sa.bindparam("b_error"), d.c.last_error),
                due_at=sa.bindparam("b_due_at", type_=t.UTCDateTime),
                sent_at=sa.func.coalesce(
                    d.c.sent_at, sa.bindparam("b_sent_at", type_=t.UTCDateTime)
                ),
                delivered_at=sa.func.coalesce(
                    d.c.delivered_at, sa.bindparam("b_delivered_at", type_=t.UTCDateTime)
                ),
                claimed_by=None,
                updated_at=now,
            )
        )
        async with self.store.write() as conn:
            await conn.execute(stmt, params)
            await conn.execute(t.delivery_events.insert(), events)
        return len(outcomes)

    # -- workers and crash recovery -------------------------------------------------

    async def register_worker(self, worker_id: str, pid: int) -> None:
        now = utcnow()
        async with self.store.write() as conn:
            await conn.execute(
                t.workers.insert().values(
                    id=worker_id,
                    host=socket.gethostname()[:255],
                    pid=pid,
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    async def heartbeat(self, worker_id: str) -> None:
        async with self.store.write() as conn:
            await conn.execute(
                t.workers.update().where(t.workers.c.id == worker_id).values(heartbeat_at=utcnow())
            )

    async def unregister_worker(self, worker_id: str) -> None:
        async with self.store.write() as conn:
            await conn.execute(t.workers.delete().where(t.workers.c.id == worker_id))

    async def recover(self, stale_after: timedelta, repeatable: dict[str, bool]) -> dict[str, int]:
        """Rows left in `sending` by workers that stopped heartbeating.

        On a channel whose attempts may be repeated they are queued again; on
        others they become `unknown` (the attempt may or may not have reached the
        far end), for staff to decide. Returns counts per new state.
        """
        now = utcnow()
        d = t.deliveries
        async with self.store.write() as conn:
            alive = sa.select(t.workers.c.id).where(t.workers.c.heartbeat_at >= now - stale_after)
            # a busy worker may miss a beat: only rows claimed before the stale
            # horizon count, so a late heartbeat never orphans fresh claims
            orphan = sa.and_(
                d.c.state == DeliveryState.SENDING.value,
                d.c.updated_at < now - stale_after,
                sa.or_(d.c.claimed_by.is_(None), d.c.claimed_by.not_in(alive)),
            )
            rows = (await conn.execute(sa.select(d.c.id, d.c.channel).where(orphan))).all()
            counts = {"requeued": 0, "unknown": 0}
            for state, ids in (
                (DeliveryState.RETRYING, [r.id for r in rows if repeatable.get(r.channel, False)]),
                (
                    DeliveryState.UNKNOWN,
                    [r.id for r in rows if not repeatable.get(r.channel, False)],
                ),
            ):
                for chunk in _chunks(ids, 500):
                    await conn.execute(
                        d.update()
                        .where(d.c.id.in_(chunk), d.c.state == DeliveryState.SENDING.value)
                        .values(
                            state=state.value,
                            claimed_by=None,
                            reason="interrupted",
                            due_at=now,
                            updated_at=now,
                        )
                    )
                    await conn.execute(
                        t.delivery_events.insert(),
                        [
                            {
                                "delivery_id": i,
                                "at": now,
                                "from_state": "sending",
                                "to_state": state.value,
                                "detail": "worker stopped mid-attempt",
                            }
                            for i in chunk
                        ],
                    )
                counts["requeued" if state is DeliveryState.RETRYING else "unknown"] += len(ids)
            await conn.execute(
                t.workers.delete().where(t.workers.c.heartbeat_at < now - stale_after)
            )
        return counts

    # -- staff ------------------------------------------------------------------------

    async def retry_item(self, item_id: str) -> int:
        """Requeue an item's failed and unknown rows (staff's decision); attempts start again."""
        return await self._bulk_move(
            sa.and_(
                t.deliveries.c.item_id == item_id,
                t.deliveries.c.state.in_([s.value for s in RETRYABLE_BY_STAFF]),
            ),
            DeliveryState.QUEUED,
            reason=None,
            reset_attempts=True,
            detail="retry requested by staff",
        )

    async def counts(self, item_id: str) -> dict[str, dict[str, int]]:
        d = t.deliveries
        async with self.store.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(d.c.channel, d.c.state, sa.func.count())
                    .where(d.c.item_id == item_id)
                    .group_by(d.c.channel, d.c.state)
                )
            ).all()
        out: dict[str, dict[str, int]] = {}
        for channel, state, n in rows:
            out.setdefault(channel, {})[state] = int(n)
        return out

    async def _bulk_move(
        self,
        where: sa.ColumnElement[bool],
        to: DeliveryState,
        *,
        reason: str | None,
        due_at: datetime | None = None,
        detail: str | None = None,
        reset_attempts: bool = False,
    ) -> int:
        now = utcnow()
        d = t.deliveries
        moved = 0
        async with self.store.write() as conn:
            select = sa.select(d.c.id, d.c.state).where(where)
            if not self.store.is_sqlite:
                select = select.with_for_update(skip_locked=True)
            rows = (await conn.execute(select)).all()
            for chunk in _chunks(rows, 500):
                values: dict[str, Any] = {
                    "state": to.value,
                    "reason": reason,
                    "updated_at": now,
                    "due_at": due_at or now,
                }
                if reset_attempts:
                    values["attempts"] = 0
                await conn.execute(
                    d.update().where(d.c.id.in_([r.id for r in chunk])).values(**values)
                )
                await conn.execute(
                    t.delivery_events.insert(),
                    [
                        {
                            "delivery_id": r.id,
                            "at": now,
                            "from_state": r.state,
                            "to_state": to.value,
                            "detail": detail or reason,
                        }
                        for r in chunk
                    ],
                )
                moved += len(chunk)
        return moved


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _insert_for(conn: AsyncConnection) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
