"""Boards on the web: the staff API (RFC 9457 problems, contacts masked), a published item's
layout for anyone and any item's for staff, and the operator's signed links: the PDF,
the confirmation page and its button; forged, misused and expired links refused (403)."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from publisher.addresses import AddressBox
from publisher.models import Action
from publisher.packs import LinkPurpose, PackLinks
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.board.test_packs import _item, _packs
from tests.conftest import REVIEWER, Api, publish
from tests.engine.conftest import wait_settled
from tests.engine.helpers import running
from tests.web import assert_problem

BOARD = {
    "name": "北村",
    "location": "村委会门口",
    "paper": "A3",
    "orientation": "portrait",
    "categories": ["nync"],
    "min_days": 10,
    "operator_phone": "13800138000",
    "operator_email": "op@example.org",
}


async def test_boards_api(api: Api) -> None:
    status, body, headers = await api.call("POST", "/api/v1/boards", who="root-admin", json=BOARD)
    assert status == 201, body
    assert headers["Location"] == f"/api/v1/boards/{body['id']}"
    assert body["operator_phone"] == "138****8000"
    assert body["operator_email"] == "o***@example.org"
    board_id = body["id"]

    status, body, _ = await api.call("GET", "/api/v1/boards", who="bob")
    assert status == 200 and [b["name"] for b in body["boards"]] == ["北村"]
    status, body, _ = await api.call(
        "PATCH",
        f"/api/v1/boards/{board_id}",
        who="root-admin",
        json={"paper": "A4", "operator_phone": ""},
    )
    assert status == 200 and body["paper"] == "A4" and body["operator_phone"] is None
    status, body, _ = await api.call("GET", f"/api/v1/boards/{board_id}")
    assert status == 200 and body["operator_email"] == "o***@example.org"

    bad: list[tuple[str, str, Any, str | None, int]] = [
        ("POST", "/api/v1/boards", {**BOARD, "name": "x", "paper": "A5"}, "root-admin", 422),
        ("POST", "/api/v1/boards", {**BOARD, "name": "x", "colour": "red"}, "root-admin", 422),
        ("POST", "/api/v1/boards", {**BOARD, "name": "x", "min_days": -1}, "root-admin", 422),
        (
            "POST",
            "/api/v1/boards",
            {**BOARD, "name": "x", "categories": ["nope"]},
            "root-admin",
            422,
        ),
        (
            "POST",
            "/api/v1/boards",
            {**BOARD, "name": "x", "operator_phone": "12"},
            "root-admin",
            422,
        ),
        (
            "POST",
            "/api/v1/boards",
            {**BOARD, "name": "x", "operator_email": "no"},
            "root-admin",
            422,
        ),
        ("POST", "/api/v1/boards", {**BOARD, "name": ""}, "root-admin", 422),
        ("POST", "/api/v1/boards", BOARD, "root-admin", 409),  # the name is taken
        ("POST", "/api/v1/boards", {**BOARD, "name": "x"}, "bob", 403),  # reviewers read only
        ("POST", "/api/v1/boards", {**BOARD, "name": "x"}, "alice", 403),  # admins add boards
        ("PATCH", f"/api/v1/boards/{board_id}", {"name": None}, "root-admin", 422),
        ("PATCH", "/api/v1/boards/999", {"paper": "A4"}, "root-admin", 404),
        ("GET", "/api/v1/boards/abc", None, "alice", 404),
        ("GET", "/api/v1/boards/0", None, "alice", 404),
        ("POST", f"/api/v1/boards/{board_id}/posted", {"pack": "x"}, "alice", 422),
        ("POST", f"/api/v1/boards/{board_id}/posted", {"pack": 12345}, "alice", 404),
        ("POST", f"/api/v1/boards/{board_id}/posted", {}, "alice", 422),
        ("POST", "/api/v1/boards/77/posted", {"pack": 1}, "alice", 404),
    ]
    for method, path, payload, who, expected in bad:
        status, body, headers = await api.call(method, path, who=who, json=payload)
        assert_problem(status, body, headers, expected)
    # the operator's contact is never answered whole
    status, raw, _ = await api.call("GET", "/api/v1/boards")
    assert "13800138000" not in str(raw) and "op@example.org" not in str(raw)


async def test_board_text_with_control_characters_is_422_naming_the_field(api: Api) -> None:
    for change, field in (
        ({"name": "北村\u202e"}, "name"),
        ({"location": "村委会\x0b门口"}, "location"),
    ):
        status, body, headers = await api.call(
            "POST", "/api/v1/boards", who="root-admin", json={**BOARD, **change}
        )
        assert_problem(status, body, headers, 422, field, "U+")
        assert body["errors"][0]["field"] == field
    status, body, _ = await api.call("GET", "/api/v1/boards", who="bob")
    assert body["boards"] == []


async def test_item_layouts_public_and_staff(api: Api, sqlite_store: SqlStore) -> None:
    store = sqlite_store
    draft = await _item(store, title="<i>草稿</i>")
    # a draft: 404 to the public, a preview to staff
    status, body, headers = await api.call("GET", f"/items/{draft.id}/board.pdf", who=None)
    assert_problem(status, body, headers, 404, draft.id)
    status, body, headers = await api.call("GET", f"/api/v1/items/{draft.id}/board.pdf?size=A3")
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    assert body.startswith(b"%PDF")
    status, body, headers = await api.call("GET", f"/api/v1/items/{draft.id}/board.pdf?size=B5")
    assert_problem(status, body, headers, 422)

    item = await publish(store, draft)
    for query in ("", "?size=A4", "?size=a3&orientation=landscape"):
        resp = await api.client.get(f"/items/{item.id}/board.pdf{query}")
        assert resp.status == 200, query
        assert resp.content_type == "application/pdf"
        assert (await resp.read()).startswith(b"%PDF")
    etag = resp.headers["ETag"]
    again = await api.client.get(
        f"/items/{item.id}/board.pdf?size=a3&orientation=landscape",
        headers={"If-None-Match": etag},
    )
    assert again.status == 304
    for query in ("?size=A5", "?orientation=sideways", "?size=" + "x" * 500):
        status, body, headers = await api.call("GET", f"/items/{item.id}/board.pdf{query}")
        assert_problem(status, body, headers, 422)
    for path in (
        "/items/not-an-id/board.pdf",
        "/items/00000000-0000-4000-8000-000000000000/board.pdf",
    ):
        status, body, headers = await api.call("GET", path, who=None)
        assert_problem(status, body, headers, 404)
    await store.transition(item.id, Action.WITHDRAW, actor=REVIEWER, reason="撤回")
    status, body, headers = await api.call("GET", f"/items/{item.id}/board.pdf", who=None)
    assert_problem(status, body, headers, 404)


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_operator_links(api: Api, sqlite_store: SqlStore) -> None:
    store = sqlite_store
    status, north, _ = await api.call("POST", "/api/v1/boards", who="root-admin", json=BOARD)
    assert status == 201
    status, town, _ = await api.call(
        "POST", "/api/v1/boards", who="root-admin", json={"name": "镇政府"}
    )
    assert status == 201
    item = await publish(store, await _item(store))
    async with running(store):
        await wait_settled(store, item.id)
    packs = {p["board"]: p for p in await _packs(store, item.id)}
    pack = packs["北村"]["id"]

    box = AddressBox(store.config.data_key())
    async with store.read() as conn:
        sms = box.open(
            (
                await conn.execute(
                    sa.select(t.messages.c.body_enc).where(
                        t.messages.c.purpose.startswith("board_pack"), t.messages.c.channel == "sms"
                    )
                )
            ).scalar_one()
        )
    pdf_url = _path(re.search(r"https?://\S+/packs/\d+\?token=\S+", sms).group())  # type: ignore[union-attr]
    confirm_url = _path(re.search(r"https?://\S+/confirm\?token=\S+", sms).group())  # type: ignore[union-attr]

    resp = await api.client.get(pdf_url)
    assert resp.status == 200 and resp.content_type == "application/pdf"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert (await resp.read()).startswith(b"%PDF")

    # refused, with a 403 page and no change: forged, misused, for another pack, expired
    links = PackLinks(store.config)
    token = confirm_url.rpartition("token=")[2]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    expired = links.token(LinkPurpose.CONFIRM, north["id"], pack, now=time.time() - links.ttl - 10)
    other = links.token(LinkPurpose.CONFIRM, town["id"], packs["镇政府"]["id"])
    base = f"/boards/{north['id']}/packs/{pack}/confirm"
    refused = [
        f"{base}?token={flipped}",
        f"{base}?token=",
        base,
        f"{base}?token={'9' * 5000}",
        f"{base}?token={expired}",
        f"{base}?token={other}",
        f"/boards/{north['id']}/packs/{pack}/confirm?token={pdf_url.rpartition('token=')[2]}",
        f"/boards/abc/packs/{pack}/confirm?token={token}",
        f"/boards/{town['id']}/packs/{pack}/confirm?token={token}",
        f"/boards/{north['id']}/packs/{pack}?token={token}",  # a confirm token opens no PDF
    ]
    for url in refused:
        for method in ("GET", "POST"):
            if method == "POST" and "/confirm" not in url:
                continue
            resp = await api.client.request(method, url)
            assert resp.status == 403, (method, url, resp.status)
            assert resp.content_type == "text/html"
            assert resp.headers["Cache-Control"] == "no-store"
    expired_page = await api.client.get(f"{base}?token={expired}")
    assert "过期" in await expired_page.text()
    assert (await _packs(store, item.id))[0]["row"].state == "sent"

    # the page shows what to post and has one button; its POST confirms
    page = await api.client.get(confirm_url)
    html = await page.text()
    assert page.status == 200 and html.count("<button") == 1
    assert (await store.get_item(item.id)).index_no in html
    resp = await api.client.post(confirm_url)
    assert resp.status == 200 and "已确认" in await resp.text()
    row = next(p for p in await _packs(store, item.id) if p["board"] == "北村")["row"]
    assert row.state == "delivered" and row.delivered_at is not None
    resp = await api.client.post(confirm_url)  # a repeat changes nothing
    assert resp.status == 200
    page = await api.client.get(confirm_url)
    assert "<button" not in await page.text()

    # staff record the posting of the board whose operator has no link
    status, body, _ = await api.call(
        "POST", f"/api/v1/boards/{town['id']}/posted", json={"pack": pack}
    )
    assert status == 404  # that pack is 北村's
    status, body, _ = await api.call(
        "POST", f"/api/v1/boards/{town['id']}/posted", json={"pack": packs["镇政府"]["id"]}
    )
    assert status == 200 and body["confirmed_by"] == "alice" and not body["repeat"]

    # the item's deliveries show both packs delivered, with flags
    status, body, _ = await api.call("GET", f"/api/v1/items/{item.id}/deliveries?channel=board")
    assert status == 200
    assert {d["state"] for d in body["deliveries"]} == {"delivered"}
    assert all(d["flags"] == [] and d["delivered_at"] for d in body["deliveries"])
    status, body, _ = await api.call("GET", f"/api/v1/boards/{north['id']}/packs")
    assert status == 200 and body["packs"][0]["confirmed_by"] == "operator"
    status, body, headers = await api.call("GET", f"/api/v1/boards/{north['id']}/packs/{pack}/pdf")
    assert status == 200 and body.startswith(b"%PDF")
    status, body, headers = await api.call("GET", f"/api/v1/boards/{town['id']}/packs/{pack}/pdf")
    assert_problem(status, body, headers, 404)


async def test_editor_can_manage_reviewer_cannot(api: Api) -> None:
    status, body, headers = await api.call("POST", "/api/v1/boards", who="dave", json=BOARD)
    assert_problem(status, body, headers, 403)
    status, body, _ = await api.call("GET", "/api/v1/boards", who="dave")
    assert status == 200
