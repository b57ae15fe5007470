"""One role policy (issue 16 B): every route of the app is in publisher.policy.ROUTES,
and every route answers each role — anonymous, editor, reviewer, admin — as the table
says: refused (401 / login redirect / 403) where the role may not, never 403 where it may.

The routes are read from the running app (as tests/web/test_route_allowlist.py does), so
a route added tomorrow without a line in the table fails here tomorrow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from publisher.config import Config
from publisher.models import Role
from publisher.policy import POLICY, ROUTES, Do, may, public_routes, route_action
from publisher.store.sql import SqlStore
from publisher.web.auth import PUBLIC_ROUTES
from tests.web import assert_problem
from tests.web.test_route_allowlist import STAFF_PAGES, Route, app_routes
from tests.web.test_staff_ui import PASSWORD, Browser, _open, new_browser

ROLES: dict[str, Role | None] = {
    "anonymous": None,
    "alice": Role.EDITOR,
    "bob": Role.REVIEWER,
    "root": Role.ADMIN,
}
BOARD = {"name": "北村", "operator_phone": "13800138000"}


@pytest.fixture
async def ui(config: Config) -> AsyncIterator[tuple[TestClient[Any, Any], SqlStore]]:
    async for client, store in _open(config):
        await store.add_user("root", Role.ADMIN, PASSWORD)
        yield client, store


def test_the_table_gives_every_action_its_roles() -> None:
    assert set(POLICY) == set(Do)
    assert set(ROUTES.values()) <= set(Do)
    assert public_routes() == PUBLIC_ROUTES
    # the decisions of issue 16, spelled out
    assert POLICY[Do.BOARD_EDIT] == {Role.ADMIN}
    assert POLICY[Do.BOARD_RECORD_POSTING] == {Role.EDITOR, Role.ADMIN}
    assert POLICY[Do.USERS_ADMIN] == POLICY[Do.SUBSCRIBERS_ADMIN] == {Role.ADMIN}
    assert not may(None, Do.STAFF) and may(None, Do.PUBLIC)


async def test_every_route_is_in_the_table(ui: Any) -> None:
    client, _ = ui
    found = app_routes(client.app)
    assert len(found) > 80
    missing = sorted(
        {(r.method, r.canonical) for r in found if route_action(r.method, r.canonical) is None}
    )
    assert not missing, f"routes without a line in publisher.policy.ROUTES: {missing}"
    registered = {("GET" if r.method == "HEAD" else r.method, r.canonical) for r in found}
    stale = sorted(set(ROUTES) - registered)
    assert not stale, f"publisher.policy.ROUTES names routes the app does not have: {stale}"


async def _call(
    who: str, browser: Browser | None, tokens: dict[str, str], client: Any, r: Route
) -> tuple[int, str]:
    if r.canonical.startswith(STAFF_PAGES):
        assert browser is not None or who == "anonymous"
        target = browser.client if browser is not None else client
        data = {"csrf_token": browser.csrf} if browser is not None else {}
        kw: dict[str, Any] = {"data": data} if r.method not in ("GET", "HEAD") else {}
        resp = await target.request(r.method, r.path, allow_redirects=False, **kw)
    else:
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who in tokens else {}
        resp = await client.request(
            r.method, r.path, headers=headers, json={}, allow_redirects=False
        )
    return resp.status, resp.headers.get("Location", "")


async def test_every_route_answers_each_role_as_the_table_says(ui: Any) -> None:
    client, store = ui
    tokens = {name: await store.create_token(name) for name in ROLES if name != "anonymous"}
    browsers: dict[str, Browser] = {}
    for name in tokens:
        b = await new_browser(client)
        await b.client.start_server()
        status, _, _ = await b.login(name)
        assert status == 303
        browsers[name] = b
    try:
        routes = [
            r
            for r in app_routes(client.app)
            # one's own session ends last, separately; public routes check their own tokens
            if r.canonical != "/staff/logout"
            and route_action(r.method, r.canonical) is not Do.PUBLIC
        ]
        failures = []
        for r in routes:
            action = route_action(r.method, r.canonical)
            assert action is not None
            for who, role in ROLES.items():
                status, location = await _call(who, browsers.get(who), tokens, client, r)
                if role is None:
                    refused = status == 401 or (
                        status == 303 and location.startswith("/staff/login")
                    )
                    if not refused:
                        failures.append(f"anonymous {r.method} {r.canonical}: {status}")
                elif may(role, action) and status in (401, 403):
                    failures.append(f"{who} may {action} but {r.method} {r.canonical}: {status}")
                elif not may(role, action) and status != 403:
                    failures.append(
                        f"{who} may not {action} but {r.method} {r.canonical}: {status}"
                    )
        assert not failures, "\n".join(failures)
        for who, b in browsers.items():  # still signed in: nothing above ended a session
            status, _, _ = await b.get("/staff/")
            assert status == 200, who
            status, _, _ = await b.post("/staff/logout")
            assert status == 303, who
    finally:
        for b in browsers.values():
            await b.client.close()


# -- the reproductions -------------------------------------------------------------------------


async def test_a_reviewer_cannot_record_a_posting_by_the_api(ui: Any) -> None:
    client, store = ui
    root, bob = await store.create_token("root"), await store.create_token("bob")
    resp = await client.post(
        "/api/v1/boards", json=BOARD, headers={"Authorization": f"Bearer {root}"}
    )
    assert resp.status == 201
    board = await resp.json()
    resp = await client.post(
        f"/api/v1/boards/{board['id']}/posted",
        json={"pack": 1},
        headers={"Authorization": f"Bearer {bob}"},
    )
    body = await resp.json(content_type=None)
    assert_problem(resp.status, body, resp.headers, 403, "reviewer")


async def test_an_editor_cannot_redirect_an_operators_links_to_themselves(ui: Any) -> None:
    client, store = ui
    root, alice = await store.create_token("root"), await store.create_token("alice")
    resp = await client.post(
        "/api/v1/boards", json=BOARD, headers={"Authorization": f"Bearer {root}"}
    )
    board = await resp.json()
    resp = await client.patch(
        f"/api/v1/boards/{board['id']}",
        json={"operator_phone": "13900139000"},
        headers={"Authorization": f"Bearer {alice}"},
    )
    body = await resp.json(content_type=None)
    assert_problem(resp.status, body, resp.headers, 403, "editor", "boards.edit")
    resp = await client.get(
        f"/api/v1/boards/{board['id']}", headers={"Authorization": f"Bearer {alice}"}
    )
    assert (await resp.json())["operator_phone"] == "138****8000"
    # nor add a board of their own
    resp = await client.post(
        "/api/v1/boards", json={"name": "我的"}, headers={"Authorization": f"Bearer {alice}"}
    )
    assert resp.status == 403


async def test_a_refused_staff_page_says_so_in_chinese(ui: Any) -> None:
    client, _ = ui
    bob = await new_browser(client)
    async with bob.client:
        await bob.login("bob")
        status, html, _ = await bob.get("/staff/boards/new")
        assert status == 403 and "您的角色无权执行此操作" in html
        status, html, _ = await bob.get("/staff/admin/users")
        assert status == 403
