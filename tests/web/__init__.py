"""Tests of the HTTP API, through a real aiohttp test server on a SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from publisher.config import Config
from publisher.store import upgrade
from publisher.store.sql import SqlStore
from publisher.web import make_app
from tests.conftest import ADMIN, EDITOR, EDITOR2, REVIEWER, REVIEWER2, Api, item_fields

PROBLEM_JSON = "application/problem+json"


@asynccontextmanager
async def open_api(config: Config) -> AsyncIterator[tuple[Api, SqlStore]]:
    """Like conftest's `api` fixture, for a config of the test's own (e.g. small limits)."""
    store = SqlStore(config)
    await upgrade(store)
    try:
        tokens = {}
        for actor in (EDITOR, EDITOR2, REVIEWER, REVIEWER2, ADMIN):
            await store.add_user(actor.name, actor.role)
            tokens[actor.name] = await store.create_token(actor.name)
        app = make_app(config, store)
        async with TestClient(TestServer(app)) as client:
            yield Api(client, tokens), store
    finally:
        await store.close()


def assert_problem(status: int, body: Any, headers: Any, expected: int, *words: str) -> None:
    """An RFC 9457 problem document with the expected status whose detail names `words`."""
    assert status == expected, (status, body)
    assert headers["Content-Type"].startswith(PROBLEM_JSON), headers["Content-Type"]
    assert isinstance(body, dict), body
    for key in ("type", "title", "status", "detail"):
        assert key in body, (key, body)
    assert body["status"] == expected
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    for word in words:
        assert word.lower() in body["detail"].lower(), (word, body["detail"])


async def create(api: Api, who: str = "alice", **overrides: Any) -> dict[str, Any]:
    """Create an item through the API and return its JSON."""
    status, body, _ = await api.call(
        "POST", "/api/v1/items", who=who, json=item_fields(**overrides)
    )
    assert status == 201, body
    return dict(body)


async def submit_and_approve(
    api: Api, item_id: str, *, author: str = "alice", reviewer: str = "bob", **approve: Any
) -> dict[str, Any]:
    status, body, _ = await api.call("POST", f"/api/v1/items/{item_id}/submit", who=author)
    assert status == 200, body
    status, body, _ = await api.call(
        "POST", f"/api/v1/items/{item_id}/approve", who=reviewer, json=approve or None
    )
    assert status == 200, body
    return dict(body)
