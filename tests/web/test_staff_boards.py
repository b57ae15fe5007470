"""The staff notice-board pages (/staff/boards): boards with masked operator contacts and
their print packs, recording a posting (the pack's ledger row becomes delivered), and the
admins' add / edit forms, which validate as the API does and never answer a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from publisher.boards import BoardCreate, Boards
from publisher.config import Config
from publisher.models import Role
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.board.test_packs import _item
from tests.conftest import publish
from tests.engine.conftest import wait_settled
from tests.engine.helpers import running
from tests.web.test_staff_ui import PASSWORD, Browser, _open, new_browser

PHONE = "13800138000"
EMAIL = "op@example.org"


@pytest.fixture
def config(config_factory: Callable[..., Config], tmp_path: Path) -> Config:
    return config_factory(
        DELIVERY__POLL_SECONDS="0.05",
        DELIVERY__HEARTBEAT_SECONDS="1",
        CHANNELS__BOARD__SETTINGS__PACKS_DIR=str(tmp_path / "packs"),
    )


@pytest.fixture
async def boards_ui(config: Config) -> AsyncIterator[tuple[TestClient[Any, Any], SqlStore]]:
    """The app with alice (editor), bob (reviewer), carol (editor) and root (admin)."""
    async for client, store in _open(config):
        await store.add_user("root", Role.ADMIN, PASSWORD)
        yield client, store


@asynccontextmanager
async def _as(client: TestClient[Any, Any], name: str) -> AsyncIterator[Browser]:
    """A browser of its own (its own cookies), logged in as `name`."""
    b = await new_browser(client)
    async with b.client:
        assert (await b.login(name))[0] == 303
        yield b


async def _sent_pack(store: SqlStore) -> tuple[int, int, str]:
    """A board with an operator and a published item: (board id, pack id, item id), the
    pack's ledger row `sent`."""
    board = await Boards(store).add(
        BoardCreate(name="北村", location="村委会门口", operator_phone=PHONE, operator_email=EMAIL)
    )
    item = await publish(store, await _item(store))
    async with running(store):
        await wait_settled(store, item.id)
    async with store.read() as conn:
        pack_id = (
            await conn.execute(
                sa.select(t.board_packs.c.id).where(t.board_packs.c.board_id == board.id)
            )
        ).scalar_one()
    assert await _state(store, pack_id) == "sent"
    return board.id, int(pack_id), item.id


async def _state(store: SqlStore, pack_id: int) -> str:
    async with store.read() as conn:
        return str(
            await conn.scalar(
                sa.select(t.deliveries.c.state).where(t.deliveries.c.subject == f"pack:{pack_id}")
            )
        )


async def _board_count(store: SqlStore) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(t.boards)) or 0)


async def test_list_shows_masked_contact_and_pack_state(boards_ui: Any) -> None:
    client, store = boards_ui
    board_id, pack_id, item_id = await _sent_pack(store)
    item = await store.get_item(item_id)
    async with _as(client, "bob") as bob:  # a reviewer sees the boards, records nothing
        status, html, _ = await bob.get("/staff/")
        assert 'href="/staff/boards"' in html
        status, html, _ = await bob.get("/staff/boards")
        assert status == 200, html
        assert "北村" in html and "村委会门口" in html
        assert "138****8000" in html and "o***@example.org" in html
        assert PHONE not in html and EMAIL not in html
        assert item.content.title in html and item.index_no and item.index_no in html
        assert "已发送" in html  # the pack's state, in the UI's language
        pdf = f"/staff/boards/{board_id}/packs/{pack_id}/pdf"
        assert f'href="{pdf}"' in html
        assert f"/packs/{pack_id}/posted" not in html  # no button for a reviewer
        resp = await bob.client.get(pdf)
        assert resp.status == 200 and resp.content_type == "application/pdf"
        assert (await resp.read()).startswith(b"%PDF")
        # another board's pack, or a number that is not one: the 404 page
        assert (await bob.get(f"/staff/boards/{board_id + 1}/packs/{pack_id}/pdf"))[0] == 404
        assert (await bob.get(f"/staff/boards/{board_id}/packs/abc/pdf"))[0] == 404
        status, _, _ = await bob.post(f"/staff/boards/{board_id}/packs/{pack_id}/posted")
        assert status == 403
    assert await _state(store, pack_id) == "sent"


async def test_mark_posted_moves_the_ledger_row_to_delivered(boards_ui: Any) -> None:
    client, store = boards_ui
    board_id, pack_id, _ = await _sent_pack(store)
    async with _as(client, "alice") as alice:
        _, html, _ = await alice.get("/staff/boards")
        assert f'action="/staff/boards/{board_id}/packs/{pack_id}/posted"' in html
        status, _, headers = await alice.post(f"/staff/boards/{board_id}/packs/{pack_id}/posted")
        assert status == 303, headers
        assert headers["Location"].startswith(f"/staff/boards?posted={pack_id}")
        assert await _state(store, pack_id) == "delivered"
        async with store.read() as conn:
            row = (
                await conn.execute(
                    sa.select(t.deliveries).where(t.deliveries.c.subject == f"pack:{pack_id}")
                )
            ).one()
            events = (
                (
                    await conn.execute(
                        sa.select(t.delivery_events.c.detail).where(
                            t.delivery_events.c.delivery_id == row.id,
                            t.delivery_events.c.to_state == "delivered",
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert row.delivered_at is not None
        assert events == ["posted; confirmed by alice"]  # who recorded it
        status, html, _ = await alice.get(headers["Location"])
        assert status == 200 and 'role="status"' in html
        assert "已送达" in html and "(alice)" in html
        assert f"/packs/{pack_id}/posted" not in html  # nothing left to confirm
        # a repeat changes nothing; another board's pack is not found
        status, _, _ = await alice.post(f"/staff/boards/{board_id}/packs/{pack_id}/posted")
        assert status == 303
        status, _, _ = await alice.post(f"/staff/boards/{board_id}/packs/999/posted")
        assert status == 404


async def test_non_admin_cannot_add_or_edit(boards_ui: Any) -> None:
    client, store = boards_ui
    board = await Boards(store).add(BoardCreate(name="南村"))
    for name in ("alice", "bob"):
        async with _as(client, name) as b:
            _, html, _ = await b.get("/staff/boards")
            assert "/staff/boards/new" not in html and "/edit" not in html
            for path in ("/staff/boards/new", f"/staff/boards/{board.id}/edit"):
                status, html, _ = await b.get(path)
                assert status == 403 and "<h1>" in html, (name, path)
                status, html, _ = await b.post(path, {"name": "东村", "paper": "A4"})
                assert status == 403 and "<h1>" in html, (name, path)
    assert [x.name for x in await Boards(store).all()] == ["南村"]


async def test_admin_adds_and_edits_bad_input_writes_nothing(boards_ui: Any) -> None:
    client, store = boards_ui
    await Boards(store).add(BoardCreate(name="南村"))
    good = {
        "name": "北村",
        "location": "村委会门口",
        "paper": "A3",
        "orientation": "portrait",
        "min_days": "10",
        "categories": "nync",
        "operator_phone": PHONE,
        "operator_email": EMAIL,
        "enabled": "on",
    }
    async with _as(client, "root") as root:
        status, html, _ = await root.get("/staff/boards/new")
        assert status == 200 and 'name="operator_phone"' in html
        bad = [
            ({"operator_phone": "12"}, "管理员手机号"),
            ({"operator_email": "no"}, "管理员电子邮箱"),
            ({"min_days": "abc"}, "最短张贴天数"),
            ({"min_days": "999"}, "最短张贴天数"),
            ({"paper": "A5"}, "纸张"),
            ({"categories": "nope"}, "张贴的主题分类"),
            ({"name": ""}, "公开栏名称"),
            ({"name": "南村"}, "南村"),  # taken
            ({"location": "门\x00口"}, "位置"),
            ({"name": "北村\u202e"}, "含有无法保存的控制字符或不可见字符（U+202E）"),
            ({"location": "村委会\x0b门口"}, "含有无法保存的控制字符或不可见字符（U+000B）"),
        ]
        for change, shown in bad:
            status, html, _ = await root.post("/staff/boards/new", {**good, **change})
            assert status in (409, 422), (change, status)
            assert 'role="alert"' in html and shown in html, (change, html)
            assert PHONE not in html and EMAIL not in html  # never echoed back
        assert await _board_count(store) == 1

        status, _, headers = await root.post("/staff/boards/new", good)
        assert status == 303, headers
        board = next(b for b in await Boards(store).all() if b.name == "北村")
        assert (board.paper, board.min_days, board.categories) == ("A3", 10, ("nync",))
        assert board.operator_phone == "+86" + PHONE and board.enabled
        _, html, _ = await root.get(headers["Location"])
        assert "北村" in html and "138****8000" in html and PHONE not in html

        # edit: the form shows the contacts masked only; empty keeps, the tick clears
        status, html, _ = await root.get(f"/staff/boards/{board.id}/edit")
        assert status == 200 and "138****8000" in html and PHONE not in html
        status, html, _ = await root.post(
            f"/staff/boards/{board.id}/edit", {**good, "name": "南村", "operator_phone": ""}
        )
        assert status == 409 and 'role="alert"' in html
        edit = {k: v for k, v in good.items() if k not in ("operator_phone", "enabled")}
        status, _, _ = await root.post(
            f"/staff/boards/{board.id}/edit",
            {**edit, "name": "北村新栏", "operator_email": "", "clear_operator_phone": "on"},
        )
        assert status == 303
        board = await Boards(store).get(board.id)
        assert board.name == "北村新栏" and board.operator_phone is None
        assert board.operator_email == EMAIL and not board.enabled
        assert (await root.get("/staff/boards/999/edit"))[0] == 404


async def test_forms_without_the_csrf_token_are_refused(boards_ui: Any) -> None:
    client, store = boards_ui
    board_id, pack_id, _ = await _sent_pack(store)
    async with _as(client, "alice") as alice:
        status, html, _ = await alice.post(
            f"/staff/boards/{board_id}/packs/{pack_id}/posted", csrf=False
        )
        assert status == 403 and "<h1>" in html
    assert await _state(store, pack_id) == "sent"
    async with _as(client, "root") as root:
        for path in ("/staff/boards/new", f"/staff/boards/{board_id}/edit"):
            status, _, _ = await root.post(path, {"name": "东村", "paper": "A4"}, csrf=False)
            assert status == 403, path
    assert [b.name for b in await Boards(store).all()] == ["北村"]
