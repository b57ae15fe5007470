"""The daily spend cap: segments counted per gateway per local day in the store; item
messages past the cap deferred to the next local day (without using up an attempt) and
shown so to staff; verification codes counted but never held."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from publisher.config import Config
from publisher.ledger import DeliveryState
from publisher.messages import queue_message
from publisher.recipients import Recipients, import_subscribers
from publisher.spend import DailySpend, SpendAllowance, block_for, local_day, next_day_start
from publisher.store import schema as t
from publisher.store.sql import utcnow
from tests.conftest import BACKENDS
from tests.engine.conftest import CONSENT, phone
from tests.engine.helpers import api_on, eventually, ledger_rows, published_item, running
from tests.sms import fake_gateways as fg
from tests.sms.conftest import ENGINE, open_store
from tests.sms.test_gateways import with_gateways

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("now", "day", "next_start"),
    [
        # 01:00 in Shanghai is still the previous day in UTC
        ("2026-12-01T17:00:00+00:00", "2026-12-02", "2026-12-02T16:00:00+00:00"),
        ("2026-12-01T15:59:59+00:00", "2026-12-01", "2026-12-01T16:00:00+00:00"),
        ("2026-12-31T16:00:00+00:00", "2027-01-01", "2027-01-01T16:00:00+00:00"),
    ],
)
def test_the_day_is_the_sites_local_day(now: str, day: str, next_start: str) -> None:
    when = datetime.fromisoformat(now)
    assert local_day(when, SHANGHAI).isoformat() == day
    assert next_day_start(when, SHANGHAI) == datetime.fromisoformat(next_start)
    assert next_day_start(when, SHANGHAI).tzinfo is not None


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_reservations_hold_to_the_cap_per_counter_and_day(
    config_factory: Callable[..., Config], backend: str
) -> None:
    async with open_store(config_factory(), backend) as store:
        spend = DailySpend(store)
        day1 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 local
        day2 = day1 + timedelta(days=1)
        assert await spend.reserve("sms:a", 3, cap=7, now=day1)
        assert await spend.reserve("sms:a", 3, cap=7, now=day1)
        assert not await spend.reserve("sms:a", 3, cap=7, now=day1)  # 9 > 7: refused, not added
        assert await spend.reserve("sms:a", 1, cap=7, now=day1)  # exactly 7
        assert not await spend.reserve("sms:a", 8, cap=7, now=day2)  # more than a day's cap
        assert await spend.reserve("sms:b", 3, cap=7, now=day1)  # another gateway's own count
        assert await spend.reserve("sms:a", 3, cap=None, now=day1)  # uncapped: always added
        assert await spend.reserve("sms:a", 3, cap=7, now=day2)  # a new day
        await spend.release("sms:a", 4, spend.day(day1))
        assert await spend.spent("sms:a", "2026-12-01") == 6
        assert await spend.spent("sms:a", "2026-12-02") == 3
        assert await spend.spent("sms:b", "2026-12-01") == 3
        await spend.release("sms:a", 100, "2026-12-02")  # never below zero
        assert await spend.spent("sms:a", "2026-12-02") == 0


async def test_concurrent_reservations_never_pass_the_cap(
    config_factory: Callable[..., Config], backend: str
) -> None:
    """Several workers share the counter: of 60 racing reservations exactly the cap's worth
    are granted."""
    async with open_store(config_factory(), backend) as store:
        spends = [DailySpend(store) for _ in range(3)]
        granted = await asyncio.gather(
            *(spends[i % 3].reserve("sms:race", 1, cap=25) for i in range(60))
        )
        assert sum(granted) == 25
        assert await spends[0].spent("sms:race") == 25


async def test_a_worker_reserves_ahead_in_blocks_and_gives_back_what_it_did_not_use(
    config_factory: Callable[..., Config], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(config_factory(), backend) as store:
        spend = DailySpend(store)
        assert block_for(2000) == 100 and block_for(400) == 20 and block_for(12) == 0
        worker = SpendAllowance(spend)
        day = await worker.take("sms:a", 3, cap=2000)
        assert day == spend.day()
        assert await spend.spent("sms:a") == 100  # one block in the store, 97 held
        for _ in range(32):
            assert await worker.take("sms:a", 3, cap=2000) == day
        assert await spend.spent("sms:a") == 100  # 99 used, still the first block
        assert await worker.take("sms:a", 3, cap=2000) == day  # 1 held + 2 from a new block
        assert await spend.spent("sms:a") == 200
        await worker.give_back("sms:a", 3, day)  # a message the gateway refused
        await worker.close()
        assert await spend.spent("sms:a") == 99  # exactly the 33 messages that went out

        # near the cap a block does not fit: exactly what the message needs, then no more
        other = SpendAllowance(spend)
        assert await spend.reserve("sms:b", 395, cap=400)
        assert await other.take("sms:b", 3, cap=400) == day
        assert await spend.spent("sms:b") == 398
        assert await other.take("sms:b", 3, cap=400) is None
        assert await spend.spent("sms:b") == 398

        # a new day: what was held for yesterday goes back to yesterday's counter
        third = SpendAllowance(spend)
        assert await third.take("sms:c", 1, cap=2000) == day
        tomorrow = utcnow() + timedelta(days=1)
        monkeypatch.setattr("publisher.spend.utcnow", lambda: tomorrow)
        next_day = spend.day()
        assert await third.take("sms:c", 1, cap=2000) == next_day
        assert await spend.spent("sms:c", day) == 1
        assert await spend.spent("sms:c", next_day) == 100


async def test_workers_reserving_in_blocks_never_pass_the_cap(
    config_factory: Callable[..., Config], backend: str
) -> None:
    """Three workers take 2 segments a message until the cap refuses them: the store never
    counts more than the cap, and once they stop it counts exactly what they took."""
    async with open_store(config_factory(), backend) as store:
        spend = DailySpend(store)
        workers = [SpendAllowance(DailySpend(store)) for _ in range(3)]

        async def send_until_full(worker: SpendAllowance) -> int:
            taken = 0
            while await worker.take("sms:race", 2, cap=1000) is not None:
                taken += 2
                assert await spend.spent("sms:race") <= 1000
            return taken

        taken = await asyncio.gather(*(send_until_full(w) for w in workers))
        for w in workers:
            await w.close()
        assert await spend.spent("sms:race") == sum(taken)
        assert 1000 - 3 * 2 < sum(taken) <= 1000  # each may leave less than a message unused


# -- through the engine ----------------------------------------------------------------------------


async def spent(store: Any, counter: str) -> dict[str, int]:
    c = t.spend_counters
    async with store.read() as conn:
        rows = (
            await conn.execute(sa.select(c.c.day, c.c.units).where(c.c.counter == counter))
        ).all()
    return {r.day: r.units for r in rows}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_past_the_cap_items_wait_for_the_next_day_and_codes_go_out(
    config_factory: Callable[..., Config], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kannel = fg.FakeKannel()
    async with fg.serve(kannel) as url:
        gateway = {"name": "town", "url": url, "username": "u", "password": "p",
                   "sender": "10690000", "daily_segment_cap": 12}  # fmt: skip
        config = with_gateways(config_factory(**ENGINE), [gateway])
        async with open_store(config, backend) as store:
            await import_subscribers(
                Recipients(store), "sms", [phone(i) for i in range(10)], CONSENT
            )
            async with running(store) as worker, api_on(store, worker) as api:
                item = await published_item(store)
                worker.wake()

                async def settled() -> bool:
                    rows = await ledger_rows(store, item.id, "sms")
                    return len(rows) == 10 and all(r.state in ("sent", "deferred") for r in rows)

                await eventually(settled, 30, "every row sent or deferred")
                rows = await ledger_rows(store, item.id, "sms")
                units: int = rows[0].units
                assert units is not None and 1 <= units <= 3
                sent = [r for r in rows if r.state == "sent"]
                deferred = [r for r in rows if r.state == "deferred"]
                assert len(sent) == 12 // units and len(kannel.accepted) == len(sent)
                today = DailySpend(store).day()
                assert await spent(store, "sms:town") == {today: len(sent) * units}
                midnight = next_day_start(utcnow(), store.config.site.tz)
                for r in deferred:
                    assert (r.reason, r.due_at, r.attempts) == ("spend_cap", midnight, 0)

                # staff see it on the item: state, reason and when it resumes (site time)
                status, body, _ = await api.call(
                    "GET", f"/api/v1/items/{item.id}/deliveries?state=deferred"
                )
                assert status == 200 and body["counts"]["sms"]["deferred"] == len(deferred)
                shown = body["deliveries"][0]
                assert (shown["reason"], shown["state"]) == ("spend_cap", "deferred")
                assert shown["due_at"] == midnight.astimezone(store.config.site.tz).isoformat()
                assert shown["due_at"].endswith("T00:00:00+08:00")
                assert shown["target"].startswith("138****")

                # a verification code past the cap still goes out (and is counted)
                before = len(kannel.accepted)
                await queue_message(
                    store, "sms", "+8613700137000", "您的验证码是123456", purpose="verify_code"
                )
                worker.wake()

                async def code_out() -> bool:
                    return len(kannel.accepted) == before + 1

                await eventually(code_out, 10, "the code at the gateway")
                assert kannel.accepted[-1]["to"] == "13700137000"
                await eventually(
                    lambda: _counted(store, today, len(sent) * units + 1), 10, "the code counted"
                )

                # the next day: the deferred rows are due and the new day's cap applies
                tomorrow = utcnow() + timedelta(days=1)
                monkeypatch.setattr("publisher.spend.utcnow", lambda: tomorrow)
                monkeypatch.setattr("channels.sms.utcnow", lambda: tomorrow)
                async with store.write() as conn:
                    await conn.execute(
                        t.deliveries.update()
                        .where(t.deliveries.c.state == DeliveryState.DEFERRED.value)
                        .values(due_at=utcnow())
                    )
                worker.wake()
                for rt in worker.channels.values():
                    rt.wake()
                second = min(len(deferred), 12 // units)

                async def resumed() -> bool:
                    return len(kannel.accepted) == before + 1 + second

                await eventually(resumed, 30, "the next day's share sent")
                await asyncio.sleep(0.3)  # and no more than that
                assert len(kannel.accepted) == before + 1 + second
                next_day = local_day(tomorrow, store.config.site.tz).isoformat()
                counted = await spent(store, "sms:town")
                assert counted[next_day] == second * units
                rows = await ledger_rows(store, item.id, "sms")
                # a row held twice has still used no attempt; a sent one used exactly one
                assert all(r.attempts == 1 for r in rows if r.state == "sent")
                assert all(r.attempts == 0 for r in rows if r.state == "deferred")


async def _counted(store: Any, day: str, units: int) -> bool:
    counted: int | None = (await spent(store, "sms:town")).get(day)
    return counted == units


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_stopped_worker_leaves_the_counter_at_what_was_sent(
    config_factory: Callable[..., Config], backend: str
) -> None:
    kannel = fg.FakeKannel()
    async with fg.serve(kannel) as url:
        gateway = {"name": "town", "url": url, "username": "u", "password": "p",
                   "sender": "10690000", "daily_segment_cap": 2000}  # fmt: skip
        config = with_gateways(config_factory(**ENGINE), [gateway])
        async with open_store(config, backend) as store:
            await import_subscribers(
                Recipients(store), "sms", [phone(i) for i in range(10)], CONSENT
            )
            async with running(store) as worker:
                item = await published_item(store)
                worker.wake()

                async def all_sent() -> bool:
                    rows = await ledger_rows(store, item.id, "sms")
                    return len(rows) == 10 and all(r.state == "sent" for r in rows)

                await eventually(all_sent, 30, "every row sent")
                # meanwhile the worker holds the rest of its block
                assert (await spent(store, "sms:town"))[DailySpend(store).day()] == 100
            rows = await ledger_rows(store, item.id, "sms")
            assert len(kannel.accepted) == 10
            today = DailySpend(store).day()
            assert await spent(store, "sms:town") == {today: sum(r.units for r in rows)}
