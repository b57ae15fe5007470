"""Bad input of any kind: a 4xx RFC 9457 problem that says what is wrong, never a 500,
and nothing written."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from publisher.config import Config
from publisher.store.sql import SqlStore
from publisher.web import make_app
from tests.conftest import EDITOR, REVIEWER, Api, item_fields
from tests.web import assert_problem, create, open_api, submit_and_approve

UNKNOWN_ID = "3f0c1e1a-0000-4000-8000-000000000000"
JSON = {"Content-Type": "application/json"}


async def _total(api: Api) -> int:
    status, body, _ = await api.call("GET", "/api/v1/items?per_page=1", who="root-admin")
    assert status == 200
    return int(body["total"])


async def _state(api: Api, item_id: str) -> tuple[Any, str, int]:
    """What a client can see of an item: its JSON, its ETag and the length of its audit trail."""
    status, body, headers = await api.call("GET", f"/api/v1/items/{item_id}", who="root-admin")
    assert status == 200
    status, audit, _ = await api.call("GET", f"/api/v1/items/{item_id}/audit", who="root-admin")
    assert status == 200
    return body, headers["ETag"], len(audit["entries"])


async def _etag(api: Api, item_id: str) -> str:
    return (await _state(api, item_id))[1]


async def run_cases(cases: list[tuple[Any, ...]], check: Callable[..., Awaitable[None]]) -> None:
    """Run every case on the same app (one app per test keeps this file fast); report them all."""
    failures = []
    for name, *args in cases:
        try:
            await check(*args)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)


def _raw(data: bytes | str, content_type: str | None = "application/json") -> dict[str, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    return {"data": data.encode() if isinstance(data, str) else data, "headers": headers}


# -- creating an item ------------------------------------------------------------------

CREATE_CASES: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
    ("wrong type", {"json": item_fields(title=5)}, 422, ("title", "string")),
    ("wrong type bool", {"json": item_fields(urgent="maybe")}, 422, ("urgent",)),
    ("wrong type list", {"json": item_fields(channels="sms")}, 422, ("channels", "list")),
    (
        "missing required field",
        {"json": {k: v for k, v in item_fields().items() if k != "body"}},
        422,
        ("body", "required"),
    ),
    ("blank title", {"json": item_fields(title="   ")}, 422, ("title", "blank")),
    ("unknown field", {"json": item_fields(colour="red")}, 422, ("colour", "unknown field")),
    ("unknown category", {"json": item_fields(category="nope")}, 422, ("category", "nope")),
    ("unknown channel", {"json": item_fields(channels=["fax"])}, 422, ("channels",)),
    ("bad date", {"json": item_fields(written_at="2026-13-45")}, 422, ("written_at",)),
    ("far-off date", {"json": item_fields(written_at="0001-01-01")}, 422, ("written_at", "year")),
    (
        "far-off publish_at",
        {"json": item_fields(publish_at="9999-12-31T23:59:59-14:00")},
        422,
        ("publish_at", "year"),
    ),
    ("title too long", {"json": item_fields(title="长" * 501)}, 422, ("title", "500")),
    (
        "unknown relation kind",
        {"json": item_fields(related=[{"item_id": UNKNOWN_ID, "kind": "cites"}])},
        422,
        ("related",),
    ),
    (
        "related points to an unknown item",
        {"json": item_fields(related=[{"item_id": UNKNOWN_ID, "kind": "amends"}])},
        422,
        ("related", UNKNOWN_ID),
    ),
    (
        "expires_at before publish_at",
        {
            "json": item_fields(
                publish_at="2026-12-01T09:00:00+08:00", expires_at="2026-11-01T09:00:00+08:00"
            )
        },
        422,
        ("expires_at", "publish_at"),
    ),
    (
        "on_request without disclosure_reason",
        {"json": item_fields(disclosure="on_request")},
        422,
        ("disclosure_reason", "on_request"),
    ),
    (
        "withheld without disclosure_reason",
        {"json": item_fields(disclosure="withheld", disclosure_reason="  ")},
        422,
        ("disclosure_reason", "withheld"),
    ),
    ("unknown disclosure", {"json": item_fields(disclosure="secret")}, 422, ("disclosure",)),
    ("malformed JSON", _raw('{"title": "通知",'), 422, ("malformed JSON", "line 1")),
    ("JSON array", _raw(json.dumps([item_fields()])), 422, ("JSON object",)),
    ("JSON string", _raw('"通知"'), 422, ("JSON object",)),
    ("JSON null", _raw("null"), 422, ("JSON object",)),
    ("empty body", _raw(b""), 422, ("JSON object",)),
    ("whitespace body", _raw(b"  \n"), 422, ("JSON object",)),
    ("deep nesting", _raw("[" * 100_000 + "]" * 100_000), 422, ("nested",)),
    (
        "NUL character",
        {"json": item_fields(title="通\u0000知")},
        422,
        ("NUL",),
    ),
    (
        "lone surrogate",
        _raw(json.dumps(item_fields()).replace('"nync"', '"nync", "title": "\\ud800"')),
        422,
        ("title",),
    ),
    (
        "non-UTF-8 bytes",
        _raw(json.dumps(item_fields(), ensure_ascii=False).encode("gbk")),
        422,
        ("UTF-8",),
    ),
    (
        "wrong content type",
        _raw(json.dumps(item_fields()), "text/plain"),
        415,
        ("application/json", "text/plain"),
    ),
    (
        "form content type",
        _raw("title=x&body=y", "application/x-www-form-urlencoded"),
        415,
        ("application/json",),
    ),
    (
        "no content type",
        {"data": json.dumps(item_fields()).encode()},
        415,
        ("application/json",),
    ),
]


async def test_bad_create_is_a_problem_and_writes_nothing(api: Api) -> None:
    await create(api)  # one item already there

    async def check(kwargs: dict[str, Any], expected: int, words: tuple[str, ...]) -> None:
        status, body, headers = await api.call("POST", "/api/v1/items", **kwargs)
        assert_problem(status, body, headers, expected, *words)
        assert body["type"].startswith("urn:gongkai:problem:")
        assert body["instance"] == "/api/v1/items"
        assert await _total(api) == 1

    await run_cases(CREATE_CASES, check)


async def test_validation_problem_lists_every_field(api: Api) -> None:
    status, body, headers = await api.call(
        "POST", "/api/v1/items", json={"title": 5, "extra": True}
    )
    assert_problem(status, body, headers, 422, "and")
    fields = {e["field"] for e in body["errors"]}
    assert {"title", "extra", "body", "category", "written_at"} <= fields
    assert all(e["message"] for e in body["errors"])


@pytest.fixture
def small_limits(config_factory: Callable[..., Config]) -> Config:
    return config_factory(ITEMS__MAX_BODY_CHARS="100", SERVER__MAX_BODY_BYTES="4000")


@pytest.fixture
async def small(small_limits: Config) -> AsyncIterator[Api]:
    async with open_api(small_limits) as (api, _store):
        yield api


async def test_body_longer_than_max_body_chars_is_refused(small: Api) -> None:
    item = await create(small, body="字" * 100)  # exactly the limit is fine
    before = await _total(small)
    status, body, headers = await small.call(
        "POST", "/api/v1/items", json=item_fields(body="字" * 101)
    )
    assert_problem(status, body, headers, 422, "body", "101", "100")
    assert await _total(small) == before

    # the same limit holds for edits
    _, etag, audit = await _state(small, item["id"])
    status, body, headers = await small.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"body": "字" * 101},
        headers={"If-Match": etag},
    )
    assert_problem(status, body, headers, 422, "body", "100")
    after, after_etag, after_audit = await _state(small, item["id"])
    assert (after["body"], after_etag, after_audit) == ("字" * 100, etag, audit)


async def test_request_larger_than_max_body_bytes_is_413(small: Api) -> None:
    before = await _total(small)
    big = json.dumps(item_fields(summary="x" * 5000))
    status, body, headers = await small.call("POST", "/api/v1/items", **_raw(big))
    assert_problem(status, body, headers, 413, "4000")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for i in range(0, len(big), 500):
            yield big[i : i + 500].encode()

    status, body, headers = await small.call("POST", "/api/v1/items", data=chunks(), headers=JSON)
    assert_problem(status, body, headers, 413, "4000")
    assert await _total(small) == before


# -- editing an item ------------------------------------------------------------------

PATCH_CASES: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
    ("wrong type", {"json": {"title": 5}}, 422, ("title",)),
    ("null title", {"json": {"title": None}}, 422, ("title", "null")),
    ("null written_at", {"json": {"written_at": None}}, 422, ("written_at", "null")),
    ("no field", {"json": {}}, 422, ("no field",)),
    ("unknown field", {"json": {"status": "published"}}, 422, ("status", "unknown field")),
    ("unknown category", {"json": {"category": "nope"}}, 422, ("category",)),
    ("non-proactive", {"json": {"disclosure": "withheld"}}, 422, ("disclosure_reason",)),
    (
        "related unknown",
        {"json": {"related": [{"item_id": UNKNOWN_ID, "kind": "repeals"}]}},
        422,
        ("related", UNKNOWN_ID),
    ),
    (
        "expires_at before publish_at",
        {"json": {"publish_at": "2026-12-02T00:00:00", "expires_at": "2026-12-01T00:00:00"}},
        422,
        ("expires_at",),
    ),
    (
        "correction_note on a draft",
        {"json": {"title": "新标题", "correction_note": "更正"}},
        422,
        ("correction_note",),
    ),
    ("malformed JSON", _raw("{title: 1}"), 422, ("malformed JSON",)),
    ("JSON array", _raw('[{"title": "x"}]'), 422, ("JSON object",)),
    ("non-UTF-8", _raw('{"title": "公告"}'.encode("gb18030")), 422, ("UTF-8",)),
    ("wrong content type", _raw('{"title": "x"}', "text/plain"), 415, ("application/json",)),
]


async def test_bad_patch_is_a_problem_and_changes_nothing(api: Api) -> None:
    item = await create(api)
    before = await _state(api, item["id"])

    async def check(kwargs: dict[str, Any], expected: int, words: tuple[str, ...]) -> None:
        headers = {**kwargs.get("headers", {}), "If-Match": before[1]}
        status, body, resp_headers = await api.call(
            "PATCH", f"/api/v1/items/{item['id']}", **{**kwargs, "headers": headers}
        )
        assert_problem(status, body, resp_headers, expected, *words)
        assert await _state(api, item["id"]) == before

    await run_cases(PATCH_CASES, check)


async def test_bad_patch_of_a_published_item_makes_no_revision(api: Api) -> None:
    item = await submit_and_approve(api, (await create(api))["id"])
    before = await _state(api, item["id"])
    status, body, headers = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"category": "nope", "title": "新"},
        headers={"If-Match": before[1]},
    )
    assert_problem(status, body, headers, 422, "category")
    after = await _state(api, item["id"])
    assert after == before and after[0]["pending"] is None


async def test_patch_without_if_match_is_428(api: Api) -> None:
    item = await create(api)
    before = await _state(api, item["id"])
    status, body, headers = await api.call(
        "PATCH", f"/api/v1/items/{item['id']}", json={"title": "无条件修改"}
    )
    assert_problem(status, body, headers, 428, "If-Match")
    assert await _state(api, item["id"]) == before


async def test_patch_with_stale_if_match_is_412_and_changes_nothing(api: Api) -> None:
    item = await create(api)
    _, stale, _ = await _state(api, item["id"])
    # carol edits first
    status, _, headers = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        who="carol",
        json={"title": "卡罗尔的标题"},
        headers={"If-Match": stale},
    )
    assert status == 200
    current = headers["ETag"]
    before = await _state(api, item["id"])
    # alice's edit, based on what she read before, must not overwrite carol's
    status, body, headers = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"title": "爱丽丝的标题", "body": "爱丽丝的正文"},
        headers={"If-Match": stale},
    )
    assert_problem(status, body, headers, 412, "changed since you read it")
    assert body["current_etag"] == current
    after = await _state(api, item["id"])
    assert after == before
    assert after[0]["title"] == "卡罗尔的标题" and after[0]["body"] == item["body"]
    # garbage If-Match is stale too
    status, body, headers = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"title": "x"},
        headers={"If-Match": "*garbage*"},
    )
    assert_problem(status, body, headers, 412)
    assert await _state(api, item["id"]) == before


async def test_patch_of_a_withdrawn_item_is_409(api: Api) -> None:
    item = await submit_and_approve(api, (await create(api))["id"])
    await api.call("POST", f"/api/v1/items/{item['id']}/withdraw", who="bob", json={"reason": "撤"})
    before = await _state(api, item["id"])
    status, body, headers = await api.call(
        "PATCH", f"/api/v1/items/{item['id']}", json={"title": "x"}, headers={"If-Match": before[1]}
    )
    assert_problem(status, body, headers, 409, "withdrawn")
    assert await _state(api, item["id"]) == before


# -- unknown ids --------------------------------------------------------------------------


def _item_routes(app: web.Application) -> list[tuple[str, str]]:
    out = []
    for resource in app.router.resources():
        # the public item page answers an HTML 404 (tests/web/test_public_pages.py)
        if "{item_id}" not in resource.canonical or resource.canonical == "/items/{item_id}":
            continue
        if resource.canonical.startswith("/staff/"):  # HTML pages (tests/web/test_staff_ui.py)
            continue
        for route in resource:
            if route.method != "HEAD":
                out.append((route.method, resource.canonical))
    return out


async def test_unknown_item_id_is_404_on_every_item_route(api: Api) -> None:
    app = api.client.app
    assert app is not None
    routes = _item_routes(app)
    assert len(routes) >= 10
    for method, canonical in routes:
        path = canonical.replace("{item_id}", UNKNOWN_ID).replace("{attachment_id}", UNKNOWN_ID)
        path = path.replace("{filename}", "a.pdf")
        kwargs: dict[str, Any] = {"json": {"reason": "理由"}} if method == "POST" else {}
        if method == "PATCH":
            kwargs = {"json": {"title": "x"}, "headers": {"If-Match": f'"{UNKNOWN_ID}.1"'}}
        for who in ("root-admin", "alice", "bob"):
            status, body, headers = await api.call(method, path, who=who, **kwargs)
            if status == 403 and who != "root-admin":
                continue  # a role that may not use the route at all may learn that first
            assert_problem(status, body, headers, 404)
            assert UNKNOWN_ID in body["detail"] or path in body["detail"], (method, path, body)
    # PATCH without If-Match on an unknown id: the id is what is wrong
    status, body, headers = await api.call(
        "PATCH", f"/api/v1/items/{UNKNOWN_ID}", json={"title": "x"}
    )
    assert_problem(status, body, headers, 404, UNKNOWN_ID)
    assert await _total(api) == 0


async def test_unknown_attachment_of_a_known_item_is_404(api: Api) -> None:
    item = await create(api)
    status, body, headers = await api.call(
        "GET", f"/api/v1/items/{item['id']}/attachments/{UNKNOWN_ID}"
    )
    assert_problem(status, body, headers, 404, UNKNOWN_ID)


# -- workflow misuse -----------------------------------------------------------------------


_MISUSE: list[tuple[Any, ...]] = [
    ("draft", "approve", "bob", None, 409, ("cannot approve", "draft", "submit")),
    ("draft", "withdraw", "bob", {"reason": "x"}, 409, ("cannot withdraw", "draft")),
    ("draft", "reject", "bob", {"reason": "x"}, 409, ("cannot reject", "draft")),
    ("in_review", "submit", "alice", None, 409, ("cannot submit", "in_review")),
    ("published", "approve", "bob", None, 409, ("cannot approve", "published")),
    ("published", "reject", "dave", {"reason": "x"}, 409, ("cannot reject", "published")),
    ("in_review", "reject", "bob", None, 422, ("reason",)),
    ("in_review", "reject", "bob", {"reason": "   "}, 422, ("reason",)),
    ("in_review", "reject", "bob", {}, 422, ("reason",)),
    ("published", "withdraw", "bob", None, 422, ("reason",)),
    ("published", "withdraw", "bob", {"reason": ""}, 422, ("reason",)),
    ("in_review", "approve", "bob", {"acknowledge_personal_data": "sure"}, 422, ("ack",)),
    ("in_review", "approve", "bob", {"approved": True}, 422, ("approved", "unknown")),
    ("in_review", "approve", "bob", [], 422, ("JSON object",)),
    ("in_review", "approve", "alice", None, 403, ("editor", "approve")),
    ("in_review", "approve", "root-admin", {}, 403, ("root-admin",)),
    ("draft", "submit", "bob", None, 403, ("reviewer", "submit")),
]
MISUSE_CASES = [(f"{c[1]} {c[0]} as {c[2]}", *c) for c in _MISUSE]


async def test_workflow_misuse_is_a_problem_and_changes_nothing(api: Api) -> None:
    items: dict[tuple[str, str], str] = {}
    for author in ("alice", "root-admin"):
        for setup in ("draft", "in_review", "published"):
            item = await create(api, who=author)
            if setup != "draft":
                await api.call("POST", f"/api/v1/items/{item['id']}/submit", who=author)
            if setup == "published":
                await api.call("POST", f"/api/v1/items/{item['id']}/approve", who="dave")
            assert (await _state(api, item["id"]))[0]["status"] == setup
            items[(author, setup)] = item["id"]

    async def check(
        setup: str, action: str, who: str, payload: Any, expected: int, words: tuple[str, ...]
    ) -> None:
        # root-admin is the author, so the four-eyes case is the admin's own item
        item_id = items[("root-admin" if who == "root-admin" else "alice", setup)]
        before = await _state(api, item_id)
        status, body, headers = await api.call(
            "POST", f"/api/v1/items/{item_id}/{action}", who=who, json=payload
        )
        assert_problem(status, body, headers, expected, *words)
        assert await _state(api, item_id) == before

    await run_cases(MISUSE_CASES, check)


# -- query parameters, routes and methods -------------------------------------------------


QUERY_CASES: list[tuple[Any, ...]] = [
    (c[0], *c)
    for c in [
        ("page=abc", ("page", "integer")),
        ("page=0", ("page",)),
        ("page=-1", ("page",)),
        ("page=1.5", ("page",)),
        ("page=99999999999999999999999", ("page",)),
        ("per_page=0", ("per_page",)),
        ("per_page=201", ("per_page",)),
        ("per_page=", ("per_page",)),
        ("status=bogus", ("status", "bogus", "draft")),
        ("status=", ("status",)),
        ("year=x", ("year", "integer")),
        ("year=20266", ("year",)),
        ("category=bogus", ("category", "bogus")),
        ("disclosure=public", ("disclosure", "proactive")),
        ("q=%00", ("q", "NUL")),
    ]
]


async def test_invalid_query_params_are_422(api: Api) -> None:
    async def check(query: str, words: tuple[str, ...]) -> None:
        status, body, headers = await api.call("GET", f"/api/v1/items?{query}")
        assert_problem(status, body, headers, 422, *words)

    await run_cases(QUERY_CASES, check)


async def test_unknown_route_is_a_404_problem(api: Api) -> None:
    for who in ("alice", None):
        for path in ("/api/v1/itemz", "/api/v2/items", "/api/v1/items/x/publish", "/nothing"):
            status, body, headers = await api.call("GET", path, who=who)
            assert_problem(status, body, headers, 404, path)


async def test_wrong_method_is_a_405_problem_with_allow(api: Api) -> None:
    item = await create(api)
    cases = [
        ("DELETE", f"/api/v1/items/{item['id']}", {"GET", "PATCH"}),
        ("PUT", "/api/v1/items", {"GET", "POST"}),
        ("GET", f"/api/v1/items/{item['id']}/approve", {"POST"}),
        ("POST", "/healthz", {"GET"}),
    ]
    for method, path, allowed in cases:
        status, body, headers = await api.call(method, path)
        assert_problem(status, body, headers, 405, method, path)
        assert allowed <= {m.strip() for m in headers["Allow"].split(",")}
    assert (await _state(api, item["id"]))[0]["status"] == "draft"


# -- garbage -----------------------------------------------------------------------------

FIELDS = list(item_fields(summary="s", publish_at="x", related=[], urgent=True))
#: values no field accepts
JUNK: list[Any] = [
    {"$": [1]},
    [[None]],
    [{"item_id": None}],
    "\ud800",
    "\u0000",
    -(10**30),
    1e308,
    {"": {}},
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/merge-patch+json",
    "text/plain",
    "multipart/form-data",
    "application/octet-stream",
    None,
]


def garbage(rng: random.Random) -> tuple[bytes, str | None]:
    kind = rng.randrange(4)
    if kind == 0:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 120)))
    elif kind == 1:
        value: Any = rng.choice([None, True, 0, -1.5, "文本", [], [1, [2, [3]]], "{"])
        data = json.dumps(value).encode()
    elif kind == 2:
        obj = {f: rng.choice(JUNK) for f in rng.sample(FIELDS, rng.randrange(1, 5))}
        data = json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    else:
        good = json.dumps(item_fields(), ensure_ascii=False).encode()
        cut = rng.randrange(1, len(good) - 1)
        data = good[:cut] + bytes(rng.randrange(256) for _ in range(rng.randrange(3)))
    return data, rng.choice(CONTENT_TYPES)


async def test_garbage_is_always_4xx(api: Api) -> None:
    item = await create(api)
    before = await _state(api, item["id"])
    rng = random.Random(20260101)
    seen = set()
    for _ in range(30):
        data, ctype = garbage(rng)
        headers = {"Content-Type": ctype} if ctype else {}
        for method, path, extra in (
            ("POST", "/api/v1/items", {}),
            ("PATCH", f"/api/v1/items/{item['id']}", {"If-Match": before[1]}),
        ):
            status, body, resp_headers = await api.call(
                method, path, data=data, headers={**headers, **extra}
            )
            assert 400 <= status < 500, (method, data, ctype, status, body)
            assert resp_headers["Content-Type"].startswith("application/problem+json")
            seen.add(status)
    assert seen <= {413, 415, 422} and 422 in seen and 415 in seen
    assert await _total(api) == 1
    assert await _state(api, item["id"]) == before


# -- the same, on every store backend (PostgreSQL refuses what SQLite swallows) -------------


@pytest.fixture
async def any_api(store: SqlStore) -> AsyncIterator[Api]:
    from aiohttp.test_utils import TestClient, TestServer

    tokens = {}
    for actor in (EDITOR, REVIEWER):
        await store.add_user(actor.name, actor.role)
        tokens[actor.name] = await store.create_token(actor.name)
    async with TestClient(TestServer(make_app(store.config, store))) as client:
        yield Api(client, tokens)


async def test_hostile_text_is_4xx_on_every_backend(any_api: Api) -> None:
    api = any_api
    status, item, headers = await api.call("POST", "/api/v1/items", json=item_fields())
    assert status == 201
    etag = headers["ETag"]
    for fields in (
        item_fields(title="a\u0000b"),
        item_fields(body="正文\u0000"),
        item_fields(related=[{"item_id": "\u0000", "kind": "amends"}]),
        item_fields(written_at="0001-01-01"),
        item_fields(publish_at="9999-12-31T23:00:00Z"),
    ):
        status, body, _ = await api.call("POST", "/api/v1/items", json=fields)
        assert status == 422, (fields, body)
        patch = {k: v for k, v in fields.items() if k not in item_fields() or v != item_fields()[k]}
        status, body, _ = await api.call(
            "PATCH", f"/api/v1/items/{item['id']}", json=patch, headers={"If-Match": etag}
        )
        assert status == 422, (patch, body)
    for path in (
        "/api/v1/items/%00",
        "/api/v1/items/%00/audit",
        f"/api/v1/items/{item['id']}/attachments/%00",
        "/items/%00/attachments/%00/a.pdf",
        "/api/v1/items/" + "x" * 2000,
    ):
        status, body, _ = await api.call("GET", path)
        assert status == 404, (path, status, body)
    status, body, _ = await api.call("POST", "/api/v1/items/%00/submit")
    assert status == 404, body
    status, body, _ = await api.call("GET", "/api/v1/items?q=%00")
    assert status == 422, body
    status, body, _ = await api.call("GET", "/api/v1/items", who="bob")
    assert status == 200 and body["total"] == 1


async def test_personal_data_acknowledgement_must_be_a_real_boolean(api: Api) -> None:
    # approving unmasked personal data is a deliberate act: "yes" or 1 is not an answer
    status, item, _ = await api.call(
        "POST", "/api/v1/items", json=item_fields(body="联系电话 13812345678。")
    )
    assert status == 201
    assert (await api.call("POST", f"/api/v1/items/{item['id']}/submit"))[0] == 200
    for sloppy in ("yes", 1, "true"):
        status, body, _ = await api.call(
            "POST",
            f"/api/v1/items/{item['id']}/approve",
            who="bob",
            json={"acknowledge_personal_data": sloppy},
        )
        assert status == 422, sloppy
        assert "acknowledge_personal_data" in body["detail"]
    status, body, _ = await api.call(
        "POST",
        f"/api/v1/items/{item['id']}/approve",
        who="bob",
        json={"acknowledge_personal_data": True},
    )
    assert status == 200 and body["status"] == "published"


# -- characters XML cannot hold (they broke every feed build): refused, field named -----------

BAD_CHARACTERS = ["\x0b", "\x1b", "\ufffe", "\ud800"]
INVISIBLE_IN_TITLES = ["\u202e", "\u2066", "\u200b", "\ufeff"]


async def test_control_characters_are_422_naming_the_field(any_api: Api) -> None:
    api = any_api
    status, item, headers = await api.call("POST", "/api/v1/items", json=item_fields())
    assert status == 201
    etag = headers["ETag"]
    cases = [
        (field, ch) for ch in BAD_CHARACTERS for field in ("title", "summary", "body", "doc_no")
    ]
    cases += [("title", ch) for ch in INVISIBLE_IN_TITLES]
    for field, ch in cases:
        text = f"上余镇{ch}通知"
        status, body, headers = await api.call(
            "POST", "/api/v1/items", json=item_fields(**{field: text})
        )
        assert_problem(status, body, headers, 422, field, f"U+{ord(ch):04X}")
        assert body["errors"][0]["field"] == field
        status, body, headers = await api.call(
            "PATCH", f"/api/v1/items/{item['id']}", json={field: text}, headers={"If-Match": etag}
        )
        assert_problem(status, body, headers, 422, field, f"U+{ord(ch):04X}")
    status, body, headers = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"body": "正文\u202e。"},  # a body may mix scripts: only titles refuse these
        headers={"If-Match": etag},
    )
    assert status == 200, body
    etag = headers["ETag"]
    status, body, _ = await api.call("GET", "/api/v1/items", who="bob")
    assert status == 200 and body["total"] == 1
    status, body, _ = await api.call("GET", f"/api/v1/items/{item['id']}")
    assert body["title"] == item["title"] and body["body"] == "正文\u202e。"

    # reasons: refused before the item moves
    assert (await api.call("POST", f"/api/v1/items/{item['id']}/submit"))[0] == 200
    status, body, headers = await api.call(
        "POST", f"/api/v1/items/{item['id']}/reject", who="bob", json={"reason": "不行\x0b"}
    )
    assert_problem(status, body, headers, 422, "reason", "U+000B")
    status, body, _ = await api.call("GET", f"/api/v1/items/{item['id']}")
    assert body["status"] == "in_review"
