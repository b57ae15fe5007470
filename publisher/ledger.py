"""The delivery ledger: one row per (subject, channel, target), and every state change.

Planning inserts rows with ON CONFLICT DO NOTHING on the unique key, so planning
an event twice (a double approve, a crash mid-plan, two workers) never
duplicates. Workers claim due rows atomically: FOR UPDATE SKIP LOCKED on
PostgreSQL, BEGIN IMMEDIATE (one writer) on SQLite.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import sqlalchemy as sa

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
#: the claimable states as literal SQL: a partial index (ix_deliveries_due) is only
#: used when the query states its condition verbatim, not through bound parameters
CLAIMABLE_SQL = sa.text("deliveries.state IN ('queued', 'retrying', 'deferred')")
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
#: item statuses after which nothing that publishes the item may start (withdrawal and
#: expiry are final); the claim skips such rows with the status as the reason
TAKEN_DOWN = ("withdrawn", "expired")

#: the reason on a row whose attempt a crash cut off (set by recovery)
INTERRUPTED = "interrupted"

PRIORITY_NORMAL = 0
PRIORITY_URGENT = 10
PRIORITY_TRANSACTIONAL = 20


class ReceiptResult(StrEnum):
    """What a provider's report did to its ledger row."""

    APPLIED = "applied"  #: the row moved to delivered / failed
    DUPLICATE = "duplicate"  #: the row was already final: nothing changed
    IGNORED = "ignored"  #: the row is not waiting for a report (queued again by staff …)
    IN_FLIGHT = "in_flight"  #: the attempt's outcome was still not written
    NOT_FOUND = "not_found"


class Claimed(NamedTuple):
    """A row a worker claimed (a tuple: built once per message, so built cheaply)."""

    id: int
    subject: str
    channel: str
    target: str
    item_id: str | None
    attempts: int
    bypass_quiet: bool
    #: for a row that publishes an item: the item's live revision at the claim (a row
    #: planned before a correction goes out with the latest approved text)
    revision: int | None = None


class Outcome(NamedTuple):
    """What became of one attempt, as the worker reports it (a tuple, as Claimed)."""

    delivery_id: int
    state: DeliveryState
    provider_id: str | None = None
    units: int | None = None
    reason: str | None = None
    error: str | None = None
    due_at: datetime | None = None  #: for retrying / deferred


class RetryResult(NamedTuple):
    """What a staff retry did: rows requeued, and rows left because the item is down."""

    requeued: int
    left: int
    #: why the rows were left (the item's status: withdrawn / expired), or None
    left_reason: str | None


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
        publishes: bool = False,
    ) -> int:
        """Queue one row per target; rows that already exist are left alone. Returns how many are new.

        `publishes`: the rows put the item out (see deliveries.publishes)."""
        if not targets:
            return 0
        now = utcnow()
        batch = list(targets)

        def insert(conn: sa.Connection) -> int:
            sql = HotSql(conn)
            at = sql.ts(now)
            due = sql.ts(due_at) if due_at else at
            # ids only grow: the rows this call creates are above the highest id now, so
            # finding them below walks only the new rows, not the subject's whole list
            floor = sql.execute("SELECT COALESCE(MAX(id), 0) FROM deliveries")[0][0]
            sql.executemany(
                "INSERT INTO deliveries (subject, channel, target, item_id, state, priority, "
                "bypass_quiet, attempts, due_at, created_at, updated_at, publishes) "
                "VALUES (?, ?, ?, ?, 'queued', ?, ?, 0, ?, ?, ?, ?) "
                "ON CONFLICT (subject, channel, target) DO NOTHING",
                [
                    (
                        subject,
                        channel,
                        target,
                        item_id,
                        priority,
                        bypass_quiet,
                        due,
                        at,
                        at,
                        publishes,
                    )
                    for target in batch
                ],
            )
            # one "queued" event for each row this call created (those already planned
            # keep theirs): the new rows are the ones above the floor stamped `at`
            sql.execute(
                "INSERT INTO delivery_events (delivery_id, at, from_state, to_state) "
                "SELECT id, ?, NULL, 'queued' FROM deliveries "
                "WHERE id > ? AND subject = ? AND channel = ? AND created_at = ?",
                (at, floor, subject, channel, at),
            )
            return max(0, int(sql.cursor.rowcount))

        return await self.store.run(insert)

    async def mark_planned(self, event_id: int) -> None:
        async with self.store.write() as conn:
            await conn.execute(
                t.item_events.update()
                .where(t.item_events.c.id == event_id, t.item_events.c.planned_at.is_(None))
                .values(planned_at=utcnow())
            )

    async def cancel_open(self, item_id: str, *, except_subject: str, reason: str) -> int:
        """Skip what has not gone out for an item (withdrawal); returns how many rows.

        A row whose last attempt a crash cut off (`interrupted`) may have gone out: it ends
        `unknown`, so that its target is among those the take-down reaches."""
        d = t.deliveries
        waiting = sa.and_(
            d.c.item_id == item_id,
            d.c.subject != except_subject,
            d.c.state.in_([s.value for s in OPEN]),
        )
        cut_off = await self._bulk_move(
            sa.and_(waiting, d.c.reason == INTERRUPTED),
            DeliveryState.UNKNOWN,
            reason=INTERRUPTED,
            detail=f"{reason}; the attempt a crash cut off may have arrived",
        )
        return cut_off + await self._bulk_move(
            sa.and_(waiting, sa.or_(d.c.reason.is_(None), d.c.reason != INTERRUPTED)),
            DeliveryState.SKIPPED,
            reason=reason,
        )

    async def supersede(self, item_id: str) -> int:
        """Skip, as `superseded`, an item's waiting rows that publish it to a target a later
        row publishes it to as well (a correction planned the same target)."""
        d = t.deliveries
        newer = sa.alias(d, "newer")
        return await self._bulk_move(
            sa.and_(
                d.c.item_id == item_id,
                d.c.publishes.is_(True),
                d.c.state.in_([s.value for s in OPEN]),
                sa.exists().where(
                    newer.c.item_id == d.c.item_id,
                    newer.c.channel == d.c.channel,
                    newer.c.target == d.c.target,
                    newer.c.publishes.is_(True),
                    newer.c.id > d.c.id,
                ),
            ),
            DeliveryState.SKIPPED,
            reason="superseded",
        )

    async def delivered_targets(self, item_id: str, channel: str) -> list[str]:
        """Targets that got something of this item on `channel` (to retract from)."""
        async with self.store.read() as conn:
            rows = await conn.scalars(
                sa.select(t.deliveries.c.target)
                .where(
                    t.deliveries.c.item_id == item_id,
                    t.deliveries.c.channel == channel,
                    # unknown: an attempt a crash cut off may have reached it (no harm in a
                    # retraction of what a target never had; much in a missing one)
                    t.deliveries.c.state.in_(
                        [
                            DeliveryState.SENT.value,
                            DeliveryState.DELIVERED.value,
                            DeliveryState.UNKNOWN.value,
                        ]
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
        return await self.store.run(lambda conn: self._defer_quiet(conn, channel, until, now))

    async def claim(
        self, channel: str, worker_id: str, limit: int, *, quiet: bool = False
    ) -> list[Claimed]:
        """Atomically move up to `limit` due rows of `channel` to `sending` for this worker.

        Urgent and transactional rows come first. In quiet hours only rows that
        bypass them are taken.
        """
        return await self.store.run(
            lambda conn: self._claim(conn, channel, worker_id, limit, quiet, utcnow())
        )

    async def record(
        self, worker_id: str, outcomes: Iterable[Outcome], *, retracts: bool = False
    ) -> int:
        """Write the outcomes of this worker's attempts in one transaction.

        A row is only updated while it is still `sending` under this worker, so a
        row recovered from a worker presumed dead is never overwritten by it.
        `retracts`: the channel takes back what it sent (see _replan_retractions).
        """
        batch = list(outcomes)
        if not batch:
            return 0
        await self.store.run(
            lambda conn: self._record(conn, worker_id, batch, utcnow(), retracts=retracts)
        )
        return len(batch)

    async def cycle(
        self,
        worker_id: str,
        outcomes: list[Outcome],
        channel: str,
        want: int,
        *,
        quiet_until: datetime | None = None,
        retracts: bool = False,
    ) -> list[tuple[Claimed, Any]]:
        """A worker's turn, in one transaction: record outcomes, defer for quiet hours,
        claim up to `want` rows, and read their targets (see target_rows)."""

        def turn(conn: sa.Connection) -> list[tuple[Claimed, Any]]:
            now = utcnow()
            if outcomes:
                self._record(conn, worker_id, outcomes, now, retracts=retracts)
            if quiet_until is not None:
                self._defer_quiet(conn, channel, quiet_until, now)
            if want <= 0:
                return []
            claimed = self._claim(
                conn, channel, worker_id, want, quiet_until is not None, now, retracts
            )
            targets = target_rows(conn, [c.target for c in claimed])
            return [(c, targets.get(c.target)) for c in claimed]

        return await self.store.run(turn)

    def _claim(
        self,
        conn: sa.Connection,
        channel: str,
        worker_id: str,
        limit: int,
        quiet: bool,
        now: datetime,
        retracts: bool = False,
    ) -> list[Claimed]:
        sql = HotSql(conn)
        at = sql.ts(now)
        # the item's status comes with each row that publishes one, in the same query:
        # withdrawal is final, so such a row of a withdrawn or expired item is never
        # attempted, whatever path queued it (planning, a retry, staff's requeue)
        pick = (
            "SELECT deliveries.id, deliveries.state, items.status, items.revision, "
            "deliveries.reason FROM deliveries LEFT JOIN items "
            "ON deliveries.publishes AND items.id = deliveries.item_id "
            "WHERE deliveries.channel = ? AND "
            "deliveries.state IN ('queued', 'retrying', 'deferred') AND deliveries.due_at <= ?"
            + (" AND deliveries.bypass_quiet = ?" if quiet else "")
            + " ORDER BY deliveries.priority DESC, deliveries.due_at, deliveries.id LIMIT ?"
            + ("" if self.store.is_sqlite else " FOR UPDATE OF deliveries SKIP LOCKED")
        )
        args: list[Any] = [channel, at, *([True] if quiet else []), limit]
        picked = sql.execute(pick, args)
        if not picked:
            return []
        dead = [r for r in picked if r[2] in TAKEN_DOWN]
        if dead:
            self._skip_taken_down(sql, dead, at)
            if retracts and any(r[4] == INTERRUPTED for r in dead):
                self._replan_retractions(sql, [r[0] for r in dead if r[4] == INTERRUPTED])
            picked = [r for r in picked if r[2] not in TAKEN_DOWN]
            if not picked:
                return []
        ids = [r[0] for r in picked]
        rows = sql.execute(
            "UPDATE deliveries SET state = 'sending', claimed_by = ?, attempts = attempts + 1, "
            f"updated_at = ? WHERE id IN ({sql.marks(len(ids))}) "
            "RETURNING id, subject, channel, target, item_id, attempts, bypass_quiet",
            (worker_id, at, *ids),
        )
        detail = f"claimed by {worker_id}"
        sql.executemany(
            "INSERT INTO delivery_events (delivery_id, at, from_state, to_state, detail) "
            "VALUES (?, ?, ?, 'sending', ?)",
            [(r[0], at, r[1], detail) for r in picked],
        )
        order = {r[0]: n for n, r in enumerate(picked)}
        revision = {r[0]: r[3] for r in picked}
        claimed = [
            Claimed(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), revision[r[0]]) for r in rows
        ]
        claimed.sort(key=lambda c: order[c.id])
        return claimed

    @staticmethod
    def _skip_taken_down(sql: HotSql, rows: Sequence[Any], at: Any) -> None:
        """Rows that would publish a withdrawn or expired item are not attempted, in the
        claim's transaction: `skipped` with the item's status as the reason — or, for a row
        whose last attempt was cut off by a crash (it may have reached its target), `unknown`,
        so that the target is among those the take-down reaches (delivered_targets)."""
        sql.executemany(
            "UPDATE deliveries SET state = ?, reason = ?, claimed_by = NULL, "
            "updated_at = ? WHERE id = ?",
            [
                ("unknown", INTERRUPTED, at, r[0])
                if r[4] == INTERRUPTED
                else ("skipped", r[2], at, r[0])
                for r in rows
            ],
        )
        sql.executemany(
            "INSERT INTO delivery_events (delivery_id, at, from_state, to_state, detail) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (r[0], at, r[1], "unknown", f"{r[2]}; the attempt a crash cut off may have arrived")
                if r[4] == INTERRUPTED
                else (r[0], at, r[1], "skipped", r[2])
                for r in rows
            ],
        )

    def _record(
        self,
        conn: sa.Connection,
        worker_id: str,
        outcomes: list[Outcome],
        now: datetime,
        *,
        retracts: bool = False,
    ) -> None:
        """One UPDATE per outcome state and one INSERT of their events, both executemany.

        This runs once per message, so it speaks the driver's SQL directly (no
        statement building per call). A row is only touched while it is `sending`
        under this worker; the events are written for exactly the rows moved.
        """
        sql = HotSql(conn)
        at = sql.ts(now)
        groups: dict[DeliveryState, list[Outcome]] = {}
        for o in outcomes:
            groups.setdefault(o.state, []).append(o)
        for state, group in groups.items():
            sets = [
                "state = ?",
                "provider_id = COALESCE(?, provider_id)",
                "units = COALESCE(?, units)",
                "reason = ?",
                "last_error = COALESCE(?, last_error)",
                "claimed_by = NULL",
                "updated_at = ?",
            ]
            if state in (DeliveryState.SENT, DeliveryState.DELIVERED):
                sets.append("sent_at = COALESCE(sent_at, ?)")
            if state is DeliveryState.DELIVERED:
                sets.append("delivered_at = COALESCE(delivered_at, ?)")
            if state in (DeliveryState.RETRYING, DeliveryState.DEFERRED):
                sets.append("due_at = ?")
            if state is DeliveryState.DEFERRED:
                # an adapter's deferral (DeferDelivery) sent nothing: the claim's attempt
                # is given back, so a long hold never exhausts max_attempts
                sets.append("attempts = attempts - 1")
            stmt = (
                f"UPDATE deliveries SET {', '.join(sets)} "
                "WHERE id = ? AND state = 'sending' AND claimed_by = ?"
            )
            n_times = sum(1 for x in sets if "?" in x) - 6  # sent_at / delivered_at / due_at
            params = []
            for o in group:
                extra: list[Any] = []
                if state in (DeliveryState.SENT, DeliveryState.DELIVERED):
                    extra.append(at)
                if state is DeliveryState.DELIVERED:
                    extra.append(at)
                if state in (DeliveryState.RETRYING, DeliveryState.DEFERRED):
                    extra.append(sql.ts(o.due_at or now))
                assert len(extra) == n_times
                params.append(
                    (
                        state.value,
                        o.provider_id,
                        o.units,
                        o.reason,
                        o.error,
                        at,
                        *extra,
                        o.delivery_id,
                        worker_id,
                    )
                )
            changed = sql.executemany(stmt, params)
            # events for the rows this update really moved; when every row moved (the
            # usual case) the count says so, otherwise ask which (now at `state`, at `at`)
            moved: set[int] = set()
            if changed == len(group):
                moved = {o.delivery_id for o in group}
            for chunk in _chunks([] if moved else [o.delivery_id for o in group], 500):
                moved.update(
                    r[0]
                    for r in sql.execute(
                        f"SELECT id FROM deliveries WHERE id IN ({sql.marks(len(chunk))}) "
                        "AND state = ? AND updated_at = ?",
                        (*chunk, state.value, at),
                    )
                )
            events = []
            for o in group:
                if o.delivery_id not in moved:
                    continue
                detail = o.reason or ""
                if o.error:
                    detail = f"{detail}: {o.error}" if detail else o.error
                if state is DeliveryState.DEFERRED and o.due_at is not None:
                    detail = f"{detail} until {o.due_at.isoformat()}".strip()
                events.append((o.delivery_id, at, "sending", state.value, detail[:2000] or None))
            if events:
                sql.executemany(
                    "INSERT INTO delivery_events (delivery_id, at, from_state, to_state, "
                    "detail) VALUES (?, ?, ?, ?, ?)",
                    events,
                )
            if retracts and state in (DeliveryState.SENT, DeliveryState.DELIVERED) and moved:
                self._replan_retractions(sql, sorted(moved))

    @staticmethod
    def _replan_retractions(sql: HotSql, delivery_ids: list[int]) -> None:
        """An attempt that was in flight when its item was taken down has reached its
        target after the take-down was planned, so that plan left this target out: plan
        the take-down again (planning is idempotent), in the transaction that records
        the attempt. The target then gets its retraction, after its publication."""
        for chunk in _chunks(delivery_ids, 500):
            sql.execute(
                "UPDATE item_events SET planned_at = NULL "
                "WHERE planned_at IS NOT NULL AND kind IN ('withdrawn', 'expired') "
                "AND item_id IN (SELECT item_id FROM deliveries "
                f"WHERE id IN ({sql.marks(len(chunk))}) AND publishes)",
                tuple(chunk),
            )

    def _defer_quiet(
        self, conn: sa.Connection, channel: str, until: datetime, now: datetime
    ) -> int:
        d = t.deliveries
        select = sa.select(d.c.id, d.c.state).where(
            d.c.channel == channel,
            d.c.state.in_([DeliveryState.QUEUED.value, DeliveryState.RETRYING.value]),
            d.c.bypass_quiet.is_(False),
            d.c.due_at <= now,
        )
        if not self.store.is_sqlite:
            select = select.with_for_update(skip_locked=True)
        rows = conn.execute(select).all()
        detail = f"quiet hours until {until.isoformat()}"
        for chunk in _chunks(rows, 500):
            conn.execute(
                d.update()
                .where(d.c.id.in_([r.id for r in chunk]))
                .values(
                    state=DeliveryState.DEFERRED.value,
                    reason="quiet_hours",
                    due_at=until,
                    updated_at=now,
                )
            )
            conn.execute(
                t.delivery_events.insert(),
                [
                    {
                        "delivery_id": r.id,
                        "at": now,
                        "from_state": r.state,
                        "to_state": DeliveryState.DEFERRED.value,
                        "detail": detail,
                    }
                    for r in chunk
                ],
            )
        return len(rows)

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

    async def heartbeat(self, worker_id: str, pid: int | None = None) -> None:
        """Say this worker is alive. A worker whose row another worker removed (it missed
        beats while the database was away) registers again, so its claims stay its own."""
        async with self.store.write() as conn:
            result = await conn.execute(
                t.workers.update().where(t.workers.c.id == worker_id).values(heartbeat_at=utcnow())
            )
            if result.rowcount == 0 and pid is not None:
                now = utcnow()
                await conn.execute(
                    t.workers.insert().values(
                        id=worker_id,
                        host=socket.gethostname()[:255],
                        pid=pid,
                        started_at=now,
                        heartbeat_at=now,
                    )
                )

    async def requeue_unattempted(
        self, worker_id: str, in_flight: Iterable[int], older_than: datetime
    ) -> int:
        """Rows this worker holds in `sending` that no attempt of its own has (a turn that
        claimed them failed after its commit, so they were never handed to a sender):
        nothing was attempted, so they are queued again, on any channel."""
        d = t.deliveries
        keep = set(in_flight)
        async with self.store.read() as conn:
            held = (
                await conn.scalars(
                    sa.select(d.c.id).where(
                        d.c.state == DeliveryState.SENDING.value,
                        d.c.claimed_by == worker_id,
                        d.c.updated_at < older_than,
                    )
                )
            ).all()
        orphans = [i for i in held if i not in keep]
        if not orphans:
            return 0
        return await self._bulk_move(
            sa.and_(
                d.c.id.in_(orphans),
                d.c.state == DeliveryState.SENDING.value,
                d.c.claimed_by == worker_id,
            ),
            DeliveryState.QUEUED,
            reason=None,
            detail="claimed by a turn that failed; never attempted",
            undo_claim=True,
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
                            reason=INTERRUPTED,
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
            unknown = [r.id for r in rows if not repeatable.get(r.channel, False)]
            for chunk in _chunks(unknown, 500):
                # a cut-off attempt may have put out an item taken down since: its take-down
                # (planned without this target) is planned again, now counting it
                await conn.execute(
                    t.item_events.update()
                    .where(
                        t.item_events.c.planned_at.is_not(None),
                        t.item_events.c.kind.in_([EventKind.WITHDRAWN, EventKind.EXPIRED]),
                        t.item_events.c.item_id.in_(
                            sa.select(d.c.item_id).where(d.c.id.in_(chunk), d.c.publishes.is_(True))
                        ),
                    )
                    .values(planned_at=None)
                )
            await conn.execute(
                t.workers.delete().where(t.workers.c.heartbeat_at < now - stale_after)
            )
        return counts

    # -- receipts (delivery reports) -------------------------------------------------

    async def record_receipt(
        self,
        delivery_id: int,
        channel: str,
        state: DeliveryState,
        *,
        reason: str | None = None,
        detail: str,
        wait_seconds: float = 10.0,
    ) -> ReceiptResult:
        """A provider's report that a row reached its target (DELIVERED) or not (FAILED).

        Moves a `sent` row (or an `unknown` one: the report settles what a crash left
        open) and appends its event, in one transaction. A report for a row already
        final changes nothing (providers repeat reports). A report can overtake the
        worker's own record of the attempt: while the row is still `sending` this waits,
        up to `wait_seconds`, for the worker to write it.
        """
        assert state in (DeliveryState.DELIVERED, DeliveryState.FAILED)
        deadline = asyncio.get_running_loop().time() + wait_seconds
        pause = 0.02
        lock = "" if self.store.is_sqlite else " FOR UPDATE"

        def apply(conn: sa.Connection) -> DeliveryState | None:
            """The row's state before, moved to `state` when it was waiting for a report."""
            sql = HotSql(conn)
            found = sql.execute(
                f"SELECT state FROM deliveries WHERE id = ? AND channel = ?{lock}",
                (delivery_id, channel),
            )
            if not found:
                return None
            current = DeliveryState(found[0][0])
            if current in (DeliveryState.SENT, DeliveryState.UNKNOWN):
                at = sql.ts(utcnow())
                if state is DeliveryState.DELIVERED:
                    sets, args = "delivered_at = ?, reason = NULL", [at]
                else:
                    sets, args = "reason = ?", [reason or "undelivered"]
                sql.execute(
                    f"UPDATE deliveries SET state = ?, updated_at = ?, {sets} "
                    "WHERE id = ? AND state = ?",
                    (state.value, at, *args, delivery_id, current.value),
                )
                sql.execute(
                    "INSERT INTO delivery_events (delivery_id, at, from_state, to_state, detail) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (delivery_id, at, current.value, state.value, detail[:2000]),
                )
            return current

        while True:
            # through SqlStore.run, as the workers' turns: on SQLite a report never waits
            # in SQLite's busy handler (long sleeps) while a worker holds the write lock
            current = await self.store.run(apply)
            if current is None:
                return ReceiptResult.NOT_FOUND
            if current in (DeliveryState.SENT, DeliveryState.UNKNOWN):
                return ReceiptResult.APPLIED
            if current is not DeliveryState.SENDING:
                return ReceiptResult.DUPLICATE if current in FINAL else ReceiptResult.IGNORED
            if asyncio.get_running_loop().time() >= deadline:
                return ReceiptResult.IN_FLIGHT
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    # -- staff ------------------------------------------------------------------------

    async def retry_item(self, item_id: str) -> int:
        """Requeue an item's failed and unknown rows (staff's decision); how many."""
        return (await self.retry(item_id)).requeued

    async def retry(self, item_id: str) -> RetryResult:
        """Requeue an item's failed and unknown rows (staff's decision); attempts start again.

        Only rows whose subject is still live: once the item is withdrawn or expired,
        the rows that would publish it stay as they are (withdrawal is final) and are
        counted as left, with the item's status as the reason; its retractions may be
        retried.
        """
        d = t.deliveries
        retryable, status = await self._staff_retryable(item_id)
        left = 0
        if status in TAKEN_DOWN:
            async with self.store.read() as conn:
                left = int(
                    await conn.scalar(
                        sa.select(sa.func.count()).where(retryable, d.c.publishes.is_(True))
                    )
                    or 0
                )
            retryable = sa.and_(retryable, d.c.publishes.is_(False))
        requeued = await self._bulk_move(
            retryable,
            DeliveryState.QUEUED,
            reason=None,
            reset_attempts=True,
            detail="retry requested by staff",
            # staff's click waits for a row another transaction holds, rather than
            # silently leaving it out
            skip_locked=False,
        )
        return RetryResult(requeued, left, str(status) if left else None)

    async def retryable(self, item_id: str) -> int:
        """How many rows `retry` would requeue now (the staff UI offers it only then)."""
        where, status = await self._staff_retryable(item_id)
        if status in TAKEN_DOWN:
            where = sa.and_(where, t.deliveries.c.publishes.is_(False))
        async with self.store.read() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).where(where)) or 0)

    async def _staff_retryable(self, item_id: str) -> tuple[sa.ColumnElement[bool], Any]:
        """The item's rows staff may requeue (failed, unknown), and the item's status."""
        d = t.deliveries
        async with self.store.read() as conn:
            status = await conn.scalar(sa.select(t.items.c.status).where(t.items.c.id == item_id))
        where = sa.and_(
            d.c.item_id == item_id, d.c.state.in_([s.value for s in RETRYABLE_BY_STAFF])
        )
        return where, status

    async def counts(self, item_id: str) -> dict[str, dict[str, int]]:
        d = t.deliveries
        async with self.store.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(d.c.channel, d.c.state, sa.func.count())
                    .where(item_rows(item_id))
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
        undo_claim: bool = False,
        skip_locked: bool = True,
    ) -> int:
        now = utcnow()
        d = t.deliveries
        moved = 0
        async with self.store.write() as conn:
            select = sa.select(d.c.id, d.c.state).where(where)
            if not self.store.is_sqlite:
                select = select.with_for_update(skip_locked=skip_locked)
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
                if undo_claim:  # the claim's attempt was never made: give it back
                    values["attempts"] = d.c.attempts - 1
                    values["claimed_by"] = None
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


def item_rows(item_id: str) -> sa.ColumnElement[bool]:
    """The ledger rows of an item: its events' rows, and the rows of the digests listing it."""
    d, di = t.deliveries, t.digest_items
    return sa.or_(
        d.c.item_id == item_id,
        d.c.subject.in_(sa.select(di.c.subject).where(di.c.item_id == item_id)),
    )


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def target_rows(conn: sa.Connection, keys: list[str]) -> dict[str, Any]:
    """The stored rows behind ledger targets ("r:<id>" recipients with their suppression
    reason, "e:<id>" endpoints, "m:<id>" transactional messages), one query per kind.
    Erased recipients (and messages) are absent."""
    sql = HotSql(conn)
    rids = [int(k[2:]) for k in keys if k.startswith("r:")]
    eids = [int(k[2:]) for k in keys if k.startswith("e:")]
    mids = [int(k[2:]) for k in keys if k.startswith("m:")]
    out: dict[str, Any] = {}
    if mids:  # transactional messages carry their (sealed) address
        for m in conn.execute(
            sa.select(t.messages.c.id, t.messages.c.address_enc).where(
                t.messages.c.id.in_(sa.bindparam("ids", expanding=True))
            ),
            {"ids": mids},
        ):
            out[f"m:{m.id}"] = m
    if rids:
        for r in sql.execute(
            "SELECT r.id, r.address_enc, r.status, s.reason, r.link_nonce FROM recipients r "
            "LEFT JOIN suppressions s ON s.channel = r.channel "
            f"AND s.address_hash = r.address_hash WHERE r.id IN ({sql.marks(len(rids))})",
            rids,
        ):
            out[f"r:{r[0]}"] = RecipientRow(*r)
    if eids:
        for e in conn.execute(
            sa.select(t.endpoints).where(t.endpoints.c.id.in_(sa.bindparam("ids", expanding=True))),
            {"ids": eids},
        ):
            out[f"e:{e.id}"] = e
    return out


class RecipientRow(NamedTuple):
    """A recipient behind a ledger target, with its suppression reason (if any)."""

    id: int
    address_enc: str
    status: str
    reason: str | None
    link_nonce: str


class HotSql:
    """Driver-level SQL for the per-message path, on either backend.

    Statements are written once with `?` placeholders; on PostgreSQL (asyncpg)
    they become $1, $2 …. Times are naive UTC, as the store keeps them: the text
    form SQLAlchemy uses on SQLite, a datetime for asyncpg. `execute` and
    `executemany` go straight to the driver's cursor inside the connection's
    transaction: no statement or result objects are built per call, which is most
    of what a turn costs beyond SQLite's own work.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self.pg = conn.dialect.name == "postgresql"
        self.conn = conn
        self._cursor: Any = None

    @property
    def cursor(self) -> Any:
        if self._cursor is None:
            self._cursor = self.conn.connection.cursor()
        return self._cursor

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement; its rows (tuples), if it returns any."""
        cur = self.cursor
        cur.execute(self.q(statement), tuple(params))
        return list(cur.fetchall()) if cur.description else []

    def executemany(self, statement: str, seq: Sequence[Sequence[Any]]) -> int:
        """Run one statement for each parameter tuple; how many rows it changed (or -1)."""
        cur = self.cursor
        cur.executemany(self.q(statement), seq)
        return int(cur.rowcount)

    def q(self, statement: str) -> str:
        if not self.pg:
            return statement
        parts = statement.split("?")
        return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))

    def ts(self, when: datetime) -> Any:
        naive = when.astimezone(UTC).replace(tzinfo=None)
        return naive if self.pg else naive.strftime("%Y-%m-%d %H:%M:%S.%f")

    @staticmethod
    def marks(n: int) -> str:
        return ", ".join("?" * n)
