"""SMS through a real Kannel (bearerbox + smsbox + fakesmsc): Chinese items to subscribers
with their delivery reports, and keywords residents send, with the replies."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from channels.sms import SmsChannel, dlr_token, gateway_number
from publisher.addresses import normalize
from publisher.recipients import Recipients, RecipientStatus, import_subscribers
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import BACKENDS
from tests.engine.conftest import CONSENT, phone
from tests.engine.helpers import eventually, ledger_rows, published_item, running, transitions
from tests.sms import kannel as kn
from tests.sms.conftest import served

SUBSCRIBERS = 50
TITLE = "关于上余镇2026年冬季农田水利建设𠮷的通知"
SUMMARY = (
    "各村、各有关单位：为做好冬季农田水利建设工作，确保工程质量和进度，现将有关事项通知如下。"
    "请各村于十二月十日前上报计划，镇农办将组织验收。"
)


async def rows_settled(store: SqlStore, item_id: str, n: int) -> bool:
    rows = await ledger_rows(store, item_id, "sms")
    return len(rows) == n and all(r.state == "delivered" for r in rows)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_chinese_item_reaches_every_subscriber_once_with_its_report(
    kannel: kn.Kannel, sms_store_factory: Any, backend: str
) -> None:
    async with sms_store_factory(kannel, backend) as store:
        numbers = [phone(i) for i in range(SUBSCRIBERS)]
        await import_subscribers(Recipients(store), "sms", numbers, CONSENT)
        mark = kannel.mark()
        async with running(store) as worker, served(store, kannel.app_port, worker) as api:
            item = await published_item(store, title=TITLE, summary=SUMMARY)
            worker.wake()
            await eventually(
                lambda: rows_settled(store, item.id, SUBSCRIBERS), 60, "every report recorded"
            )
            rows = await ledger_rows(store, item.id, "sms")
            adapter = worker.channels["sms"].adapter
            assert isinstance(adapter, SmsChannel)
            subject = await worker._subject(rows[0].subject)
            expected = adapter.compose_for(subject, adapter.primary)

            # a forged report is refused and changes nothing; a repeated genuine one neither
            row = rows[0]
            status, body, headers = await api.call(
                "GET", f"/sms/dlr?id={row.id}&t=forged-token-AAAAAAAAAA&status=2", who=None
            )
            assert status == 403 and headers["Content-Type"].startswith("application/problem")
            assert "token" in body["detail"]
            token = dlr_token(adapter.gateways[0].key, str(row.id))
            status, body, _ = await api.call(
                "GET", f"/sms/dlr?id={row.id}&t={token}&status=2", who=None
            )
            assert status == 200 and body["result"] == "duplicate"

            # the short link in the text leads to the public page
            link = expected.text.split(" ")[-2]
            assert link.startswith(store.config.site.public_base + "/s/")
            resp = await api.client.get(link.split("8080", 1)[-1], allow_redirects=False)
            assert resp.status == 302 and resp.headers["Location"] == f"/items/{item.id}"

        rows = await ledger_rows(store, item.id, "sms")
        assert expected.truncated is False and expected.segments.parts == 3
        assert TITLE in expected.text and expected.text.endswith(" 回复TD退订")
        for r in rows:
            assert r.state == "delivered" and r.units == expected.segments.parts
            assert await transitions(store, r.id) == ["queued", "sending", "sent", "delivered"]

        # what the fake SMSC got: each number once, the text intact through UCS-2 and parts
        got = kannel.received(mark)
        wanted = {gateway_number(n, "national") for n in numbers}
        assert sorted(m.to for m in got) == sorted(wanted)
        assert all(m.sender == kn.SENDER for m in got)
        assert {m.text for m in got} == {expected.text}
        assert {m.parts for m in got} == {3}


async def reply_to(k: kn.Kannel, number: str, text: str, seq: int, within: float = 15) -> str:
    """Send `text` from `number` through the fake SMSC; the reply Kannel sends back."""
    national = gateway_number(normalize("sms", number), "national")
    before = Counter(m.text for m in k.replies() if m.to == national)
    proc = k.send_mo(national, text, seq)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            new = Counter(m.text for m in k.replies() if m.to == national) - before
            if new:
                [reply] = new
                return reply
            await asyncio.sleep(0.05)
        raise AssertionError(f"no reply to {text!r} within {within}s")
    finally:
        k.stop_process(proc)


async def test_keywords_from_phones_reach_inbound_and_get_replies(
    kannel: kn.Kannel, sms_store_factory: Any
) -> None:
    number = "+8613900139000"
    async with sms_store_factory(kannel) as store, served(store, kannel.app_port):
        recipients = Recipients(store)
        reply = await reply_to(kannel, number, "DY NY", 1)
        assert reply.startswith("【上余镇政府信息公开】") and "农业农村" in reply
        sub = await recipients.get("sms", number)
        assert sub.status is RecipientStatus.ACTIVE and sub.categories == ("nync",)

        reply = await reply_to(kannel, number, "cx", 2)
        assert "您已订阅：农业农村" in reply

        reply = await reply_to(kannel, number, "退订", 3)  # UCS-2 from the phone
        assert "已退订" in reply
        assert (await recipients.get("sms", number)).status is RecipientStatus.UNSUBSCRIBED
        assert await recipients.is_suppressed("sms", number)

        reply = await reply_to(kannel, number, "你好", 4)
        assert "DY" in reply and "TD" in reply  # help

        async with store.read() as conn:
            methods = (
                await conn.scalars(
                    sa.select(t.consents.c.method).where(t.consents.c.recipient_id == sub.id)
                )
            ).all()
        assert list(methods) == ["sms_keyword"]


async def test_a_code_goes_out_in_quiet_hours_and_subscribes_the_number(
    kannel: kn.Kannel, sms_store_factory: Any
) -> None:
    """Transactional messages pass quiet hours (the resident is waiting); items wait."""
    local = datetime.now(ZoneInfo("Asia/Shanghai"))
    quiet = {
        "CHANNELS__SMS__QUIET_HOURS__START": (local - timedelta(hours=1)).strftime("%H:%M"),
        "CHANNELS__SMS__QUIET_HOURS__END": (local + timedelta(hours=1)).strftime("%H:%M"),
    }
    newcomer = "13700137000"
    async with sms_store_factory(kannel, env=quiet) as store:
        await import_subscribers(Recipients(store), "sms", [phone(1)], CONSENT)
        mark = kannel.mark()
        async with running(store) as worker, served(store, kannel.app_port, worker) as api:
            item = await published_item(store, title=TITLE)
            ask = {"channel": "sms", "address": newcomer, "categories": []}
            status, body, _ = await api.call("POST", "/api/v1/subscribers", who=None, json=ask)
            assert status == 202, body

            async def code_arrived() -> bool:
                return any(m.to == newcomer for m in kannel.received(mark))

            await eventually(code_arrived, 20, "the code at the phone")
            [sms] = [m for m in kannel.received(mark) if m.to == newcomer]
            code = sms.text.split("验证码是")[1][:6]
            site = store.config.site.name
            assert sms.text == (
                f"【{site}】您的验证码是{code}，10分钟内有效，用于订阅{site}短信。如非本人操作，请忽略。"
            )

            async def code_delivered() -> bool:
                async with store.read() as conn:
                    state = await conn.scalar(
                        sa.select(t.deliveries.c.state).where(t.deliveries.c.subject.like("msg:%"))
                    )
                return state == "delivered"

            await eventually(code_delivered, 20, "the code's report")
            [row] = await ledger_rows(store, item.id, "sms")
            assert (row.state, row.reason) == ("deferred", "quiet_hours")

            verify = {"channel": "sms", "address": newcomer, "code": code}
            status, body, _ = await api.call(
                "POST", "/api/v1/subscribers/verify", who=None, json=verify
            )
            assert status == 200 and body["address"] == "137****7000"
        assert (await Recipients(store).get("sms", newcomer)).status is RecipientStatus.ACTIVE
