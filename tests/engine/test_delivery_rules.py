"""The ledger's rules as residents and staff notice them: one message per target however
often staff click, retries that back off and give up, withdrawal that stops what has not
gone out, quiet nights, and corrections that reach only the channels the reviewer chose."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from publisher.config import QuietHours
from publisher.delivery import quiet_window_end
from publisher.fanout import FanOut
from publisher.ledger import PRIORITY_NORMAL, PRIORITY_URGENT, Ledger
from publisher.models import Action
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import EDITOR, REVIEWER, publish
from tests.engine.conftest import phone, states, subscribe, wait_settled
from tests.engine.helpers import (
    BOTH_BACKENDS,
    api_on,
    engine_store_with,
    eventually,
    ledger_rows,
    new_sms_item,
    published_item,
    rows_by_address,
    running,
    transitions,
    wait_channel_settled,
)
from tests.fakes import RecordingServer


def subjects_seen(rec: RecordingServer) -> Counter[str]:
    return Counter(r["subject"] for r in rec.requests)


# -- exactly one row and one message per target --------------------------------------------


@BOTH_BACKENDS
async def test_double_approve_queues_and_sends_once(engine_store: SqlStore, gateway: Any) -> None:
    rec, _ = gateway
    numbers = await subscribe(engine_store, 40)
    item = await new_sms_item(engine_store)
    await engine_store.transition(item.id, Action.SUBMIT, actor=EDITOR)
    async with running(engine_store) as worker, api_on(engine_store, worker) as api:
        path = f"/api/v1/items/{item.id}/approve"
        (s1, b1, _), (s2, b2, _) = await asyncio.gather(
            api.call("POST", path, who="bob"), api.call("POST", path, who="dave")
        )
        assert sorted([s1, s2]) == [200, 409], (b1, b2)
        await wait_settled(engine_store, item.id)
    events = await engine_store.events(item.id)
    assert [e.kind for e in events] == ["published"]
    rows = await ledger_rows(engine_store, item.id)
    assert len(rows) == 40
    assert len({r.target for r in rows}) == 40
    assert await states(engine_store, item.id) == {"sent": 40}
    assert sorted(rec.per_target) == sorted(numbers)
    assert set(rec.per_target.values()) == {1}
    assert len(rec.requests) == 40


@BOTH_BACKENDS
async def test_planning_an_event_twice_adds_no_row(engine_store: SqlStore, gateway: Any) -> None:
    rec, _ = gateway
    await subscribe(engine_store, 30)
    item = await published_item(engine_store)
    ledger = Ledger(engine_store)
    fanout = FanOut(engine_store, ledger)
    [event] = await ledger.pending_events()
    # two planners at once (two workers, or a restart mid-plan), then once more
    first, second = await asyncio.gather(fanout.plan(event), fanout.plan(event))
    again = await fanout.plan(event)
    assert first + second == 30
    assert again == 0
    rows = await ledger_rows(engine_store, item.id)
    assert len(rows) == 30 and len({r.target for r in rows}) == 30
    # each row's history starts with one "queued", not one per plan
    assert await transitions(engine_store, rows[0].id) == ["queued"]
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    assert len(rec.requests) == 30
    assert set(rec.per_target.values()) == {1}


@BOTH_BACKENDS
async def test_double_retry_requeues_once(engine_store: SqlStore, gateway: Any) -> None:
    rec, _ = gateway
    numbers = await subscribe(engine_store, 20)
    rec.reject = set(numbers)  # the gateway refuses everyone: every row ends failed
    item = await published_item(engine_store)
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
        assert await states(engine_store, item.id) == {"failed": 20}
        assert len(rec.requests) == 20
        rec.reject.clear()
        ledger = Ledger(engine_store)
        a, b = await asyncio.gather(ledger.retry_item(item.id), ledger.retry_item(item.id))
        assert a + b == 20
        await wait_settled(engine_store, item.id)
        # a third click after they went out finds nothing to requeue
        assert await ledger.retry_item(item.id) == 0
    assert await states(engine_store, item.id) == {"sent": 20}
    rows = await ledger_rows(engine_store, item.id)
    assert len(rows) == 20
    assert {r.attempts for r in rows} == {1}  # attempts start again on a staff retry
    # one refused request and one good one each; none sent twice
    assert set(rec.per_target.values()) == {2}
    history = await transitions(engine_store, rows[0].id)
    assert history == ["queued", "sending", "failed", "queued", "sending", "sent"]


# -- retries with backoff ----------------------------------------------------------------------


async def test_transient_failures_back_off_then_send_or_give_up(
    config_factory: Any, gateway: Any
) -> None:
    rec, url = gateway
    env = {
        "CHANNELS__SMS__MAX_ATTEMPTS": "3",
        "CHANNELS__SMS__RETRY_BASE_SECONDS": "0.2",
        "CHANNELS__SMS__RETRY_CAP_SECONDS": "1",
    }
    async with engine_store_with(config_factory, url, **env) as store:
        flaky, dead, refused, fine = await subscribe(store, 4)
        rec.fail_first = {flaky: 2, dead: 1000}
        rec.reject = {refused}
        item = await published_item(store)
        async with running(store):
            await wait_settled(store, item.id)
        by_target = await rows_by_address(store, item.id)
        # 503, 503, 200: sent on the third attempt
        assert by_target[flaky].state == "sent" and by_target[flaky].attempts == 3
        assert rec.per_target[flaky] == 3
        history = await transitions(store, by_target[flaky].id)
        tries = ["sending", "retrying"] * 2 + ["sending"]
        assert history == ["queued", *tries, "sent"]
        # the waits grow: ≥ 0.1 s (half of 0.2) before the 2nd attempt, ≥ 0.2 s before the 3rd
        starts = await _sending_times(store, by_target[flaky].id)
        assert starts[1] - starts[0] >= timedelta(seconds=0.1)
        assert starts[2] - starts[1] >= timedelta(seconds=0.2)
        # always 503: failed after max_attempts, and not one request more
        assert by_target[dead].state == "failed"
        assert by_target[dead].reason == "retries_exhausted"
        assert by_target[dead].attempts == 3
        assert by_target[dead].last_error == "HTTP 503"
        assert rec.per_target[dead] == 3
        # a permanent refusal is not retried
        assert by_target[refused].state == "failed"
        assert by_target[refused].reason == "rejected"
        assert by_target[refused].attempts == 1
        assert rec.per_target[refused] == 1
        assert by_target[fine].state == "sent" and rec.per_target[fine] == 1


async def _sending_times(store: SqlStore, delivery_id: int) -> list[datetime]:
    e = t.delivery_events
    async with store.read() as conn:
        return list(
            (
                await conn.scalars(
                    sa.select(e.c.at)
                    .where(e.c.delivery_id == delivery_id, e.c.to_state == "sending")
                    .order_by(e.c.id)
                )
            ).all()
        )


# -- withdrawal ---------------------------------------------------------------------------------


async def test_withdrawal_before_sending_skips_every_queued_row(
    engine_store: SqlStore, gateway: Any
) -> None:
    rec, _ = gateway
    await subscribe(engine_store, 25)
    item = await published_item(engine_store)
    fanout = FanOut(engine_store, Ledger(engine_store))
    assert await fanout.plan_pending() == 25  # queued, no worker running yet
    await engine_store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="发布有误")
    assert [e.kind for e in await engine_store.events(item.id)] == ["published", "withdrawn"]
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
        await asyncio.sleep(0.3)  # a worker that kept going would have sent by now
    assert await states(engine_store, item.id) == {"skipped": 25}
    rows = await ledger_rows(engine_store, item.id)
    assert {r.reason for r in rows} == {"withdrawn"}
    assert await transitions(engine_store, rows[0].id) == ["queued", "skipped"]
    assert rec.requests == []


async def test_withdrawal_mid_fanout_stops_what_has_not_gone_out(
    config_factory: Any, gateway: Any
) -> None:
    """Withdrawal takes effect when it is committed, not when a planner next looks (here a
    slow one, as a `publisher worker` on another machine would be): after it, only the
    attempts already in flight (at most the concurrency) reach the gateway."""
    rec, url = gateway
    rec.delay = 0.05  # two at a time: some 40 a second
    env = {"CHANNELS__SMS__CONCURRENCY": "2", "DELIVERY__POLL_SECONDS": "5"}
    async with engine_store_with(config_factory, url, **env) as store:
        await subscribe(store, 200)
        item = await published_item(store)  # planned as the worker starts
        async with running(store) as worker:
            await eventually(lambda: _arrived(rec, 10), within=10, what="fan-out under way")
            before = len(rec.requests)
            await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="撤回")
            await asyncio.sleep(0.5)
            # in flight at the commit: two; and up to two more arriving while it ran
            assert len(rec.requests) <= before + 4, (before, len(rec.requests))
            worker.wake()  # the planner reaches the withdrawn event
            await wait_settled(store, item.id)
            at_settle = len(rec.requests)
            await asyncio.sleep(0.3)
            assert len(rec.requests) == at_settle, "requests after the fan-out settled"
        rows = await ledger_rows(store, item.id)
        by_state = Counter(r.state for r in rows)
        assert set(by_state) == {"sent", "skipped"}, by_state
        assert by_state["skipped"] >= 150
        assert {r.reason for r in rows if r.state == "skipped"} == {"withdrawn"}
        # the server got exactly the rows marked sent, once each, and none of the skipped
        assert len(rec.requests) == by_state["sent"]
        assert {int(r["delivery_id"]) for r in rec.requests} == {
            r.id for r in rows if r.state == "sent"
        }
        assert [e.kind for e in await store.events(item.id)] == ["published", "withdrawn"]


async def test_expiry_cancels_queued_rows_at_once(engine_store: SqlStore, gateway: Any) -> None:
    rec, _ = gateway
    await subscribe(engine_store, 10)
    expires = datetime.now(UTC) + timedelta(days=1)
    item = await published_item(engine_store, expires_at=expires.isoformat())
    assert await FanOut(engine_store, Ledger(engine_store)).plan_pending() == 10
    # the sweep finds it past expires_at: what has not gone out is skipped in that transaction
    assert await engine_store.expire_due(now=expires + timedelta(seconds=1)) == [item.id]
    assert await states(engine_store, item.id) == {"skipped": 10}
    rows = await ledger_rows(engine_store, item.id)
    assert {r.reason for r in rows} == {"expired"}
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    assert [e.kind for e in await engine_store.events(item.id)] == ["published", "expired"]
    assert await states(engine_store, item.id) == {"skipped": 10}
    assert rec.requests == []


async def _arrived(rec: RecordingServer, n: int) -> bool:
    return len(rec.requests) >= n


async def test_a_retry_due_after_withdrawal_is_not_sent(config_factory: Any, gateway: Any) -> None:
    """A row in flight at the withdrawal that fails transiently must not be tried again."""
    rec, url = gateway
    rec.delay = 0.3
    async with engine_store_with(config_factory, url, CHANNELS__SMS__CONCURRENCY="2") as store:
        numbers = await subscribe(store, 10)
        rec.fail_first = dict.fromkeys(numbers, 1)  # every first attempt: a slow 503
        item = await new_sms_item(store)
        async with running(store):
            await publish(store, item)
            await asyncio.wait_for(rec.arrived.wait(), 10)
            in_flight = len(rec.requests)
            await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="撤回")
            await wait_settled(store, item.id)
            await asyncio.sleep(0.5)
        assert await states(store, item.id) == {"skipped": 10}
        assert len(rec.requests) == in_flight
        assert set(rec.per_target.values()) == {1}


# -- quiet hours and urgency ------------------------------------------------------------------------


def _window_around_now() -> tuple[str, str, datetime]:
    """A quiet window (site time) from an hour ago to an hour ahead, and its end in UTC."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    now = datetime.now(tz)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    end_at = end.replace(second=0, microsecond=0).astimezone(UTC)
    return start.strftime("%H:%M"), end.strftime("%H:%M"), end_at


async def test_quiet_hours_defer_ordinary_items_and_let_urgent_ones_through(
    config_factory: Any, gateway: Any
) -> None:
    rec, url = gateway
    start, end, end_at = _window_around_now()
    env = {"CHANNELS__SMS__QUIET_HOURS__START": start, "CHANNELS__SMS__QUIET_HOURS__END": end}
    async with engine_store_with(config_factory, url, **env) as store:
        window = QuietHours(start=start, end=end)
        assert quiet_window_end(window, datetime.now(UTC), store.config.site.tz) == end_at
        numbers = await subscribe(store, 20)
        ordinary = await new_sms_item(store, title="关于冬季农田水利建设的通知")
        urgent = await new_sms_item(store, title="关于防范寒潮大风天气的紧急通知", urgent=True)
        async with running(store):
            await publish(store, ordinary)

            async def all_deferred() -> bool:
                return await states(store, ordinary.id) == {"deferred": 20}

            await eventually(all_deferred, what="ordinary rows deferred")
            await asyncio.sleep(0.3)  # a few more turns of the worker: still nothing sent
            assert rec.requests == []

            await publish(store, urgent)
            await wait_settled(store, urgent.id)
            await asyncio.sleep(0.2)
            assert await states(store, ordinary.id) == {"deferred": 20}
        # the urgent item went out at once, to everyone, once
        assert await states(store, urgent.id) == {"sent": 20}
        assert sorted(rec.per_target) == sorted(numbers)
        assert set(rec.per_target.values()) == {1}
        [urgent_event] = await store.events(urgent.id)
        assert set(subjects_seen(rec)) == {f"event:{urgent_event.id}"}
        # the ordinary one waits for the end of the window, with the reason
        rows = await ledger_rows(store, ordinary.id)
        assert {r.reason for r in rows} == {"quiet_hours"}
        assert {r.due_at for r in rows} == {end_at}
        assert {r.attempts for r in rows} == {0}
        assert await transitions(store, rows[0].id) == ["queued", "deferred"]
        # urgent rows rank above ordinary ones, and bypass the window
        urgent_rows = await ledger_rows(store, urgent.id)
        assert {(r.priority, r.bypass_quiet) for r in urgent_rows} == {(PRIORITY_URGENT, True)}
        assert {(r.priority, r.bypass_quiet) for r in rows} == {(PRIORITY_NORMAL, False)}


async def test_urgent_items_jump_the_queue(config_factory: Any, gateway: Any) -> None:
    rec, url = gateway
    async with engine_store_with(config_factory, url, CHANNELS__SMS__CONCURRENCY="1") as store:
        await subscribe(store, 10)
        ordinary = await published_item(store, title="关于冬季农田水利建设的通知")
        urgent = await published_item(store, title="关于防范寒潮大风天气的紧急通知", urgent=True)
        fanout = FanOut(store, Ledger(store))
        assert await fanout.plan_pending() == 20  # the ordinary item queued first
        async with running(store):
            await wait_settled(store)
        [ordinary_event] = await store.events(ordinary.id)
        [urgent_event] = await store.events(urgent.id)
        order = [r["subject"] for r in rec.requests]
        assert order == [f"event:{urgent_event.id}"] * 10 + [f"event:{ordinary_event.id}"] * 10


# -- corrections --------------------------------------------------------------------------------------


async def _correct(store: SqlStore, item_id: str, title: str) -> None:
    item = await store.get_item(item_id)
    await store.update_item(
        item_id, {"title": title, "correction_note": "更正标题"}, actor=EDITOR, if_match=item.etag
    )
    await store.transition(item_id, Action.SUBMIT, actor=EDITOR)


async def test_corrections_reach_sms_only_when_the_reviewer_asks(
    engine_store: SqlStore, gateway: Any
) -> None:
    rec, _ = gateway
    numbers = await subscribe(engine_store, 5)
    # every channel: portal, rss, sms, email, board
    item = await new_sms_item(engine_store, channels=None)
    async with running(engine_store) as worker, api_on(engine_store, worker) as api:
        await publish(engine_store, item)
        await wait_channel_settled(engine_store, item.id)
        assert len(rec.requests) == 5

        # a correction approved as it comes: catalogue copies only, residents not messaged
        await _correct(engine_store, item.id, "关于冬季农田水利建设的通知（更正）")
        status, body, _ = await api.call("POST", f"/api/v1/items/{item.id}/approve", who="bob")
        assert status == 200, body
        await wait_channel_settled(engine_store, item.id)
        await asyncio.sleep(0.2)
        published, corrected = await engine_store.events(item.id)
        assert corrected.kind == "corrected"
        assert sorted(corrected.channels) == ["board", "portal", "rss"]
        assert len(rec.requests) == 5
        rss_rows = [
            r
            for r in await ledger_rows(engine_store, item.id, "rss")
            if r.subject == f"event:{corrected.id}"
        ]
        # both feeds that carry the item (every category, and its own) get the corrected entry
        assert len(rss_rows) == 2
        assert not [
            r
            for r in await ledger_rows(engine_store, item.id, "sms")
            if r.subject == f"event:{corrected.id}"
        ]

        # the next one, the reviewer sends to SMS too: each subscriber gets it once
        await _correct(engine_store, item.id, "关于冬季农田水利建设的通知（再次更正）")
        status, body, _ = await api.call(
            "POST", f"/api/v1/items/{item.id}/approve", who="bob", json={"resend": ["sms"]}
        )
        assert status == 200, body
        await wait_channel_settled(engine_store, item.id)
        *_, second = await engine_store.events(item.id)
        assert second.kind == "corrected" and [c.value for c in second.channels] == ["sms"]
    seen = subjects_seen(rec)
    assert seen == {f"event:{published.id}": 5, f"event:{second.id}": 5}
    assert set(rec.per_target.values()) == {2}
    assert sorted(rec.per_target) == sorted(numbers)
    corrected_titles = {r["title"] for r in rec.requests if r["kind"] == "corrected"}
    assert corrected_titles == {"关于冬季农田水利建设的通知（再次更正）"}


# -- targets at send time -------------------------------------------------------------------------------


async def test_leaving_after_planning_skips_the_row(engine_store: SqlStore, gateway: Any) -> None:
    from publisher.recipients import Recipients

    rec, _ = gateway
    numbers = await subscribe(engine_store, 5)
    item = await published_item(engine_store)
    assert await FanOut(engine_store, Ledger(engine_store)).plan_pending() == 5
    recipients = Recipients(engine_store)
    await recipients.unsubscribe("sms", numbers[0], "sms_keyword")  # TD
    await recipients.suppress("sms", numbers[1], "complaint")
    await recipients.erase(numbers[2])
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    rows = await ledger_rows(engine_store, item.id)
    assert len(rows) == 5
    assert sorted((r.state, r.reason) for r in rows) == [
        ("sent", None),
        ("sent", None),
        ("skipped", "erased"),
        ("skipped", "opted_out"),
        ("skipped", "suppressed"),
    ]
    assert sorted(rec.per_target) == sorted(numbers[3:])
    assert phone(0) not in rec.per_target
