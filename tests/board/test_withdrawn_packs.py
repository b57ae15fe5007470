"""Withdrawal and expiry are final on the boards too (issue 14): a print pack that posts an
item withdrawn or expired since is made again without its poster, listing the item under
请撤下, and the operator's old link (and staff's) serves that pack, never the body; the
PDF made before is deleted; the confirmation page and the operator's message say the same."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

from publisher import packs
from publisher.addresses import AddressBox
from publisher.delivery import DeliveryWorker
from publisher.fanout import FanOut
from publisher.ledger import Ledger
from publisher.models import Action
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.board.conftest import need_tools, page_text, pdf_info, squeeze
from tests.board.test_packs import _boards, _item, _packs
from tests.conftest import REVIEWER, Api, publish
from tests.engine.conftest import wait_settled
from tests.engine.helpers import running

#: a body sentence found nowhere else (not in a title, reason or the cover's notes)
SECRET = "本段正文撤回后不得再出现在任何张贴单上"
BODY = f"各村：\n\n{SECRET}。\n\n请各村于十二月底前完成。"
BOARD = {"name": "北村", "categories": ["nync"], "operator_phone": "13800138000"}


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def _operator_links(store: SqlStore) -> tuple[str, str]:
    """(PDF link, confirmation link) of the first SMS told to an operator, as paths."""
    box = AddressBox(store.config.data_key())
    async with store.read() as conn:
        sms = box.open(
            (
                await conn.execute(
                    sa.select(t.messages.c.body_enc)
                    .where(
                        t.messages.c.purpose.startswith("board_pack"), t.messages.c.channel == "sms"
                    )
                    .order_by(t.messages.c.id)
                    .limit(1)
                )
            ).scalar_one()
        )
    pdf = re.search(r"https?://\S+/packs/\d+\?token=\S+", sms)
    confirm = re.search(r"https?://\S+/confirm\?token=\S+", sms)
    assert pdf and confirm, sms
    return _path(pdf.group()), _path(confirm.group())


def _check_takedown(path: Path, index_no: str, reason: str) -> None:
    """The PDF is a cover sheet alone: nothing to post, the item under 请撤下, no body."""
    text = squeeze(page_text(path, raw=True))
    assert SECRET not in text
    assert pdf_info(path)["Pages"] == "1", text  # the cover, no poster
    assert "请张贴（0份）" in text and "请撤下（1份）" in text
    assert squeeze(index_no) in text and squeeze(reason) in text
    assert "请勿张贴" in text


async def test_old_pack_link_serves_the_take_down_after_withdrawal(
    api: Api, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    need_tools()
    store = sqlite_store
    status, board, _ = await api.call("POST", "/api/v1/boards", who="root-admin", json=BOARD)
    assert status == 201
    item = await publish(store, await _item(store, body=BODY))
    async with running(store):
        await wait_settled(store, item.id)
    [posted] = await _packs(store, item.id)
    pack_id = posted["id"]
    pdf_link, confirm_link = await _operator_links(store)
    assert f"/boards/{board['id']}/packs/{pack_id}?" in pdf_link

    # before: the pack posts the item, its body on the poster
    resp = await api.client.get(pdf_link)
    assert resp.status == 200
    before = tmp_path / "before.pdf"
    before.write_bytes(await resp.read())
    assert SECRET in squeeze(page_text(before))
    kept = tmp_path / "packs" / packs.pdf_name(pack_id)
    assert kept.exists()

    await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="内容有误")
    async with running(store):
        await wait_settled(store, item.id)
    index_no = (await store.get_item(item.id)).index_no or ""

    # after: the same link serves the pack made again, the item to take down, no body
    resp = await api.client.get(pdf_link)
    assert resp.status == 200 and resp.content_type == "application/pdf"
    assert resp.headers["Cache-Control"] == "no-store"
    after = tmp_path / "after.pdf"
    after.write_bytes(await resp.read())
    _check_takedown(after, index_no, "已撤回：内容有误")
    # the PDF made before is gone from the disk; the rebuilt one is kept under its own name
    assert not kept.exists()
    assert (tmp_path / "packs" / packs.pdf_name(pack_id, "withdrawn")).exists()
    again = await api.client.get(pdf_link)  # served from the kept file: still no body
    again_path = tmp_path / "again.pdf"
    again_path.write_bytes(await again.read())
    _check_takedown(again_path, index_no, "已撤回：内容有误")

    # staff's copy of the pack is the same
    status, body, _ = await api.call("GET", f"/api/v1/boards/{board['id']}/packs/{pack_id}/pdf")
    assert status == 200
    staff = tmp_path / "staff.pdf"
    staff.write_bytes(body)
    _check_takedown(staff, index_no, "已撤回：内容有误")

    # the board's pack list says the same
    status, body, _ = await api.call("GET", f"/api/v1/boards/{board['id']}/packs")
    listed = next(p for p in body["packs"] if p["id"] == pack_id)
    assert (listed["post"], listed["take_down"]) == ([], [index_no])

    # the confirmation page lists it to take down, nothing to post
    page = await (await api.client.get(confirm_link)).text()
    assert "请勿张贴" in page and "内容有误" in page
    assert SECRET not in page


async def test_pack_not_sent_yet_is_made_without_the_poster(
    store: SqlStore, tmp_path: Path
) -> None:
    """Planned, then withdrawn before any PDF was made: the pack made from the store (and
    the operator's message, if it goes out) has nothing to post."""
    need_tools()
    boards = await _boards(store)
    item = await publish(store, await _item(store, body=BODY))
    assert await FanOut(store, Ledger(store)).plan_pending() == 2
    north = next(p for p in await _packs(store, item.id) if p["board"] == "北村")

    await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="依申请撤回")
    pdf = tmp_path / "made.pdf"
    pdf.write_bytes(await packs.pack_pdf(store, north["id"]))
    _check_takedown(pdf, (await store.get_item(item.id)).index_no or "", "依申请撤回")
    assert not (tmp_path / "packs" / packs.pdf_name(north["id"])).exists()
    lines = await packs.current_lines(store, north["id"])
    assert [(x.action, x.gone) for x in lines] == [("takedown", "withdrawn")]
    assert lines[0].reason == "已撤回：依申请撤回，请勿张贴；已贴出的请撤下"

    # the operator is told of a take-down, not a posting
    assert await packs.notify_operator(store, north["id"]) == 2
    box = AddressBox(store.config.data_key())
    async with store.read() as conn:
        bodies = [
            box.open(r)
            for r in (
                await conn.scalars(
                    sa.select(t.messages.c.body_enc).where(
                        t.messages.c.purpose.startswith("board_pack")
                    )
                )
            ).all()
        ]
    assert bodies and all("张贴0份，撤下1份" in b for b in bodies)
    assert boards["north"].id  # the board with an operator


async def test_old_pack_link_serves_the_take_down_after_expiry(
    store: SqlStore, tmp_path: Path
) -> None:
    need_tools()
    await _boards(store)
    expires = datetime.now(UTC) + timedelta(days=3)
    item = await publish(store, await _item(store, body=BODY, expires_at=expires.isoformat()))
    async with running(store):
        await wait_settled(store, item.id)
        north = next(p for p in await _packs(store, item.id) if p["board"] == "北村")
        before = tmp_path / "before.pdf"
        before.write_bytes(await packs.pack_pdf(store, north["id"]))
        assert SECRET in squeeze(page_text(before))

        assert await store.expire_due(now=expires + timedelta(seconds=1)) == [item.id]
        await wait_settled(store, item.id)
    after = tmp_path / "after.pdf"
    after.write_bytes(await packs.pack_pdf(store, north["id"]))
    _check_takedown(after, (await store.get_item(item.id)).index_no or "", "已到期")
    assert not (tmp_path / "packs" / packs.pdf_name(north["id"])).exists()
    assert (tmp_path / "packs" / packs.pdf_name(north["id"], "expired")).exists()


async def test_a_pack_read_before_the_withdrawal_is_never_sent(
    store: SqlStore, tmp_path: Path
) -> None:
    """The engine keeps the subjects it read, but withdrawal is final at the claim: a
    publication pack read while the item was up and due after the withdrawal is skipped
    (`withdrawn`): no PDF with the body is made and its operator is told nothing."""
    need_tools()
    await _boards(store)
    item = await publish(store, await _item(store, body=BODY))
    assert await FanOut(store, Ledger(store)).plan_pending() == 2
    north = next(p for p in await _packs(store, item.id) if p["board"] == "北村")
    worker = DeliveryWorker(store)
    subject = await worker._subject(f"pack:{north['id']}")  # read while the item was up
    assert [line["action"] for line in subject.items] == ["post"]

    await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="内容有误")
    await worker.start()
    try:
        await wait_settled(store, item.id)
    finally:
        await worker.stop()
    rows = [p["row"] for p in await _packs(store, item.id) if p["event"] == "published"]
    assert {(r.state, r.reason) for r in rows} == {("skipped", "withdrawn")}
    folder = tmp_path / "packs"
    made = list(folder.iterdir()) if folder.exists() else []
    assert not [p for p in made if SECRET in squeeze(page_text(p))]
    async with store.read() as conn:
        told = await conn.scalar(
            sa.select(sa.func.count()).where(t.messages.c.purpose.startswith("board_pack"))
        )
    assert told == 0
    # and the old link, were one ever handed out, would serve only the take-down
    pdf = tmp_path / "asked.pdf"
    pdf.write_bytes(await packs.pack_pdf(store, north["id"]))
    _check_takedown(pdf, (await store.get_item(item.id)).index_no or "", "已撤回：内容有误")
