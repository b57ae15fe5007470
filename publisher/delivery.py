"""Delivery workers: claim due ledger rows, render, make one attempt, record the outcome.

Exactly once, through crashes: a row is `sending` from its claim until its
outcome is recorded, and a worker holds at most `concurrency` such rows per
channel (a slot is freed only when the outcome is written, not when the request
returns). After a crash, a channel whose attempts may be repeated requeues them;
any other marks them `unknown` — never more rows than the concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import time
from collections import OrderedDict, deque
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from channels import load_adapter_class
from channels.base import (
    AdapterContext,
    ChannelAdapter,
    DeferDelivery,
    Limits,
    NotConfigured,
    PermanentDeliveryError,
    Receipt,
    ReceiptState,
    Subject,
    Target,
    TransientDeliveryError,
)
from publisher.addresses import AddressBox
from publisher.atrest import ENDPOINT_SECRET, FieldBox, open_settings
from publisher.config import CHANNEL_NAMES, ChannelConfig, Config, QuietHours
from publisher.digests import DIGEST_KIND, Digests
from publisher.errors import ConfigError, ItemNotFound
from publisher.fanout import FanOut
from publisher.ledger import Claimed, DeliveryState, Ledger, Outcome, new_worker_id
from publisher.metrics import METRICS
from publisher.models import Disclosure, ItemStatus
from publisher.recipients import Recipients, RecipientStatus
from publisher.store import schema as t
from publisher.store.sql import EventKind, SqlStore, utcnow
from publisher.subjects import attachment_links, content_subject

log = logging.getLogger("publisher.delivery")

#: events that put an item out (as opposed to taking it back)
LIVE_EVENTS = frozenset({EventKind.PUBLISHED, EventKind.CORRECTED})

#: how long a turn waits for more outcomes to write together
GROUP_COMMIT_SECONDS = 0.01
#: after a failed turn, the next one waits this long, doubling up to the cap
TURN_BACKOFF_SECONDS = 0.05
TURN_BACKOFF_CAP_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    cap_seconds: float

    def next_due(self, attempts: int, now: datetime, retry_after: float | None) -> datetime | None:
        """When to try again after `attempts` attempts, or None when they are used up.

        Exponential backoff with full jitter (half fixed, half random), never
        sooner than the provider's Retry-After.
        """
        if attempts >= self.max_attempts:
            return None
        delay = min(self.cap_seconds, self.base_seconds * 2 ** (attempts - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap_seconds))
        return now + timedelta(seconds=delay)


class TokenBucket:
    """Starts at most `rate` attempts per second (burst of one second's worth)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


def quiet_window_end(quiet: QuietHours | None, now: datetime, tz: Any) -> datetime | None:
    """If `now` is inside the nightly window, when it ends (UTC); else None."""
    if quiet is None:
        return None
    local = now.astimezone(tz)
    start = dtime.fromisoformat(quiet.start)
    end = dtime.fromisoformat(quiet.end)
    t_now = local.time()
    if start == end:
        return None
    if start < end:
        inside = start <= t_now < end
        end_day = local.date()
    else:  # crosses midnight
        inside = t_now >= start or t_now < end
        end_day = local.date() if t_now < end else local.date() + timedelta(days=1)
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


@dataclass
class Lane:
    """A share of a channel's slots with its own claim-and-record turns.

    With two lanes (PostgreSQL), one lane's attempts keep the far end busy while
    the other waits for its database turn. Slots across lanes add up to the
    concurrency.
    """

    capacity: int
    slots: int
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    #: outcomes of finished attempts, written at the next turn
    outcomes: list[Outcome] = field(default_factory=list)
    #: senders waiting for a claimed row: one long-lived coroutine per slot, handed rows
    #: through a future each (cheaper than a task per attempt)
    idle: deque[asyncio.Future[tuple[Claimed, Any]]] = field(default_factory=deque)
    #: its last turn failed (the worker is degraded until it succeeds again)
    failing: bool = False

    @property
    def flush_at(self) -> int:
        """Outcomes worth a turn of their own."""
        return max(1, self.capacity // 2)


@dataclass
class ChannelRuntime:
    name: str
    adapter: ChannelAdapter
    limits: Limits
    config: ChannelConfig
    retry: RetryPolicy
    bucket: TokenBucket | None
    lanes: list[Lane] = field(default_factory=list)

    def wake(self) -> None:
        for lane in self.lanes:
            lane.wakeup.set()


def make_lanes(concurrency: int, count: int) -> list[Lane]:
    count = max(1, min(count, concurrency))
    sizes = [concurrency // count + (1 if i < concurrency % count else 0) for i in range(count)]
    return [Lane(capacity=n, slots=n) for n in sizes]


def effective_limits(adapter_limits: Limits, cfg: ChannelConfig) -> Limits:
    return Limits(
        concurrency=cfg.concurrency or adapter_limits.concurrency,
        per_second=cfg.per_second if cfg.per_second is not None else adapter_limits.per_second,
        receipts=adapter_limits.receipts,
        repeatable=cfg.repeatable if cfg.repeatable is not None else adapter_limits.repeatable,
        retracts=adapter_limits.retracts,
        subscribers=adapter_limits.subscribers,
    )


def channel_settings(config: Config, name: str, cls: type[ChannelAdapter]) -> Any:
    """Channel `name`'s settings validated by its adapter; a ConfigError of one line
    naming the key (channels.<name>.settings.<key>) and where the value came from."""
    try:
        return cls.Settings.model_validate(config.channels.get(name).settings)
    except ValidationError as exc:
        raise ConfigError(
            config.explain(exc, ("channels", name, "settings"), cls.Settings)
        ) from None
    except (ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"channels.{name}.settings: {first}") from None


def check_channels(config: Config) -> None:
    """Every enabled channel's adapter and settings, validated without starting anything:
    `serve`, `worker` and `db upgrade` refuse a bad one before they open or bind anything."""
    for name in CHANNEL_NAMES:
        cfg = config.channels.get(name)
        if not cfg.enabled:
            continue
        try:
            cls = load_adapter_class(name, cfg.adapter)
        except LookupError as exc:
            if cfg.adapter:
                raise ConfigError(f"channels.{name}.adapter: {exc}") from None
            continue  # no built-in adapter: its deliveries stay queued (start says so)
        channel_settings(config, name, cls)


class DeliveryWorker:
    """One worker process's engine: planner, one loop per channel, heartbeat."""

    def __init__(self, store: SqlStore, *, worker_id: str | None = None) -> None:
        self.store = store
        self.config: Config = store.config
        self.ledger = Ledger(store)
        self.fanout = FanOut(store, self.ledger)
        self.digests = Digests(store, self.ledger)
        self.worker_id = worker_id or new_worker_id()
        self.box = AddressBox(self.config.data_key())
        self.secrets = FieldBox(self.config.data_key(), ENDPOINT_SECRET)
        self.channels: dict[str, ChannelRuntime] = {}
        self._subjects: OrderedDict[str, asyncio.Future[Subject]] = OrderedDict()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stack = AsyncExitStack()
        self._senders: list[asyncio.Task[None]] = []
        #: rows handed to this worker's senders whose outcome is not yet written: what
        #: the worker holds in `sending` and knows about (see _heal_claims)
        self._in_flight: set[int] = set()
        #: consecutive failed turns per lane, and when the first of them failed
        self.failing_since: float | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._check_data_key()
            await self._load_channels()
            await self.fanout.ensure_endpoints()
            await self.ledger.register_worker(self.worker_id, os.getpid())
            await self._recover()
        except BaseException:
            # the adapters started so far (HTTP sessions, SMTP pools) close with the failure
            await self._stack.aclose()
            raise
        self._tasks = [
            asyncio.create_task(self._planner_loop(), name="planner"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
        ]
        for runtime in self.channels.values():
            for n, lane in enumerate(runtime.lanes):
                self._tasks.append(
                    asyncio.create_task(
                        self._channel_loop(runtime, lane), name=f"deliver-{runtime.name}-{n}"
                    )
                )
                self._senders += [
                    asyncio.create_task(
                        self._sender(runtime, lane, self._idle_sender(lane)),
                        name=f"send-{runtime.name}",
                    )
                    for _ in range(lane.capacity)
                ]

    async def _check_data_key(self) -> None:
        """Refuse to start with a key that cannot read the stored addresses (ConfigError),
        rather than fail every delivery to a resident."""
        async with self.store.read() as conn:
            sample = await conn.scalar(sa.select(t.recipients.c.address_enc).limit(1))
        if sample is not None:
            self.box.open(sample)

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for rt in self.channels.values():
            rt.wake()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # idle senders end now; those mid-attempt finish it and then end
        for rt in self.channels.values():
            for lane in rt.lanes:
                while lane.idle:
                    lane.idle.popleft().cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        for rt in self.channels.values():  # write what finished before the stop
            for lane in rt.lanes:
                if lane.outcomes:
                    await self.ledger.record(
                        self.worker_id, lane.outcomes, retracts=rt.limits.retracts
                    )
                    lane.outcomes = []
        await self.ledger.unregister_worker(self.worker_id)
        await self._stack.aclose()

    def wake(self) -> None:
        """New work may be due (an approval, a retry): look now instead of at the next poll."""
        self._wake.set()

    async def _load_channels(self) -> None:
        for name in CHANNEL_NAMES:
            cfg = self.config.channels.get(name)
            if not cfg.enabled:
                continue
            try:
                cls = load_adapter_class(name, cfg.adapter)
            except LookupError as exc:
                if cfg.adapter:
                    raise ConfigError(f"channels.{name}.adapter: {exc}") from None
                log.warning("%s; its deliveries stay queued", exc)
                continue
            settings = channel_settings(self.config, name, cls)
            adapter = cls(settings, self.config.site, AdapterContext(self.config, self.store))
            try:
                await adapter.start(self._stack)
            except NotConfigured as exc:
                log.warning("channel %s: %s; its deliveries stay queued", name, exc)
                continue
            limits = effective_limits(cls.limits, cfg)
            self.channels[name] = ChannelRuntime(
                name=name,
                adapter=adapter,
                limits=limits,
                config=cfg,
                retry=RetryPolicy(cfg.max_attempts, cfg.retry_base_seconds, cfg.retry_cap_seconds),
                bucket=TokenBucket(limits.per_second) if limits.per_second else None,
                # on PostgreSQL a turn awaits the server, and a second lane keeps
                # sending meanwhile; SQLite turns run inline, where one lane is cheaper
                lanes=make_lanes(limits.concurrency, 1 if self.store.is_sqlite else 2),
            )

    # -- loops -----------------------------------------------------------------------

    async def _planner_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if await self.fanout.plan_pending() + await self.digests.plan_due():
                    for rt in self.channels.values():
                        rt.wake()
            except Exception:
                log.exception("planning failed; will try again")
            await self._idle(self.config.delivery.poll_seconds)

    async def _heartbeat_loop(self) -> None:
        beat = self.config.delivery.heartbeat_seconds
        while not self._stop.is_set():
            await asyncio.sleep(beat)
            try:
                await self.ledger.heartbeat(self.worker_id, os.getpid())
                await self._recover()
                await self._heal_claims()
            except Exception:
                log.exception("heartbeat failed")

    async def _heal_claims(self) -> None:
        """Rows this worker holds in `sending` that none of its senders has: a turn that
        claimed them committed, then failed before handing them out (the connection
        dropped as it answered). They were never attempted: queued again."""
        horizon = utcnow() - timedelta(seconds=2 * self.config.delivery.heartbeat_seconds)
        n = await self.ledger.requeue_unattempted(self.worker_id, self._in_flight, horizon)
        if n:
            log.warning("requeued %d rows claimed by a failed turn and never attempted", n)

    @property
    def outcomes_waiting(self) -> int:
        """Finished attempts whose outcome is not yet written (kept through failed turns)."""
        return sum(len(lane.outcomes) for rt in self.channels.values() for lane in rt.lanes)

    async def _recover(self) -> None:
        stale = timedelta(seconds=3 * self.config.delivery.heartbeat_seconds)
        repeatable = {n: rt.limits.repeatable for n, rt in self.channels.items()}
        counts = await self.ledger.recover(stale, repeatable)
        if any(counts.values()):
            log.warning(
                "recovered deliveries left by a stopped worker: %d requeued, %d unknown",
                counts["requeued"],
                counts["unknown"],
            )

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _channel_loop(self, rt: ChannelRuntime, lane: Lane) -> None:
        """Turn after turn: record finished attempts and claim replacements in one transaction.

        A slot is taken at claim and given back only once the attempt's outcome is
        written, so rows in `sending` never exceed the channel's concurrency. A
        turn waits briefly for outcomes to gather (group commit) but never while
        slots are free and rows may be due.
        """
        poll = self.config.delivery.poll_seconds
        tz = self.config.site.tz
        low_water = max(1, lane.capacity // 2)
        next_quiet_check = 0.0
        quiet_until: datetime | None = None  # kept between checks: no claim ignores the window
        idle = False  # the last claim found nothing due
        backoff = TURN_BACKOFF_SECONDS
        while not self._stop.is_set():
            try:
                pending = lane.outcomes
                if not pending and (lane.slots < low_water or idle):
                    lane.wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lane.wakeup.wait(), timeout=poll)
                    idle = False
                    continue
                if pending and len(pending) < lane.flush_at and lane.slots < low_water:
                    # group commit: let more attempts finish, to write them together
                    lane.wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lane.wakeup.wait(), timeout=GROUP_COMMIT_SECONDS)
                # outcomes stay in lane.outcomes until the turn that writes them commits: a
                # failed turn (the database restarted, the disk full …) loses none, and
                # their slots come back only once they are durable
                batch = list(lane.outcomes)
                free = lane.slots + len(batch)
                want = min(free, self.config.delivery.batch_size) if free >= low_water else 0
                now = utcnow()
                if time.monotonic() >= next_quiet_check:
                    quiet_until = quiet_window_end(rt.config.quiet_hours, now, tz)
                    next_quiet_check = time.monotonic() + (poll if quiet_until else 0)
                rows = await self.ledger.cycle(
                    self.worker_id,
                    batch,
                    rt.name,
                    want,
                    quiet_until=quiet_until,
                    retracts=rt.limits.retracts,
                )
                # written: outcomes that arrived during the turn stay for the next one
                del lane.outcomes[: len(batch)]
                for outcome in batch:
                    self._in_flight.discard(outcome.delivery_id)
                self._turn_succeeded(lane)
                backoff = TURN_BACKOFF_SECONDS
                lane.slots = free - len(rows)
                idle = want > 0 and not rows
                if rows:
                    METRICS.queue_claimed(rt.name, len(rows))
                for row, stored in rows:
                    # never more rows than free slots, and every free slot's sender is
                    # idle: it registered again as it handed in its outcome
                    self._in_flight.add(row.id)
                    lane.idle.popleft().set_result((row, stored))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # nothing is lost: the outcomes are still in lane.outcomes and their slots
                # still taken; the next turn (on a fresh connection) writes them
                self._turn_failed(lane, rt.name, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, TURN_BACKOFF_CAP_SECONDS)

    def _turn_failed(self, lane: Lane, channel: str, exc: Exception, backoff: float) -> None:
        first = not lane.failing
        lane.failing = True
        if self.failing_since is None:
            self.failing_since = time.time()
        METRICS.turn_failed(channel)
        if first:
            log.exception(
                "a delivery turn for %s failed; %d outcomes kept", channel, len(lane.outcomes)
            )
        else:
            log.warning("a delivery turn for %s failed again (%s); next try in %.2fs",
                        channel, type(exc).__name__, backoff)  # fmt: skip
        METRICS.outcomes_waiting.set(self.outcomes_waiting)

    def _turn_succeeded(self, lane: Lane) -> None:
        METRICS.last_turn.set(time.time())
        if lane.failing:
            lane.failing = False
            if not any(ln.failing for rt in self.channels.values() for ln in rt.lanes):
                log.info("delivery turns succeed again")
                self.failing_since = None
            METRICS.outcomes_waiting.set(self.outcomes_waiting)

    # -- one attempt ---------------------------------------------------------------------

    @staticmethod
    def _idle_sender(lane: Lane) -> asyncio.Future[tuple[Claimed, Any]]:
        """Register a sender as idle; a turn hands it a row through the future."""
        handed: asyncio.Future[tuple[Claimed, Any]] = asyncio.get_running_loop().create_future()
        lane.idle.append(handed)
        return handed

    async def _sender(
        self,
        rt: ChannelRuntime,
        lane: Lane,
        handed: asyncio.Future[tuple[Claimed, Any]],
    ) -> None:
        """One slot of a lane: wait for a claimed row, make its attempt, again.

        It is registered idle before it first runs, and again in the same step that
        hands in an outcome, so a turn always finds a sender for each free slot.
        """
        while True:
            row, stored = await handed
            # _attempt hands in the outcome as its last step: registering right after it
            # happens before the loop runs anything else
            await self._attempt(rt, lane, row, stored)
            if self._stop.is_set():
                return
            handed = self._idle_sender(lane)

    async def _attempt(self, rt: ChannelRuntime, lane: Lane, row: Claimed, stored: Any) -> None:
        """One attempt for a claimed row (`stored`: its recipient or endpoint row); its
        outcome, whatever happens short of cancellation, is handed in for the next turn."""
        started = time.monotonic()
        try:
            # the target is read here, inside the guard: an address that cannot be
            # decrypted fails this attempt, not the turn that claimed it
            outcome = await self._try(rt, row, self._target(row, stored))
        except asyncio.CancelledError:
            # shutting down mid-attempt: leave the row in `sending` for recovery
            raise
        except Exception as exc:  # a bug in an adapter must not lose the row
            log.exception("adapter %s raised unexpectedly", rt.name)
            outcome = self._transient(rt, row, f"internal error: {exc!r}", None)
        METRICS.observe_attempt(rt.name, outcome.state.value, time.monotonic() - started)
        lane.outcomes.append(outcome)
        # wake the lane for the first outcome (to start a group) and when a group is
        # full, not for each one: a wake-up costs more than a message
        if len(lane.outcomes) == 1 or len(lane.outcomes) >= lane.flush_at:
            lane.wakeup.set()

    async def _try(self, rt: ChannelRuntime, row: Claimed, target: Target | str | None) -> Outcome:
        if target is None:
            return Outcome(row.id, DeliveryState.SKIPPED, reason="erased")
        if isinstance(target, str):  # a reason not to send
            return Outcome(row.id, DeliveryState.SKIPPED, reason=target)
        # a row that publishes an item was claimed only while the item was live (the
        # claim skips it otherwise, see Ledger._claim), with the item's live revision
        subject = await self._subject(row.subject, row.revision)
        if subject.kind == DIGEST_KIND:
            # a digest lists several items, and the subject may have been loaded before
            # one of them was taken down: list only what is live as this attempt starts
            subject = await self._live_digest(subject)
            if not subject.items:
                # every item it listed was withdrawn after planning: nothing left to tell
                return Outcome(row.id, DeliveryState.SKIPPED, reason="withdrawn")
        try:
            rendered = rt.adapter.render(subject, target)
        except PermanentDeliveryError as exc:
            return Outcome(row.id, DeliveryState.FAILED, reason=exc.reason, error=str(exc))
        if rt.bucket is not None:
            await rt.bucket.take()
        try:
            receipt: Receipt = await rt.adapter.deliver(rendered, target, delivery_id=str(row.id))
        except PermanentDeliveryError as exc:
            if exc.reason == "bounced":  # a hard bounce counts against the address
                await self._bounced(rt, row)
            return Outcome(
                row.id,
                DeliveryState.FAILED,
                reason=exc.reason,
                error=str(exc),
                units=rendered.units,
            )
        except TransientDeliveryError as exc:
            return self._transient(rt, row, str(exc), exc.retry_after)
        except DeferDelivery as exc:
            # nothing went out: held until exc.until, and the attempt is given back
            return Outcome(
                row.id,
                DeliveryState.DEFERRED,
                reason=exc.reason,
                due_at=exc.until,
                units=rendered.units,
            )
        state = (
            DeliveryState.DELIVERED
            if receipt.state is ReceiptState.DELIVERED
            else DeliveryState.SENT
        )
        return Outcome(
            row.id,
            state,
            provider_id=receipt.provider_id,
            units=receipt.units if receipt.units is not None else rendered.units,
        )

    async def _live_digest(self, subject: Subject) -> Subject:
        ids = [str(i["id"]) for i in subject.items]
        if not ids:
            return subject
        async with self.store.read() as conn:
            live = set(
                (
                    await conn.scalars(
                        sa.select(t.items.c.id).where(
                            t.items.c.id.in_(ids), t.items.c.status == ItemStatus.PUBLISHED.value
                        )
                    )
                ).all()
            )
        if len(live) == len(ids):
            return subject
        return dataclasses.replace(
            subject, items=tuple(i for i in subject.items if str(i["id"]) in live)
        )

    async def _bounced(self, rt: ChannelRuntime, row: Claimed) -> None:
        """Count a hard bounce; at the adapter's `bounce_limit` the address is suppressed."""
        limit = getattr(rt.adapter, "bounce_limit", None)
        if not isinstance(limit, int):
            return
        try:
            if await Recipients(self.store).record_bounce(row.channel, row.target, limit):
                log.info(
                    "%s target %s suppressed after %d hard bounces", rt.name, row.target, limit
                )
        except Exception:  # the outcome must still be recorded
            log.exception("could not count a bounce of delivery %d", row.id)

    def _transient(
        self, rt: ChannelRuntime, row: Claimed, error: str, retry_after: float | None
    ) -> Outcome:
        due = rt.retry.next_due(row.attempts, utcnow(), retry_after)
        if due is None:
            return Outcome(row.id, DeliveryState.FAILED, reason="retries_exhausted", error=error)
        return Outcome(row.id, DeliveryState.RETRYING, error=error, due_at=due)

    # -- subjects and targets -----------------------------------------------------------------

    async def _subject(self, key: str, revision: int | None = None) -> Subject:
        """The subject for a ledger key, loaded once however many attempts ask at the same time.

        `revision`: for an item's publication or correction, the item's live revision
        (a correction approved after the row was planned: the row carries its text)."""
        cache_key = key if revision is None else f"{key}@{revision}"
        cached = self._subjects.get(cache_key)
        if cached is None:
            cached = asyncio.ensure_future(self._load_subject(key, revision))
            self._subjects[cache_key] = cached
            if len(self._subjects) > 256:
                self._subjects.popitem(last=False)
        else:
            self._subjects.move_to_end(cache_key)
            if cached.done() and not cached.cancelled() and cached.exception() is None:
                return cached.result()
        try:
            return await asyncio.shield(cached)
        except Exception:
            self._subjects.pop(cache_key, None)  # a failed load is not cached
            raise

    async def _load_subject(self, key: str, revision: int | None = None) -> Subject:
        kind, _, ident = key.partition(":")
        if kind == "msg":
            return await self._load_message(key, int(ident))
        if kind == "digest":
            return await self.digests.load_subject(key)
        if kind == "pack":  # a notice board's print pack
            from publisher.packs import load_subject

            return await load_subject(self.store, key)
        if kind != "event":
            raise PermanentDeliveryError(f"unknown subject {key}", reason="unknown_subject")
        async with self.store.read() as conn:
            ev = (
                await conn.execute(sa.select(t.item_events).where(t.item_events.c.id == int(ident)))
            ).first()
        if ev is None:
            raise PermanentDeliveryError(f"no event {ident}", reason="unknown_subject")
        item = await self.store.get_item(ev.item_id)
        number = revision if ev.kind in LIVE_EVENTS and revision is not None else ev.revision
        rev = await self.store.get_revision(ev.item_id, int(number))
        c = rev.content
        base = self.config.site.public_base
        related: list[dict[str, Any]] = []
        for rel in c.related:
            # only what is public may be named: a related draft stays unknown outside
            try:
                other = await self.store.get_item(rel.item_id)
            except ItemNotFound:
                continue
            if (
                other.status is ItemStatus.PUBLISHED
                and other.content.disclosure is Disclosure.PROACTIVE
            ):
                related.append(
                    {
                        "id": other.id,
                        "kind": rel.kind.value,
                        "title": other.content.title,
                        "url": f"{base}/items/{other.id}",
                    }
                )
        subject = content_subject(
            self.config,
            c,
            key=key,
            kind=ev.kind,
            item_id=item.id,
            revision=rev.number,
            index_no=item.index_no,
            published_at=item.published_at,
            event_at=ev.created_at,
            correction_note=rev.correction_note,
            attachments=attachment_links(self.config, item.id, item.attachments, rev.number),
            related=tuple(related),
        )
        return subject

    async def _load_message(self, key: str, message_id: int) -> Subject:
        """A transactional message ("msg:<id>", e.g. a verification code): its text only."""
        async with self.store.read() as conn:
            body = await conn.scalar(
                sa.select(t.messages.c.body_enc).where(t.messages.c.id == message_id)
            )
        if body is None:
            raise PermanentDeliveryError(f"no message {message_id}", reason="erased")
        site = self.config.site
        return Subject(
            key=key, kind="message", item_id=None, revision=None, title="", summary="",
            body=self.box.open(body), body_html="", category="", category_name="",
            agency=site.agency, index_no=None, doc_no=None, written_at=None,
            published_at=None, urgent=True, public_url="", site_name=site.name,
        )  # fmt: skip

    def _target(self, row: Claimed, stored: Any) -> Target | str | None:
        """The Target for a claimed row, or why not to send (a string), or None if erased."""
        if stored is None:
            return None
        if row.target.startswith("r:"):
            if stored.reason is not None:
                # opted out and bounced say so; any other suppression (erased …) does not
                return stored.reason if stored.reason in ("opted_out", "bounced") else "suppressed"
            if stored.status != RecipientStatus.ACTIVE.value:
                return (
                    "opted_out"
                    if stored.status == RecipientStatus.UNSUBSCRIBED.value
                    else stored.status
                )
            return Target(
                row.target,
                row.channel,
                self.box.open(stored.address_enc),
                link_nonce=stored.link_nonce,
            )
        if row.target.startswith("m:"):  # a transactional message to one address
            return Target(row.target, row.channel, self.box.open(stored.address_enc))
        if not stored.enabled:
            return "endpoint_disabled"
        settings = open_settings(self.secrets, stored.settings)
        return Target(row.target, row.channel, stored.address, stored.name, settings)
