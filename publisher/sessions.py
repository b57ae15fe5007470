"""Staff web sessions, kept in the store.

The browser holds only a random session id (the cookie); the store keeps its SHA-256,
the user, the role at login, a per-session CSRF token and when it was last used. A
session ends on logout, after `ui.session_idle_minutes` without use, and at once when
its user is disabled or given another role (checked on every request against the
users table, so no code path that changes a user can forget to end the sessions).

Failed logins are counted per user name; after `ui.max_failed_logins` in a row the
name is locked for `ui.lockout_minutes`, whatever password is tried meanwhile.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from publisher.errors import Unauthorized
from publisher.models import Role, User
from publisher.store import schema as t
from publisher.store.sql import SqlStore, insert_for, utcnow

#: last_seen_at is written at most this often, so reading pages does not write every time
TOUCH_EVERY = timedelta(seconds=60)


class LoginFailed(Unauthorized):
    """Wrong name or password (the message never says which)."""


class LockedOut(Unauthorized):
    """Too many failed logins for this name; `until` says when it may try again."""

    def __init__(self, detail: str, until: datetime) -> None:
        super().__init__(detail)
        self.until = until


@dataclass(frozen=True, slots=True)
class StaffSession:
    id_hash: str
    user: User
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    #: None for a full session; else what it still owes ("totp": the second factor,
    #: "enrol": a TOTP enrolment), see publisher.totp
    pending: str | None = None


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """Login, lookup and logout of staff sessions on a SqlStore."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        ui = store.config.ui
        self.idle = timedelta(minutes=ui.session_idle_minutes)
        self.max_failures = ui.max_failed_logins
        self.lockout = timedelta(minutes=ui.lockout_minutes)

    async def login(
        self, name: str, password: str, *, now: datetime | None = None
    ) -> tuple[str, StaffSession]:
        """A new session for a right name and password: (cookie value, session).

        Raises LockedOut while the name is locked (even for the right password), and
        LoginFailed otherwise; each failure counts towards the lockout.
        """
        now = now or utcnow()
        name = name.strip()[:64]
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    sa.select(t.login_failures).where(t.login_failures.c.name == name)
                )
            ).first()
        if row is not None and row.locked_until is not None and row.locked_until > now:
            raise LockedOut(f"user {name!r} is locked out after failed logins", row.locked_until)
        try:
            user = await self.store.verify_password(name, password)
        except Unauthorized:
            await self._count_failure(name, now)
            raise LoginFailed("wrong user name or password") from None
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        async with self.store.write() as conn:
            await conn.execute(t.login_failures.delete().where(t.login_failures.c.name == name))
            await conn.execute(
                t.staff_sessions.insert().values(
                    id_hash=_hash(session_id),
                    user_id=user.id,
                    role=user.role.value,
                    csrf_token=csrf,
                    created_at=now,
                    last_seen_at=now,
                )
            )
            # sessions idle past the limit are dead; clear them out while writing anyway
            await conn.execute(
                t.staff_sessions.delete().where(t.staff_sessions.c.last_seen_at < now - self.idle)
            )
        return session_id, StaffSession(_hash(session_id), user, csrf, now, now)

    async def _count_failure(self, name: str, now: datetime) -> None:
        async with self.store.write() as conn:
            row = (
                await conn.execute(
                    sa.select(t.login_failures).where(t.login_failures.c.name == name)
                )
            ).first()
            # a lockout that has run out starts the count again
            failures = 1
            if row is not None and (row.locked_until is None or row.locked_until <= now):
                failures = (0 if row.locked_until is not None else row.failures) + 1
            locked_until = now + self.lockout if failures >= self.max_failures else None
            values = {"failures": failures, "last_failure_at": now, "locked_until": locked_until}
            if row is None:
                await conn.execute(
                    insert_for(conn)(t.login_failures)
                    .values(name=name, **values)
                    .on_conflict_do_nothing()
                )
            else:
                await conn.execute(
                    t.login_failures.update().where(t.login_failures.c.name == name).values(values)
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
        )
        return StaffSession(
            id_hash, user, row.csrf_token, row.session_created_at, last_seen, row.pending
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
