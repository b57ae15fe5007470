"""The administration pages: staff accounts and residents' data requests (admin only)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from publisher.config import Config
from publisher.models import Role
from publisher.recipients import Consent, Recipients
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.web.test_staff_ui import PASSWORD, Browser, _open, new_browser

PHONE = "13812345678"
EMAIL = "resident@example.org"
SEALED = re.compile(r'name="subscriber" value="([^"]+)"')


@pytest.fixture
async def admin_ui(config: Config) -> AsyncIterator[tuple[TestClient[Any, Any], SqlStore]]:
    async for client, store in _open(config):
        await store.add_user("root", Role.ADMIN, PASSWORD)
        yield client, store


async def _admin(client: TestClient[Any, Any]) -> Browser:
    b = Browser(client)
    status, _, _ = await b.login("root")
    assert status == 303
    return b


async def _subscribe(store: SqlStore, channel: str = "sms", address: str = PHONE) -> None:
    await Recipients(store).subscribe(
        channel, address, Consent("web_verified", "I agree", source="web 203.0.113.x")
    )


async def test_admin_sees_the_links_and_pages(admin_ui: Any) -> None:
    client, _ = admin_ui
    b = await _admin(client)
    status, html, _ = await b.get("/staff/")
    assert status == 200
    assert 'href="/staff/admin/users"' in html and 'href="/staff/admin/subscribers"' in html
    status, html, _ = await b.get("/staff/admin/users")
    assert status == 200
    for name in ("alice", "bob", "carol", "root"):
        assert name in html
    assert "argon2" not in html and "$" not in html  # no password hash
    status, html, _ = await b.get("/staff/admin/subscribers")
    assert status == 200 and 'name="address"' in html


async def test_other_roles_get_403_and_no_links(admin_ui: Any) -> None:
    client, _ = admin_ui
    for name in ("alice", "bob"):
        b = await new_browser(client)
        async with b.client:
            assert (await b.login(name))[0] == 303
            _, home, _ = await b.get("/staff/")
            assert "/staff/admin/" not in home
            for path in ("/staff/admin/users", "/staff/admin/subscribers"):
                status, html, _ = await b.get(path)
                assert status == 403, (name, path)
                assert "<h1>" in html
            for path, data in (
                ("/staff/admin/users/disable", {"name": "carol"}),
                ("/staff/admin/users/password", {"name": "carol", "password": "x" * 12}),
                ("/staff/admin/subscribers", {"channel": "sms", "address": PHONE}),
                ("/staff/admin/subscribers/export", {"subscriber": "x"}),
                ("/staff/admin/subscribers/erase", {"subscriber": "x", "confirm": "on"}),
            ):
                status, _, _ = await b.post(path, data)
                assert status == 403, (name, path)


async def test_anonymous_is_sent_to_login(admin_ui: Any) -> None:
    client, _ = admin_ui
    b = Browser(client)
    for path in ("/staff/admin/users", "/staff/admin/subscribers"):
        status, _, headers = await b.get(path)
        assert status == 303 and headers["Location"].startswith("/staff/login?next=" + path)


async def test_disable_ends_the_users_session(admin_ui: Any) -> None:
    client, store = admin_ui
    admin = await _admin(client)
    carol = await new_browser(client)
    async with carol.client:
        assert (await carol.login("carol"))[0] == 303
        assert (await carol.get("/staff/"))[0] == 200
        status, _, headers = await admin.post("/staff/admin/users/disable", {"name": "carol"})
        assert status == 303 and headers["Location"] == "/staff/admin/users?disabled=1"
        status, _, headers = await carol.get("/staff/")
        assert status == 303 and headers["Location"].startswith("/staff/login")
    assert (await store.get_user("carol")).disabled
    # one's own account and unknown accounts are refused
    status, _, _ = await admin.post("/staff/admin/users/disable", {"name": "root"})
    assert status == 409
    status, _, _ = await admin.post("/staff/admin/users/disable", {"name": "nobody"})
    assert status == 404


async def test_admin_adds_an_account_with_the_clis_rules(
    admin_ui: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, store = admin_ui
    admin = await _admin(client)
    status, html, _ = await admin.get("/staff/admin/users")
    assert 'action="/staff/admin/users/add"' in html and 'name="role"' in html
    caplog.set_level(logging.INFO, logger="publisher.web.ui.admin")
    status, _, headers = await admin.post(
        "/staff/admin/users/add", {"name": "dave", "role": "reviewer", "password": PASSWORD}
    )
    assert status == 303 and headers["Location"] == "/staff/admin/users?added=1"
    dave = await store.get_user("dave")
    assert dave.role is Role.REVIEWER and dave.has_password and not dave.disabled
    assert "'dave' added as reviewer with a password by 'root'" in caplog.text
    d = await new_browser(client)
    async with d.client:
        assert (await d.login("dave"))[0] == 303
    # without a password: an API-token-only account, as `publisher user add` makes it
    status, _, _ = await admin.post("/staff/admin/users/add", {"name": "bot", "role": "editor"})
    assert status == 303 and not (await store.get_user("bot")).has_password
    for data, code, words in (
        ({"name": "erin", "role": "editor", "password": "short"}, 422, "12"),
        ({"name": "erin", "role": "editor", "password": "woaini13145200"}, 422, "太容易"),
        ({"name": "erin", "role": "superuser", "password": PASSWORD}, 422, "角色"),
        ({"name": "two words", "role": "editor"}, 422, "空格"),
        ({"name": "system", "role": "editor"}, 422, "保留"),
        ({"name": "dave", "role": "editor"}, 409, "已存在"),
        ({"name": "", "role": "editor"}, 422, "用户名"),
    ):
        status, html, _ = await admin.post("/staff/admin/users/add", data)
        assert status == code and words in html, (data, status)
        assert 'role="alert"' in html
    assert "erin" not in [u.name for u in await store.list_users()]
    # other roles and requests without the CSRF token add nothing
    status, _, _ = await admin.post(
        "/staff/admin/users/add", {"name": "frank", "role": "admin"}, csrf=False
    )
    assert status == 403
    alice = await new_browser(client)
    async with alice.client:
        await alice.login("alice")
        status, _, _ = await alice.post("/staff/admin/users/add", {"name": "g", "role": "admin"})
        assert status == 403
    assert {u.name for u in await store.list_users()} >= {"dave", "bot"}
    assert "frank" not in {u.name for u in await store.list_users()}


async def test_admin_changes_a_role_and_the_sessions_end(
    admin_ui: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, store = admin_ui
    admin = await _admin(client)
    caplog.set_level(logging.INFO, logger="publisher.web.ui.admin")
    carol = await new_browser(client)
    async with carol.client:
        assert (await carol.login("carol"))[0] == 303
        status, _, headers = await admin.post(
            "/staff/admin/users/role", {"name": "carol", "role": "reviewer"}
        )
        assert status == 303 and headers["Location"] == "/staff/admin/users?role=1"
        status, _, _ = await carol.get("/staff/")
        assert status == 303  # her session ended
    assert (await store.get_user("carol")).role is Role.REVIEWER
    assert "'carol' given role reviewer by 'root'" in caplog.text
    status, html, _ = await admin.get("/staff/admin/users?role=1")
    assert 'role="status"' in html
    status, _, _ = await admin.post("/staff/admin/users/role", {"name": "root", "role": "editor"})
    assert status == 409 and (await store.get_user("root")).role is Role.ADMIN
    status, _, _ = await admin.post("/staff/admin/users/role", {"name": "nobody", "role": "editor"})
    assert status == 404
    status, _, _ = await admin.post("/staff/admin/users/role", {"name": "carol", "role": "boss"})
    assert status == 422
    status, _, _ = await admin.post(
        "/staff/admin/users/role", {"name": "carol", "role": "admin"}, csrf=False
    )
    assert status == 403 and (await store.get_user("carol")).role is Role.REVIEWER


async def test_password_reset(admin_ui: Any) -> None:
    client, _ = admin_ui
    admin = await _admin(client)
    alice = await new_browser(client)
    async with alice.client:
        assert (await alice.login("alice"))[0] == 303
        status, _, headers = await admin.post(
            "/staff/admin/users/password", {"name": "alice", "password": "brand new secret"}
        )
        assert status == 303 and headers["Location"] == "/staff/admin/users?password=1"
        status, _, _ = await alice.get("/staff/")
        assert status == 303  # her session ended
        assert (await alice.login("alice"))[0] == 401
        assert (await alice.login("alice", "brand new secret"))[0] == 303
    status, html, _ = await admin.post(
        "/staff/admin/users/password", {"name": "alice", "password": "short"}
    )
    assert status == 422 and "12" in html
    status, html, _ = await admin.post(
        "/staff/admin/users/password", {"name": "alice", "password": "qq1234567890"}
    )
    assert status == 422 and "太容易" in html


async def test_lookup_shows_only_the_masked_address(
    admin_ui: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, store = admin_ui
    await _subscribe(store)
    b = await _admin(client)
    with caplog.at_level(logging.DEBUG):
        status, html, _ = await b.post(
            "/staff/admin/subscribers", {"channel": "sms", "address": PHONE}
        )
    assert status == 200, html
    assert "138****5678" in html
    assert PHONE not in html and "+86" + PHONE not in html
    assert "web_verified" in html  # the consent history
    assert PHONE not in caplog.text
    # not found, and bad input: the page again with a message, never a 500
    status, html, _ = await b.post(
        "/staff/admin/subscribers", {"channel": "email", "address": EMAIL}
    )
    assert status == 404 and 'name="address"' in html
    for channel, address in (("sms", "12"), ("email", "not an email"), ("fax", PHONE)):
        status, html, _ = await b.post(
            "/staff/admin/subscribers", {"channel": channel, "address": address}
        )
        assert status == 422, (channel, address)
        assert 'role="alert"' in html


async def _sealed(b: Browser, channel: str, address: str) -> str:
    status, html, _ = await b.post(
        "/staff/admin/subscribers", {"channel": channel, "address": address}
    )
    assert status == 200, html
    found = SEALED.search(html)
    assert found
    return found[1]


async def test_export_returns_the_data(admin_ui: Any) -> None:
    client, store = admin_ui
    await _subscribe(store, "email", EMAIL)
    b = await _admin(client)
    sealed = await _sealed(b, "email", EMAIL)
    assert EMAIL not in sealed
    resp = await b.client.post(
        "/staff/admin/subscribers/export", data={"subscriber": sealed, "csrf_token": b.csrf}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "attachment" in resp.headers["Content-Disposition"]
    data = json.loads(await resp.text())
    assert data == await Recipients(store).export(EMAIL)
    assert data["subscriptions"][0]["address"] == EMAIL
    # a tampered form is refused, not a 500
    status, _, _ = await b.post("/staff/admin/subscribers/export", {"subscriber": "garbage"})
    assert status == 400


async def test_erase_removes_the_address_and_keeps_the_suppression(admin_ui: Any) -> None:
    client, store = admin_ui
    await _subscribe(store)
    b = await _admin(client)
    sealed = await _sealed(b, "sms", PHONE)
    status, _, _ = await b.post("/staff/admin/subscribers/erase", {"subscriber": sealed})
    assert status == 422  # not confirmed: nothing happens
    async with store.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.recipients)) == 1
    status, _, headers = await b.post(
        "/staff/admin/subscribers/erase", {"subscriber": sealed, "confirm": "on"}
    )
    assert status == 303 and headers["Location"] == "/staff/admin/subscribers?erased=1"
    async with store.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.recipients)) == 0
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.consents)) == 0
    assert await Recipients(store).is_suppressed("sms", PHONE)
    status, html, _ = await b.get(headers["Location"])
    assert status == 200 and 'role="status"' in html
    status, _, _ = await b.post("/staff/admin/subscribers", {"channel": "sms", "address": PHONE})
    assert status == 404


async def test_posts_without_csrf_are_refused(admin_ui: Any) -> None:
    client, store = admin_ui
    await _subscribe(store)
    b = await _admin(client)
    sealed = await _sealed(b, "sms", PHONE)
    for path, data in (
        ("/staff/admin/users/disable", {"name": "carol"}),
        ("/staff/admin/users/password", {"name": "carol", "password": "x" * 12}),
        ("/staff/admin/subscribers", {"channel": "sms", "address": PHONE}),
        ("/staff/admin/subscribers/export", {"subscriber": sealed}),
        ("/staff/admin/subscribers/erase", {"subscriber": sealed, "confirm": "on"}),
    ):
        status, _, _ = await b.post(path, data, csrf=False)
        assert status == 403, path
    assert not (await store.get_user("carol")).disabled
    assert not await Recipients(store).is_suppressed("sms", PHONE)
