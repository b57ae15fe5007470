"""SqlStore: the canonical store on SQLite (WAL, one writer) or PostgreSQL.

Every state change and its audit row are one transaction. On SQLite a writing
transaction starts with BEGIN IMMEDIATE, so writers queue instead of failing
half-way; on PostgreSQL the item row is locked with FOR UPDATE.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from publisher import pii, textclean, workflow
from publisher.config import Config
from publisher.content import check_content
from publisher.errors import (
    Conflict,
    DuplicateIndexNo,
    Forbidden,
    ItemNotFound,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    PublisherError,
    Unauthorized,
    ValidationFailed,
)
from publisher.models import (
    EDITABLE_IN_PLACE,
    LIVE_STATUSES,
    Action,
    Attachment,
    AuditEntry,
    BodyFormat,
    Channel,
    Content,
    Disclosure,
    Item,
    ItemStatus,
    LegalKind,
    Relation,
    RelationKind,
    Revision,
    RevisionState,
    Role,
    User,
)
from publisher.passwords import PasswordHashing, PasswordProblem
from publisher.store import schema as t

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class PersonalDataNotAcknowledged(Conflict):
    kind = "personal-data"
    title = "Personal data must be acknowledged"


class EventKind:
    PUBLISHED = "published"
    CORRECTED = "corrected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


#: channels that send a correction again unless the reviewer chooses otherwise:
#: the catalogue copies (portal, feeds, boards) must show the corrected text, while
#: residents are not messaged twice for a fix
CORRECTION_RESEND = frozenset({Channel.PORTAL, Channel.RSS, Channel.BOARD})

#: channels an imported (archival) item may reach: it is catalogued and fed, never
#: messaged to residents nor pushed or posted again
IMPORTED_CHANNELS = frozenset({Channel.RSS})


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class ItemQuery:
    status: ItemStatus | None = None
    category: str | None = None
    year: int | None = None
    text: str | None = None
    disclosure: Disclosure | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ItemEvent:
    id: int
    item_id: str
    revision: int
    kind: str
    channels: tuple[Channel, ...]
    urgent: bool
    created_at: datetime


#: words of this service a password should not lean on (zxcvbn's extra dictionary)
_SITE_WORDS = ("gongkai", "publisher", "staff", "admin")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: the longest pause between tries when another process holds SQLite's write lock
LOCKED_RETRY_MAX_SECONDS = 0.002

#: PostgreSQL connections SqlStore.run keeps open between turns (one per lane of each
#: channel at most; the rest go back to the pool)
KEPT_CONNECTIONS = 4


class SqlStore:
    def __init__(self, config: Config, *, engine: AsyncEngine | None = None) -> None:
        self.config = config
        self.url = config.database_url
        self.engine = engine or make_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sync_engine: sa.Engine | None = None
        #: argon2 off the event loop, and the password policy (publisher.passwords)
        self.passwords = PasswordHashing(config.security.login)
        #: PostgreSQL connections run() keeps between turns (see run)
        self._kept: list[AsyncConnection] = []

    # -- lifecycle -------------------------------------------------------

    async def close(self) -> None:
        self.passwords.close()
        while self._kept:
            await self._kept.pop().close()
        await self.engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def run(self, fn: Callable[[sa.Connection], T], *, write: bool = True) -> T:
        """Run `fn(connection)` as one transaction and return its result.

        For hot paths (the delivery workers' claim-and-record turn). On SQLite
        the transaction runs right here on the event loop with the synchronous
        driver: a turn is a few milliseconds of work that would hold the GIL in
        any thread anyway, and running it inline saves the thread hops and GIL
        hand-offs that bound throughput. It never waits for SQLite's write lock
        while blocking the loop: the connection does not wait (busy_timeout 0),
        and a busy database is retried after an asynchronous back-off. On
        PostgreSQL it runs through the async engine (asyncpg) on a connection kept
        between turns: checking one out of the pool costs a ping and, on return, a
        rollback — two round trips of the dozen a turn makes. A turn that fails drops
        its connection (a server restart is then met with a fresh, pinged one).
        """
        if not self.is_sqlite:
            pg = self._kept.pop() if self._kept else await self.engine.connect()
            try:
                async with pg.begin():
                    result = await pg.run_sync(fn)
            except BaseException:
                await asyncio.shield(pg.close())
                raise
            if len(self._kept) < KEPT_CONNECTIONS:
                self._kept.append(pg)
            else:
                await pg.close()
            return result
        if self._sync_engine is None:
            self._sync_engine = sa.create_engine(
                self.engine.url.set(drivername="sqlite"),
                connect_args={"timeout": 0},
                poolclass=sa.pool.StaticPool,
            )
            _sqlite_events(self._sync_engine, busy_timeout_ms=0)
        engine = self._sync_engine
        delay = 0.001
        deadline = time.monotonic() + 60
        while True:
            try:
                with engine.connect() as conn:
                    if write:
                        conn = conn.execution_options(publisher_write=True)
                    with conn.begin():
                        return fn(conn)
            except sa.exc.OperationalError as exc:
                if "locked" not in str(exc.orig) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)  # another writer holds the lock; nothing was written
            # short waits: another process's writes (the web app recording delivery
            # reports) are frequent and brief, and a worker that backs off to 50 ms
            # between tries sent SMS at a third of the rate (docs/benchmarks.md)
            delay = min(delay * 2, LOCKED_RETRY_MAX_SECONDS)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A writing transaction (BEGIN IMMEDIATE on SQLite)."""
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                await conn.execution_options(publisher_write=True)
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    def _lock(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        return stmt if self.is_sqlite else stmt.with_for_update()

    # -- users and tokens --------------------------------------------------

    async def add_user(self, name: str, role: Role, password: str | None = None) -> User:
        textclean.refuse("user name", name, line=True)
        if not name or len(name) > 64 or not name.isprintable() or " " in name:
            raise ValidationFailed(f"user name {name!r}: 1–64 printable characters, no spaces")
        now = utcnow()
        async with self.read() as conn:
            exists = await conn.scalar(sa.select(t.users.c.id).where(t.users.c.name == name))
            if exists is not None:
                raise Conflict(f"user {name!r} already exists")
            if name == workflow.SYSTEM_ACTOR:
                raise ValidationFailed(f"user name {name!r} is reserved")
        password_hash = await self._new_password_hash(name, password) if password else None
        async with self.write() as conn:
            exists = await conn.scalar(sa.select(t.users.c.id).where(t.users.c.name == name))
            if exists is not None:
                raise Conflict(f"user {name!r} already exists")
            await conn.execute(
                t.users.insert().values(
                    name=name,
                    role=role.value,
                    password_hash=password_hash,
                    disabled=False,
                    created_at=now,
                    password_changed_at=now if password_hash else None,
                )
            )
        return await self.get_user(name)

    async def get_user(self, name: str) -> User:
        query = sa.select(t.users).where(t.users.c.name == name)
        return _user(await self._get_one(query, f"no user named {name!r}"))

    async def list_users(self) -> list[User]:
        async with self.read() as conn:
            rows = (await conn.execute(sa.select(t.users).order_by(t.users.c.name))).all()
        return [_user(r) for r in rows]

    async def password_problems(self, name: str, password: str) -> list[PasswordProblem]:
        """What the password policy (security.login) finds wrong with a password for `name`."""
        return await self.passwords.problems(password, user_inputs=(name, *_SITE_WORDS))

    async def _new_password_hash(self, name: str, password: str) -> str:
        found = await self.password_problems(name, password)
        if found:
            raise ValidationFailed(found[0].detail, codes=[p.code for p in found])
        return await self.passwords.hash(password)

    async def set_password(self, name: str, password: str) -> None:
        """A new password (refused unless the policy accepts it); ends the user's sessions."""
        password_hash = await self._new_password_hash(name, password)
        async with self.write() as conn:
            res = await conn.execute(
                t.users.update()
                .where(t.users.c.name == name)
                .values(password_hash=password_hash, password_changed_at=utcnow())
                .returning(t.users.c.id)
            )
            uid = res.scalar()
            if uid is None:
                raise NotFound(f"no user named {name!r}")
            # a new password ends every session opened with the old one (a stolen
            # session must not outlive the reset meant to stop it)
            await conn.execute(t.staff_sessions.delete().where(t.staff_sessions.c.user_id == uid))

    async def set_role(self, name: str, role: Role) -> None:
        """Give a user another role; their staff sessions end at once (the pages they had
        open were chosen for the old role)."""
        async with self.write() as conn:
            uid = (
                await conn.execute(
                    t.users.update()
                    .where(t.users.c.name == name)
                    .values(role=role.value)
                    .returning(t.users.c.id)
                )
            ).scalar()
            if uid is None:
                raise NotFound(f"no user named {name!r}")
            await conn.execute(t.staff_sessions.delete().where(t.staff_sessions.c.user_id == uid))

    async def disable_user(self, name: str) -> None:
        await self._update_user(name, disabled=True)
        async with self.write() as conn:
            uid = await conn.scalar(sa.select(t.users.c.id).where(t.users.c.name == name))
            await conn.execute(
                t.api_tokens.update()
                .where(t.api_tokens.c.user_id == uid, t.api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )

    async def _update_user(self, name: str, **values: Any) -> None:
        async with self.write() as conn:
            res = await conn.execute(
                t.users.update().where(t.users.c.name == name).values(**values)
            )
            if res.rowcount == 0:
                raise NotFound(f"no user named {name!r}")

    async def verify_password(self, name: str, password: str) -> User:
        """The user whose name and password these are; Unauthorized otherwise. The hash is
        checked on a hashing thread, and for a name with no usable password (unknown,
        disabled, API tokens only) a dummy hash is checked, so both take as long."""
        async with self.read() as conn:
            row = (await conn.execute(sa.select(t.users).where(t.users.c.name == name))).first()
        usable_hash: str | None = None
        if row is not None and not row.disabled and row.password_hash:
            usable_hash = row.password_hash
        ok = await self.passwords.verify(usable_hash, password)
        if not ok or row is None or usable_hash is None:
            raise Unauthorized("wrong user name or password")
        return _user(row)

    async def create_token(self, name: str, expires_days: int | None = None) -> str:
        """A new API token for the user; only its hash is kept."""
        if expires_days is not None and expires_days <= 0:
            raise ValidationFailed("--expires: a positive number of days")
        token = "gk_" + secrets.token_urlsafe(32)
        now = utcnow()
        async with self.write() as conn:
            row = (await conn.execute(sa.select(t.users).where(t.users.c.name == name))).first()
            if row is None:
                raise NotFound(f"no user named {name!r}")
            if row.disabled:
                raise Conflict(f"user {name!r} is disabled")
            await conn.execute(
                t.api_tokens.insert().values(
                    user_id=row.id,
                    token_hash=hash_token(token),
                    prefix=token[:10],
                    created_at=now,
                    expires_at=now + timedelta(days=expires_days) if expires_days else None,
                )
            )
        return token

    async def revoke_token(self, token_or_prefix: str) -> int:
        """Revoke a token given whole or by the prefix `token list` shows; returns how many."""
        async with self.write() as conn:
            cond = (
                t.api_tokens.c.token_hash == hash_token(token_or_prefix)
                if len(token_or_prefix) > 16
                else t.api_tokens.c.prefix == token_or_prefix
            )
            res = await conn.execute(
                t.api_tokens.update()
                .where(cond, t.api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        if res.rowcount == 0:
            raise NotFound("no active token matches")
        return int(res.rowcount)

    async def authenticate_token(self, token: str) -> User:
        now = utcnow()
        async with self.read() as conn:
            row = (
                await conn.execute(
                    sa.select(t.users, t.api_tokens.c.expires_at, t.api_tokens.c.revoked_at)
                    .join(t.api_tokens, t.api_tokens.c.user_id == t.users.c.id)
                    .where(t.api_tokens.c.token_hash == hash_token(token))
                )
            ).first()
        if row is None or row.revoked_at is not None or row.disabled:
            raise Unauthorized("the bearer token is unknown or revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise Unauthorized("the bearer token has expired")
        return _user(row)

    # -- items ---------------------------------------------------------------

    async def create_item(self, content: Content, *, actor: Actor) -> Item:
        workflow.check_can_edit(actor.role)
        item_id = str(uuid.uuid4())
        now = utcnow()
        async with self.write() as conn:
            check_content(content, self.config)
            await self._check_related(conn, item_id, content.related)
            await conn.execute(
                t.items.insert().values(
                    id=item_id,
                    status=ItemStatus.DRAFT.value,
                    revision=1,
                    version=1,
                    created_by=actor.name,
                    created_at=now,
                    updated_at=now,
                    imported=False,
                    **_item_copies(content),
                )
            )
            await self._insert_revision(conn, item_id, 1, content, actor.name, now)
            await self._audit(conn, item_id, actor.name, "create", None, ItemStatus.DRAFT, 1, now)
        return await self.get_item(item_id)

    async def import_item(
        self, content: Content, *, index_no: str | None, published_at: datetime, actor: str
    ) -> Item:
        """An archival item: published with its own dates and 索引号, no review, no messages."""
        item_id = str(uuid.uuid4())
        now = utcnow()
        async with self.write() as conn:
            if index_no is not None:
                taken = await conn.scalar(
                    sa.select(t.items.c.id).where(t.items.c.index_no == index_no)
                )
                if taken is not None:
                    raise DuplicateIndexNo(
                        f"索引号 {index_no} is already in the store", item_id=taken
                    )
            else:
                index_no = await self._allocate_index_no(conn, published_at)
            await conn.execute(
                t.items.insert().values(
                    id=item_id,
                    status=ItemStatus.PUBLISHED.value,
                    index_no=index_no,
                    revision=1,
                    version=1,
                    created_by=actor,
                    created_at=now,
                    updated_at=now,
                    published_at=published_at,
                    imported=True,
                    **_item_copies(content),
                )
            )
            await self._insert_revision(conn, item_id, 1, content, actor, now)
            await self._audit(
                conn,
                item_id,
                actor,
                "import",
                None,
                ItemStatus.PUBLISHED,
                1,
                now,
                details={"index_no": index_no},
            )
            channels = workflow.public_channels(
                content.disclosure, content.channels, IMPORTED_CHANNELS & self._enabled()
            )
            await self._event(conn, item_id, 1, EventKind.PUBLISHED, channels, False, now)
        return await self.get_item(item_id)

    async def get_item(self, item_id: str) -> Item:
        async with self.read() as conn:
            return await self._load(conn, item_id)

    async def get_revision(self, item_id: str, number: int) -> Revision:
        query = sa.select(t.revisions).where(
            t.revisions.c.item_id == item_id, t.revisions.c.number == number
        )
        return _revision(await self._get_one(query, f"item {item_id} has no revision {number}"))

    async def list_items(self, query: ItemQuery) -> tuple[list[Item], int]:
        cond = self._conditions(query)
        async with self.read() as conn:
            total = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(t.items.join(t.revisions, _live_join()))
                .where(*cond)
            )
            rows = (
                await conn.execute(
                    sa.select(t.items.c.id)
                    .select_from(t.items.join(t.revisions, _live_join()))
                    .where(*cond)
                    .order_by(
                        sa.func.coalesce(t.items.c.published_at, t.items.c.created_at).desc(),
                        t.items.c.id,
                    )
                    .limit(query.limit)
                    .offset(query.offset)
                )
            ).all()
            items = await self._load_many(conn, [r.id for r in rows])
        return items, int(total or 0)

    def _conditions(self, q: ItemQuery) -> list[sa.ColumnElement[bool]]:
        cond: list[sa.ColumnElement[bool]] = []
        if q.status is not None:
            cond.append(t.items.c.status == q.status.value)
        if q.category is not None:
            cond.append(t.items.c.category == q.category)
        if q.disclosure is not None:
            cond.append(t.items.c.disclosure == q.disclosure.value)
        if q.year is not None:
            tz = self.config.site.tz
            start = datetime(q.year, 1, 1, tzinfo=tz)
            end = datetime(q.year + 1, 1, 1, tzinfo=tz)
            when = sa.func.coalesce(t.items.c.published_at, t.items.c.created_at)
            cond.append(sa.and_(when >= start.astimezone(UTC), when < end.astimezone(UTC)))
        if q.text:
            pattern = (
                "%" + q.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            cond.append(
                sa.or_(
                    t.revisions.c.title.ilike(pattern, escape="\\"),
                    t.items.c.index_no.ilike(pattern, escape="\\"),
                    t.revisions.c.body.ilike(pattern, escape="\\"),
                    t.revisions.c.doc_no.ilike(pattern, escape="\\"),
                )
            )
        return cond

    async def update_item(
        self,
        item_id: str,
        changes: Mapping[str, Any],
        *,
        actor: Actor,
        if_match: str,
    ) -> Item:
        """Apply a partial edit; a live item gets a pending revision that needs review again."""
        workflow.check_can_edit(actor.role)
        now = utcnow()
        async with self.write() as conn:
            row = await self._lock_item(conn, item_id)
            current = await self._load(conn, item_id)
            if current.etag != if_match:
                raise PreconditionFailed(
                    f"item {item_id} has changed since you read it (now {current.etag}); "
                    "reload it and apply your edit again",
                    current_etag=current.etag,
                )
            status = ItemStatus(row.status)
            note = changes.get("correction_note")
            content_changes = {k: v for k, v in changes.items() if k != "correction_note"}
            if status in EDITABLE_IN_PLACE:
                if note is not None:
                    raise ValidationFailed("correction_note: only for edits of a published item")
                content = replace(current.content, **content_changes)
                check_content(content, self.config)
                await self._check_related(conn, item_id, content.related)
                if status is ItemStatus.REJECTED:
                    to = workflow.next_status(status, Action.REOPEN)
                    await self._audit(
                        conn, item_id, actor.name, "reopen", status, to, row.revision, now
                    )
                    status = to
                await conn.execute(
                    t.revisions.update()
                    .where(t.revisions.c.item_id == item_id, t.revisions.c.number == row.revision)
                    .values(**_revision_values(content), author=actor.name, created_at=now)
                )
                await conn.execute(
                    t.items.update()
                    .where(t.items.c.id == item_id)
                    .values(
                        status=status.value,
                        version=row.version + 1,
                        updated_at=now,
                        **_item_copies(content),
                    )
                )
                await self._audit(
                    conn,
                    item_id,
                    actor.name,
                    "edit",
                    None,
                    None,
                    row.revision,
                    now,
                    details={"fields": sorted(changes)},
                )
            elif status in LIVE_STATUSES:
                pending_state = RevisionState(row.pending_state) if row.pending_state else None
                if pending_state is RevisionState.IN_REVIEW:
                    raise Conflict(
                        f"revision {row.pending_revision} of item {item_id} is in review; "
                        "a reviewer must approve or reject it before it can change"
                    )
                base = current.pending or current.revision
                content = replace(base.content, **content_changes)
                check_content(content, self.config)
                await self._check_related(conn, item_id, content.related)
                number = row.revision + 1
                values = {
                    **_revision_values(content),
                    "author": actor.name,
                    "created_at": now,
                    "correction_note": note
                    if note is not None
                    else (current.pending.correction_note if current.pending else None),
                }
                if row.pending_revision is None:
                    await conn.execute(
                        t.revisions.insert().values(item_id=item_id, number=number, **values)
                    )
                else:
                    await conn.execute(
                        t.revisions.update()
                        .where(t.revisions.c.item_id == item_id, t.revisions.c.number == number)
                        .values(**values)
                    )
                await conn.execute(
                    t.items.update()
                    .where(t.items.c.id == item_id)
                    .values(
                        pending_revision=number,
                        pending_state=RevisionState.DRAFT.value,
                        version=row.version + 1,
                        updated_at=now,
                    )
                )
                await self._audit(
                    conn,
                    item_id,
                    actor.name,
                    "revise",
                    status,
                    status,
                    number,
                    now,
                    details={"fields": sorted(changes)},
                )
            else:
                if status is ItemStatus.IN_REVIEW:
                    raise Conflict(
                        f"item {item_id} is in review; a reviewer must approve or reject it "
                        "before it can change"
                    )
                raise Conflict(f"item {item_id} is {status.value} and can no longer be edited")
        return await self.get_item(item_id)

    async def transition(
        self,
        item_id: str,
        action: Action,
        *,
        actor: Actor,
        reason: str | None = None,
        acknowledge_personal_data: bool = False,
        resend: frozenset[Channel] | None = None,
        now: datetime | None = None,
    ) -> Item:
        """Apply one workflow action, with its audit rows and events, in one transaction.

        `resend` is the reviewer's choice, when approving a correction, of the
        channels that send it again (default CORRECTION_RESEND).
        """
        workflow.check_role(actor.role, action)
        # every reason (API, staff pages, CLI) comes through here: one check for all
        textclean.refuse("reason", reason)
        if action is Action.REJECT and not (reason and reason.strip()):
            raise ValidationFailed("reason: a rejection needs a reason the author can act on")
        now = now or utcnow()
        async with self.write() as conn:
            row = await self._lock_item(conn, item_id)
            item = await self._load(conn, item_id)
            status = ItemStatus(row.status)
            pending = RevisionState(row.pending_state) if row.pending_state else None
            on_pending = (
                status in LIVE_STATUSES
                and pending is not None
                and action
                in (
                    Action.SUBMIT,
                    Action.APPROVE,
                    Action.REJECT,
                )
            )
            if on_pending:
                assert item.pending is not None and pending is not None
                await self._revision_action(
                    conn,
                    item,
                    item.pending,
                    pending,
                    action,
                    actor,
                    reason,
                    acknowledge_personal_data,
                    now,
                    resend,
                )
            else:
                to = workflow.next_status(status, action)
                if action is Action.APPROVE:
                    await self._check_four_eyes(conn, item, item.revision, actor.name)
                    findings = self._check_pii(item, item.revision, acknowledge_personal_data)
                    await self._move(
                        conn, item, to, actor.name, reason, now, details=_pii_details(findings)
                    )
                    follow = workflow.after_approval(item.content, now)
                    await self._follow(conn, item_id, follow, now)
                else:
                    await self._move(conn, item, to, actor.name, reason, now)
                    if action is Action.WITHDRAW:
                        await self._withdraw(conn, item, now)
        return await self.get_item(item_id)

    async def _follow(
        self, conn: AsyncConnection, item_id: str, action: Action, now: datetime
    ) -> None:
        """The system's move right after approval: schedule or publish."""
        item = await self._load(conn, item_id)
        to = workflow.next_status(item.status, action)
        if to is ItemStatus.PUBLISHED:
            await self._publish(conn, item, now)
        else:
            await self._move(conn, item, to, workflow.SYSTEM_ACTOR, None, now)

    async def _revision_action(
        self,
        conn: AsyncConnection,
        item: Item,
        pending: Revision,
        state: RevisionState,
        action: Action,
        actor: Actor,
        reason: str | None,
        acknowledge: bool,
        now: datetime,
        resend: frozenset[Channel] | None = None,
    ) -> None:
        moves = {
            (RevisionState.DRAFT, Action.SUBMIT): RevisionState.IN_REVIEW,
            (RevisionState.REJECTED, Action.SUBMIT): RevisionState.IN_REVIEW,
            (RevisionState.IN_REVIEW, Action.REJECT): RevisionState.REJECTED,
            (RevisionState.IN_REVIEW, Action.APPROVE): None,  # promoted to live
        }
        if (state, action) not in moves:
            raise Conflict(
                f"cannot {action.value} revision {pending.number} of item {item.id}: "
                f"it is {state.value}"
            )
        details: dict[str, Any] = {"pending_revision": True}
        if action is Action.APPROVE:
            await self._check_four_eyes(conn, item, pending, actor.name)
            findings = self._check_pii(item, pending, acknowledge)
            details.update(_pii_details(findings))
            if item.status is ItemStatus.PUBLISHED:
                chosen = CORRECTION_RESEND if resend is None else resend
                resend_to = self._channels_for(item, pending.content) & chosen
                details["resend"] = sorted(c.value for c in resend_to)
            # the pending revision becomes the live one
            values: dict[str, Any] = {
                "revision": pending.number,
                "pending_revision": None,
                "pending_state": None,
                **_item_copies(pending.content),
            }
        else:
            to_state = moves[(state, action)]
            assert to_state is not None
            values = {"pending_state": to_state.value}
        await conn.execute(
            t.items.update()
            .where(t.items.c.id == item.id)
            .values(version=item.version + 1, updated_at=now, **values)
        )
        await self._audit(
            conn,
            item.id,
            actor.name,
            action.value,
            item.status,
            item.status,
            pending.number,
            now,
            reason,
            details,
        )
        if action is Action.APPROVE:
            if item.status is ItemStatus.PUBLISHED:
                # the approved revision goes out as a correction (更正)
                await self._event(
                    conn,
                    item.id,
                    pending.number,
                    EventKind.CORRECTED,
                    resend_to,
                    pending.content.urgent,
                    now,
                )
            elif item.status is ItemStatus.SCHEDULED:
                refreshed = await self._load(conn, item.id)
                if workflow.after_approval(refreshed.content, now) is Action.PUBLISH:
                    await self._publish(conn, refreshed, now)

    async def _check_four_eyes(
        self, conn: AsyncConnection, item: Item, revision: Revision, approver: str
    ) -> None:
        """Four-eyes against everyone who wrote, edited or attached to this revision."""
        authors = set(
            (
                await conn.scalars(
                    sa.select(t.audit_log.c.actor).where(
                        t.audit_log.c.item_id == item.id,
                        t.audit_log.c.revision == revision.number,
                        t.audit_log.c.action.in_(("create", "edit", "revise", "attach")),
                    )
                )
            ).all()
        )
        for author in sorted(authors | {revision.author}):
            workflow.check_four_eyes(author, approver)

    def _check_pii(
        self, item: Item, revision: Revision, acknowledged: bool
    ) -> list[pii.PiiFinding]:
        findings = scan_revision(item, revision)
        if findings and not acknowledged:
            raise PersonalDataNotAcknowledged(
                f"revision {revision.number} of item {item.id} shows what looks like personal data "
                f"({', '.join(sorted({f.kind.value for f in findings}))}); mask it, or approve with "
                '"acknowledge_personal_data": true',
                findings=[_finding_json(f) for f in findings],
            )
        return findings

    async def publish_due(self, now: datetime | None = None) -> list[str]:
        """Publish scheduled items whose publish_at has come; returns their ids (oldest first)."""
        now = now or utcnow()

        async def publish(conn: AsyncConnection, item: Item) -> None:
            await self._publish(conn, item, now)

        return await self._each_due(ItemStatus.SCHEDULED, t.items.c.publish_at, now, publish)

    async def expire_due(self, now: datetime | None = None) -> list[str]:
        """Expire published items whose expires_at has passed; returns their ids."""
        now = now or utcnow()

        async def expire(conn: AsyncConnection, item: Item) -> None:
            await self._move(conn, item, ItemStatus.EXPIRED, workflow.SYSTEM_ACTOR, None, now)
            await conn.execute(
                t.items.update().where(t.items.c.id == item.id).values(expired_at=now)
            )
            await self._cancel_deliveries(conn, item.id, EventKind.EXPIRED, now)
            await self._live_event(conn, item, EventKind.EXPIRED, False, now)

        return await self._each_due(ItemStatus.PUBLISHED, t.items.c.expires_at, now, expire)

    async def _each_due(
        self,
        status: ItemStatus,
        when: sa.Column[Any],
        now: datetime,
        act: Callable[[AsyncConnection, Item], Awaitable[None]],
    ) -> list[str]:
        """Apply `act` to each item in `status` whose `when` has come, oldest first, one
        transaction each; an item another worker moved meanwhile is left alone."""
        async with self.read() as conn:
            ids = (
                await conn.scalars(
                    sa.select(t.items.c.id)
                    .where(t.items.c.status == status.value, when <= now)
                    .order_by(when, t.items.c.id)
                )
            ).all()
        done = []
        for item_id in ids:
            async with self.write() as conn:
                row = await self._lock_item(conn, item_id)
                if row.status != status.value:
                    continue  # another worker got there first
                await act(conn, await self._load(conn, item_id))
            done.append(item_id)
        return done

    async def next_due(self) -> datetime | None:
        """The earliest publish_at or expires_at still ahead: when the scheduler must wake."""
        async with self.read() as conn:
            a = await conn.scalar(
                sa.select(sa.func.min(t.items.c.publish_at)).where(
                    t.items.c.status == ItemStatus.SCHEDULED.value
                )
            )
            b = await conn.scalar(
                sa.select(sa.func.min(t.items.c.expires_at)).where(
                    t.items.c.status == ItemStatus.PUBLISHED.value
                )
            )
        # min() bypasses the column type on some backends
        vals = [t.UTCDateTime().process_result_value(v, None) for v in (a, b) if v is not None]  # type: ignore[arg-type]
        return min((v for v in vals if v is not None), default=None)

    async def audit(self, item_id: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        async with self.read() as conn:
            stmt = sa.select(t.audit_log).order_by(t.audit_log.c.id).limit(limit)
            if item_id is not None:
                await self._load(conn, item_id)
                stmt = stmt.where(t.audit_log.c.item_id == item_id)
            rows = (await conn.execute(stmt)).all()
        return [
            AuditEntry(
                id=r.id,
                item_id=r.item_id,
                actor=r.actor,
                at=r.at,
                action=r.action,
                from_status=r.from_status,
                to_status=r.to_status,
                revision=r.revision,
                reason=r.reason,
                details=r.details or {},
            )
            for r in rows
        ]

    async def events(self, item_id: str | None = None) -> list[ItemEvent]:
        async with self.read() as conn:
            stmt = sa.select(t.item_events).order_by(t.item_events.c.id)
            if item_id is not None:
                stmt = stmt.where(t.item_events.c.item_id == item_id)
            rows = (await conn.execute(stmt)).all()
        return [
            ItemEvent(
                r.id,
                r.item_id,
                r.revision,
                r.kind,
                tuple(Channel(c) for c in r.channels),
                r.urgent,
                r.created_at,
            )
            for r in rows
        ]

    async def latest_event_times(
        self,
        kinds: Collection[str],
        *,
        item_ids: Collection[str] | None = None,
        category: str | None = None,
    ) -> dict[str, datetime]:
        """Per item, when its latest event of `kinds` happened (only items that had one).

        `category` narrows to items whose live text is in that category.
        """
        stmt = (
            sa.select(t.item_events.c.item_id, sa.func.max(t.item_events.c.created_at))
            .where(t.item_events.c.kind.in_(list(kinds)))
            .group_by(t.item_events.c.item_id)
        )
        if item_ids is not None:
            stmt = stmt.where(t.item_events.c.item_id.in_(list(item_ids)))
        if category is not None:
            stmt = stmt.join(t.items, t.items.c.id == t.item_events.c.item_id).where(
                t.items.c.category == category
            )
        async with self.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return {item_id: at for item_id, at in rows}

    # -- attachments -----------------------------------------------------------

    async def add_attachment(
        self,
        item_id: str,
        filename: str,
        content_type: str,
        chunks: AsyncIterator[bytes],
        *,
        actor: Actor,
    ) -> Attachment:
        """Stream an upload to a content-addressed file, then record it.

        The file is complete and renamed into place before the row commits, so a
        crash leaves at worst an unreferenced file, never a row without bytes.
        """
        workflow.check_can_edit(actor.role)
        filename = _clean_filename(filename)
        item = await self.get_item(item_id)
        if item.status in (ItemStatus.IN_REVIEW, ItemStatus.EXPIRED, ItemStatus.WITHDRAWN):
            raise Conflict(f"item {item_id} is {item.status.value}; attachments cannot change now")
        limit = self.config.storage.max_upload_bytes
        root = self.config.attachments_path
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"attachment {filename!r} is larger than {limit} bytes "
                            "(storage.max_upload_bytes)"
                        )
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if size == 0:
                raise ValidationFailed(f"attachment {filename!r} is empty")
            sha = digest.hexdigest()
            final = attachment_path(root, sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        now = utcnow()
        att_id = str(uuid.uuid4())
        async with self.write() as conn:
            row = await self._lock_item(conn, item_id)
            status = ItemStatus(row.status)
            if status in LIVE_STATUSES:
                if row.pending_state == RevisionState.IN_REVIEW.value:
                    raise Conflict(
                        f"revision {row.pending_revision} of item {item_id} is in review"
                    )
                revision = row.revision + 1
                if row.pending_revision is None:
                    live = await self._load(conn, item_id)
                    await conn.execute(
                        t.revisions.insert().values(
                            item_id=item_id,
                            number=revision,
                            author=actor.name,
                            created_at=now,
                            correction_note=None,
                            **_revision_values(live.content),
                        )
                    )
                await conn.execute(
                    t.items.update()
                    .where(t.items.c.id == item_id)
                    .values(pending_revision=revision, pending_state=RevisionState.DRAFT.value)
                )
            elif status in EDITABLE_IN_PLACE:
                revision = row.revision
            else:
                raise Conflict(f"item {item_id} is {status.value}; attachments cannot change now")
            await conn.execute(
                t.attachments.insert().values(
                    id=att_id,
                    item_id=item_id,
                    revision=revision,
                    filename=filename,
                    content_type=content_type,
                    size=size,
                    sha256=sha,
                    created_at=now,
                )
            )
            await conn.execute(
                t.items.update()
                .where(t.items.c.id == item_id)
                .values(version=row.version + 1, updated_at=now)
            )
            await self._audit(
                conn,
                item_id,
                actor.name,
                "attach",
                None,
                None,
                revision,
                now,
                details={"filename": filename, "sha256": sha, "size": size},
            )
        return Attachment(att_id, item_id, revision, filename, content_type, size, sha, now)

    async def get_attachment(self, item_id: str, attachment_id: str) -> Attachment:
        if "\x00" in item_id + attachment_id:  # PostgreSQL text cannot hold NUL
            raise NotFound(f"no attachment {attachment_id!r} on item {item_id!r}")
        query = sa.select(t.attachments).where(
            t.attachments.c.id == attachment_id, t.attachments.c.item_id == item_id
        )
        missing = f"no attachment {attachment_id!r} on item {item_id!r}"
        return _attachment(await self._get_one(query, missing))

    # -- internals ---------------------------------------------------------------

    async def _get_one(self, query: sa.Select[Any], missing: str) -> Row[Any]:
        """The first row `query` reads (in a read transaction of its own), or NotFound with
        the message `missing`."""
        async with self.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(missing)
        found: Row[Any] = row
        return found

    def _enabled(self) -> frozenset[Channel]:
        chans = self.config.channels
        return frozenset(c for c in Channel if getattr(chans, c.value).enabled)

    def _channels_for(self, item: Item, content: Content) -> frozenset[Channel]:
        allowed = IMPORTED_CHANNELS & self._enabled() if item.imported else self._enabled()
        return workflow.public_channels(content.disclosure, content.channels, allowed)

    async def _lock_item(self, conn: AsyncConnection, item_id: str) -> Row[Any]:
        if "\x00" in item_id:  # PostgreSQL text cannot hold NUL: it would error, not miss
            raise ItemNotFound(item_id)
        row = (
            await conn.execute(self._lock(sa.select(t.items).where(t.items.c.id == item_id)))
        ).first()
        if row is None:
            raise ItemNotFound(item_id)
        locked: Row[Any] = row
        return locked

    async def _load(self, conn: AsyncConnection, item_id: str) -> Item:
        if "\x00" in item_id:  # PostgreSQL text cannot hold NUL: it would error, not miss
            raise ItemNotFound(item_id)
        items = await self._load_many(conn, [item_id])
        if not items:
            raise ItemNotFound(item_id)
        return items[0]

    async def _load_many(self, conn: AsyncConnection, item_ids: Sequence[str]) -> list[Item]:
        """Items in the order of `item_ids` (unknown ids left out): three queries per 500,
        not three per item, so a catalogue page or a 1,000-entry feed loads at once."""
        out: list[Item] = []
        for start in range(0, len(item_ids), 500):
            chunk = list(item_ids[start : start + 500])
            rows = {
                r.id: r
                for r in (await conn.execute(sa.select(t.items).where(t.items.c.id.in_(chunk))))
            }
            if not rows:
                continue
            revs: dict[tuple[str, int], Revision] = {}
            for r in await conn.execute(
                sa.select(t.revisions).where(t.revisions.c.item_id.in_(list(rows)))
            ):
                item = rows[r.item_id]
                if r.number in (item.revision, item.pending_revision):
                    revs[(r.item_id, r.number)] = _revision(r)
            atts: dict[str, list[Attachment]] = {}
            for a in await conn.execute(
                sa.select(t.attachments)
                .where(t.attachments.c.item_id.in_(list(rows)))
                .order_by(t.attachments.c.created_at, t.attachments.c.id)
            ):
                atts.setdefault(a.item_id, []).append(_attachment(a))
            for item_id in chunk:
                row = rows.get(item_id)
                if row is None:
                    continue
                pending = row.pending_revision
                out.append(
                    Item(
                        id=row.id,
                        status=ItemStatus(row.status),
                        index_no=row.index_no,
                        revision=revs[(row.id, row.revision)],
                        pending=revs.get((row.id, pending)) if pending else None,
                        pending_state=(
                            RevisionState(row.pending_state) if row.pending_state else None
                        ),
                        version=row.version,
                        created_by=row.created_by,
                        created_at=row.created_at,
                        updated_at=row.updated_at,
                        published_at=row.published_at,
                        expired_at=row.expired_at,
                        withdrawn_at=row.withdrawn_at,
                        imported=bool(row.imported),
                        attachments=tuple(atts.get(row.id, ())),
                    )
                )
        return out

    async def _insert_revision(
        self,
        conn: AsyncConnection,
        item_id: str,
        number: int,
        content: Content,
        author: str,
        now: datetime,
    ) -> None:
        await conn.execute(
            t.revisions.insert().values(
                item_id=item_id,
                number=number,
                author=author,
                created_at=now,
                correction_note=None,
                **_revision_values(content),
            )
        )

    async def _check_related(
        self, conn: AsyncConnection, item_id: str, related: Sequence[Relation]
    ) -> None:
        ids = {r.item_id for r in related}
        if item_id in ids:
            raise ValidationFailed("related: an item cannot relate to itself")
        if not ids:
            return
        found = set(
            (await conn.scalars(sa.select(t.items.c.id).where(t.items.c.id.in_(ids)))).all()
        )
        missing = sorted(ids - found)
        if missing:
            raise ValidationFailed(f"related: no item with id {missing[0]!r}")

    async def _move(
        self,
        conn: AsyncConnection,
        item: Item,
        to: ItemStatus,
        actor: str,
        reason: str | None,
        now: datetime,
        details: dict[str, Any] | None = None,
    ) -> None:
        res = await conn.execute(
            t.items.update()
            .where(t.items.c.id == item.id, t.items.c.status == item.status.value)
            .values(status=to.value, version=t.items.c.version + 1, updated_at=now)
        )
        if res.rowcount != 1:  # the row lock makes this unreachable; keep the guard cheap
            raise Conflict(f"item {item.id} changed status concurrently")
        action = _action_name(item.status, to)
        await self._audit(
            conn,
            item.id,
            actor,
            action,
            item.status,
            to,
            item.revision.number,
            now,
            reason,
            details or {},
        )

    async def _publish(self, conn: AsyncConnection, item: Item, now: datetime) -> None:
        index_no = item.index_no or await self._allocate_index_no(conn, now)
        details: dict[str, Any] = {"index_no": index_no}
        if item.content.publish_at is not None:
            # how late publication started, for the lateness histogram
            details["late_seconds"] = max(0.0, (now - item.content.publish_at).total_seconds())
        await self._move(
            conn, item, ItemStatus.PUBLISHED, workflow.SYSTEM_ACTOR, None, now, details
        )
        await conn.execute(
            t.items.update()
            .where(t.items.c.id == item.id)
            .values(index_no=index_no, published_at=now)
        )
        await self._live_event(conn, item, EventKind.PUBLISHED, item.content.urgent, now)

    async def _withdraw(self, conn: AsyncConnection, item: Item, now: datetime) -> None:
        await conn.execute(
            t.items.update()
            .where(t.items.c.id == item.id)
            .values(withdrawn_at=now, pending_revision=None, pending_state=None)
        )
        await self._cancel_deliveries(conn, item.id, EventKind.WITHDRAWN, now)
        if item.status is ItemStatus.PUBLISHED:
            await self._live_event(conn, item, EventKind.WITHDRAWN, False, now)

    async def _cancel_deliveries(
        self, conn: AsyncConnection, item_id: str, reason: str, now: datetime
    ) -> None:
        """Skip the item's publication and correction deliveries that have not gone out, in
        the transaction that takes it down: a worker must not send them until the planner
        reaches the withdrawal (or expiry) event. Rows in flight finish as they will."""
        d = t.deliveries
        subjects = sa.select(sa.literal("event:") + sa.cast(t.item_events.c.id, sa.String)).where(
            t.item_events.c.item_id == item_id,
            t.item_events.c.kind.in_([EventKind.PUBLISHED, EventKind.CORRECTED]),
        )
        select = sa.select(d.c.id, d.c.state, d.c.reason).where(
            d.c.item_id == item_id,
            d.c.state.in_(["queued", "retrying", "deferred"]),
            d.c.subject.in_(subjects.scalar_subquery()),
        )
        if not self.is_sqlite:
            select = select.with_for_update(skip_locked=True)
        rows = (await conn.execute(select)).all()
        for i in range(0, len(rows), 500):
            chunk = rows[i : i + 500]
            # a row whose last attempt a crash cut off may have gone out: `unknown`, so the
            # take-down reaches its target (publisher.ledger.Ledger.delivered_targets)
            for cut_off, ids in (
                (True, [r.id for r in chunk if r.reason == "interrupted"]),
                (False, [r.id for r in chunk if r.reason != "interrupted"]),
            ):
                if ids:
                    await conn.execute(
                        d.update()
                        .where(d.c.id.in_(ids))
                        .values(
                            state="unknown" if cut_off else "skipped",
                            reason="interrupted" if cut_off else reason,
                            claimed_by=None,
                            updated_at=now,
                        )
                    )
            await conn.execute(
                t.delivery_events.insert(),
                [
                    {
                        "delivery_id": r.id,
                        "at": now,
                        "from_state": r.state,
                        "to_state": "unknown" if r.reason == "interrupted" else "skipped",
                        "detail": reason,
                    }
                    for r in chunk
                ],
            )

    async def _allocate_index_no(self, conn: AsyncConnection, when: datetime) -> str:
        """Next 索引号 for the site's agency and the year of `when`, in the caller's transaction.

        The counter row is bumped with an upsert, which locks it until commit, so
        concurrent publications queue on it: no gap (a rolled-back publication
        rolls its serial back too) and no reuse. Numbers already taken by imported
        items are stepped over.
        """
        site = self.config.site
        year = when.astimezone(site.tz).year
        dialect_insert = insert_for(conn)
        while True:
            stmt = (
                dialect_insert(t.index_serials)
                .values(agency_code=site.agency_code, year=year, last_serial=1)
                .on_conflict_do_update(
                    index_elements=["agency_code", "year"],
                    set_={"last_serial": t.index_serials.c.last_serial + 1},
                )
                .returning(t.index_serials.c.last_serial)
            )
            serial = (await conn.execute(stmt)).scalar_one()
            index_no = site.index_format.format(
                agency_code=site.agency_code, year=year, serial=serial
            )
            taken = await conn.scalar(sa.select(t.items.c.id).where(t.items.c.index_no == index_no))
            if taken is None:
                return index_no

    async def _event(
        self,
        conn: AsyncConnection,
        item_id: str,
        revision: int,
        kind: str,
        channels: frozenset[Channel],
        urgent: bool,
        now: datetime,
    ) -> None:
        exists = await conn.scalar(
            sa.select(t.item_events.c.id).where(
                t.item_events.c.item_id == item_id,
                t.item_events.c.revision == revision,
                t.item_events.c.kind == kind,
            )
        )
        if exists is not None:
            return  # the same event twice is one event
        await conn.execute(
            t.item_events.insert().values(
                item_id=item_id,
                revision=revision,
                kind=kind,
                channels=sorted(c.value for c in channels),
                urgent=urgent,
                created_at=now,
            )
        )

    async def _live_event(
        self, conn: AsyncConnection, item: Item, kind: str, urgent: bool, now: datetime
    ) -> None:
        """An event on the item's live revision, for the channels its content is public on."""
        channels = self._channels_for(item, item.content)
        await self._event(conn, item.id, item.revision.number, kind, channels, urgent, now)

    async def _audit(
        self,
        conn: AsyncConnection,
        item_id: str | None,
        actor: str,
        action: str,
        from_status: ItemStatus | None,
        to_status: ItemStatus | None,
        revision: int | None,
        now: datetime,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await conn.execute(
            t.audit_log.insert().values(
                item_id=item_id,
                actor=actor,
                at=now,
                action=action,
                from_status=from_status.value if from_status else None,
                to_status=to_status.value if to_status else None,
                revision=revision,
                reason=reason,
                details=details or {},
            )
        )


# -- helpers ---------------------------------------------------------------------


def _sqlite_events(engine: sa.Engine, busy_timeout_ms: int = 60000) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # we issue BEGIN ourselves (below), so the driver must not
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # deleted rows (an erased resident) are overwritten, not left in free pages
        cur.execute("PRAGMA secure_delete=ON")
        # the ledger's indexes outgrow SQLite's 2 MB default page cache at a few thousand
        # recipients; 64 MB (and memory-mapped reads) keep a 100,000-row fan-out in memory
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA mmap_size=268435456")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("publisher_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str, *, pg_schema: str | None = None) -> AsyncEngine:
    """An engine for the store; `pg_schema` puts a PostgreSQL store in its own schema (tests)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path != ":memory:" and not Path(path).exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # never readable by others
        engine = create_async_engine(url, connect_args={"timeout": 60})
        _sqlite_events(engine.sync_engine)
        return engine
    connect_args: dict[str, Any] = {}
    if pg_schema is not None:
        connect_args["server_settings"] = {"search_path": pg_schema}
    return create_async_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, connect_args=connect_args
    )


def insert_for(conn: AsyncConnection) -> Any:
    """The dialect's INSERT (with ON CONFLICT) for this connection."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _live_join() -> sa.ColumnElement[bool]:
    return sa.and_(
        t.revisions.c.item_id == t.items.c.id, t.revisions.c.number == t.items.c.revision
    )


def attachment_path(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256[2:4] / sha256


def _clean_filename(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base or base in (".", "..") or not base.isprintable() or len(base) > 255:
        raise ValidationFailed(f"attachment file name {name!r} is not usable")
    return base


def _action_name(src: ItemStatus, dst: ItemStatus) -> str:
    for (s, a), d in workflow.TRANSITIONS.items():
        if s is src and d is dst:
            return a.value
    return f"{src.value}->{dst.value}"


def _item_copies(content: Content) -> dict[str, Any]:
    return {
        "category": content.category,
        "disclosure": content.disclosure.value,
        "written_at": content.written_at,
        "publish_at": content.publish_at,
        "expires_at": content.expires_at,
    }


def _revision_values(content: Content) -> dict[str, Any]:
    return {
        "title": content.title,
        "summary": content.summary,
        "body": content.body,
        "category": content.category,
        "agency": content.agency,
        "doc_no": content.doc_no,
        "written_at": content.written_at,
        "disclosure": content.disclosure.value,
        "disclosure_reason": content.disclosure_reason,
        "channels": [c.value for c in content.channels],
        "publish_at": content.publish_at,
        "expires_at": content.expires_at,
        "urgent": content.urgent,
        "related": [{"item_id": r.item_id, "kind": r.kind.value} for r in content.related],
        "legal_kind": content.legal_kind.value if content.legal_kind else None,
        "valid_from": content.valid_from,
        "valid_until": content.valid_until,
        "repealed_on": content.repealed_on,
        "format": content.body_format.value,
    }


def _revision(r: Row[Any]) -> Revision:
    return Revision(
        item_id=r.item_id,
        number=r.number,
        content=Content(
            title=r.title,
            summary=r.summary,
            body=r.body,
            category=r.category,
            agency=r.agency,
            doc_no=r.doc_no,
            written_at=r.written_at,
            disclosure=Disclosure(r.disclosure),
            disclosure_reason=r.disclosure_reason,
            channels=tuple(Channel(c) for c in r.channels),
            publish_at=r.publish_at,
            expires_at=r.expires_at,
            urgent=bool(r.urgent),
            related=tuple(Relation(x["item_id"], RelationKind(x["kind"])) for x in r.related),
            legal_kind=LegalKind(r.legal_kind) if r.legal_kind else None,
            valid_from=r.valid_from,
            valid_until=r.valid_until,
            repealed_on=r.repealed_on,
            body_format=BodyFormat(r.format),
        ),
        author=r.author,
        created_at=r.created_at,
        correction_note=r.correction_note,
    )


def _attachment(a: Row[Any]) -> Attachment:
    return Attachment(
        a.id, a.item_id, a.revision, a.filename, a.content_type, a.size, a.sha256, a.created_at
    )


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        disabled=bool(row.disabled),
        has_password=row.password_hash is not None,
        created_at=row.created_at,
        password_changed_at=row.password_changed_at,
    )


def scan_revision(item: Item, revision: Revision) -> list[pii.PiiFinding]:
    """Personal-data warnings for one revision: its text and its attachments' names."""
    c = revision.content
    fields: dict[str, str | None] = {"title": c.title, "summary": c.summary, "body": c.body}
    for a in item.attachments:
        if a.revision <= revision.number:
            fields[f"attachments[{a.filename}]"] = a.filename
    return pii.scan_fields(fields)


def _finding_json(f: pii.PiiFinding) -> dict[str, Any]:
    return {"kind": f.kind.value, "field": f.field, "match": f.masked}


def _pii_details(findings: list[pii.PiiFinding]) -> dict[str, Any]:
    if not findings:
        return {}
    return {"personal_data_acknowledged": [_finding_json(f) for f in findings]}


__all__ = [
    "Actor",
    "EventKind",
    "Forbidden",
    "ItemEvent",
    "ItemQuery",
    "PersonalDataNotAcknowledged",
    "PublisherError",
    "SqlStore",
    "attachment_path",
    "hash_token",
    "make_engine",
    "scan_revision",
    "utcnow",
]
