"""Daily digests: assembled in the site's time zone at the configured time, one mail per
subscriber per day listing only their categories, none on a day without items, each item
in at most one digest, and the digest rows shown with the item's deliveries."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from publisher.digests import Digests, latest_boundary
from publisher.models import Item
from publisher.recipients import Consent, Frequency, Recipients
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import BACKENDS, publish
from tests.engine.conftest import wait_settled
from tests.engine.helpers import api_on, running
from tests.mail.conftest import SmtpSink
from tests.mail.test_channel import email_item

CONSENT = Consent(method="email_confirmed", text="同意")
ALL, NYNC, CZYS, NOW = (
    "all@example.org",
    "nync@example.org",
    "czys@example.org",
    "immediate@example.org",
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def published_at(store: SqlStore, when: str, **fields: Any) -> Item:
    """A published item whose publication event is dated `when` (UTC)."""
    item = await publish(store, await email_item(store, **fields))
    async with store.write() as conn:
        await conn.execute(
            t.item_events.update()
            .where(t.item_events.c.item_id == item.id)
            .values(created_at=utc(when), planned_at=utc(when))
        )
    return item


async def digest_rows(store: SqlStore) -> dict[str, list[str]]:
    """Recipient address -> the digest subjects queued for it, in order."""
    d = t.deliveries
    async with store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(d.c.subject, t.recipients.c.address_enc)
                .join(
                    t.recipients,
                    d.c.target == sa.literal("r:") + sa.cast(t.recipients.c.id, sa.String),
                )
                .where(d.c.subject.like("digest:%"))
                .order_by(d.c.subject)
            )
        ).all()
    box = Recipients(store).box
    out: dict[str, list[str]] = {}
    for subject, sealed in rows:
        out.setdefault(box.open(sealed), []).append(subject)
    return out


async def listed(store: SqlStore, subject: str) -> list[str]:
    di = t.digest_items
    async with store.read() as conn:
        rows = await conn.scalars(
            sa.select(di.c.item_id).where(di.c.subject == subject).order_by(di.c.event_id)
        )
        return list(rows.all())


def test_the_digest_time_is_read_in_the_site_time_zone(config: Any) -> None:
    # 18:00 in Shanghai is 10:00 UTC: at 09:59 UTC the last digest time is yesterday's
    assert latest_boundary(config, utc("2026-03-01T09:59:00")).isoformat() == (
        "2026-02-28T18:00:00+08:00"
    )
    assert latest_boundary(config, utc("2026-03-01T10:00:00")).isoformat() == (
        "2026-03-01T18:00:00+08:00"
    )
    # 23:30 UTC is already the next local day
    assert latest_boundary(config, utc("2026-03-01T23:30:00")).date() == date(2026, 3, 1)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_daily_digests(
    mail_store_factory: Any, smtp_sink: tuple[SmtpSink, int], backend: str
) -> None:
    sink, port = smtp_sink
    async with mail_store_factory(port, backend) as store:
        recipients = Recipients(store)
        for address, categories in ((ALL, []), (NYNC, ["nync"]), (CZYS, ["czys"])):
            await recipients.subscribe(
                "email", address, CONSENT, categories=categories, frequency=Frequency.DAILY
            )
        await recipients.subscribe("email", NOW, CONSENT)  # immediate: never in a digest
        # 17:30 local on 1 March: in the digest of 1 March (18:00)
        first = await published_at(store, "2026-03-01T09:30:00", title="三月一日农业通知")
        # 18:30 local: after the cut, so in the digest of 2 March
        late = await published_at(
            store, "2026-03-01T10:30:00", title="三月一日晚财政公告", category="czys"
        )
        # 07:00 local on 2 March, still 1 March in UTC: the digest of 2 March
        early = await published_at(store, "2026-03-01T23:00:00", title="三月二日晨农业通知")

        digests = Digests(store)
        assert await digests.plan_due(utc("2026-03-01T10:05:00")) == 2  # ALL and NYNC
        assert await Digests(store).plan_due(utc("2026-03-01T10:06:00")) == 0  # planned once
        march_2 = await Digests(store).plan_due(utc("2026-03-02T10:05:00"))
        assert march_2 == 3  # ALL (2 items), NYNC (1), CZYS (1)
        assert await Digests(store).plan_due(utc("2026-03-03T10:05:00")) == 0  # no items
        async with store.read() as conn:
            runs = (await conn.execute(sa.select(t.digest_runs).order_by("day"))).all()
        assert [r.day for r in runs] == [date(2026, 3, d) for d in (1, 2, 3)]
        assert all(r.planned_at is not None for r in runs)
        assert runs[1].window_start == runs[0].window_end == utc("2026-03-01T10:00:00")

        rows = await digest_rows(store)
        assert NOW not in rows
        assert [s[:17] for s in rows[ALL]] == ["digest:2026-03-01", "digest:2026-03-02"]
        assert [await listed(store, s) for s in rows[ALL]] == [[first.id], [late.id, early.id]]
        assert [await listed(store, s) for s in rows[NYNC]] == [[first.id], [early.id]]
        assert [await listed(store, s) for s in rows[CZYS]] == [[late.id]]
        # one subject per distinct list: ALL and NYNC share 1 March's
        assert rows[ALL][0] == rows[NYNC][0]
        # each item in at most one digest per subscriber
        for subjects in rows.values():
            items = [i for s in subjects for i in await listed(store, s)]
            assert len(items) == len(set(items))

        async with running(store) as worker, api_on(store, worker) as api:
            await wait_settled(store)
            # the item's deliveries include the digest rows that carry it
            status, body, _ = await api.call("GET", f"/api/v1/items/{early.id}/deliveries")
        assert status == 200
        digest_rows_shown = [r for r in body["deliveries"] if r["event"] == "digest"]
        assert sorted(r["target"] for r in digest_rows_shown) == [
            "a***@example.org",
            "n***@example.org",
        ]
        assert {r["state"] for r in digest_rows_shown} == {"sent"}
        assert body["counts"]["email"]["sent"] == 2

        subjects = {m.rcpt_tos[0]: [] for m in sink.received}
        for m in sink.received:
            subjects[m.rcpt_tos[0]].append(m.parsed())
        assert set(subjects) == {ALL, NYNC, CZYS}
        assert len(subjects[ALL]) == 2 and len(subjects[CZYS]) == 1
        titles = sorted(str(m["Subject"]) for m in subjects[ALL])
        assert titles == [
            f"{store.config.site.name}每日摘要（2026年3月1日）",
            f"{store.config.site.name}每日摘要（2026年3月2日）",
        ]
        march_2_mail = next(m for m in subjects[ALL] if "3月2日" in str(m["Subject"]))
        text = march_2_mail.get_body(("plain",)).get_content()
        assert text.index("三月一日晚财政公告") < text.index("三月二日晨农业通知")
        assert "三月一日农业通知" not in text
        assert march_2_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        czys_text = subjects[CZYS][0].get_body(("html",)).get_content()
        assert "三月一日晚财政公告" in czys_text and "农业" not in czys_text


async def test_a_digest_whose_items_were_all_withdrawn_is_skipped(
    mail_store_factory: Any, smtp_sink: tuple[SmtpSink, int]
) -> None:
    from publisher.models import Action
    from tests.conftest import REVIEWER

    sink, port = smtp_sink
    async with mail_store_factory(port, "sqlite") as store:
        await Recipients(store).subscribe("email", ALL, CONSENT, frequency=Frequency.DAILY)
        item = await published_at(store, "2026-03-01T09:30:00", title="三月一日农业通知")
        assert await Digests(store).plan_due(utc("2026-03-01T10:05:00")) == 1
        # taken down after the digest was planned, before it went out
        await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="撤回")
        async with running(store):
            await wait_settled(store)
        d = t.deliveries
        async with store.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(d.c.state, d.c.reason).where(d.c.subject.like("digest:%"))
                )
            ).all()
        assert [tuple(r) for r in rows] == [("skipped", "withdrawn")]
        assert not [m for m in sink.received if m.rcpt_tos == [ALL]]
