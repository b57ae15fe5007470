"""A failed database turn loses nothing and stalls nothing (issue 17, point 1): the
outcomes it should have written are kept and written by the next turn, their slots come
back only then, and rows a turn claimed but never handed out are queued again — the
fan-out finishes without a restart, each resident messaged once, nothing `unknown`."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from publisher.delivery import DeliveryWorker
from publisher.ledger import Ledger
from publisher.store.sql import SqlStore
from tests.engine.conftest import states, subscribe, wait_settled
from tests.engine.helpers import BOTH_BACKENDS, eventually, published_item, running

N = 2000


def failing_once(ledger: Ledger, *, after_commit: bool, when: int = 5) -> Counter[str]:
    """Make the `when`-th turn that writes outcomes fail, before its transaction
    (nothing written) or after it committed (outcomes written, new rows claimed, the
    answer lost, as when the connection drops as the server answers)."""
    real = ledger.cycle
    seen: Counter[str] = Counter()

    async def cycle(worker_id: str, outcomes: list[Any], *args: Any, **kw: Any) -> Any:
        if outcomes:
            seen["turns"] += 1
        if outcomes and seen["turns"] == when and not seen["failed"]:
            seen["failed"] += 1
            if after_commit:
                rows = await real(worker_id, outcomes, *args, **kw)
                seen["lost_claims"] += len(rows)
            raise ConnectionResetError("injected: the database went away mid-turn")
        return await real(worker_id, outcomes, *args, **kw)

    ledger.cycle = cycle  # type: ignore[method-assign]
    return seen


@BOTH_BACKENDS
@pytest.mark.parametrize("after_commit", [False, True], ids=["before-commit", "after-commit"])
async def test_one_failed_turn_in_a_fan_out_loses_and_repeats_nothing(
    engine_store: SqlStore, gateway: Any, after_commit: bool
) -> None:
    rec, _ = gateway
    numbers = await subscribe(engine_store, N)
    item = await published_item(engine_store)
    worker = DeliveryWorker(engine_store)
    seen = failing_once(worker.ledger, after_commit=after_commit)
    await worker.start()
    try:
        await eventually(lambda: _failed(seen), within=60, what="the injected failure")
        await wait_settled(engine_store, item.id, within=120)
        assert worker.failing_since is None  # healthy again, without a restart
    finally:
        await worker.stop()
    assert await states(engine_store, item.id) == {"sent": N}
    assert sorted(rec.per_target) == sorted(numbers)
    assert set(rec.per_target.values()) == {1}, "a resident was messaged twice"
    if after_commit:
        assert seen["lost_claims"] > 0  # the case where claimed rows had to be healed


async def _failed(seen: Counter[str]) -> bool:
    return seen["failed"] > 0


async def test_healthz_says_degraded_while_turns_fail(engine_store: SqlStore, gateway: Any) -> None:
    """While every turn fails, /healthz says so; once the database answers, it is ok."""
    from tests.engine.helpers import api_on

    await subscribe(engine_store, 5)
    async with running(engine_store) as worker, api_on(engine_store, worker) as api:
        real = worker.ledger.cycle
        broken = True

        async def cycle(*args: Any, **kw: Any) -> Any:
            if broken:
                raise OSError("injected: database or disk is full")
            return await real(*args, **kw)

        worker.ledger.cycle = cycle  # type: ignore[method-assign]
        item = await published_item(engine_store)
        worker.wake()

        async def degraded() -> bool:
            _, body, _ = await api.call("GET", "/healthz", who=None)
            return bool(body["status"] == "degraded")

        await eventually(degraded, within=30, what="healthz degraded")
        broken = False
        await wait_settled(engine_store, item.id, within=60)
        status, body, _ = await api.call("GET", "/healthz", who=None)
        assert status == 200 and body["status"] == "ok"
    assert await states(engine_store, item.id) == {"sent": 5}
