"""Two-step verification (TOTP, issue 16): enrolment, the code step of the login, codes
used once within ±1 step, recovery codes, the admin reset, require_totp_for, and that a
half-logged-in session opens nothing but the page that settles it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from publisher.config import Config
from publisher.errors import NotFound
from publisher.models import Role
from publisher.passwords import hash_password
from publisher.sessions import PASSWORD_CHANGE, Sessions
from publisher.store import schema as t
from publisher.store.sql import ItemQuery, SqlStore
from publisher.totp import (
    PENDING_MINUTES,
    STEP_SECONDS,
    CodeLocked,
    CodeRefused,
    Totp,
    otpauth_uri,
    qr_svg,
    time_step,
)
from tests.web.test_staff_ui import CSRF, PASSWORD, Browser, _open, new_browser

SECRET = re.compile(r'<code class="secret">([A-Z2-7 ]+)</code>')
RECOVERY = re.compile(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>")


@pytest.fixture
async def ui(config: Config) -> AsyncIterator[tuple[TestClient[Any, Any], SqlStore]]:
    async for client, store in _open(config):
        await store.add_user("dora", Role.ADMIN, PASSWORD)
        yield client, store


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def now_step() -> int:
    return time_step(datetime.now(UTC))


async def password_step(b: Browser, name: str) -> tuple[int, str]:
    """The login form's POST: (status, Location)."""
    status, html, _ = await b.get("/staff/login")
    token = CSRF.search(html)
    assert status == 200 and token
    status, _, headers = await b.post(
        "/staff/login", {"username": name, "password": PASSWORD, "csrf_token": token[1]}
    )
    return status, headers.get("Location", "")


async def csrf_of(b: Browser, path: str) -> str:
    status, html, _ = await b.get(path)
    assert status == 200, html
    found = CSRF.search(html)
    assert found
    b.csrf = found[1]
    return found[1]


async def enrol(b: Browser, name: str) -> tuple[str, list[str]]:
    """Log in (password only), set up TOTP; returns (secret, recovery codes)."""
    assert await password_step(b, name) == (303, "/staff/")
    await csrf_of(b, "/staff/totp")
    status, html, _ = await b.get("/staff/totp")
    found = SECRET.search(html)
    assert found, html
    secret = found[1].replace(" ", "")
    status, html, _ = await b.post("/staff/totp/confirm", {"code": code_at(secret, now_step())})
    assert status == 200, html
    codes = RECOVERY.findall(html)
    return secret, codes


async def test_enrolment_with_a_qr_code_and_a_first_code(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    assert await password_step(b, "alice") == (303, "/staff/")
    await csrf_of(b, "/staff/totp")
    status, html, headers = await b.get("/staff/totp")
    assert status == 200 and "两步验证" in html
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    secret = SECRET.search(html)[1].replace(" ", "")  # type: ignore[index]
    assert len(secret) == 32
    # the QR code is inline SVG of the otpauth:// URI (no script, no external image)
    uri = otpauth_uri(secret, "alice", store.config.site.name)
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert qr_svg(uri) in html
    # reloading shows the same secret (the phone that scanned it still works)
    assert secret in (await b.get("/staff/totp"))[1].replace(" ", "")
    # a wrong code is refused and nothing is on
    status, html, _ = await b.post("/staff/totp/confirm", {"code": "000000"})
    assert status == 422 and "验证码不正确" in html
    assert not (await Totp(store).status(1)).enrolled
    status, html, _ = await b.post("/staff/totp/confirm", {"code": code_at(secret, now_step())})
    assert status == 200 and "恢复码" in html
    codes = RECOVERY.findall(html)
    assert len(codes) == 10 and len(set(codes)) == 10
    async with store.read() as conn:
        row = (await conn.execute(sa.select(t.staff_totp))).one()
        hashes = (await conn.execute(sa.select(t.totp_recovery_codes.c.code_hash))).scalars()
        audit = (await conn.execute(sa.select(t.audit_log))).all()
    # the secret is sealed with the data key, the recovery codes kept only as hashes
    assert secret not in row.secret_sealed and row.confirmed_at is not None
    assert not {c.replace("-", "") for c in codes} & set(hashes)
    assert [(a.action, a.actor, a.item_id) for a in audit] == [
        ("login", "alice", None),  # the password step (publisher.sessions)
        ("totp_enrol", "alice", None),
    ]
    status, html, _ = await b.get("/staff/totp")
    assert status == 200 and "两步验证已于" in html and "未使用的恢复码：10" in html


async def test_login_is_two_steps_and_each_code_works_once(ui: Any) -> None:
    client, _ = ui
    b = Browser(client)
    secret, _ = await enrol(b, "alice")
    await b.post("/staff/logout")
    step = now_step()
    # the enrolment used this step: the next one (within the window) is a fresh code
    code = code_at(secret, step + 1)
    assert await password_step(b, "alice") == (303, "/staff/login/code?next=/staff/")
    half = b.session_cookie
    status, _, headers = await b.get("/staff/")
    assert (status, headers["Location"]) == (303, "/staff/login/code")
    await csrf_of(b, "/staff/login/code")
    status, html, headers = await b.post("/staff/login/code", {"code": code, "next": "/staff/"})
    assert (status, headers["Location"]) == (303, "/staff/"), html
    # a new session id for the full session; the half one opens nothing any more
    assert b.session_cookie and b.session_cookie != half
    assert (await b.get("/staff/"))[0] == 200
    await csrf_of(b, "/staff/")
    await b.post("/staff/logout")
    # the same code again: refused
    assert await password_step(b, "alice") == (303, "/staff/login/code?next=/staff/")
    await csrf_of(b, "/staff/login/code")
    status, html, _ = await b.post("/staff/login/code", {"code": code})
    assert status == 401 and "验证码不正确或已使用" in html
    assert (await b.get("/staff/"))[0] == 303


async def test_codes_one_step_either_side_are_accepted_two_are_not(ui: Any) -> None:
    client, store = ui
    secret, _ = await enrol(Browser(client), "alice")
    alice = await store.get_user("alice")
    totp = Totp(store)
    now = datetime.now(UTC) + timedelta(minutes=10)  # well after the enrolment's step
    step = time_step(now)
    assert await totp.verify(alice, code_at(secret, step - 1), now=now) == "totp"
    # used once: the same code, or an earlier step, is refused
    with pytest.raises(CodeRefused):
        await totp.verify(alice, code_at(secret, step - 1), now=now)
    assert await totp.verify(alice, code_at(secret, step + 1), now=now) == "totp"
    with pytest.raises(CodeRefused):
        await totp.verify(alice, code_at(secret, step), now=now)  # before the last used step
    later = now + timedelta(seconds=10 * STEP_SECONDS)
    s2 = time_step(later)
    for off in (-2, 2):
        with pytest.raises(CodeRefused):
            await totp.verify(alice, code_at(secret, s2 + off), now=later)
    assert await totp.verify(alice, code_at(secret, s2), now=later) == "totp"


async def test_wrong_codes_lock_the_second_step(config_factory: Any) -> None:
    config = config_factory(
        SECURITY__LOGIN__MAX_FAILED_LOGINS="3", SECURITY__LOGIN__LOCKOUT_MINUTES="10"
    )
    async for client, store in _open(config):
        secret, _ = await enrol(Browser(client), "alice")
        alice = await store.get_user("alice")
        totp = Totp(store)
        now = datetime.now(UTC) + timedelta(minutes=5)
        for _ in range(3):
            with pytest.raises(CodeRefused):
                await totp.verify(alice, "000000", now=now)
        with pytest.raises(CodeLocked):  # even the right code, while locked
            await totp.verify(alice, code_at(secret, time_step(now)), now=now)
        after = now + timedelta(minutes=11)
        assert await totp.verify(alice, code_at(secret, time_step(after)), now=after) == "totp"


async def test_a_recovery_code_works_once(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    _secret, codes = await enrol(b, "alice")
    await b.post("/staff/logout")
    await password_step(b, "alice")
    await csrf_of(b, "/staff/login/code")
    status, _, headers = await b.post("/staff/login/code", {"code": codes[3].upper()})
    assert (status, headers["Location"]) == (303, "/staff/totp?recovered=1")
    status, html, _ = await b.get("/staff/totp?recovered=1")
    assert status == 200 and "恢复码" in html and "未使用的恢复码：9" in html
    await csrf_of(b, "/staff/")
    await b.post("/staff/logout")
    await password_step(b, "alice")
    await csrf_of(b, "/staff/login/code")
    status, _, _ = await b.post("/staff/login/code", {"code": codes[3]})
    assert status == 401
    async with store.read() as conn:
        actions = (await conn.execute(sa.select(t.audit_log.c.action))).scalars().all()
    # the password steps are audited as "login" (publisher.sessions)
    assert [a for a in actions if a.startswith("totp_")] == ["totp_enrol", "totp_recovery"]


async def test_admin_reset_is_audited_and_ends_the_sessions(ui: Any) -> None:
    client, store = ui
    alice = Browser(client)
    await enrol(alice, "alice")
    admin = await new_browser(client)
    async with admin.client:
        assert await password_step(admin, "dora") == (303, "/staff/")
        status, html, _ = await admin.get("/staff/admin/users")
        assert "重置两步验证" in html and "已启用" in html
        await csrf_of(admin, "/staff/admin/users")
        status, _, headers = await admin.post("/staff/admin/users/totp-reset", {"name": "alice"})
        assert (status, headers["Location"]) == (303, "/staff/admin/users?totp=1")
        status, html, _ = await admin.get("/staff/admin/users?totp=1")
        assert "两步验证已重置" in html
        # not one's own
        status, _, _ = await admin.post("/staff/admin/users/totp-reset", {"name": "dora"})
        assert status == 409
    async with store.read() as conn:
        assert (await conn.execute(sa.select(t.staff_totp))).all() == []
        assert (await conn.execute(sa.select(t.totp_recovery_codes))).all() == []
        audit = (await conn.execute(sa.select(t.audit_log).order_by(t.audit_log.c.id))).all()
    reset = audit[-1]
    assert (reset.action, reset.actor, reset.details["user"]) == ("totp_reset", "dora", "alice")
    # alice's session ended; her next login is the password alone again
    assert (await alice.get("/staff/"))[0] == 303
    assert await password_step(alice, "alice") == (303, "/staff/")


async def test_require_totp_for_sends_the_role_to_enrolment(config_factory: Any) -> None:
    config = config_factory(SECURITY__LOGIN__REQUIRE_TOTP_FOR="admin")
    assert config.security.login.require_totp_for == ["admin"]
    async for client, store in _open(config):
        await store.add_user("dora", Role.ADMIN, PASSWORD)
        b = Browser(client)
        assert await password_step(b, "dora") == (303, "/staff/totp?next=/staff/")
        for path in ("/staff/", "/staff/admin/users", "/staff/login/code", "/staff/review"):
            status, _, headers = await b.get(path)
            assert (status, headers["Location"]) == (303, "/staff/totp"), path
        await csrf_of(b, "/staff/totp")
        status, html, _ = await b.get("/staff/totp")
        assert "您的角色必须使用两步验证" in html
        # nothing else runs, even with the session's CSRF token
        status, _, headers = await b.post(
            "/staff/admin/users/add", {"name": "eve", "role": "admin", "password": PASSWORD}
        )
        assert (status, headers["Location"]) == (303, "/staff/totp")
        assert [u.name for u in await store.list_users()].count("eve") == 0
        secret = SECRET.search(html)[1].replace(" ", "")  # type: ignore[index]
        half = b.session_cookie
        status, html, headers = await b.post(
            "/staff/totp/confirm", {"code": code_at(secret, now_step()), "next": "/staff/"}
        )
        assert status == 200 and len(RECOVERY.findall(html)) == 10
        assert b.session_cookie != half
        assert (await b.get("/staff/"))[0] == 200
        # an editor is not asked
        editor = await new_browser(client)
        async with editor.client:
            assert await password_step(editor, "alice") == (303, "/staff/")


WEAK = "woaini1314"
NEW_PASSWORD = "bamboo rain river 7"


async def _weaken(store: SqlStore, name: str) -> None:
    """A password set before the policy (straight into the table, as old data is)."""
    async with store.write() as conn:
        await conn.execute(
            t.users.update().where(t.users.c.name == name).values(password_hash=hash_password(WEAK))
        )


async def _pending(store: SqlStore) -> list[str | None]:
    async with store.read() as conn:
        return list((await conn.execute(sa.select(t.staff_sessions.c.pending))).scalars())


async def _login_weak(b: Browser) -> tuple[int, str]:
    status, html, _ = await b.get("/staff/login")
    token = CSRF.search(html)
    assert status == 200 and token
    status, _, headers = await b.post(
        "/staff/login", {"username": "alice", "password": WEAK, "csrf_token": token[1]}
    )
    return status, headers.get("Location", "")


async def _change_password(b: Browser) -> None:
    await csrf_of(b, "/staff/password")
    status, _, headers = await b.post(
        "/staff/password", {"current": WEAK, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    )
    assert status == 303 and headers["Location"].startswith("/staff/")
    assert (await b.get("/staff/"))[0] == 200


async def test_the_second_factor_comes_before_a_forced_password_change(ui: Any) -> None:
    """One chain of log-in steps: the TOTP code right after the password, then the
    password change; each step's page alone opens, the code rotates the session."""
    client, store = ui
    b = Browser(client)
    secret, _ = await enrol(b, "alice")
    await csrf_of(b, "/staff/")
    await b.post("/staff/logout")
    await _weaken(store, "alice")
    assert await _login_weak(b) == (303, "/staff/login/code?next=/staff/")
    assert await _pending(store) == [f"totp,{PASSWORD_CHANGE}"]
    # the password page is not the first step: it does not open before the code
    for path in ("/staff/", "/staff/password", "/staff/items/new"):
        status, _, headers = await b.get(path)
        assert (status, headers["Location"]) == (303, "/staff/login/code"), path
    half = b.session_cookie
    csrf = await csrf_of(b, "/staff/login/code")
    status, _, headers = await b.post(
        "/staff/password",
        {"csrf_token": csrf, "current": WEAK, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
    )
    assert (status, headers["Location"]) == (303, "/staff/login/code")
    status, html, headers = await b.post(
        "/staff/login/code", {"code": code_at(secret, now_step() + 1), "next": "/staff/"}
    )
    assert (status, headers["Location"]) == (303, "/staff/password"), html
    # a new id (and CSRF token) for the session, which now owes the password change only
    assert b.session_cookie and b.session_cookie != half
    assert await _pending(store) == [PASSWORD_CHANGE]
    for path in ("/staff/", "/staff/login/code", "/staff/totp"):
        status, _, headers = await b.get(path)
        assert (status, headers["Location"]) == (303, "/staff/password"), path
    new_csrf = await csrf_of(b, "/staff/password")
    assert new_csrf != csrf
    await _change_password(b)
    assert await _pending(store) == [None]
    await store.verify_password("alice", NEW_PASSWORD)


async def test_a_required_enrolment_comes_before_a_forced_password_change(
    config_factory: Any,
) -> None:
    config = config_factory(SECURITY__LOGIN__REQUIRE_TOTP_FOR="editor")
    async for client, store in _open(config):
        b = Browser(client)
        await _weaken(store, "alice")
        assert await _login_weak(b) == (303, "/staff/totp?next=/staff/")
        assert await _pending(store) == [f"enrol,{PASSWORD_CHANGE}"]
        status, _, headers = await b.get("/staff/password")
        assert (status, headers["Location"]) == (303, "/staff/totp")
        await csrf_of(b, "/staff/totp")
        status, html, _ = await b.get("/staff/totp")
        secret = SECRET.search(html)[1].replace(" ", "")  # type: ignore[index]
        half = b.session_cookie
        status, html, _ = await b.post(
            "/staff/totp/confirm", {"code": code_at(secret, now_step()), "next": "/staff/"}
        )
        assert status == 200 and len(RECOVERY.findall(html)) == 10
        assert 'href="/staff/password"' in html  # the next step, not the staff pages
        assert b.session_cookie != half
        assert await _pending(store) == [PASSWORD_CHANGE]
        status, _, headers = await b.get("/staff/")
        assert (status, headers["Location"]) == (303, "/staff/password")
        await _change_password(b)


async def test_advance_settles_only_the_first_step_once(ui: Any) -> None:
    _client, store = ui
    sessions = Sessions(store)
    alice = await store.get_user("alice")
    _, session = await sessions.open(alice, pending=("totp", PASSWORD_CHANGE))
    with pytest.raises(NotFound):  # not the first step
        await sessions.advance(session, PASSWORD_CHANGE)
    await sessions.advance(session, "totp")
    with pytest.raises(NotFound):  # the same step again (a racing request): refused
        await sessions.advance(session, "totp")
    assert await _pending(store) == [PASSWORD_CHANGE]


async def test_a_half_logged_in_session_opens_no_staff_page_and_no_api(ui: Any) -> None:
    client, store = ui
    b = Browser(client)
    await enrol(b, "alice")
    await csrf_of(b, "/staff/")
    await b.post("/staff/logout")
    assert await password_step(b, "alice") == (303, "/staff/login/code?next=/staff/")
    csrf = await csrf_of(b, "/staff/login/code")
    for path in ("/staff/", "/staff/items/new", "/staff/review", "/staff/totp", "/staff/boards"):
        status, _, headers = await b.get(path)
        assert (status, headers["Location"]) == (303, "/staff/login/code"), path
    status, _, headers = await b.post(
        "/staff/items/new", {"title": "x", "body": "y", "action": "save", "csrf_token": csrf}
    )
    assert status == 303 and headers["Location"] == "/staff/login/code"
    assert (await store.list_items(ItemQuery()))[1] == 0
    # the API never takes the cookie: a bearer token or nothing
    for path in ("/api/v1/items", "/api/v1/openapi.json"):
        resp = await b.client.get(path, headers={"Cookie": f"gk_session={b.session_cookie}"})
        assert resp.status == (200 if path.endswith("json") else 401), path
    # a half-logged-in session does not last
    async with store.write() as conn:
        await conn.execute(
            t.staff_sessions.update().values(
                created_at=datetime.now(UTC) - timedelta(minutes=PENDING_MINUTES + 1)
            )
        )
    status, _, headers = await b.get("/staff/login/code")
    assert status == 303 and headers["Location"] == "/staff/login"
    async with store.read() as conn:
        assert (await conn.execute(sa.select(t.staff_sessions))).all() == []


async def test_cli_totp_reset(tmp_path: Any) -> None:
    from tests.cli.test_cli import cli, make_site, ok, one_line_error, open_store

    cfg = make_site(tmp_path / "site")
    ok(cli(cfg, "db", "upgrade"))
    ok(cli(cfg, "user", "add", "wang", "--role", "admin", "--password-stdin", stdin=PASSWORD))
    store = open_store(cfg)
    try:
        wang = await store.get_user("wang")
        totp = Totp(store)
        secret = await totp.pending_secret(wang.id)
        await totp.confirm(wang, code_at(secret, now_step()))
        assert (await totp.status(wang.id)).enrolled
        result = ok(cli(cfg, "user", "totp-reset", "wang"))
        assert "reset" in result.stdout
        assert not (await totp.status(wang.id)).enrolled
        async with store.read() as conn:
            last = (
                await conn.execute(sa.select(t.audit_log).order_by(t.audit_log.c.id.desc()))
            ).first()
        assert last is not None and (last.action, last.actor) == ("totp_reset", "cli")
        one_line_error(cli(cfg, "user", "totp-reset", "nobody"), "nobody")
    finally:
        await store.close()


async def test_a_code_raced_twice_is_accepted_once_on_every_backend(store: SqlStore) -> None:
    import asyncio

    user = await store.add_user("wu", Role.EDITOR, PASSWORD)
    totp = Totp(store)
    secret = await totp.pending_secret(user.id)
    enrolled_at = datetime.now(UTC)
    codes = await totp.confirm(user, code_at(secret, time_step(enrolled_at)), now=enrolled_at)
    assert len(codes) == 10
    now = enrolled_at + timedelta(minutes=3)
    code = code_at(secret, time_step(now))
    results = await asyncio.gather(
        *(totp.verify(user, code, now=now) for _ in range(4)), return_exceptions=True
    )
    assert results.count("totp") == 1, results
    assert all(isinstance(r, CodeRefused) for r in results if r != "totp")
    assert await totp.verify(user, codes[0], now=now) == "recovery"
    with pytest.raises(CodeRefused):
        await totp.verify(user, codes[0], now=now)
