"""The staff web pages over HTTP (no browser): sessions, CSRF, lockout, compose, review,
dashboard. The browser tests in tests/ui drive the same pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from publisher.config import Config
from publisher.fanout import FanOut
from publisher.ledger import Ledger
from publisher.models import Role
from publisher.sessions import LockedOut, LoginFailed, Sessions
from publisher.store import schema as t
from publisher.store import upgrade
from publisher.store.sql import ItemQuery, SqlStore, utcnow
from publisher.web import make_app

PASSWORD = "a long password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A TestClient with its own cookie jar, that logs in through the form."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        resp = await self.client.get(path, allow_redirects=False, **kw)
        return resp.status, await resp.text(), resp.headers

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kw: Any
    ) -> tuple[int, str, Any]:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        resp = await self.client.post(path, data=form, allow_redirects=False, **kw)
        return resp.status, await resp.text(), resp.headers

    async def login(self, name: str, password: str = PASSWORD) -> tuple[int, str, Any]:
        status, html, _ = await self.get("/staff/login")
        assert status == 200
        token = CSRF.search(html)
        assert token
        result = await self.post(
            "/staff/login", {"username": name, "password": password, "csrf_token": token[1]}
        )
        if result[0] == 303:
            status, html, _ = await self.get("/staff/")
            assert status == 200, html
            found = CSRF.search(html)
            assert found
            self.csrf = found[1]
        return result

    @property
    def session_cookie(self) -> str:
        for cookie in self.client.session.cookie_jar:
            if cookie.key == "gk_session":
                return cookie.value
        return ""


async def _users(store: SqlStore) -> None:
    for name, role in (("alice", Role.EDITOR), ("bob", Role.REVIEWER), ("carol", Role.EDITOR)):
        await store.add_user(name, role, PASSWORD)


async def _open(config: Config) -> AsyncIterator[tuple[TestClient[Any, Any], SqlStore]]:
    store = SqlStore(config)
    await upgrade(store)
    await _users(store)
    try:
        async with TestClient(TestServer(make_app(config, store))) as client:
            yield client, store
    finally:
        await store.close()


@pytest.fixture
async def ui(config: Config) -> AsyncIterator[tuple[TestClient[Any, Any], SqlStore]]:
    async for pair in _open(config):
        yield pair


async def new_browser(client: TestClient[Any, Any]) -> Browser:
    other = TestClient(TestServer(client.app))  # type: ignore[arg-type]
    return Browser(other)


# -- sessions -------------------------------------------------------------------------


async def test_anonymous_pages_redirect_to_login(ui: Any) -> None:
    client, _ = ui
    b = Browser(client)
    for path in ("/staff/", "/staff/items/new", "/staff/review"):
        status, _, headers = await b.get(path)
        assert status == 303, path
        assert headers["Location"].startswith("/staff/login?next=" + path), headers["Location"]


async def test_login_sets_an_opaque_httponly_cookie_kept_hashed(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    status, _, headers = await b.login("alice")
    assert status == 303 and headers["Location"] == "/staff/"
    cookie = headers.getall("Set-Cookie")
    session = next(c for c in cookie if c.startswith("gk_session="))
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/staff" in session
    assert "Secure" not in session  # plain http here
    value = b.session_cookie
    assert len(value) >= 40 and "alice" not in value
    async with store.read() as conn:
        stored = (await conn.execute(sa.select(t.staff_sessions.c.id_hash))).scalars().all()
    assert value not in stored and len(stored) == 1


async def test_login_form_without_its_token_is_refused(ui: Any) -> None:
    client, _ = ui
    b = Browser(client)
    status, html, _ = await b.post(
        "/staff/login", {"username": "alice", "password": PASSWORD}, csrf=False
    )
    assert status == 403 and "<html" in html
    assert b.session_cookie == ""


async def test_wrong_password_then_lockout(config_factory: Any, caplog: Any) -> None:
    # the old keys (ui.*) still work, with a deprecation line
    config = config_factory(UI__MAX_FAILED_LOGINS="3", UI__LOCKOUT_MINUTES="10")
    assert config.security.login.max_failed_logins == 3
    assert config.security.login.lockout_minutes == 10
    assert "ui.max_failed_logins is deprecated, use security.login.max_failed_logins" in (
        caplog.text
    )
    async for client, store in _open(config):
        b = Browser(client)
        for _ in range(3):
            status, html, _ = await b.login("alice", "wrong password")
            assert status == 401, html
        status, html, _ = await b.login("alice")  # the right password, but locked
        assert status == 429, html
        assert b.session_cookie == ""
        sessions = Sessions(store)
        later = utcnow() + timedelta(minutes=11)
        cookie, _session = await sessions.login("alice", PASSWORD, network="127.0.0.1", now=later)
        assert cookie
        # a success clears the count
        async with store.read() as conn:
            lt = t.login_throttle
            assert (await conn.execute(sa.select(lt).where(lt.c.scope == "pair"))).all() == []


async def test_lockout_counts_per_name_and_restarts_after_it_ends(sqlite_store: SqlStore) -> None:
    await _users(sqlite_store)
    sessions = Sessions(sqlite_store)
    now = utcnow()
    for _ in range(sqlite_store.config.security.login.max_failed_logins):
        with pytest.raises(LoginFailed):
            await sessions.login("bob", "nope", now=now)
    with pytest.raises(LockedOut):
        await sessions.login("bob", PASSWORD, now=now)
    await sessions.login("alice", PASSWORD, now=now)  # another name is not locked
    after = now + timedelta(minutes=sqlite_store.config.security.login.lockout_minutes, seconds=1)
    with pytest.raises(LoginFailed):
        await sessions.login("bob", "nope", now=after)  # counts from 1 again, not locked
    await sessions.login("bob", PASSWORD, now=after)


async def test_idle_sessions_end(sqlite_store: SqlStore) -> None:
    await _users(sqlite_store)
    sessions = Sessions(sqlite_store)
    now = utcnow()
    cookie, _ = await sessions.login("alice", PASSWORD, now=now)
    idle = timedelta(minutes=sqlite_store.config.ui.session_idle_minutes)
    assert await sessions.lookup(cookie, now=now + idle - timedelta(seconds=5)) is not None
    # that use kept it alive: idle counts from the last use
    assert await sessions.lookup(cookie, now=now + 2 * idle - timedelta(seconds=10)) is not None
    assert await sessions.lookup(cookie, now=now + 3 * idle) is None
    assert await sessions.lookup(cookie, now=now) is None  # gone for good


async def test_logout_ends_the_session_and_its_cookie(ui: Any) -> None:
    client, _ = ui
    b = Browser(client)
    await b.login("alice")
    cookie = b.session_cookie
    status, _, headers = await b.post("/staff/logout")
    assert status == 303 and headers["Location"].startswith("/staff/login")
    # replaying the old cookie opens nothing
    replay = Browser(client)
    client.session.cookie_jar.clear()
    status, _, headers = await replay.get("/staff/", headers={"Cookie": f"gk_session={cookie}"})
    assert status == 303 and headers["Location"].startswith("/staff/login")


async def test_disabling_a_user_or_changing_the_role_ends_the_session(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    await b.login("carol")
    assert (await b.get("/staff/"))[0] == 200
    await store.disable_user("carol")
    assert (await b.get("/staff/"))[0] == 303

    client.session.cookie_jar.clear()
    await b.login("alice")
    assert (await b.get("/staff/"))[0] == 200
    async with store.write() as conn:
        await conn.execute(
            t.users.update().where(t.users.c.name == "alice").values(role=Role.REVIEWER.value)
        )
    assert (await b.get("/staff/"))[0] == 303


async def test_a_post_without_the_csrf_token_is_refused(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    await b.login("alice")
    for form in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
        status, html, headers = await b.post(
            "/staff/items/new", {"title": "x", "body": "y", **form}, csrf=False
        )
        assert status == 403, form
        assert headers["Content-Type"].startswith("text/html")
        assert "<h1>" in html
    assert (await store.list_items(ItemQuery()))[1] == 0
    # logout needs the token too
    status, _, _ = await b.post("/staff/logout", csrf=False)
    assert status == 403
    assert (await b.get("/staff/"))[0] == 200


async def test_bearer_tokens_do_not_open_pages_and_cookies_do_not_open_the_api(ui: Any) -> None:
    client, store = ui
    token = await store.create_token("alice")
    b = Browser(client)
    status, _, _ = await b.get("/staff/", headers={"Authorization": f"Bearer {token}"})
    assert status == 303
    await b.login("alice")
    resp = await client.get("/api/v1/items")
    assert resp.status == 401
    resp = await client.get("/api/v1/items", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200


async def test_next_only_goes_to_staff_pages(ui: Any) -> None:
    client, _ = ui
    b = Browser(client)
    _, html, _ = await b.get("/staff/login?next=https://evil.example/")
    assert 'value="/staff/"' in html
    _, html, _ = await b.get("/staff/login?next=/staff/review")
    assert 'value="/staff/review"' in html


# -- pages -----------------------------------------------------------------------------


def form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "关于冬季农田水利建设的通知",
        "summary": "",
        "body": "各村：\n\n为做好冬季农田水利建设工作，现将有关事项通知如下。",
        "category": "nync",
        "agency": "上余镇人民政府",
        "doc_no": "",
        "written_at": "2026-11-20",
        "disclosure": "proactive",
        "disclosure_reason": "",
        "publish_at": "",
        "expires_at": "",
        "channels": "rss",
    }
    data.update(overrides)
    return data


async def test_compose_preview_save_submit_and_review(ui: Any) -> None:
    client, store = ui
    alice = Browser(client)
    await alice.login("alice")
    status, html, _ = await alice.get("/staff/items/new")
    assert status == 200 and 'lang="zh-CN"' in html and "新建" in html

    status, html, _ = await alice.post("/staff/items/new", {**form(), "action": "preview"})
    assert status == 200, html
    assert "preview-rss" in html and "<entry" in html.replace("&lt;", "<")

    status, html, headers = await alice.post("/staff/items/new", {**form(), "action": "submit"})
    assert status == 303, html
    items, _ = await store.list_items(ItemQuery())
    assert len(items) == 1 and items[0].status.value == "in_review"
    item = items[0]
    assert headers["Location"] == f"/staff/items/{item.id}?submitted=1"
    assert "已提交保密审查" in (await alice.get(headers["Location"]))[1]

    # the author cannot approve, and the page says why
    status, html, _ = await alice.get(f"/staff/items/{item.id}/review")
    assert status == 200 and 'id="why-not"' in html and "四眼" in html
    assert 'action="/staff/items/' + item.id + '/approve"' not in html
    # pressed anyway: an editor may not approve at all (publisher.policy, checked first)
    status, html, _ = await alice.post(f"/staff/items/{item.id}/approve")
    assert status == 403 and "您的角色无权执行此操作" in html
    assert (await store.get_item(item.id)).status.value == "in_review"

    bob = await new_browser(client)
    async with bob.client:
        await bob.login("bob")
        status, html, _ = await bob.get("/staff/review")
        assert item.id in html
        status, html, _ = await bob.get(f"/staff/items/{item.id}/review")
        assert 'id="why-not"' not in html
        status, html, headers = await bob.post(f"/staff/items/{item.id}/approve")
        assert status == 303, html
        assert (await store.get_item(item.id)).status.value == "published"
        status, html, _ = await bob.get(f"/staff/items/{item.id}")
        assert status == 200 and "审计" in html
        resp = await bob.client.get(f"/staff/items/{item.id}/progress")
        assert (await resp.json())["channels"] == []  # nothing planned yet
        fanout = FanOut(store, Ledger(store))
        await fanout.ensure_endpoints()
        assert await fanout.plan_pending() >= 1
        resp = await bob.client.get(f"/staff/items/{item.id}/progress")
        data = await resp.json()
        assert [c["channel"] for c in data["channels"]] == ["rss"]
        assert data["total"] == 2  # the feed of every category, and nync's
        assert data["channels"][0]["states"] == {"queued": data["total"]}
        assert data["settled"] is False and data["percent"] == 0
        status, html, _ = await bob.get(f"/staff/items/{item.id}")
        assert "<progress" in html and 'data-poll="1"' in html


async def test_invalid_form_is_shown_again_with_the_errors(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    await b.login("alice")
    status, html, _ = await b.post(
        "/staff/items/new",
        {**form(title="  ", written_at="not a date", disclosure="withheld"), "action": "save"},
    )
    assert status == 422
    assert 'role="alert"' in html and 'href="#title"' in html
    assert 'value="not a date"' in html  # what was typed stays
    assert (await store.list_items(ItemQuery()))[1] == 0


async def test_bad_ids_and_unknown_pages_are_html_errors(ui: Any) -> None:
    client, _ = ui
    b = Browser(client)
    await b.login("bob")
    for path in (
        "/staff/items/not-an-id",
        "/staff/items/00000000-0000-4000-8000-000000000000",
        "/staff/items/00000000-0000-4000-8000-000000000000/review",
        "/staff/nothing-here",
    ):
        status, html, headers = await b.get(path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("text/html"), path
        assert "<h1>" in html, path
    status, _, _ = await b.get("/staff/items/new")  # a reviewer writes nothing
    assert status == 403


async def test_a_new_password_ends_the_sessions_opened_with_the_old_one(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    await b.login("carol")
    assert (await b.get("/staff/"))[0] == 200
    await store.set_password("carol", "another long password")
    status, _, headers = await b.get("/staff/")
    assert status == 303 and headers["Location"].startswith("/staff/login")
    # and the new password opens a new session
    client.session.cookie_jar.clear()
    status, _, _ = await b.login("carol", "another long password")
    assert (await b.get("/staff/"))[0] == 200


async def test_a_role_change_through_the_store_ends_the_session(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    await b.login("alice")
    assert (await b.get("/staff/"))[0] == 200
    await store.set_role("alice", Role.REVIEWER)
    status, _, headers = await b.get("/staff/")
    assert status == 303 and headers["Location"].startswith("/staff/login")
    async with store.read() as conn:
        left = await conn.scalar(sa.select(sa.func.count()).select_from(t.staff_sessions))
    assert left == 0


async def test_control_characters_in_a_form_are_a_chinese_error(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    await b.login("alice")
    for field, text in (("title", "通知\x0b标题"), ("title", "通知\u202e"), ("body", "正文\x1b")):
        status, html, _ = await b.post(
            "/staff/items/new", {**form(**{field: text}), "action": "save"}
        )
        assert status == 422, html
        assert f'href="#{field}"' in html
        assert "含有无法保存的控制字符或不可见字符" in html and "U+" in html
    assert (await store.list_items(ItemQuery()))[1] == 0

    # a reason for a rejection: the same words, and the item stays in review
    status, html, _ = await b.post("/staff/items/new", {**form(), "action": "submit"})
    assert status == 303, html
    items, _ = await store.list_items(ItemQuery())
    bob = await new_browser(client)
    async with bob.client:
        await bob.login("bob")
        status, html, _ = await bob.post(
            f"/staff/items/{items[0].id}/reject", {"reason": "不符合\x0b要求"}
        )
        assert status == 422 and "理由含有无法保存的控制字符" in html, html
    assert (await store.get_item(items[0].id)).status.value == "in_review"


async def test_old_text_with_control_characters_is_mended_by_saving_the_form(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    await b.login("alice")
    status, _, _ = await b.post("/staff/items/new", {**form(), "action": "save"})
    assert status == 303
    items, _ = await store.list_items(ItemQuery())
    item = items[0]
    async with store.write() as conn:  # old data, from before the store refused it
        await conn.execute(
            t.revisions.update()
            .where(t.revisions.c.item_id == item.id)
            .values(title="关于冬季\x0b农田水利建设的通知")
        )
    status, html, _ = await b.get(f"/staff/items/{item.id}/edit")
    assert status == 200 and "\x0b" not in html and 'value="关于冬季农田水利建设的通知"' in html
    status, html, _ = await b.post(
        f"/staff/items/{item.id}/edit",
        {**form(), "version": str((await store.get_item(item.id)).version), "action": "save"},
    )
    assert status == 303, html
    assert (await store.get_item(item.id)).content.title == "关于冬季农田水利建设的通知"
