"""A year of data (2025) built through the store, and the counts the tests expect from it.

Every item, delivery and request is described first as plain data (`Spec`, `Req`), then
written through the store's normal paths: create, submit, approve, edit, withdraw,
expire (with the `now` the store takes), import, and the register. The expected cells
are counted from the descriptions alone, with the working days of `tests.report`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from publisher.calendar import parse_calendar_file, set_year
from publisher.content import ItemCreate, content_from
from publisher.models import Action, Channel
from publisher.register import (
    ApplicantType,
    CloseIn,
    Outcome,
    PauseIn,
    PauseKind,
    Register,
    RequestIn,
    ResumeIn,
)
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import EDITOR, REVIEWER
from tests.report import CALENDAR_2025, official_working_days

TZ = ZoneInfo("Asia/Shanghai")
YEAR = 2025
CATEGORIES = ["zwgk", "nync", "tdzs", "shjz", "czys", "yjgl", "qt"]
CHANNEL_SETS: list[list[str]] = [
    ["portal", "rss", "sms", "email", "board"],
    ["portal", "rss"],
    ["board"],
    ["portal", "rss", "board"],
    ["sms", "email"],
]
#: working days from 成文 to publication; more than 20 is late
OFFSETS = [3, 10, 19, 20, 21, 27]


def wd_after(day: date, n: int) -> date:
    """The n-th working day after `day` by the official schedule (the test's own count)."""
    days = official_working_days(day.year) + official_working_days(day.year + 1)
    return [d for d in days if d > day][n - 1]


def at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=TZ)


@dataclass
class Spec:
    written_on: date
    published_on: date
    category: str
    channels: list[str]
    proactive: bool = True
    imported: bool = False
    withdrawn_on: date | None = None
    expires_on: date | None = None
    #: (the day the change was made, the day the correction was approved)
    corrected: tuple[date, date] | None = None
    legal: dict[str, Any] = field(default_factory=dict)


@dataclass
class Req:
    applicant_type: ApplicantType
    received_on: date
    closed_on: date | None = None
    outcome: Outcome | None = None


def item_specs() -> list[Spec]:
    specs: list[Spec] = []
    pool = [d for d in official_working_days(YEAR) if d <= date(YEAR, 10, 15)]
    for i in range(220):
        written = pool[(i * 7) % len(pool)]
        k = OFFSETS[i % len(OFFSETS)]
        spec = Spec(
            written_on=written,
            published_on=wd_after(written, k),
            category=CATEGORIES[i % len(CATEGORIES)],
            channels=CHANNEL_SETS[i % len(CHANNEL_SETS)],
        )
        if i % 10 == 3:
            spec.withdrawn_on = spec.published_on + timedelta(days=3)
        elif i % 15 == 1:
            approved = spec.published_on + timedelta(days=5)
            # every other correction comes more than 20 working days after its change
            made = approved - timedelta(days=45 if i % 30 == 1 else 2)
            spec.corrected = (made, approved)
        elif i % 12 == 5:
            spec.expires_on = date(YEAR, 12, 15)
        specs.append(spec)
    # archival items imported with their own dates (their feeds are the only channel)
    for i in range(30):
        written = pool[(i * 11 + 5) % len(pool)]
        specs.append(
            Spec(
                written_on=written,
                published_on=wd_after(written, OFFSETS[(i + 2) % len(OFFSETS)]),
                category=CATEGORIES[(i + 3) % len(CATEGORIES)],
                channels=CHANNEL_SETS[i % len(CHANNEL_SETS)],
                imported=True,
            )
        )
    # not proactive: published but never counted as 主动公开
    for i in range(5):
        specs.append(
            Spec(date(YEAR, 3, 3 + i), date(YEAR, 3, 10 + i), "shjz", ["portal"], proactive=False)
        )
    # the years around
    for i in range(8):
        specs.append(Spec(date(2024, 6, 3 + i), date(2024, 6, 12 + i), "nync", ["portal", "rss"]))
    for i in range(4):
        specs.append(Spec(date(2026, 1, 5 + i), date(2026, 1, 12 + i), "zwgk", ["rss"]))
    # regulations (规章) and normative documents (行政规范性文件)
    legal = [
        (date(2024, 3, 1), date(2024, 3, 6), {"legal_kind": "regulation"}),
        (date(2025, 4, 1), date(2025, 4, 8), {"legal_kind": "regulation"}),
        (date(2024, 5, 6), date(2024, 5, 9), {"legal_kind": "regulation", "repealed_on": "2025-06-30"}),
        (date(2025, 2, 10), date(2025, 2, 14), {"legal_kind": "normative", "valid_until": "2025-11-30"}),
        (date(2025, 7, 1), date(2025, 7, 4), {"legal_kind": "normative", "repealed_on": "2026-03-01"}),
        (date(2025, 8, 1), date(2025, 8, 5), {"legal_kind": "normative", "withdraw": True}),
        (date(2024, 1, 8), date(2024, 1, 10), {"legal_kind": "normative", "valid_from": "2024-02-01", "valid_until": "2027-01-31"}),
        (date(2025, 12, 1), date(2025, 12, 3), {"legal_kind": "normative", "valid_from": "2026-02-01"}),
        (date(2026, 1, 5), date(2026, 1, 8), {"legal_kind": "normative"}),
    ]  # fmt: skip
    for written, published, extra in legal:
        spec = Spec(written, published, "zwgk", ["portal", "rss"], legal=dict(extra))
        if spec.legal.pop("withdraw", False):
            spec.withdrawn_on = published + timedelta(days=20)
        specs.append(spec)
    return specs


def request_specs() -> list[Req]:
    types = list(ApplicantType)
    reqs: list[Req] = []
    # one request for every outcome, closed in the year
    for n, outcome in enumerate(Outcome):
        received = date(YEAR, 1 + n % 11, 3 + n)
        reqs.append(Req(types[n % len(types)], received, received + timedelta(days=12), outcome))
    # a second round for natural persons and businesses, to make the columns differ
    for n, outcome in enumerate(
        [Outcome.GRANTED, Outcome.GRANTED, Outcome.PARTIAL, Outcome.UNABLE_NOT_HELD]
    ):
        reqs.append(Req(types[n % 2], date(YEAR, 5, 6 + n), date(YEAR, 6, 2 + n), outcome))
    # carried in from 2024: three answered in 2025, one still open at the end of 2025
    reqs += [
        Req(ApplicantType.NATURAL_PERSON, date(2024, 12, 9), date(YEAR, 1, 6), Outcome.GRANTED),
        Req(ApplicantType.LEGAL_SERVICES, date(2024, 12, 16), date(YEAR, 1, 10), Outcome.REFUSED_THIRD_PARTY),
        Req(ApplicantType.BUSINESS, date(2024, 12, 23), date(YEAR, 1, 20), Outcome.OTHER_NO_CORRECTION),
        Req(ApplicantType.NATURAL_PERSON, date(2024, 12, 30)),
    ]  # fmt: skip
    # 2024 only: received and answered before the year
    reqs += [
        Req(ApplicantType.RESEARCH, date(2024, 3, 4), date(2024, 3, 20), Outcome.GRANTED),
        Req(ApplicantType.NATURAL_PERSON, date(2024, 11, 4), date(2024, 12, 31), Outcome.PARTIAL),
    ]
    # carried out into 2026: still open, or answered only in 2026
    reqs += [
        Req(ApplicantType.NATURAL_PERSON, date(YEAR, 12, 10)),
        Req(ApplicantType.PUBLIC_INTEREST, date(YEAR, 12, 22)),
        Req(ApplicantType.OTHER_ORG, date(YEAR, 11, 28)),
        Req(ApplicantType.NATURAL_PERSON, date(YEAR, 12, 15), date(2026, 1, 9), Outcome.GRANTED),
        Req(ApplicantType.BUSINESS, date(YEAR, 12, 31), date(2026, 1, 20), Outcome.UNABLE_UNCLEAR),
    ]
    reqs.append(Req(ApplicantType.NATURAL_PERSON, date(2026, 1, 5)))  # next year's
    return reqs


#: (channel, state, year created, how many)
DELIVERIES = [
    ("portal", "delivered", 2025, 40),
    ("portal", "failed", 2025, 2),
    ("rss", "sent", 2025, 60),
    ("sms", "delivered", 2025, 70),
    ("sms", "sent", 2025, 5),
    ("sms", "failed", 2025, 8),
    ("sms", "unknown", 2025, 2),
    ("sms", "queued", 2025, 3),
    ("sms", "skipped", 2025, 4),
    ("email", "sent", 2025, 30),
    ("email", "retrying", 2025, 1),
    ("board", "delivered", 2025, 12),
    ("sms", "failed", 2024, 9),
    ("portal", "delivered", 2026, 3),
]


# -- writing it ---------------------------------------------------------------------------


async def build_year(store: SqlStore) -> tuple[list[Spec], list[Req]]:
    days = parse_calendar_file(CALENDAR_2025.read_text(encoding="utf-8"), "calendar-2025.txt")
    await set_year(store, YEAR, days, actor="alice")
    specs = item_specs()
    for n, spec in enumerate(specs):
        await _write_item(store, spec, n)
    expiring = [s for s in specs if s.expires_on]
    assert expiring
    assert len(await store.expire_due(now=at(date(YEAR, 12, 20)))) == len(expiring)
    await _write_deliveries(store)
    reqs = request_specs()
    register = Register(store)
    for req in reqs:
        made = await register.add(
            RequestIn(received_on=req.received_on, applicant_type=req.applicant_type, subject="申请公开2025年村道建设资金使用情况"),
            actor="alice",
        )  # fmt: skip
        if req.outcome is Outcome.OTHER_NO_CORRECTION:  # asked to correct, never did
            await register.pause(made.id, PauseIn(kind=PauseKind.CORRECTION, started_on=req.received_on + timedelta(days=2)))  # fmt: skip
        if req.outcome is Outcome.REFUSED_THIRD_PARTY:  # a third party was consulted first
            await register.pause(made.id, PauseIn(kind=PauseKind.CONSULTATION, started_on=req.received_on + timedelta(days=1)))  # fmt: skip
            await register.resume(made.id, ResumeIn(ended_on=req.received_on + timedelta(days=8)))
        if req.closed_on is not None:
            assert req.outcome is not None
            await register.close(made.id, CloseIn(outcome=req.outcome, closed_on=req.closed_on))
    return specs, reqs


def _fields(spec: Spec, n: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "title": f"上余镇{spec.category}信息第{n}号",
        "body": "各村：\n\n现将有关事项公告如下。",
        "category": spec.category,
        "written_at": spec.written_on.isoformat(),
        "channels": spec.channels,
        **spec.legal,
    }
    if not spec.proactive:
        fields.update(disclosure="on_request", disclosure_reason="涉及第三方，依申请公开")
    if spec.expires_on:
        fields["expires_at"] = at(spec.expires_on, 0).isoformat()
    return fields


async def _write_item(store: SqlStore, spec: Spec, n: int) -> None:
    content = content_from(ItemCreate.model_validate(_fields(spec, n)), store.config)
    if spec.imported:
        await store.import_item(
            content, index_no=None, published_at=at(spec.published_on), actor="import"
        )
        return
    item = await store.create_item(content, actor=EDITOR)
    await store.transition(item.id, Action.SUBMIT, actor=EDITOR)
    item = await store.transition(
        item.id, Action.APPROVE, actor=REVIEWER, now=at(spec.published_on)
    )
    if spec.corrected is not None:
        made, approved = spec.corrected
        item = await store.update_item(item.id, {"title": item.content.title + "（更正）"}, actor=EDITOR, if_match=item.etag)  # fmt: skip
        assert item.pending is not None
        async with store.write() as conn:  # the change was made on `made`
            await conn.execute(
                t.revisions.update()
                .where(
                    t.revisions.c.item_id == item.id, t.revisions.c.number == item.pending.number
                )
                .values(created_at=at(made))
            )
        await store.transition(item.id, Action.SUBMIT, actor=EDITOR)
        await store.transition(item.id, Action.APPROVE, actor=REVIEWER, now=at(approved))
    if spec.withdrawn_on is not None:
        await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="内容有误", now=at(spec.withdrawn_on))  # fmt: skip


#: (channel, state, year) of DELIVERIES whose rows publish the year's items (round robin):
#: the others went out for nothing the report counts as a publication
PUBLISHING = {("portal", "delivered", 2025), ("rss", "sent", 2025)}
#: the items one email digest carried (sent), and confirmation mails (never publications)
DIGEST_ITEMS = 4
CONFIRMATION_MAILS = 2


async def _published_ids(store: SqlStore) -> list[str]:
    i = t.items
    async with store.read() as conn:
        rows = await conn.execute(
            sa.select(i.c.id)
            .where(
                i.c.published_at >= datetime(YEAR - 1, 12, 31, 16, tzinfo=UTC),
                i.c.published_at < datetime(YEAR, 12, 31, 16, tzinfo=UTC),
                i.c.disclosure == "proactive",
            )
            .order_by(i.c.published_at, i.c.id)
        )
        return [str(r.id) for r in rows]


async def _write_deliveries(store: SqlStore) -> None:
    ids = await _published_ids(store)
    rows = []
    when = datetime(YEAR, 6, 15, 4, tzinfo=UTC)
    for n in range(CONFIRMATION_MAILS):  # transactional: no publication, never 送达
        rows.append({"subject": f"msg:{n}", "channel": "email", "target": f"m:{n}", "item_id": None, "state": "sent", "priority": 20, "bypass_quiet": True, "attempts": 1, "due_at": when, "created_at": when, "updated_at": when})  # fmt: skip
    rows.append({"subject": "digest:2025-06-15:x", "channel": "email", "target": "r:1", "item_id": None, "state": "sent", "priority": 0, "bypass_quiet": False, "attempts": 1, "due_at": when, "created_at": when, "updated_at": when})  # fmt: skip
    for channel, state, year, count in DELIVERIES:
        publishing = (channel, state, year) in PUBLISHING
        for i in range(count):
            when = datetime(year, 6, 15, 4, tzinfo=UTC)
            rows.append(
                {
                    "subject": f"test:{channel}:{state}:{year}",
                    "channel": channel,
                    "target": f"e:{i}",
                    "item_id": ids[i % len(ids)] if publishing else None,
                    "publishes": publishing,
                    "state": state,
                    "priority": 0,
                    "bypass_quiet": False,
                    "attempts": 1,
                    "due_at": when,
                    "created_at": when,
                    "updated_at": when,
                }
            )
    async with store.write() as conn:
        await conn.execute(t.deliveries.insert(), [{"publishes": False, **r} for r in rows])
        await conn.execute(
            t.digest_items.insert(),
            [
                {"subject": "digest:2025-06-15:x", "item_id": item_id, "event_id": 0}
                for item_id in ids[:DIGEST_ITEMS]
            ],
        )


# -- what the tests expect ------------------------------------------------------------------


def in_year(day: date | None) -> bool:
    return day is not None and day.year == YEAR


def expected_publications(specs: list[Spec]) -> dict[str, Any]:
    counted = [s for s in specs if s.proactive and in_year(s.published_on)]
    # what reached each channel (the ledger), not the items' channel lists
    by_channel: Counter[str] = Counter()
    for channel, state, year, count in DELIVERIES:
        if (channel, state, year) in PUBLISHING:
            by_channel[channel] += min(count, len(counted))
    by_channel["email"] += DIGEST_ITEMS
    late_corrections = sum(
        1 for s in specs if s.corrected and in_year(s.corrected[1]) and s.corrected[1] > wd_after(s.corrected[0], 20)
    )  # fmt: skip
    return {
        "published": len(counted),
        "by_category": Counter(s.category for s in counted),
        "by_month": Counter(s.published_on.month for s in counted),
        "by_channel": by_channel,
        "late": sum(1 for s in counted if s.published_on > wd_after(s.written_on, 20)),
        "corrected": sum(1 for s in specs if s.corrected and in_year(s.corrected[1])),
        "late_corrections": late_corrections,
        "withdrawn": sum(1 for s in specs if in_year(s.withdrawn_on) and s.proactive),
        "expired": sum(1 for s in specs if s.expires_on and s.proactive),
    }


def expected_deliveries() -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {
        ch.value: dict.fromkeys(("delivered", "failed", "pending", "skipped"), 0) for ch in Channel
    }
    group = {"delivered": "delivered", "sent": "delivered", "failed": "failed", "unknown": "failed", "queued": "pending", "retrying": "pending", "skipped": "skipped"}  # fmt: skip
    for channel, state, year, count in DELIVERIES:
        if year == YEAR:
            out[channel][group[state]] += count
    out["email"]["delivered"] += DIGEST_ITEMS  # one per item the digest carried
    return out


def expected_legal(specs: list[Spec]) -> dict[str, dict[str, int]]:
    end = date(YEAR, 12, 31)
    out = {k: {"made": 0, "repealed": 0, "in_force": 0} for k in ("regulation", "normative")}
    for s in specs:
        if not s.legal:
            continue
        cells = out[s.legal["legal_kind"]]
        repealed = date.fromisoformat(s.legal["repealed_on"]) if "repealed_on" in s.legal else None
        until = date.fromisoformat(s.legal["valid_until"]) if "valid_until" in s.legal else None
        start = date.fromisoformat(s.legal["valid_from"]) if "valid_from" in s.legal else None
        cells["made"] += in_year(s.published_on)
        cells["repealed"] += in_year(repealed)
        cells["in_force"] += (
            s.published_on <= end
            and (s.withdrawn_on is None or s.withdrawn_on > end)
            and (start is None or start <= end)
            and (until is None or until >= end)
            and (repealed is None or repealed > end)
        )
    return out


def expected_table3(reqs: list[Req]) -> dict[str, dict[str, int]]:
    first, last = date(YEAR, 1, 1), date(YEAR, 12, 31)
    cols = [a.value for a in ApplicantType]
    rows = ["new", "carried_in", *(o.value for o in Outcome), "total", "carried_out"]
    table = {r: dict.fromkeys([*cols, "total"], 0) for r in rows}
    for r in reqs:
        col = r.applicant_type.value
        if first <= r.received_on <= last:
            table["new"][col] += 1
        if r.received_on < first and (r.closed_on is None or r.closed_on >= first):
            table["carried_in"][col] += 1
        if r.closed_on is not None and first <= r.closed_on <= last:
            assert r.outcome is not None
            table[r.outcome.value][col] += 1
            table["total"][col] += 1
        if r.received_on <= last and (r.closed_on is None or r.closed_on > last):
            table["carried_out"][col] += 1
    for row in table.values():
        row["total"] = sum(row[c] for c in cols)
    return table
