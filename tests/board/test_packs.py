"""Print packs through the engine, on SQLite and PostgreSQL: what each board is told to post
and take down after a publication, a correction, a withdrawal and an expiry; the operator
told once by SMS and email with signed links; confirmation makes the row delivered with
the time; the flags (overdue, short posting)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from publisher.addresses import AddressBox
from publisher.boards import BoardCreate, Boards
from publisher.content import ItemCreate, content_from
from publisher.ledger import DeliveryState
from publisher.models import Action, Item
from publisher.packs import PackLinks, PackNotReady, confirm, flags, list_packs
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.board.conftest import need_tools, page_text, squeeze
from tests.conftest import EDITOR, REVIEWER, item_fields, publish
from tests.engine.conftest import wait_settled
from tests.engine.helpers import running, transitions


async def _item(store: SqlStore, **overrides: Any) -> Item:
    overrides.setdefault("channels", ["board"])
    content = content_from(ItemCreate.model_validate(item_fields(**overrides)), store.config)
    return await store.create_item(content, actor=EDITOR)


async def _packs(store: SqlStore, item_id: str) -> list[dict[str, Any]]:
    """The item's packs, oldest first: board name, event, lines, ledger row."""
    p, pi, b, d = t.board_packs, t.board_pack_items, t.boards, t.deliveries
    async with store.read() as conn:
        packs = (
            await conn.execute(
                sa.select(p.c.id, p.c.kind, b.c.name, p.c.notified_at, p.c.confirmed_at)
                .join(b, b.c.id == p.c.board_id)
                .where(p.c.item_id == item_id)
                .order_by(p.c.id)
            )
        ).all()
        out = []
        for pack in packs:
            lines = (
                await conn.execute(
                    sa.select(pi.c.action, pi.c.revision, pi.c.index_no, pi.c.reason)
                    .where(pi.c.pack_id == pack.id)
                    .order_by(pi.c.action)
                )
            ).all()
            row = (await conn.execute(sa.select(d).where(d.c.subject == f"pack:{pack.id}"))).one()
            out.append(
                {
                    "id": pack.id,
                    "board": pack.name,
                    "event": pack.kind,
                    "lines": [(x.action, x.revision, x.reason) for x in lines],
                    "index_nos": {x.index_no for x in lines},
                    "row": row,
                    "notified": pack.notified_at is not None,
                }
            )
    return out


async def _operator_messages(store: SqlStore) -> list[tuple[str, str, str]]:
    """(channel, address, text) of the messages queued for board operators."""
    box = AddressBox(store.config.data_key())
    m = t.messages
    async with store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(m).where(m.c.purpose.startswith("board_pack")).order_by(m.c.id)
            )
        ).all()
    return [(r.channel, box.open(r.address_enc), box.open(r.body_enc)) for r in rows]


async def _boards(store: SqlStore) -> dict[str, Any]:
    boards = Boards(store)
    return {
        "north": await boards.add(
            BoardCreate(
                name="北村",
                categories=["nync"],
                min_days=10,
                operator_phone="13800138000",
                operator_email="op@example.org",
            )
        ),
        "south": await boards.add(BoardCreate(name="南村", categories=["tdzs"])),
        "town": await boards.add(BoardCreate(name="镇政府", paper="A3")),
    }


async def test_publish_correct_withdraw(store: SqlStore, tmp_path: Path) -> None:
    boards = await _boards(store)
    item = await publish(store, await _item(store))
    async with running(store):
        await wait_settled(store, item.id)
        packs = await _packs(store, item.id)
        # published: each board that carries the category gets a pack that posts it
        assert [(p["board"], p["event"], p["lines"]) for p in packs] == [
            ("北村", "published", [("post", 1, "新发布")]),
            ("镇政府", "published", [("post", 1, "新发布")]),
        ]
        item = await store.get_item(item.id)
        assert all(p["index_nos"] == {item.index_no} for p in packs)
        for p in packs:
            row = p["row"]
            assert (row.channel, row.state, row.item_id) == ("board", "sent", item.id)
            assert row.target == boards["north" if p["board"] == "北村" else "town"].target
            assert (tmp_path / "packs" / f"pack-{p['id']}.pdf").read_bytes().startswith(b"%PDF")
            assert p["notified"]
        # the operator of 北村 was told once, by SMS and by email, with signed links
        messages = await _operator_messages(store)
        assert [(c, a) for c, a, _ in messages] == [
            ("sms", "+8613800138000"),
            ("email", "op@example.org"),
        ]
        north = packs[0]
        links = PackLinks(store.config)
        sms = messages[0][2]
        pdf_url = re.search(r"https?://\S+/packs/\d+\?token=\S+", sms)
        confirm_url = re.search(r"https?://\S+/packs/\d+/confirm\?token=\S+", sms)
        assert pdf_url and confirm_url
        assert f"/boards/{boards['north'].id}/packs/{north['id']}" in confirm_url.group()
        token = confirm_url.group().rpartition("token=")[2]
        links.check(links_purpose("confirm"), boards["north"].id, north["id"], token)

        # the operator confirms: delivered, with the time
        before = datetime.now(UTC)
        done = await confirm(store, boards["north"].id, north["id"], by="operator")
        assert not done.repeat
        row = (await _packs(store, item.id))[0]["row"]
        assert row.state == "delivered" and row.delivered_at >= before - timedelta(seconds=1)
        assert await transitions(store, row.id) == ["queued", "sending", "sent", "delivered"]
        again = await confirm(store, boards["north"].id, north["id"], by="operator")
        assert again.repeat and again.confirmed_at == done.confirmed_at

        # corrected: post the new text, take the old one down where it was up
        current = await store.get_item(item.id)
        await store.update_item(
            item.id,
            {"body": "各村：\n\n更正后的正文。", "correction_note": "更正正文"},
            actor=EDITOR,
            if_match=current.etag,
        )
        await store.transition(item.id, Action.SUBMIT, actor=EDITOR)
        await store.transition(item.id, Action.APPROVE, actor=REVIEWER)
        await wait_settled(store, item.id)
        corrected = [p for p in await _packs(store, item.id) if p["event"] == "corrected"]
        assert [(p["board"], p["lines"]) for p in corrected] == [
            ("北村", [("post", 2, "更正后的新版本"), ("takedown", 1, "已更正，撤下旧版本")]),
            ("镇政府", [("post", 2, "更正后的新版本"), ("takedown", 1, "已更正，撤下旧版本")]),
        ]

        # the cover sheet of 北村's correction pack says the same, then the new poster
        need_tools()
        pdf = tmp_path / "packs" / f"pack-{corrected[0]['id']}.pdf"
        cover = squeeze(page_text(pdf, 1, raw=True))
        index_no = (await store.get_item(item.id)).index_no
        assert "请张贴（1份）" in cover and "请撤下（1份）" in cover
        assert cover.count(squeeze(index_no or "")) == 2
        assert "已更正，撤下旧版本" in cover and "更正后的新版本" in cover
        assert "更正后的正文" in squeeze(page_text(pdf))
        assert "未满本栏最短张贴期" not in cover  # a correction keeps the item up

        # withdrawn: take it down wherever it is up, with the reviewer's reason
        await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="内容有误")
        await wait_settled(store, item.id)
        withdrawn = [p for p in await _packs(store, item.id) if p["event"] == "withdrawn"]
        assert [(p["board"], p["lines"]) for p in withdrawn] == [
            ("北村", [("takedown", 2, "已撤回：内容有误")]),
            ("镇政府", [("takedown", 2, "已撤回：内容有误")]),
        ]
    # 南村 never carried it; 北村's operator was told of each of its three packs twice (SMS, email)
    assert all(p["board"] != "南村" for p in await _packs(store, item.id))
    assert len(await _operator_messages(store)) == 6


def links_purpose(name: str) -> Any:
    from publisher.packs import LinkPurpose

    return LinkPurpose(name)


async def test_expiry_takes_down_and_flags_a_short_posting(store: SqlStore) -> None:
    boards = await _boards(store)
    expires = datetime.now(UTC) + timedelta(days=3)
    item = await publish(store, await _item(store, expires_at=expires.isoformat()))
    async with running(store):
        await wait_settled(store, item.id)
        first = await _packs(store, item.id)
        north = next(p for p in first if p["board"] == "北村")
        # not confirmed at once: past confirm_within_hours the pack is overdue
        later = datetime.now(UTC) + timedelta(hours=73)
        assert (await flags(store, [north["row"]], now=later))[north["row"].id] == ["overdue"]
        assert await flags(store, [north["row"]]) == {}
        await confirm(store, boards["north"].id, north["id"], by="alice")

        assert await store.expire_due(now=expires + timedelta(seconds=1)) == [item.id]
        await wait_settled(store, item.id)
        expired = [p for p in await _packs(store, item.id) if p["event"] == "expired"]
        assert [(p["board"], p["lines"]) for p in expired] == [
            ("北村", [("takedown", 1, "已到期")]),
            ("镇政府", [("takedown", 1, "已到期")]),
        ]
        # 北村 wants 10 days; the item was up for less: its take-down is flagged
        north_down = next(p for p in expired if p["board"] == "北村")
        town_down = next(p for p in expired if p["board"] == "镇政府")
        found = await flags(store, [north_down["row"], town_down["row"]])
        assert found.get(north_down["row"].id) == ["short_posting"]
        assert town_down["row"].id not in found  # no minimum there
        listed = await list_packs(store, boards["north"].id)
        assert [p["event"] for p in listed] == ["expired", "published"]
        assert listed[0]["take_down"] == [item.index_no or (await store.get_item(item.id)).index_no]


async def test_confirming_a_pack_not_out_yet_is_refused(store: SqlStore) -> None:
    boards = await _boards(store)
    item = await publish(store, await _item(store))
    from publisher.fanout import FanOut
    from publisher.ledger import Ledger

    assert await FanOut(store, Ledger(store)).plan_pending() == 2  # planned, not sent
    pack = next(p for p in await _packs(store, item.id) if p["board"] == "北村")
    assert pack["row"].state == DeliveryState.QUEUED.value
    try:
        await confirm(store, boards["north"].id, pack["id"], by="alice")
    except PackNotReady as exc:
        assert "not ready" in exc.detail
    else:
        raise AssertionError("a queued pack was confirmed")
    # planning again adds nothing
    async with store.write() as conn:
        await conn.execute(t.item_events.update().values(planned_at=None))
    assert await FanOut(store, Ledger(store)).plan_pending() == 0


async def test_a_pack_is_not_finished_until_its_operator_is_told(store: SqlStore) -> None:
    """Issue 18.2: the board row is `sent` once the pack is made, but with no SMS gateway
    or SMTP server the operator's notices stay queued: the progress must not say 100%."""
    from publisher.packs import packs_awaiting_operator
    from publisher.web.ui.dashboard import AWAITING_OPERATOR, progress

    await _boards(store)
    item = await publish(store, await _item(store))
    async with running(store):
        await wait_settled(store, item.id)
    counts = {"board": {"sent": 2}}  # 北村 (operator with contacts) and 镇政府 (none)
    assert await packs_awaiting_operator(store, item.id) == 1
    shown = progress(counts, awaiting_operator=1)["channels"][0]
    assert shown["states"] == {"sent": 1, AWAITING_OPERATOR: 1}
    assert shown["percent"] == 50 and shown["done"] == 1

    # once one of the operator's notices has gone out, the pack is finished
    d, m = t.deliveries, t.messages
    async with store.write() as conn:
        first = (
            (
                await conn.execute(
                    sa.select(m.c.id).where(m.c.purpose.startswith("board_pack")).order_by(m.c.id)
                )
            )
            .scalars()
            .first()
        )
        await conn.execute(
            d.update().where(d.c.subject == f"msg:{first}").values(state=DeliveryState.SENT.value)
        )
    assert await packs_awaiting_operator(store, item.id) == 0
    assert progress(counts)["channels"][0]["percent"] == 100
