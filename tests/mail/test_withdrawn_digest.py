"""Withdrawal and expiry are final in daily digests too (issue 14): a digest planned before
an item was withdrawn or expired goes out without it (title, summary and link), listing
the items still published; one whose items are all gone is skipped (test_digest)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from publisher.delivery import DeliveryWorker
from publisher.digests import Digests
from publisher.models import Action
from publisher.recipients import Frequency, Recipients
from publisher.store.sql import SqlStore
from tests.conftest import BACKENDS, REVIEWER
from tests.engine.conftest import wait_settled
from tests.mail.conftest import SmtpSink
from tests.mail.test_digest import ALL, CONSENT, published_at, utc

KEPT = "三月一日仍在公开的农业通知"
GONE_SUMMARY = "撤回后不得出现在摘要中的内容提要"
EXPIRED_SUMMARY = "到期后不得出现在摘要中的内容提要"


def _texts(message: EmailMessage) -> str:
    return "\n".join(
        part.get_content() for part in (message.get_body(("plain",)), message.get_body(("html",)))
        if part is not None
    )  # fmt: skip


async def _plan(store: SqlStore) -> tuple[Any, Any, Any]:
    """Three items published in the digest of 1 March, planned for ALL."""
    await Recipients(store).subscribe("email", ALL, CONSENT, frequency=Frequency.DAILY)
    kept = await published_at(store, "2026-03-01T09:00:00", title=KEPT)
    withdrawn = await published_at(
        store, "2026-03-01T09:10:00", title="将被撤回的通知", summary=GONE_SUMMARY
    )
    expiring = await published_at(
        store,
        "2026-03-01T09:20:00",
        title="将到期的通知",
        summary=EXPIRED_SUMMARY,
        expires_at="2099-01-01T00:00:00+08:00",
    )
    assert await Digests(store).plan_due(utc("2026-03-01T10:05:00")) == 1
    return kept, withdrawn, expiring


async def _retract(store: SqlStore, withdrawn: Any, expiring: Any) -> None:
    await store.transition(withdrawn.id, Action.WITHDRAW, actor=REVIEWER, reason="内容有误")
    assert await store.expire_due(now=utc("2099-01-02T00:00:00")) == [expiring.id]


def _check(sink: SmtpSink, kept: Any, withdrawn: Any, expiring: Any) -> None:
    [mail] = [m.parsed() for m in sink.received if m.rcpt_tos == [ALL]]
    text = _texts(mail)
    assert KEPT in text and f"/items/{kept.id}" in text
    for gone, words in (
        (withdrawn, ("将被撤回", GONE_SUMMARY)),
        (expiring, ("将到期", EXPIRED_SUMMARY)),
    ):
        assert f"/items/{gone.id}" not in text
        for word in words:
            assert word not in text


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_digest_drops_items_withdrawn_or_expired_after_planning(
    mail_store_factory: Any, smtp_sink: tuple[SmtpSink, int], backend: str
) -> None:
    sink, port = smtp_sink
    async with mail_store_factory(port, backend) as store:
        kept, withdrawn, expiring = await _plan(store)
        # taken down after the digest was planned, before it went out
        await _retract(store, withdrawn, expiring)
        worker = DeliveryWorker(store)
        await worker.start()
        try:
            await wait_settled(store)
        finally:
            await worker.stop()
        _check(sink, kept, withdrawn, expiring)


async def test_a_digest_loaded_before_the_withdrawal_drops_the_item(
    mail_store_factory: Any, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """A worker that read the digest (for its first recipients) before the withdrawal must
    not send the withdrawn item to the rest."""
    sink, port = smtp_sink
    async with mail_store_factory(port, "sqlite") as store:
        kept, withdrawn, expiring = await _plan(store)
        worker = DeliveryWorker(store)
        [(key,)] = await _digest_keys(store)
        await worker._subject(key)  # read for the first recipients, before the withdrawal
        await _retract(store, withdrawn, expiring)
        await worker.start()
        try:
            await wait_settled(store)
        finally:
            await worker.stop()
        _check(sink, kept, withdrawn, expiring)


async def _digest_keys(store: SqlStore) -> list[Any]:
    import sqlalchemy as sa

    from publisher.store import schema as t

    d = t.deliveries
    async with store.read() as conn:
        return list(
            (await conn.execute(sa.select(d.c.subject).where(d.c.subject.like("digest:%")))).all()
        )
