"""Every route the app registers is staff-only unless it is on the PUBLIC_ROUTES allowlist.

The routes are read from the running app, not from a list kept here, so a route
added tomorrow is checked tomorrow: if it answers without a valid staff token and
is not on the allowlist, these tests fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from publisher.store import schema as t
from publisher.store.sql import SqlStore, hash_token, utcnow
from publisher.web.auth import PUBLIC_ROUTES
from tests.conftest import Api
from tests.web import assert_problem

PLACEHOLDER = re.compile(r"\{[^}]+\}")
DUMMY = "00000000-0000-4000-8000-000000000000"
#: routes every build of the app has; guards against an enumeration that finds nothing
KNOWN = {
    ("GET", "/healthz"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/items"),
    ("GET", "/api/v1/items"),
    ("GET", "/api/v1/items/{item_id}"),
    ("PATCH", "/api/v1/items/{item_id}"),
    ("POST", "/api/v1/items/{item_id}/submit"),
    ("POST", "/api/v1/items/{item_id}/approve"),
    ("POST", "/api/v1/items/{item_id}/reject"),
    ("POST", "/api/v1/items/{item_id}/withdraw"),
    ("GET", "/api/v1/items/{item_id}/audit"),
    ("POST", "/api/v1/items/{item_id}/attachments"),
    ("GET", "/api/v1/items/{item_id}/attachments/{attachment_id}"),
    ("GET", "/items/{item_id}/attachments/{attachment_id}/{filename}"),
    ("GET", "/staff/"),
    ("GET", "/staff/login"),
    ("POST", "/staff/items/new"),
    ("POST", "/staff/items/{item_id}/approve"),
    ("POST", "/staff/logout"),
}
#: the staff web pages: a session cookie, not a bearer token; without one they redirect
#: to the login form (and do nothing), instead of answering a 401 problem document
STAFF_PAGES = "/staff"


@dataclass(frozen=True)
class Route:
    method: str
    canonical: str  #: the path as PUBLIC_ROUTES and the OpenAPI document spell it
    path: str  #: a concrete path that the router resolves to this route

    @property
    def public(self) -> bool:
        method = "GET" if self.method == "HEAD" else self.method
        return (method, self.canonical) in PUBLIC_ROUTES


def app_routes(app: web.Application, prefix: str = "") -> list[Route]:
    """Every (method, path) the app answers, sub-applications included."""
    out: list[Route] = []
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)
        if isinstance(sub, web.Application):  # add_subapp / add_domain
            out.extend(app_routes(sub, prefix + resource.canonical))
            continue
        canonical = prefix + resource.canonical
        path = PLACEHOLDER.sub(DUMMY, canonical)
        if isinstance(resource, web.StaticResource):
            path = canonical.rstrip("/") + "/dummy.txt"
        for route in resource:
            method = "GET" if route.method == "*" else route.method
            out.append(Route(method, canonical, path))
    return out


@pytest.fixture
def routes(api: Api) -> list[Route]:
    app = api.client.app
    assert app is not None
    found = app_routes(app)
    assert {(r.method, r.canonical) for r in found} >= KNOWN, "route enumeration lost routes"
    return found


async def _resolves_to(app: web.Application, route: Route) -> bool:
    info = await app.router.resolve(make_mocked_request(route.method, route.path, app=app))
    resource = info.route.resource
    return resource is not None and resource.canonical == route.canonical


def staff_routes(routes: list[Route]) -> list[Route]:
    staff = [r for r in routes if not r.public]
    assert len(staff) >= 11
    return staff


async def _expect_401_everywhere(api: Api, routes: list[Route], headers: dict[str, str]) -> None:
    app = api.client.app
    assert app is not None
    failures = []
    for r in staff_routes(routes):
        assert await _resolves_to(app, r), f"{r.method} {r.path} does not reach {r.canonical}"
        resp = await api.client.request(
            r.method, r.path, headers=headers, json={}, allow_redirects=False
        )
        if r.canonical.startswith(STAFF_PAGES):
            ok = resp.status == 303 and resp.headers["Location"].startswith("/staff/login")
        elif r.method == "HEAD":
            ok = resp.status == 401
        else:
            body = await resp.json(content_type=None)
            ok = (
                resp.status == 401
                and resp.headers["Content-Type"].startswith("application/problem+json")
                and body["status"] == 401
                and body["type"].endswith("unauthorized")
                and body["detail"]
                and resp.headers.get("WWW-Authenticate", "").startswith("Bearer")
            )
        if not ok:
            failures.append(f"{r.method} {r.canonical} answered {resp.status}")
    assert not failures, "routes reachable without a valid staff token:\n" + "\n".join(failures)


async def test_every_staff_route_needs_a_token(api: Api, routes: list[Route]) -> None:
    await _expect_401_everywhere(api, routes, {})


async def test_every_staff_page_refuses_a_garbage_session_cookie(
    api: Api, routes: list[Route]
) -> None:
    for cookie in ("gk_session=forged", "gk_session=", "gk_session=" + "x" * 5000):
        await _expect_401_everywhere(api, routes, {"Cookie": cookie})


async def test_every_staff_route_refuses_a_garbage_token(api: Api, routes: list[Route]) -> None:
    for header in (
        "Bearer gk_not-a-real-token",
        "Bearer ",
        "Basic YWxpY2U6c2VjcmV0",
        "gk_token-without-scheme",
        "Bearer " + "x" * 5000,
        f"Bearer {api.tokens['alice']}x",  # a real token with one character more
    ):
        await _expect_401_everywhere(api, routes, {"Authorization": header})


async def test_every_staff_route_refuses_a_revoked_token(
    api: Api, routes: list[Route], sqlite_store: SqlStore
) -> None:
    token = await sqlite_store.create_token("alice")
    status, _, _ = await api.call("GET", "/api/v1/items", who=None, headers=_bearer(token))
    assert status == 200  # the token works before it is revoked
    assert await sqlite_store.revoke_token(token) == 1
    await _expect_401_everywhere(api, routes, _bearer(token))
    # the other tokens of the same user still work
    status, _, _ = await api.call("GET", "/api/v1/items", who="alice")
    assert status == 200


async def test_every_staff_route_refuses_an_expired_token(
    api: Api, routes: list[Route], sqlite_store: SqlStore
) -> None:
    token = await sqlite_store.create_token("bob", expires_days=1)
    status, _, _ = await api.call("GET", "/api/v1/items", who=None, headers=_bearer(token))
    assert status == 200
    async with sqlite_store.write() as conn:
        await conn.execute(
            t.api_tokens.update()
            .where(t.api_tokens.c.token_hash == hash_token(token))
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    status, body, headers = await api.call("GET", "/api/v1/items", who=None, headers=_bearer(token))
    assert_problem(status, body, headers, 401, "expired")
    await _expect_401_everywhere(api, routes, _bearer(token))


async def test_a_disabled_users_token_is_refused(api: Api, sqlite_store: SqlStore) -> None:
    await sqlite_store.disable_user("carol")
    status, body, headers = await api.call("GET", "/api/v1/items", who="carol")
    assert_problem(status, body, headers, 401)


async def test_public_routes_answer_without_auth(api: Api, routes: list[Route]) -> None:
    public = [r for r in routes if r.public]
    assert {(r.method, r.canonical) for r in public if r.method != "HEAD"} == set(PUBLIC_ROUTES)
    for r in public:
        for headers in ({}, {"Authorization": "Bearer gk_garbage"}):
            resp = await api.client.request(r.method, r.path, headers=headers)
            assert resp.status != 401, (r, headers)
            assert resp.status < 500, (r, resp.status)
    status, body, _ = await api.call("GET", "/healthz", who=None)
    assert status == 200 and body["status"] == "ok"
    status, body, _ = await api.call("GET", "/api/v1/openapi.json", who=None)
    assert status == 200 and body["openapi"].startswith("3.")
    # the public attachment route answers for itself: nothing there is a 404, not a 401
    status, body, headers = await api.call(
        "GET", f"/items/{DUMMY}/attachments/{DUMMY}/x.pdf", who=None
    )
    assert_problem(status, body, headers, 404)


async def test_every_allowlist_entry_is_a_registered_route(routes: list[Route]) -> None:
    registered = {(r.method, r.canonical) for r in routes}
    stale = sorted(PUBLIC_ROUTES - registered)
    assert not stale, f"PUBLIC_ROUTES names routes the app does not have: {stale}"


async def test_unknown_paths_answer_404_not_401(api: Api) -> None:
    status, body, headers = await api.call("GET", "/api/v1/nothing-here", who=None)
    assert_problem(status, body, headers, 404, "/api/v1/nothing-here")


async def test_a_valid_token_passes(api: Api) -> None:
    status, body, headers = await api.call("GET", "/api/v1/items", who="dave")
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")


async def test_token_is_compared_by_hash_not_prefix(api: Api, sqlite_store: SqlStore) -> None:
    token = api.tokens["alice"]
    # the stored prefix of a token is not itself a token
    status, _, _ = await api.call("GET", "/api/v1/items", who=None, headers=_bearer(token[:10]))
    assert status == 401
    async with sqlite_store.read() as conn:
        stored = (await conn.execute(sa.select(t.api_tokens.c.token_hash))).scalars().all()
    assert token not in stored and hash_token(token) in stored


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
