"""Withdrawal and expiry are final on every path (issue 14): a staff retry, a row queued
again by any means, or a correction approved after planning never puts a withdrawn item
out again, and a row planned before a correction carries the corrected text."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from publisher.fanout import FanOut
from publisher.ledger import Ledger
from publisher.models import Action, Channel
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import EDITOR, REVIEWER, publish
from tests.engine.conftest import states, subscribe, wait_settled
from tests.engine.helpers import (
    BOTH_BACKENDS,
    api_on,
    ledger_rows,
    new_sms_item,
    published_item,
    running,
    transitions,
)


@BOTH_BACKENDS
async def test_a_staff_retry_never_sends_a_withdrawn_item(
    engine_store: SqlStore, gateway: Any
) -> None:
    """The reproduction: the gateway refuses, the item is withdrawn, the gateway is healthy
    again, staff press retry. Nothing reaches a resident; the answer says why."""
    rec, _ = gateway
    numbers = await subscribe(engine_store, 6)
    rec.reject = set(numbers)
    item = await published_item(engine_store)
    async with running(engine_store) as worker, api_on(engine_store, worker) as api:
        await wait_settled(engine_store, item.id)
        assert await states(engine_store, item.id) == {"failed": 6}
        await engine_store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="撤回")
        rec.reject.clear()
        before = len(rec.requests)
        status, body, _ = await api.call(
            "POST", f"/api/v1/items/{item.id}/deliveries/retry", who="bob"
        )
        assert status == 200, body
        assert body["requeued"] == 0
        assert body["left"] == 6 and body["left_reason"] == "withdrawn"
        await wait_settled(engine_store, item.id)
    assert len(rec.requests) == before
    assert await states(engine_store, item.id) == {"failed": 6}


@BOTH_BACKENDS
async def test_a_row_requeued_by_any_path_is_skipped_at_the_claim(
    engine_store: SqlStore, gateway: Any
) -> None:
    """The rule lives where rows are claimed: even a row put back to `queued` behind the
    service's back (an old version's retry, a hand-edited database) is not attempted."""
    rec, _ = gateway
    numbers = await subscribe(engine_store, 4)
    rec.reject = set(numbers)
    item = await published_item(engine_store)
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    await engine_store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="撤回")
    rec.reject.clear()
    async with engine_store.write() as conn:
        await conn.execute(
            t.deliveries.update()
            .where(t.deliveries.c.item_id == item.id)
            .values(state="queued", attempts=0)
        )
    before = len(rec.requests)
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    assert len(rec.requests) == before
    rows = await ledger_rows(engine_store, item.id)
    assert {(r.state, r.reason) for r in rows} == {("skipped", "withdrawn")}
    assert (await transitions(engine_store, rows[0].id))[-1] == "skipped"


async def test_an_expired_item_is_not_sent_by_a_retry(engine_store: SqlStore, gateway: Any) -> None:
    rec, _ = gateway
    numbers = await subscribe(engine_store, 3)
    rec.reject = set(numbers)
    item = await published_item(engine_store)
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    async with engine_store.write() as conn:  # past its expiry date: the sweep expires it
        await conn.execute(t.items.update().where(t.items.c.id == item.id).values(status="expired"))
    rec.reject.clear()
    result = await Ledger(engine_store).retry(item.id)
    assert (result.requeued, result.left, result.left_reason) == (0, 3, "expired")
    assert await Ledger(engine_store).retryable(item.id) == 0


@BOTH_BACKENDS
async def test_a_row_planned_before_a_correction_carries_the_corrected_text(
    engine_store: SqlStore, gateway: Any
) -> None:
    """SMS is not sent again for a correction (residents are not messaged twice), but a
    resident who had not yet been reached gets the text as corrected, not the old one."""
    rec, _ = gateway
    await subscribe(engine_store, 5)
    item = await published_item(engine_store, title="停水通知（初稿）")
    fanout = FanOut(engine_store, Ledger(engine_store))
    assert await fanout.plan_pending() == 5  # queued; no worker yet
    fresh = await engine_store.get_item(item.id)
    await engine_store.update_item(
        item.id,
        {"title": "停水通知（更正）", "correction_note": "时间更正"},
        actor=EDITOR,
        if_match=fresh.etag,
    )
    await engine_store.transition(item.id, Action.SUBMIT, actor=EDITOR)
    await engine_store.transition(item.id, Action.APPROVE, actor=REVIEWER)
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    assert len(rec.requests) == 5
    assert {r["title"] for r in rec.requests} == {"停水通知（更正）"}
    assert set(rec.per_target.values()) == {1}


async def test_a_correction_that_reaches_the_same_target_supersedes_the_waiting_row(
    engine_store: SqlStore, gateway: Any
) -> None:
    """When the correction is sent to the same resident too, the row still waiting from the
    publication is skipped as superseded: one message, the corrected one."""
    rec, _ = gateway
    await subscribe(engine_store, 3)
    item = await published_item(engine_store, title="征收公告")
    fanout = FanOut(engine_store, Ledger(engine_store))
    assert await fanout.plan_pending() == 3
    fresh = await engine_store.get_item(item.id)
    await engine_store.update_item(
        item.id,
        {"title": "征收公告（更正）", "correction_note": "范围更正"},
        actor=EDITOR,
        if_match=fresh.etag,
    )
    await engine_store.transition(item.id, Action.SUBMIT, actor=EDITOR)
    await engine_store.transition(
        item.id, Action.APPROVE, actor=REVIEWER, resend=frozenset({Channel.SMS})
    )
    assert await fanout.plan_pending() == 3  # the correction's rows, before any is sent
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    assert len(rec.requests) == 3
    assert {r["title"] for r in rec.requests} == {"征收公告（更正）"}
    rows = await ledger_rows(engine_store, item.id)
    assert sorted((r.state, r.reason or "") for r in rows) == [
        ("sent", ""),
        ("sent", ""),
        ("sent", ""),
        ("skipped", "superseded"),
        ("skipped", "superseded"),
        ("skipped", "superseded"),
    ]


async def test_the_claim_still_takes_rows_of_live_items_first_come(
    engine_store: SqlStore, gateway: Any
) -> None:
    """The rule costs no extra query per row: messages and live items go out as before,
    with a withdrawn item's rows among them skipped in the same turns."""
    rec, _ = gateway
    await subscribe(engine_store, 10)
    live = await published_item(engine_store, title="在用")
    gone = await published_item(engine_store, title="已撤回")
    fanout = FanOut(engine_store, Ledger(engine_store))
    assert await fanout.plan_pending() == 20
    # withdrawn in the store only (the cancel-at-withdrawal step bypassed): the claim decides
    async with engine_store.write() as conn:
        await conn.execute(
            t.items.update().where(t.items.c.id == gone.id).values(status="withdrawn")
        )
    async with running(engine_store):
        await wait_settled(engine_store, live.id)
        await wait_settled(engine_store, gone.id)
    assert {r["title"] for r in rec.requests} == {"在用"}
    assert await states(engine_store, live.id) == {"sent": 10}
    assert await states(engine_store, gone.id) == {"skipped": 10}
    async with engine_store.read() as conn:
        reasons = set(
            (
                await conn.scalars(
                    sa.select(t.deliveries.c.reason).where(t.deliveries.c.item_id == gone.id)
                )
            ).all()
        )
    assert reasons == {"withdrawn"}


async def test_drafts_are_unaffected(engine_store: SqlStore, gateway: Any) -> None:
    rec, _ = gateway
    await subscribe(engine_store, 2)
    item = await new_sms_item(engine_store)
    await publish(engine_store, item)
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    assert await states(engine_store, item.id) == {"sent": 2}
    assert len(rec.requests) == 2
