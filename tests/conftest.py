"""Shared fixtures: a real store on SQLite (always) and PostgreSQL (when configured).

PostgreSQL tests run when PUBLISHER_TEST_DATABASE_URL is set and are skipped with
that reason otherwise — except in CI (CI=true), where a missing database fails.
Each PostgreSQL test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from publisher.config import Config, load_config
from publisher.content import ItemCreate, content_from
from publisher.models import Item, Role
from publisher.store import upgrade
from publisher.store.sql import Actor, SqlStore, make_engine
from publisher.web import make_app

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "shangyu-2013-disclosure-report.txt"
PG_URL = os.environ.get("PUBLISHER_TEST_DATABASE_URL")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> NoReturn:
    """A component a test needs is missing: in CI the run fails (no integration test may
    skip silently there); elsewhere the test is skipped, saying what to install."""
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


EDITOR = Actor("alice", Role.EDITOR)
EDITOR2 = Actor("carol", Role.EDITOR)
REVIEWER = Actor("bob", Role.REVIEWER)
REVIEWER2 = Actor("dave", Role.REVIEWER)
ADMIN = Actor("root-admin", Role.ADMIN)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError(
            "CI=true but PUBLISHER_TEST_DATABASE_URL is not set: PostgreSQL tests would be skipped"
        )


@pytest.fixture
def config_factory(tmp_path: Path) -> Callable[..., Config]:
    """A Config from the repo's config.yaml with data under tmp_path; env-style overrides."""

    def make(**env: str) -> Config:
        environ = {
            "PUBLISHER__STORAGE__URL": f"sqlite:///{tmp_path}/publisher.db",
            "PUBLISHER__STORAGE__ATTACHMENTS_DIR": str(tmp_path / "attachments"),
            "PUBLISHER__STORAGE__FEEDS_DIR": str(tmp_path / "feeds"),
            "PUBLISHER__SECURITY__DATA_KEY": "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0uLi4uLi4uLi4=",
            "PUBLISHER__SECURITY__DATA_KEY_FILE": "",
        }
        environ.update({f"PUBLISHER__{k.upper()}": v for k, v in env.items()})
        return load_config(REPO / "config.yaml", environ)

    return make


@pytest.fixture
def config(config_factory: Callable[..., Config]) -> Config:
    return config_factory()


def dry_run_channels(config: Config, outbox: Path) -> Config:
    """`config` with SMS and email sending to dry-run outboxes under `outbox` (files, no
    gateway): channels that can send, so the subscribe forms are offered."""
    tree = config.model_dump()
    tree["channels"]["sms"]["settings"] = {
        **tree["channels"]["sms"]["settings"],
        "gateways": [{"type": "outbox", "dir": str(outbox / "sms")}],
    }
    tree["channels"]["email"]["settings"] = {
        **tree["channels"]["email"]["settings"],
        "outbox_dir": str(outbox / "email"),
    }
    return Config.model_validate(tree)


async def _pg_store(config: Config) -> AsyncIterator[SqlStore]:
    assert PG_URL is not None
    url = "postgresql+asyncpg://" + PG_URL.split("://", 1)[1]
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = make_engine(url)
    async with admin.begin() as conn:
        await conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    store = SqlStore(config, engine=make_engine(url, pg_schema=schema))
    try:
        await upgrade(store)
        yield store
    finally:
        await store.close()
        async with admin.begin() as conn:
            await conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()


@asynccontextmanager
async def store_on(config: Config, backend: str) -> AsyncIterator[SqlStore]:
    """A migrated store for `config` on `backend` ("sqlite", or "postgresql": a schema of
    its own, dropped afterwards)."""
    if backend == "sqlite":
        store = SqlStore(config)
        await upgrade(store)
        try:
            yield store
        finally:
            await store.close()
    else:
        async with aclosing(_pg_store(config)) as stores:
            async for store in stores:
                yield store


#: the backends every store test runs on; PostgreSQL is skipped, with the reason, only
#: outside CI (in CI a missing database stops the run at collection)
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(
                not PG_URL and not IN_CI,
                reason="PostgreSQL: set PUBLISHER_TEST_DATABASE_URL to run the store tests on it",
            ),
        ],
    ),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, config: Config) -> AsyncIterator[SqlStore]:
    """The store under test, on every backend."""
    async with store_on(config, request.param) as s:
        yield s


@pytest.fixture
async def sqlite_store(config: Config) -> AsyncIterator[SqlStore]:
    s = SqlStore(config)
    await upgrade(s)
    try:
        yield s
    finally:
        await s.close()


def item_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "title": "关于上余镇2026年冬季农田水利建设的通知",
        "body": "各村：\n\n为做好冬季农田水利建设工作，现将有关事项通知如下。",
        "category": "nync",
        "written_at": "2026-11-20",
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def new_item(store: SqlStore) -> Callable[..., Any]:
    """Create a draft item through the store (as the editor alice unless `actor` is given)."""

    async def make(actor: Actor = EDITOR, **overrides: Any) -> Item:
        content = content_from(ItemCreate.model_validate(item_fields(**overrides)), store.config)
        return await store.create_item(content, actor=actor)

    return make


async def publish(store: SqlStore, item: Item, reviewer: Actor = REVIEWER) -> Item:
    """Submit and approve: the way every test gets an item live."""
    from publisher.models import Action

    await store.transition(item.id, Action.SUBMIT, actor=EDITOR)
    return await store.transition(item.id, Action.APPROVE, actor=reviewer)


class Api:
    """An aiohttp test client with staff tokens for each role."""

    def __init__(self, client: TestClient[Any, Any], tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def call(
        self, method: str, path: str, who: str | None = "alice", **kwargs: Any
    ) -> tuple[int, Any, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers.update(self.auth(who))
        resp = await self.client.request(method, path, headers=headers, **kwargs)
        ctype = resp.headers.get("Content-Type", "")
        body: Any = await resp.json(content_type=None) if "json" in ctype else await resp.read()
        return resp.status, body, resp.headers


@pytest.fixture
async def api(sqlite_store: SqlStore) -> AsyncIterator[Api]:
    """The app on a real SQLite store, with users alice (editor), carol (editor), bob and
    dave (reviewers) and root-admin (admin), each with a token."""
    tokens = {}
    for actor in (EDITOR, EDITOR2, REVIEWER, REVIEWER2, ADMIN):
        await sqlite_store.add_user(actor.name, actor.role)
        tokens[actor.name] = await sqlite_store.create_token(actor.name)
    app = make_app(sqlite_store.config, sqlite_store)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, tokens)
