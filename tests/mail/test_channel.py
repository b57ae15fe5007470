"""The email channel end to end: a real worker sends through a real SMTP server (aiosmtpd)
on loopback, and every message is read back with the standard library's parser."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from channels.mail import message_id
from publisher.content import ItemCreate, content_from
from publisher.ledger import DeliveryState, Ledger
from publisher.models import Item
from publisher.recipients import Consent, Recipients, RecipientStatus, import_subscribers
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import BACKENDS, EDITOR, item_fields, publish
from tests.engine.helpers import ledger_rows, rows_by_address, running, wait_channel_settled
from tests.mail.conftest import SENDER, SmtpSink

CONSENT = Consent(method="import", text="同意接收上余镇政务信息邮件", source="test")
TITLE = "关于上余镇2026年冬季农田水利建设的通知"
BODY = "各村：\n\n为做好冬季农田水利建设工作，现将有关事项通知如下。"
DOMAIN = SENDER.rpartition("@")[2]


def address(i: int) -> str:
    return f"resident{i:05d}@example.org"


async def email_item(store: SqlStore, **overrides: Any) -> Item:
    overrides.setdefault("channels", ["email"])
    content = content_from(ItemCreate.model_validate(item_fields(**overrides)), store.config)
    item = await store.create_item(content, actor=EDITOR)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"%PDF-1.4 test"

    await store.add_attachment(item.id, "水利 工程.pdf", "application/pdf", chunks(), actor=EDITOR)
    return item


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_item_reaches_2000_subscribers_once_each_with_the_right_headers(
    mail_store_factory: Any, smtp_sink: tuple[SmtpSink, int], backend: str
) -> None:
    sink, port = smtp_sink
    addresses = [address(i) for i in range(2000)]
    async with mail_store_factory(port, backend) as store:
        await import_subscribers(Recipients(store), "email", addresses, CONSENT)
        item = await publish(store, await email_item(store, title=TITLE, body=BODY))
        async with running(store):
            await wait_channel_settled(store, item.id, "email", within=60)
        rows = await rows_by_address(store, item.id)

        # exactly one message per recipient, one recipient per message, from our sender
        per_rcpt = Counter(r for m in sink.received for r in m.rcpt_tos)
        assert set(per_rcpt) == set(addresses)
        assert set(per_rcpt.values()) == {1}
        assert all(len(m.rcpt_tos) == 1 and m.mail_from == SENDER for m in sink.received)
        assert {r.state for r in rows.values()} == {DeliveryState.SENT.value}

        ids = set()
        for received in sink.received:
            to = received.rcpt_tos[0]
            row = rows[to]
            msg = received.parsed()
            assert msg["To"] == to
            assert msg["Subject"] == TITLE
            assert msg["From"].addresses[0].addr_spec == SENDER
            assert msg["From"].addresses[0].display_name == store.config.site.name
            assert msg["Message-ID"] == message_id(row.subject, row.target, DOMAIN)
            assert row.provider_id == msg["Message-ID"]
            ids.add(msg["Message-ID"])
            assert msg["List-Id"].endswith(f"<gongkai.{DOMAIN}>")
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            found = re.fullmatch(
                r"<(https://gk\.shangyu\.example\.gov\.cn/unsubscribe/(\d+)\.[\w-]{22})>",
                msg["List-Unsubscribe"],
            )
            assert found and f"r:{found.group(2)}" == row.target
            assert msg.get_content_type() == "multipart/alternative"
            text = msg.get_body(("plain",))
            html = msg.get_body(("html",))
            assert text is not None and html is not None
            for part in (text.get_content(), html.get_content()):
                assert TITLE in part and "为做好冬季农田水利建设工作" in part
                assert found.group(1) in part  # the footer's link is this resident's
                assert f"/items/{item.id}" in part
                assert f"/items/{item.id}/attachments/" in part
                assert "%E6%B0%B4%E5%88%A9%20%E5%B7%A5%E7%A8%8B.pdf" in part
            assert "索引号" in text.get_content() and item.id in html.get_content()
        assert len(ids) == 2000

        # a resend (staff retry of a failed row) carries the Message-ID of the first attempt
        first = rows[address(7)]
        async with store.write() as conn:
            await conn.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id == first.id)
                .values(state=DeliveryState.FAILED.value, reason="test")
            )
        assert await Ledger(store).retry_item(item.id) == 1
        async with running(store):
            await wait_channel_settled(store, item.id, "email")
        again = sink.to(address(7))
        assert len(again) == 2
        assert again[0].parsed()["Message-ID"] == again[1].parsed()["Message-ID"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_550_bounces_451_retries_and_a_suppressed_address_is_skipped(
    mail_store_factory: Any, smtp_sink: tuple[SmtpSink, int], backend: str
) -> None:
    sink, port = smtp_sink
    good, hard, soft = address(1), address(2), address(3)
    sink.refuse[hard] = (550, None)  # no such mailbox, every time
    sink.refuse[soft] = (451, 2)  # greylisted twice, then accepted
    async with mail_store_factory(port, backend, bounce_limit=2) as store:
        await import_subscribers(Recipients(store), "email", [good, hard, soft], CONSENT)
        recipients = Recipients(store)
        first = await publish(store, await email_item(store, title="第一条"))
        async with running(store):
            await wait_channel_settled(store, first.id, "email")
        rows = await rows_by_address(store, first.id)
        assert rows[good].state == "sent" and rows[good].attempts == 1
        assert rows[soft].state == "sent" and rows[soft].attempts == 3
        assert (rows[hard].state, rows[hard].reason) == ("failed", "bounced")
        assert "550" in rows[hard].last_error
        assert rows[hard].attempts == 1  # a hard bounce is never retried
        assert len(sink.to(soft)) == 1 and sink.to(hard) == []
        # one bounce of two allowed: still subscribed
        assert not await recipients.is_suppressed("email", hard)

        second = await publish(store, await email_item(store, title="第二条"))
        async with running(store):
            await wait_channel_settled(store, second.id, "email")
        # the second hard bounce suppresses the address
        assert await recipients.is_suppressed("email", hard)
        assert (await recipients.get("email", hard)).status is RecipientStatus.SUPPRESSED

        # a row queued before the suppression is skipped with the reason, without an attempt
        attempts = sink.rcpt_attempts[hard]
        queued = await Ledger(store).insert_rows(
            "event:999999", "email", [rows[hard].target], item_id=None, priority=0,
            bypass_quiet=False,
        )  # fmt: skip
        assert queued == 1
        third = await publish(store, await email_item(store, title="第三条"))
        async with running(store):
            await wait_channel_settled(store, third.id, "email")
        async with store.read() as conn:
            skipped = (
                await conn.execute(
                    sa.select(t.deliveries).where(t.deliveries.c.subject == "event:999999")
                )
            ).one()
        assert (skipped.state, skipped.reason) == ("skipped", "bounced")
        # the next item is not even planned for it, and nothing more reached the server
        assert hard not in await rows_by_address(store, third.id)
        assert sink.rcpt_attempts[hard] == attempts
        assert len(sink.to(good)) == 3
        assert {r.state for r in await ledger_rows(store, third.id)} == {"sent"}
