"""Issue 16, the log-in: tries counted before the password is checked (per account and
network, per account, per network), argon2 off the event loop, the same work for unknown
names, the password policy, forced password changes, audit rows."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import argon2
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from publisher.config import Config
from publisher.errors import Busy, ConfigError, ValidationFailed
from publisher.models import Role
from publisher.passwords import common_passwords, hash_password, problems
from publisher.sessions import PASSWORD_CHANGE, LockedOut, LoginFailed, Sessions, client_network
from publisher.store import schema as t
from publisher.store.sql import SqlStore, utcnow
from publisher.web import make_app
from tests.conftest import BACKENDS, store_on

PASSWORD = "a long password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Verifies:
    """Counts argon2 verifications (every one, whatever code path calls it), the threads
    they ran on, and can make each one slow or hold it until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.threads: set[str] = set()
        self.delay = 0.0
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()
        real = argon2.PasswordHasher.verify

        def verify(hasher: Any, hash: Any, password: Any) -> Any:
            with self._lock:
                self.calls += 1
                self.threads.add(threading.current_thread().name)
            if self.gate is not None:
                self.gate.wait(timeout=3)
            if self.delay:
                time.sleep(self.delay)
            return real(hasher, hash, password)

        monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> Verifies:
    return Verifies(monkeypatch)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, config: Config) -> AsyncIterator[SqlStore]:
    async with store_on(config, request.param) as s:
        for name, role in (("alice", Role.EDITOR), ("bob", Role.REVIEWER)):
            await s.add_user(name, role, PASSWORD)
        yield s


async def _outcome(coro: Any) -> str:
    try:
        await coro
    except LockedOut:
        return "locked"
    except LoginFailed:
        return "failed"
    return "ok"


# -- concurrent guesses ------------------------------------------------------------------


async def test_concurrent_wrong_passwords_are_not_all_checked(
    store: SqlStore, verifies: Verifies
) -> None:
    sessions = Sessions(store)
    limit = store.config.security.login.max_failed_logins
    outcomes = await asyncio.gather(
        *(_outcome(sessions.login("alice", f"guess {i}", network="10.0.0.9")) for i in range(40))
    )
    assert verifies.calls == limit
    assert outcomes.count("failed") == limit and outcomes.count("locked") == 40 - limit
    # and the account is locked from there, the right password too (without a check)
    with pytest.raises(LockedOut):
        await sessions.login("alice", PASSWORD, network="10.0.0.9")
    assert verifies.calls == limit


async def test_thirty_wrong_and_the_right_one_at_once_do_not_let_the_right_one_in(
    store: SqlStore, verifies: Verifies
) -> None:
    sessions = Sessions(store)
    limit = store.config.security.login.max_failed_logins
    verifies.gate = threading.Event()
    wrong = [
        asyncio.create_task(_outcome(sessions.login("alice", f"guess {i}", network="10.0.0.9")))
        for i in range(30)
    ]
    # wait until all but the tries being checked have been answered (held in verify)
    waiting: set[asyncio.Task[str]] = set(wrong)
    while len(waiting) > limit:
        done, waiting = await asyncio.wait(waiting, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            break
    right = await _outcome(sessions.login("alice", PASSWORD, network="10.0.0.9"))
    verifies.gate.set()
    outcomes = await asyncio.gather(*wrong)
    assert right == "locked"
    assert verifies.calls == limit
    assert outcomes.count("failed") == limit


# -- the password step does not stall the event loop ------------------------------------


async def test_argon2_runs_off_the_event_loop(config: Config, verifies: Verifies) -> None:
    verifies.delay = 0.25  # each verification takes a quarter of a second
    async with store_on(config, "sqlite") as store:
        app = make_app(config, store)
        async with TestClient(TestServer(app)) as client:
            sessions = Sessions(store)
            logins = [
                asyncio.create_task(
                    _outcome(sessions.login(f"nobody{i}", "whatever", network=f"10.1.0.{i}"))
                )
                for i in range(12)
            ]
            await asyncio.sleep(0.05)
            started = time.monotonic()
            resp = await client.get("/healthz")
            took = time.monotonic() - started
            assert resp.status == 200
            await asyncio.gather(*logins)
    # 12 x 0.25 s on the loop would hold /healthz for ~3 s
    assert took < 1.0, took
    assert verifies.calls == 12
    assert threading.main_thread().name not in verifies.threads
    assert all(name.startswith("argon2") for name in verifies.threads)


async def test_a_full_hashing_queue_refuses_at_once(config_factory: Callable[..., Config]) -> None:
    config = config_factory(SECURITY__LOGIN__HASH_THREADS="1", SECURITY__LOGIN__HASH_QUEUE="1")
    async with store_on(config, "sqlite") as store:
        gate = threading.Event()
        pool = store.passwords
        first = asyncio.create_task(pool.run(gate.wait, 3))
        second = asyncio.create_task(pool.run(gate.wait, 3))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await pool.run(gate.wait, 3)
        gate.set()
        await asyncio.gather(first, second)


# -- the same work for every name --------------------------------------------------------


async def test_unknown_disabled_and_tokens_only_names_check_a_dummy_hash(
    store: SqlStore, verifies: Verifies
) -> None:
    await store.add_user("bot", Role.EDITOR)  # API tokens only
    await store.add_user("gone", Role.EDITOR, PASSWORD)
    await store.disable_user("gone")
    sessions = Sessions(store)
    for i, name in enumerate(("nobody", "bot", "gone", "alice")):
        before = verifies.calls
        with pytest.raises(LoginFailed):
            await sessions.login(
                name, PASSWORD if name == "gone" else "wrong", network=f"10.2.{i}.1"
            )
        assert verifies.calls == before + 1, name


# -- who can lock whom out --------------------------------------------------------------


async def test_failures_lock_the_account_from_that_network_only(store: SqlStore) -> None:
    sessions = Sessions(store)
    limit = store.config.security.login.max_failed_logins
    now = utcnow()
    for _ in range(limit):
        with pytest.raises(LoginFailed):
            await sessions.login("alice", "wrong", network="203.0.113.7", now=now)
    with pytest.raises(LockedOut) as locked:
        await sessions.login("alice", PASSWORD, network="203.0.113.7", now=now)
    assert locked.value.scope == "pair"
    # the colleague in the office still logs in
    cookie, _ = await sessions.login("alice", PASSWORD, network="192.0.2.10", now=now)
    assert cookie
    # an IPv6 attacker is one /64, whatever address of it they use
    for i in range(limit):
        with pytest.raises(LoginFailed):
            await sessions.login("bob", "wrong", network=client_network(f"2001:db8:1:2::{i + 1}"))
    with pytest.raises(LockedOut):
        await sessions.login("bob", PASSWORD, network=client_network("2001:db8:1:2:ffff::1"))
    await sessions.login("bob", PASSWORD, network=client_network("2001:db8:1:3::1"))


def test_client_networks() -> None:
    assert client_network("198.51.100.4") == "198.51.100.4"
    assert client_network("2001:db8:a:b:1:2:3:4") == "2001:db8:a:b::/64"
    assert client_network("::ffff:198.51.100.4") == "198.51.100.4"
    assert client_network(None) == client_network("not an address") == "unknown"


async def test_one_network_cannot_reach_the_account_throttle(
    config_factory: Callable[..., Config],
) -> None:
    # what one network can do in the window must stay below the account threshold
    with pytest.raises(ConfigError, match="account_max_failures"):
        config_factory(SECURITY__LOGIN__ACCOUNT_MAX_FAILURES="20")
    config = config_factory(SECURITY__LOGIN__ACCOUNT_MAX_FAILURES="21")
    async with store_on(config, "sqlite") as store:
        await store.add_user("alice", Role.EDITOR, PASSWORD)
        sessions = Sessions(store)
        cfg = config.security.login
        now = utcnow()
        # one network, all it can do within the window: locked out itself, never the account
        for round_ in range(cfg.account_window_minutes // cfg.lockout_minutes):
            at = now + timedelta(minutes=round_ * cfg.lockout_minutes, seconds=round_)
            for _ in range(cfg.max_failed_logins):
                with pytest.raises(LoginFailed):
                    await sessions.login("alice", "wrong", network="203.0.113.7", now=at)
        later = now + timedelta(minutes=cfg.account_window_minutes - 1)
        await sessions.login("alice", PASSWORD, network="192.0.2.10", now=later)


async def test_failures_from_many_networks_throttle_the_account(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory()
    cfg = config.security.login
    async with store_on(config, "sqlite") as store:
        await store.add_user("alice", Role.EDITOR, PASSWORD)
        sessions = Sessions(store)
        now = utcnow()
        for i in range(cfg.account_threshold):
            with pytest.raises(LoginFailed):
                await sessions.login("alice", "wrong", network=f"10.9.{i}.1", now=now)
        # throttled: one try per account_throttle_seconds from anywhere
        with pytest.raises(LockedOut) as slowed:
            await sessions.login("alice", PASSWORD, network="192.0.2.10", now=now)
        assert slowed.value.scope == "account"
        at = now + timedelta(seconds=cfg.account_throttle_seconds)
        cookie, _ = await sessions.login("alice", PASSWORD, network="192.0.2.10", now=at)
        assert cookie
        async with store.read() as conn:
            actions = (await conn.execute(sa.select(t.audit_log.c.action))).scalars().all()
        assert "login_throttled" in actions


async def test_one_network_guessing_many_names_is_locked(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory(SECURITY__LOGIN__NETWORK_MAX_FAILURES="6")
    async with store_on(config, "sqlite") as store:
        await store.add_user("alice", Role.EDITOR, PASSWORD)
        sessions = Sessions(store)
        for i in range(6):
            with pytest.raises(LoginFailed):
                await sessions.login(f"user{i}", "wrong", network="203.0.113.7")
        with pytest.raises(LockedOut) as locked:
            await sessions.login("alice", PASSWORD, network="203.0.113.7")
        assert locked.value.scope == "network"
        await sessions.login("alice", PASSWORD, network="192.0.2.10")


async def test_log_ins_failures_and_lockouts_are_audited(store: SqlStore) -> None:
    sessions = Sessions(store)
    for _ in range(store.config.security.login.max_failed_logins):
        with pytest.raises(LoginFailed):
            await sessions.login("bob", "wrong", network="203.0.113.7")
    await sessions.login("alice", PASSWORD, network="192.0.2.10")
    async with store.read() as conn:
        rows = (
            await conn.execute(sa.select(t.audit_log).where(t.audit_log.c.item_id.is_(None)))
        ).all()
    seen = [(r.actor, r.action, r.details.get("network")) for r in rows]
    assert seen.count(("bob", "login_failed", "203.0.113.7")) == 5
    assert ("bob", "login_locked", "203.0.113.7") in seen
    assert ("alice", "login", "192.0.2.10") in seen


# -- the password policy -----------------------------------------------------------------

REFUSED = [
    "password",
    "aaaaaaaa",
    " " * 8,
    " " * 16,
    "a" * 20,
    "woaini1314",
    "5201314",
    "qq123456",
    "woaini13145200",
    "woaini1314520!",
    "5201314woaini",
    "qq1234567890",
    "1qaz2wsx3edc4rfv",
    "passwordpassword",
    "123456789012",
]
ACCEPTED = ["alice-tour-password-1", "bob-tour-password-2", PASSWORD, "雨后 春笋 竹林 2026"]


@pytest.mark.parametrize("password", REFUSED)
def test_weak_passwords_are_refused(config: Config, password: str) -> None:
    assert problems(password, config.security.login, user_inputs=["alice"])


@pytest.mark.parametrize("password", ACCEPTED)
def test_good_passwords_pass(config: Config, password: str) -> None:
    assert problems(password, config.security.login, user_inputs=["alice"]) == []


def test_the_chinese_list_is_there() -> None:
    assert {"woaini1314", "5201314", "qq123456"} <= common_passwords()


async def test_the_store_refuses_weak_passwords(store: SqlStore) -> None:
    with pytest.raises(ValidationFailed, match="at least 12 characters"):
        await store.add_user("carol", Role.EDITOR, "woaini1314")
    with pytest.raises(ValidationFailed, match="too easy to guess"):
        await store.set_password("alice", "woaini13145200")
    await store.set_password("alice", "bob-tour-password-2")


# -- weak or old passwords are changed at the next log-in -------------------------------


class Browser:
    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    async def get(self, path: str) -> tuple[int, str, Any]:
        resp = await self.client.get(path, allow_redirects=False)
        return resp.status, await resp.text(), resp.headers

    async def post(self, path: str, data: dict[str, str]) -> tuple[int, str, Any]:
        resp = await self.client.post(path, data=data, allow_redirects=False)
        return resp.status, await resp.text(), resp.headers

    async def login(self, name: str, password: str) -> tuple[int, str, Any]:
        _, html, _ = await self.get("/staff/login")
        token = CSRF.search(html)
        assert token
        return await self.post(
            "/staff/login", {"username": name, "password": password, "csrf_token": token[1]}
        )


@pytest.fixture
async def web_store(config: Config) -> AsyncIterator[tuple[Browser, SqlStore]]:
    async with store_on(config, "sqlite") as store:
        await store.add_user("alice", Role.EDITOR, PASSWORD)
        async with TestClient(TestServer(make_app(config, store))) as client:
            yield Browser(client), store


async def _weaken(store: SqlStore, name: str, password: str, **values: Any) -> None:
    """A password set before the policy (straight into the table, as old data is)."""
    async with store.write() as conn:
        await conn.execute(
            t.users.update()
            .where(t.users.c.name == name)
            .values(password_hash=hash_password(password), **values)
        )


async def test_a_weak_password_must_be_changed_at_the_next_log_in(
    web_store: tuple[Browser, SqlStore],
) -> None:
    b, store = web_store
    await _weaken(store, "alice", "woaini1314")
    status, _, headers = await b.login("alice", "woaini1314")
    assert status == 303 and headers["Location"] == "/staff/password"
    # nothing else opens until it is done
    for path in ("/staff/", "/staff/items/new", "/staff/admin/users"):
        status, _, headers = await b.get(path)
        assert status == 303 and headers["Location"] == "/staff/password", path
    status, html, _ = await b.get("/staff/password")
    assert status == 200 and "woaini1314" in html
    csrf = CSRF.search(html)
    assert csrf
    form = {"csrf_token": csrf[1], "current": "woaini1314"}
    status, html, _ = await b.post(
        "/staff/password", {**form, "password": "qq1234567890", "repeat": "qq1234567890"}
    )
    assert status == 422 and "太容易" in html  # Chinese, not the core's English
    status, html, _ = await b.post(
        "/staff/password", {**form, "password": "short", "repeat": "short"}
    )
    assert status == 422 and "12" in html
    status, html, _ = await b.post(
        "/staff/password",
        {
            **form,
            "current": "wrong",
            "password": "bamboo rain river 7",
            "repeat": "bamboo rain river 7",
        },
    )
    assert status == 422
    new = "bamboo rain river 7"
    status, _, headers = await b.post("/staff/password", {**form, "password": new, "repeat": new})
    assert status == 303 and headers["Location"].startswith("/staff/")
    status, _, _ = await b.get("/staff/")
    assert status == 200
    await store.verify_password("alice", new)


async def test_an_old_password_must_be_changed_when_a_maximum_age_is_set(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory(SECURITY__LOGIN__MAX_PASSWORD_AGE_DAYS="90")
    async with store_on(config, "sqlite") as store:
        await store.add_user("alice", Role.EDITOR, PASSWORD)
        sessions = Sessions(store)
        _, fresh = await sessions.login("alice", PASSWORD)
        assert fresh.pending == ()
        await _weaken(store, "alice", PASSWORD, password_changed_at=utcnow() - timedelta(days=91))
        _, old = await sessions.login("alice", PASSWORD)
        assert old.pending == (PASSWORD_CHANGE,)


async def test_lock_out_page_is_in_chinese(web_store: tuple[Browser, SqlStore]) -> None:
    b, _store = web_store
    for _ in range(5):
        status, html, _ = await b.login("alice", "wrong")
        assert status == 401 and "用户名或密码" in html
    status, html, _ = await b.login("alice", PASSWORD)
    assert status == 429 and "登录失败次数过多" in html


def test_old_ui_keys_move_to_security_login(
    config_factory: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    config = config_factory(UI__LOCKOUT_MINUTES="7")
    assert config.security.login.lockout_minutes == 7
    assert "ui.lockout_minutes is deprecated, use security.login.lockout_minutes" in caplog.text
    # a key set in both places: security.login wins (and the log says so)
    both = config_factory(UI__MAX_FAILED_LOGINS="3", SECURITY__LOGIN__MAX_FAILED_LOGINS="4")
    assert both.security.login.max_failed_logins == 4
    assert "security.login wins" in caplog.text
    assert config_factory().security.login.max_failed_logins == 5


async def test_the_password_page_counts_wrong_current_passwords(
    web_store: tuple[Browser, SqlStore],
) -> None:
    b, store = web_store
    status, _, _ = await b.login("alice", PASSWORD)
    assert status == 303
    status, html, _ = await b.get("/staff/password")
    assert status == 200 and 'href="/staff/password"' in html  # linked from every page
    csrf = CSRF.search(html)
    assert csrf
    new = "bamboo rain river 7"
    limit = store.config.security.login.max_failed_logins
    for _ in range(limit):
        status, html, _ = await b.post(
            "/staff/password",
            {"csrf_token": csrf[1], "current": "guess", "password": new, "repeat": new},
        )
        assert status == 422 and "当前密码错误" in html
    status, html, _ = await b.post(
        "/staff/password",
        {"csrf_token": csrf[1], "current": PASSWORD, "password": new, "repeat": new},
    )
    assert status == 429 and "登录失败次数过多" in html
    await store.verify_password("alice", PASSWORD)  # unchanged
