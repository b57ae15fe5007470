"""Issue 18: what the core says in English (validation, audit actions, personal data,
sizes) reaches the staff pages in the UI's language; the API keeps its English."""

from __future__ import annotations

import io
import re
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from publisher.config import Config
from publisher.store import upgrade
from publisher.store.sql import ItemQuery, SqlStore
from publisher.web import make_app
from publisher.web.ui.render import translations
from publisher.web.ui.wording import core_message, size_text
from tests.web.test_staff_ui import Browser, _users, form, new_browser

ZH = translations("zh_CN").gettext


async def _browser(config: Config) -> tuple[TestClient[Any, Any], SqlStore]:
    store = SqlStore(config)
    await upgrade(store)
    await _users(store)
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(config, store)))
    await client.start_server()
    return client, store


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


async def test_an_empty_form_says_in_chinese_what_is_missing(config: Config) -> None:
    client, store = await _browser(config)
    try:
        b = Browser(client)
        await b.login("alice")
        status, html, _ = await b.post(
            "/staff/items/new", {**form(title="", body=""), "action": "save"}
        )
        assert status == 422
        text = _text(html)
        assert "must not be blank" not in text and "Value error" not in text
        assert "标题: 不能为空" in text and "正文: 不能为空" in text
        status, html, _ = await b.post(
            "/staff/items/new",
            {**form(written_at="yesterday", disclosure="withheld", related_id="x"), "action": "s"},
        )
        assert status == 422
        text = _text(html)
        assert "成文日期: 不是有效的日期或时间" in text, text
        assert not re.search(r"\b(input|valid|date|should|required)\b", text, re.I), text
    finally:
        await client.close()
        await store.close()


async def test_core_messages_read_in_chinese_and_the_fallback_is_chinese_too() -> None:
    assert core_message(ZH, "expires_at: must be after publish_at") == "有效期至：必须晚于发布时间"
    assert "20 MB" in core_message(
        ZH, "attachment 'a.pdf' is larger than 20971520 bytes (storage.max_upload_bytes)"
    )
    assert "已发布" in core_message(ZH, "item 1 is published; attachments cannot change now")
    assert core_message(ZH, "something the UI never heard of") == "无法执行此操作。"
    assert size_text(20 * 1024 * 1024) == "20 MB" and size_text(1536) == "1.5 KB"
    assert size_text(900) == "900 B"


async def test_audit_trail_and_personal_data_are_in_words(config: Config) -> None:
    client, store = await _browser(config)
    try:
        alice = Browser(client)
        await alice.login("alice")
        body = "请联系13800138000办理。"
        status, _, headers = await alice.post(
            "/staff/items/new", {**form(body=body), "action": "save"}
        )
        assert status == 303
        item_id = headers["Location"].split("/")[3]
        status, html, _ = await alice.get(f"/staff/items/{item_id}/edit")
        version = re.search(r'name="version" value="(\d+)"', html)
        assert version
        status, _, _ = await alice.post(
            f"/staff/items/{item_id}/edit",
            {**form(body=body + "\n\n补充。"), "version": version[1], "action": "submit"},
        )
        assert status == 303
        bob = await new_browser(client)
        async with bob.client:
            await bob.login("bob")
            status, html, _ = await bob.get(f"/staff/items/{item_id}/review")
            assert "手机号码: <code>138****8000</code> (正文)" in html, html
            status, _, _ = await bob.post(f"/staff/items/{item_id}/approve", {"acknowledge": "on"})
            assert status == 303
            status, html, _ = await bob.get(f"/staff/items/{item_id}")
        audit = html[html.index('id="audit-heading"') :]
        cells = re.findall(r"<td>([^<]*)</td>", audit)
        for english in ("create", "edit", "submit", "approve", "publish", "system"):
            assert english not in cells, (english, cells)
        for chinese in ("创建", "编辑", "提交审核", "审核通过", "发布", "系统"):
            assert chinese in cells, (chinese, cells)
        assert (await store.list_items(ItemQuery()))[1] == 1
    finally:
        await client.close()
        await store.close()


async def test_the_upload_limit_is_said_in_megabytes(config_factory: Any) -> None:
    config = config_factory(STORAGE__MAX_UPLOAD_BYTES=str(2 * 1024 * 1024))
    client, store = await _browser(config)
    try:
        b = Browser(client)
        await b.login("alice")
        _status, html, _ = await b.get("/staff/items/new")
        assert "2 MB" in html and "2097152" not in html
        data = aiohttp.FormData()
        for k, v in {**form(), "action": "save", "csrf_token": b.csrf}.items():
            data.add_field(k, v)
        data.add_field("attachments", io.BytesIO(b"x" * (2 * 1024 * 1024 + 1)), filename="big.pdf")
        resp = await client.post("/staff/items/new", data=data, allow_redirects=False)
        html = await resp.text()
        assert resp.status == 413, html
        text = _text(html)
        assert "2 MB" in text and "2097152" not in text and "bytes" not in text, text[-2000:]
    finally:
        await client.close()
        await store.close()


async def test_status_and_category_columns_keep_their_words_whole(config: Config) -> None:
    client, store = await _browser(config)
    try:
        b = Browser(client)
        await b.login("alice")
        status, _, _ = await b.post("/staff/items/new", {**form(), "action": "save"})
        assert status == 303
        _status, html, _ = await b.get("/staff/")
        assert re.search(r'<td class="col-status"><span class="status', html)
        assert '<td class="col-category">农业农村</td>' in html
        resp = await client.get("/static/ui/ui.css")
        css = await resp.text()
        rule = re.search(r"([^{}]*)\{\s*white-space:\s*nowrap;\s*\}", css)
        assert rule and ".col-status" in rule[1] and ".col-category" in rule[1], css[-800:]
        assert re.search(r"td\.col-category \{ min-width", css)
    finally:
        await client.close()
        await store.close()
