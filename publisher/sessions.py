"""Staff web sessions, kept in the store, and the log-in that opens them.

The browser holds only a random session id (the cookie); the store keeps its SHA-256,
the user, the role at login, a per-session CSRF token and when it was last used. A
session ends on logout, after `ui.session_idle_minutes` without use, and at once when
its user is disabled or given another role (checked on every request against the
users table, so no code path that changes a user can forget to end the sessions).

A log-in is a chain of steps. The password step (`check_password`) comes first; what
is left to do is kept on the session as a tuple of step names, in order: the second
factor right after the password ("totp" or "enrol", publisher.totp), then
"password_change" (`PasswordStep.pending`, for a weak or expired password). The staff
gate lets a session with steps pending reach only its first step's page until
`advance` (which also gives the session a new id and CSRF token) or `complete_step`
clears it.

Tries are counted in the store (`login_throttle`) *before* the password is checked,
in one transaction, so concurrent guesses cannot all be checked (security.login):

- per (account, client network): after `max_failed_logins` the pair is locked for
  `lockout_minutes`, from that network only, whatever password is tried meanwhile;
- per account, from anywhere: past `account_max_failures` within
  `account_window_minutes` one try per `account_throttle_seconds` (more than one
  network alone can reach, so nobody can lock a colleague out from one place);
- per network, for any accounts: past `network_max_failures` within the window the
  network is locked (guessing across many names).

A client network is an IPv4 address or an IPv6 /64. Log-ins, failures and lock-outs
go to the audit log (no item; the actor is the name typed).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from publisher.errors import NotFound, TooManyRequests, Unauthorized
from publisher.models import Role, User
from publisher.store import schema as t
from publisher.store.sql import SqlStore, insert_for, utcnow

log = logging.getLogger(__name__)

#: last_seen_at is written at most this often, so reading pages does not write every time
TOUCH_EVERY = timedelta(seconds=60)
#: the step a weak or expired password leaves: set a new one
PASSWORD_CHANGE = "password_change"
UNKNOWN_NETWORK = "unknown"


class LoginFailed(Unauthorized):
    """Wrong name or password (the message never says which)."""


class LockedOut(TooManyRequests):
    """Too many failed log-ins: for this name from this network (scope "pair"), for this
    account from anywhere (scope "account": throttled), or from this network (scope
    "network"); `until` says when it may try again."""

    def __init__(self, detail: str, until: datetime, scope: str) -> None:
        super().__init__(detail, scope=scope)
        self.until = until
        self.scope = scope


@dataclass(frozen=True, slots=True)
class StaffSession:
    id_hash: str
    user: User
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    #: log-in steps still to do, in order, before other pages open (empty: none):
    #: "totp", "enrol" (publisher.totp), "password_change"
    pending: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PasswordStep:
    """A right name and password; `pending`: the steps still to do (password_change)."""

    user: User
    pending: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Counter:
    """One login_throttle row."""

    failures: int
    window_start: datetime
    last_try_at: datetime
    locked_until: datetime | None


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def client_network(address: str | None) -> str:
    """The network log-in failures are counted for: an IPv4 address, an IPv6 /64 (one
    subscriber's usual allocation; an IPv4-mapped address counts as IPv4)."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return UNKNOWN_NETWORK
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _pending(value: str | None) -> tuple[str, ...]:
    return tuple(p for p in (value or "").split(",") if p)


class Sessions:
    """Login, lookup and logout of staff sessions on a SqlStore."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.idle = timedelta(minutes=store.config.ui.session_idle_minutes)
        cfg = store.config.security.login
        self.config = cfg
        self.max_failures = cfg.max_failed_logins
        self.lockout = timedelta(minutes=cfg.lockout_minutes)
        self.window = timedelta(minutes=cfg.account_window_minutes)
        self.throttle = timedelta(seconds=cfg.account_throttle_seconds)

    async def login(
        self,
        name: str,
        password: str,
        *,
        network: str = UNKNOWN_NETWORK,
        now: datetime | None = None,
    ) -> tuple[str, StaffSession]:
        """A new session for a right name and password: (cookie value, session); the
        session may have steps pending (see `check_password`)."""
        step = await self.check_password(name, password, network=network, now=now)
        return await self.open(step.user, pending=step.pending, now=now)

    async def check_password(
        self,
        name: str,
        password: str,
        *,
        network: str = UNKNOWN_NETWORK,
        now: datetime | None = None,
        action: str = "login",
    ) -> PasswordStep:
        """The password step. Raises LockedOut while this try may not be made (even with
        the right password; the password is then not checked at all) and LoginFailed for
        a wrong name or password. `action` names a success in the audit log ("login";
        "reauth" when a logged-in user confirms the password, counted all the same)."""
        now = now or utcnow()
        name = name.strip()[:64]
        await self._count_try(name, network, now)
        try:
            user = await self.store.verify_password(name, password)
        except Unauthorized:
            await self._failed(name, network, now)
            raise LoginFailed("wrong user name or password") from None
        await self._succeeded(name, network, now, action)
        pending: list[str] = []
        if await self.store.password_problems(name, password) or self._expired(user, now):
            pending.append(PASSWORD_CHANGE)
        return PasswordStep(user, tuple(pending))

    def _expired(self, user: User, now: datetime) -> bool:
        days = self.config.max_password_age_days
        if days is None:
            return False
        changed = user.password_changed_at or user.created_at
        return changed <= now - timedelta(days=days)

    # -- counting tries ----------------------------------------------------

    def _keys(self, name: str, network: str) -> list[tuple[str, str]]:
        return [("pair", f"{network} {name}"), ("account", name), ("network", network)]

    async def _rows(
        self, conn: AsyncConnection, name: str, network: str, now: datetime
    ) -> dict[str, _Counter]:
        """The three counters of a try, created if missing and locked for this
        transaction (always in the same order: pair, account, network)."""
        lt = t.login_throttle
        rows: dict[str, _Counter] = {}
        for scope, key in self._keys(name, network):
            await conn.execute(
                insert_for(conn)(lt)
                .values(scope=scope, key=key, failures=0, window_start=now, last_try_at=now)
                .on_conflict_do_nothing()
            )
            row = (
                await conn.execute(
                    self.store._lock(sa.select(lt).where(lt.c.scope == scope, lt.c.key == key))
                )
            ).one()
            rows[scope] = _Counter(
                row.failures, row.window_start, row.last_try_at, row.locked_until
            )
        return rows

    async def _set(self, conn: AsyncConnection, scope: str, key: str, **values: Any) -> None:
        lt = t.login_throttle
        await conn.execute(lt.update().where(lt.c.scope == scope, lt.c.key == key).values(values))

    async def _count_try(self, name: str, network: str, now: datetime) -> None:
        """Count this try as a failure before its password is checked (a success takes it
        back), or refuse it with LockedOut, in one transaction."""
        keys = dict(self._keys(name, network))
        refusal: LockedOut | None = None
        async with self.store.write() as conn:
            rows = await self._rows(conn, name, network, now)
            pair, account, net = rows["pair"], rows["account"], rows["network"]
            # a lock that has run out, or a window that has passed, starts the count again
            fresh: dict[str, Any] = {"failures": 0, "window_start": now, "locked_until": None}
            if pair.locked_until is not None and pair.locked_until <= now:
                pair = replace(pair, **fresh)
            if account.window_start <= now - self.window:
                account = replace(account, **fresh)
            if (net.locked_until is not None and net.locked_until <= now) or (
                net.locked_until is None and net.window_start <= now - self.window
            ):
                net = replace(net, **fresh)
            if net.locked_until is not None:
                refusal = LockedOut(
                    "too many failed log-ins from this network", net.locked_until, "network"
                )
            elif pair.locked_until is not None:
                refusal = LockedOut(
                    f"user {name!r} is locked out after failed logins", pair.locked_until, "pair"
                )
            elif pair.failures >= self.max_failures:
                # tries in flight used up the allowance: lock now (a right one among
                # them clears it)
                until = now + self.lockout
                await self._set(conn, "pair", keys["pair"], locked_until=until)
                await self._audit(conn, name, "login_locked", now, network, scope="pair")
                refusal = LockedOut(
                    f"user {name!r} is locked out after failed logins", until, "pair"
                )
            elif (
                account.failures >= self.config.account_threshold
                and account.last_try_at > now - self.throttle
            ):
                refusal = LockedOut(
                    f"user {name!r}: too many failed logins, one try per "
                    f"{self.config.account_throttle_seconds} s",
                    account.last_try_at + self.throttle,
                    "account",
                )
            if refusal is None:
                for scope, row in (("pair", pair), ("account", account), ("network", net)):
                    await self._set(
                        conn,
                        scope,
                        keys[scope],
                        failures=row.failures + 1,
                        window_start=row.window_start,
                        locked_until=row.locked_until,
                        last_try_at=now,
                    )
                if account.failures + 1 == self.config.account_threshold:
                    await self._audit(conn, name, "login_throttled", now, network, scope="account")
        if refusal is not None:
            log.info("log-in for %r from %s refused: %s", name, network, refusal.detail)
            raise refusal

    async def _failed(self, name: str, network: str, now: datetime) -> None:
        keys = dict(self._keys(name, network))
        async with self.store.write() as conn:
            rows = await self._rows(conn, name, network, now)
            await self._audit(conn, name, "login_failed", now, network)
            pair, net = rows["pair"], rows["network"]
            if pair.failures >= self.max_failures and pair.locked_until is None:
                await self._set(conn, "pair", keys["pair"], locked_until=now + self.lockout)
                await self._audit(conn, name, "login_locked", now, network, scope="pair")
            if net.failures >= self.config.network_max_failures and net.locked_until is None:
                await self._set(conn, "network", keys["network"], locked_until=now + self.lockout)
                await self._audit(conn, name, "login_locked", now, network, scope="network")
        log.info("failed log-in for %r from %s", name, network)

    async def _succeeded(self, name: str, network: str, now: datetime, action: str) -> None:
        """A right password: the pair starts afresh; this try no longer counts as a failure
        for the account and the network."""
        keys = dict(self._keys(name, network))
        lt = t.login_throttle
        async with self.store.write() as conn:
            rows = await self._rows(conn, name, network, now)
            await conn.execute(lt.delete().where(lt.c.scope == "pair", lt.c.key == keys["pair"]))
            for scope in ("account", "network"):
                failures = max(rows[scope].failures - 1, 0)
                await self._set(conn, scope, keys[scope], failures=failures)
            await self._audit(conn, name, action, now, network)

    async def _audit(
        self,
        conn: AsyncConnection,
        name: str,
        action: str,
        now: datetime,
        network: str,
        **details: Any,
    ) -> None:
        await conn.execute(
            t.audit_log.insert().values(
                item_id=None,
                actor=name or "?",
                at=now,
                action=action,
                details={"network": network, **details},
            )
        )

    # -- sessions ----------------------------------------------------------

    async def open(
        self, user: User, *, pending: tuple[str, ...] = (), now: datetime | None = None
    ) -> tuple[str, StaffSession]:
        """A new session for a user whose password step is done: (cookie value, session)."""
        now = now or utcnow()
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        async with self.store.write() as conn:
            await conn.execute(
                t.staff_sessions.insert().values(
                    id_hash=_hash(session_id),
                    user_id=user.id,
                    role=user.role.value,
                    csrf_token=csrf,
                    created_at=now,
                    last_seen_at=now,
                    pending=",".join(pending) or None,
                )
            )
            # sessions idle past the limit are dead; clear them out while writing anyway
            await conn.execute(
                t.staff_sessions.delete().where(t.staff_sessions.c.last_seen_at < now - self.idle)
            )
        return session_id, StaffSession(_hash(session_id), user, csrf, now, now, pending)

    async def advance(self, session: StaffSession, step: str) -> str:
        """The session's first pending step, `step`, is done: the session goes on under a
        new id and CSRF token with the steps after it; returns the new cookie value. One
        conditional UPDATE, so of two requests settling the same step only one wins: the
        other (and a session that is gone, or whose first step is another) gets NotFound."""
        if not session.pending or session.pending[0] != step:
            raise NotFound(f"no log-in step {step!r} pending")
        new_id = secrets.token_urlsafe(32)
        s = t.staff_sessions
        async with self.store.write() as conn:
            res = await conn.execute(
                s.update()
                .where(s.c.id_hash == session.id_hash, s.c.pending == ",".join(session.pending))
                .values(
                    id_hash=_hash(new_id),
                    csrf_token=secrets.token_urlsafe(32),
                    pending=",".join(session.pending[1:]) or None,
                )
            )
        if res.rowcount != 1:
            raise NotFound(f"no session with log-in step {step!r} pending")
        return new_id

    async def complete_step(self, session: StaffSession, step: str) -> StaffSession:
        """Mark a pending step of the session's log-in as done."""
        pending = tuple(p for p in session.pending if p != step)
        async with self.store.write() as conn:
            await conn.execute(
                t.staff_sessions.update()
                .where(t.staff_sessions.c.id_hash == session.id_hash)
                .values(pending=",".join(pending) or None)
            )
        return StaffSession(
            session.id_hash,
            session.user,
            session.csrf_token,
            session.created_at,
            session.last_seen_at,
            pending,
        )

    async def lookup(self, session_id: str, *, now: datetime | None = None) -> StaffSession | None:
        """The live session for a cookie value, or None (unknown, idle too long, user
        disabled or role changed: such rows are deleted on the way)."""
        if not session_id or len(session_id) > 128:
            return None
        now = now or utcnow()
        id_hash = _hash(session_id)
        s, u = t.staff_sessions, t.users
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        s.c.csrf_token,
                        s.c.role.label("session_role"),
                        s.c.created_at.label("session_created_at"),
                        s.c.last_seen_at,
                        s.c.pending,
                        u,
                    )
                    .join(u, u.c.id == s.c.user_id)
                    .where(s.c.id_hash == id_hash)
                )
            ).first()
        if row is None:
            return None
        if row.disabled or row.role != row.session_role or row.last_seen_at <= now - self.idle:
            await self.end(session_id)
            return None
        last_seen = row.last_seen_at
        if now - last_seen >= TOUCH_EVERY:
            async with self.store.write() as conn:
                await conn.execute(
                    s.update().where(s.c.id_hash == id_hash).values(last_seen_at=now)
                )
            last_seen = now
        user = User(
            id=row.id,
            name=row.name,
            role=Role(row.role),
            disabled=bool(row.disabled),
            has_password=bool(row.password_hash),
            created_at=row.created_at,
            password_changed_at=row.password_changed_at,
        )
        return StaffSession(
            id_hash, user, row.csrf_token, row.session_created_at, last_seen, _pending(row.pending)
        )

    async def end(self, session_id: str) -> None:
        """Logout: the session row goes, so the cookie opens nothing any more."""
        async with self.store.write() as conn:
            await conn.execute(
                t.staff_sessions.delete().where(t.staff_sessions.c.id_hash == _hash(session_id))
            )

    async def end_all(self, user_name: str) -> int:
        """End every session of a user (after a password change, say); returns how many."""
        async with self.store.write() as conn:
            uid = await conn.scalar(sa.select(t.users.c.id).where(t.users.c.name == user_name))
            if uid is None:
                return 0
            res = await conn.execute(
                t.staff_sessions.delete().where(t.staff_sessions.c.user_id == uid)
            )
        return int(res.rowcount)
