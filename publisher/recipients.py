"""Subscribers of every channel, their consent ledger, and the suppression list.

Channel-specific subscription flows (SMS codes, email confirmation) sit on top
of these primitives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from publisher.addresses import AddressBox, check_region, mask, normalize
from publisher.errors import NotFound, ValidationFailed
from publisher.store import schema as t
from publisher.store.sql import SqlStore, insert_for, utcnow


class RecipientStatus(StrEnum):
    PENDING = "pending"  #: waiting for a code or a confirmation click
    ACTIVE = "active"  #: receives items
    UNSUBSCRIBED = "unsubscribed"  #: left; kept with its consent history
    SUPPRESSED = "suppressed"  #: must not be messaged (bounces, opt-out list)


#: consent the resident gave from the address itself; only these lift a suppression
VERIFIED_METHODS = frozenset({"web_verified", "sms_keyword", "email_confirmed"})


class Frequency(StrEnum):
    IMMEDIATE = "immediate"
    DAILY = "daily"


@dataclass(frozen=True, slots=True)
class Consent:
    method: str  #: web | sms_keyword | staff | import
    text: str  #: the words the resident agreed to
    source: str | None = None  #: where from, already masked


@dataclass(frozen=True, slots=True)
class Recipient:
    id: int
    channel: str
    address: str
    categories: tuple[str, ...]
    status: RecipientStatus
    frequency: Frequency
    created_at: datetime
    #: signs this subscription's unsubscribe and manage links (publisher.mail_links)
    link_nonce: str = field(default="", repr=False)
    #: links signed over the id alone (before 0010) are still good for this subscriber
    legacy_links: bool = field(default=False, repr=False)

    @property
    def masked(self) -> str:
        return mask(self.address)


class Recipients:
    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.box = AddressBox(store.config.data_key())
        self._regions: frozenset[str] | None = None

    def _norm(self, channel: str, address: str) -> tuple[str, str]:
        addr = normalize(channel, address)
        return addr, self.box.hash(channel, addr)

    def _check_region(self, channel: str, addr: str) -> None:
        """RegionNotAllowed for a number outside channels.sms.settings.allowed_regions:
        no subscription (web, API, keyword, import) is taken for it."""
        if channel != "sms":
            return
        if self._regions is None:
            from channels.sms import allowed_regions  # channels.sms needs the core first

            self._regions = allowed_regions(self.store.config)
        check_region(addr, self._regions)

    def _check_categories(self, categories: list[str]) -> None:
        for slug in categories:
            if self.store.config.category(slug) is None:
                raise ValidationFailed(f"categories: unknown category {slug!r}")

    async def subscribe(
        self,
        channel: str,
        address: str,
        consent: Consent,
        *,
        categories: list[str] | None = None,
        frequency: Frequency = Frequency.IMMEDIATE,
        status: RecipientStatus = RecipientStatus.ACTIVE,
        guard: Callable[[Any, str], Awaitable[None]] | None = None,
    ) -> Recipient:
        """Add or re-activate a subscriber, recording the consent in the same transaction.

        A suppressed address stays suppressed unless the new consent was given
        from the address itself (VERIFIED_METHODS): a staff import or a list can
        never bring back a resident who opted out or was erased. `guard(conn,
        address_hash)` runs first in that transaction; what it raises subscribes nobody.
        """
        cats = sorted(set(categories or []))
        self._check_categories(cats)
        addr, h = self._norm(channel, address)
        self._check_region(channel, addr)
        now = utcnow()
        async with self.store.write() as conn:
            if guard is not None:
                await guard(conn, h)
            row = await _find(conn, channel, h)
            suppressed = await conn.scalar(
                sa.select(t.suppressions.c.reason).where(
                    t.suppressions.c.channel == channel, t.suppressions.c.address_hash == h
                )
            )
            lift = status is RecipientStatus.ACTIVE and consent.method in VERIFIED_METHODS
            if suppressed is not None and not lift:
                status = RecipientStatus.SUPPRESSED
            values = {
                "categories": cats,
                "status": status.value,
                "frequency": frequency.value,
                "updated_at": now,
                # a new consent from the address starts its bounce count afresh
                "bounces": 0,
            }
            if row is None:
                rid = (
                    await conn.execute(
                        t.recipients.insert()
                        .values(
                            channel=channel,
                            address_hash=h,
                            address_enc=self.box.seal(addr),
                            created_at=now,
                            **values,
                        )
                        .returning(t.recipients.c.id)
                    )
                ).scalar_one()
            else:
                rid = row.id
                await conn.execute(
                    t.recipients.update().where(t.recipients.c.id == rid).values(**values)
                )
            if suppressed is not None and lift:
                await conn.execute(
                    t.suppressions.delete().where(
                        t.suppressions.c.channel == channel, t.suppressions.c.address_hash == h
                    )
                )
            await conn.execute(
                t.consents.insert().values(
                    recipient_id=rid,
                    given_at=now,
                    method=consent.method,
                    text=consent.text,
                    source=consent.source,
                )
            )
        return await self.get(channel, addr)

    async def get(self, channel: str, address: str) -> Recipient:
        addr, h = self._norm(channel, address)
        async with self.store.read() as conn:
            row = await _find(conn, channel, h)
        if row is None:
            raise NotFound(f"no {channel} subscriber {mask(addr)}")
        return self._recipient(row)

    def _recipient(self, row: Any) -> Recipient:
        return Recipient(
            id=row.id,
            channel=row.channel,
            address=self.box.open(row.address_enc),
            categories=tuple(row.categories),
            status=RecipientStatus(row.status),
            frequency=Frequency(row.frequency),
            created_at=row.created_at,
            link_nonce=row.link_nonce,
            legacy_links=bool(row.legacy_links),
        )

    async def unsubscribe(self, channel: str, address: str, how: str) -> None:
        """Leave everything on `channel`: consent ends, and the address is suppressed."""
        _, h = self._norm(channel, address)
        now = utcnow()
        async with self.store.write() as conn:
            rid = await _find_id(conn, channel, h)
            if rid is not None:
                await conn.execute(
                    t.recipients.update()
                    .where(t.recipients.c.id == rid)
                    .values(status=RecipientStatus.UNSUBSCRIBED.value, updated_at=now)
                )
                await conn.execute(
                    t.consents.update()
                    .where(t.consents.c.recipient_id == rid, t.consents.c.ended_at.is_(None))
                    .values(ended_at=now, ended_how=how)
                )
            # a code or confirmation link asked for before leaving cannot bring them back
            await conn.execute(
                t.verifications.delete().where(
                    t.verifications.c.channel == channel, t.verifications.c.address_hash == h
                )
            )
            await self._suppress(conn, channel, h, "opted_out", now)
            await raise_confirm_floor(conn, channel, h, now)

    async def suppress(self, channel: str, address: str, reason: str) -> None:
        _, h = self._norm(channel, address)
        now = utcnow()
        async with self.store.write() as conn:
            await conn.execute(
                t.recipients.update()
                .where(_by_address(channel, h))
                .values(status=RecipientStatus.SUPPRESSED.value, updated_at=now)
            )
            await self._suppress(conn, channel, h, reason, now)
            await raise_confirm_floor(conn, channel, h, now)

    async def _suppress(self, conn: Any, channel: str, h: str, reason: str, now: datetime) -> None:
        exists = await conn.scalar(
            sa.select(t.suppressions.c.reason).where(
                t.suppressions.c.channel == channel, t.suppressions.c.address_hash == h
            )
        )
        if exists is None:
            await conn.execute(
                t.suppressions.insert().values(
                    channel=channel, address_hash=h, reason=reason, created_at=now
                )
            )

    async def record_bounce(self, channel: str, target: str, limit: int) -> bool:
        """A hard bounce of a delivery to ledger target `target` ("r:<id>", or "m:<id>" for a
        transactional message to a subscriber's address): count it, and at `limit` bounces
        suppress the address (reason "bounced"), so later deliveries skip it. Returns
        whether the address is suppressed now."""
        r = t.recipients
        kind, _, ident = target.partition(":")
        if kind not in ("r", "m") or not ident.isdigit():
            return False
        now = utcnow()
        async with self.store.write() as conn:
            if kind == "r":
                where = r.c.id == int(ident)
            else:
                h = await conn.scalar(
                    sa.select(t.messages.c.address_hash).where(t.messages.c.id == int(ident))
                )
                if h is None:
                    return False
                where = _by_address(channel, h)
            row = (
                await conn.execute(
                    r.update()
                    .where(where, r.c.channel == channel)
                    .values(bounces=r.c.bounces + 1, updated_at=now)
                    .returning(r.c.id, r.c.address_hash, r.c.bounces)
                )
            ).first()
            if row is None or row.bounces < limit:
                return False
            await conn.execute(
                r.update().where(r.c.id == row.id).values(status=RecipientStatus.SUPPRESSED.value)
            )
            await self._suppress(conn, channel, row.address_hash, "bounced", now)
        return True

    async def is_suppressed(self, channel: str, address: str) -> bool:
        _, h = self._norm(channel, address)
        async with self.store.read() as conn:
            found = await conn.scalar(
                sa.select(t.suppressions.c.reason).where(
                    t.suppressions.c.channel == channel, t.suppressions.c.address_hash == h
                )
            )
        return found is not None

    async def export(self, address: str) -> dict[str, Any]:
        """Everything held about an address on any channel (PIPL access request)."""
        out: dict[str, Any] = {"subscriptions": []}
        for channel in ("sms", "email"):
            try:
                addr, h = self._norm(channel, address)
            except ValidationFailed:
                continue
            async with self.store.read() as conn:
                row = await _find(conn, channel, h)
                if row is None:
                    continue
                consents = (
                    await conn.execute(
                        sa.select(t.consents)
                        .where(t.consents.c.recipient_id == row.id)
                        .order_by(t.consents.c.id)
                    )
                ).all()
                deliveries = (
                    await conn.execute(
                        sa.select(t.deliveries)
                        .where(t.deliveries.c.target == f"r:{row.id}")
                        .order_by(t.deliveries.c.id)
                    )
                ).all()
            out["subscriptions"].append(
                {
                    "channel": channel,
                    "address": addr,
                    "categories": row.categories,
                    "status": row.status,
                    "frequency": row.frequency,
                    "created_at": row.created_at.isoformat(),
                    "consents": [
                        {
                            "given_at": c.given_at.isoformat(),
                            "method": c.method,
                            "text": c.text,
                            "source": c.source,
                            "ended_at": c.ended_at.isoformat() if c.ended_at else None,
                            "ended_how": c.ended_how,
                        }
                        for c in consents
                    ],
                    "deliveries": [
                        {
                            "subject": d.subject,
                            "item_id": d.item_id,
                            "state": d.state,
                            "sent_at": d.sent_at.isoformat() if d.sent_at else None,
                        }
                        for d in deliveries
                    ],
                }
            )
        return out

    async def erase(self, address: str) -> int:
        """Delete a resident's data on every channel, keeping only the keyed-hash suppression.

        Ledger rows stay (they hold a recipient id, not the address) so delivery
        counts remain right. Returns how many subscriptions were erased.
        """
        erased = 0
        now = utcnow()
        for channel in ("sms", "email"):
            try:
                _, h = self._norm(channel, address)
            except ValidationFailed:
                continue
            async with self.store.write() as conn:
                # transactional messages (codes) and a pending code go with the resident
                for table in (t.messages, t.verifications):
                    await conn.execute(
                        table.delete().where(table.c.channel == channel, table.c.address_hash == h)
                    )
                # and no confirmation link sent before now can bring the address back
                await raise_confirm_floor(conn, channel, h, now)
                rid = await _find_id(conn, channel, h)
                if rid is None:
                    continue
                await conn.execute(t.consents.delete().where(t.consents.c.recipient_id == rid))
                await conn.execute(t.recipients.delete().where(t.recipients.c.id == rid))
                await self._suppress(conn, channel, h, "erased", now)
                erased += 1
        if erased and self.store.is_sqlite:
            # move the overwritten pages out of the write-ahead log too
            async with self.store.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return erased


async def import_subscribers(
    recipients: Recipients,
    channel: str,
    addresses: list[str],
    consent: Consent,
    *,
    categories: list[str] | None = None,
    chunk: int = 1000,
) -> int:
    """Add many active subscribers at once (a list with documented consent, a benchmark).

    Existing and suppressed addresses are left alone: an import never brings back
    someone who opted out. Returns how many were added.
    """
    store = recipients.store
    cats = sorted(set(categories or []))
    recipients._check_categories(cats)
    added = 0
    for start in range(0, len(addresses), chunk):
        now = utcnow()
        part = {}
        for raw in addresses[start : start + chunk]:
            addr, h = recipients._norm(channel, raw)
            recipients._check_region(channel, addr)
            part[h] = addr
        async with store.write() as conn:
            # the existing are skipped by the unique key (ON CONFLICT), not by asking for
            # them first: PostgreSQL's generic plan for a 1,000-value IN list walks the
            # whole table, which made a large import quadratic
            suppressed = set(
                (
                    await conn.scalars(
                        sa.select(t.suppressions.c.address_hash).where(
                            t.suppressions.c.channel == channel,
                            t.suppressions.c.address_hash.in_(list(part)),
                        )
                    )
                ).all()
            )
            rows = [
                {
                    "channel": channel,
                    "address_hash": h,
                    "address_enc": recipients.box.seal(addr),
                    "categories": cats,
                    "status": RecipientStatus.ACTIVE.value,
                    "frequency": Frequency.IMMEDIATE.value,
                    "created_at": now,
                    "updated_at": now,
                }
                for h, addr in part.items()
                if h not in suppressed
            ]
            if not rows:
                continue
            ids = (
                (
                    await conn.execute(
                        insert_for(conn)(t.recipients)
                        .on_conflict_do_nothing(index_elements=["channel", "address_hash"])
                        .returning(t.recipients.c.id),
                        rows,
                    )
                )
                .scalars()
                .all()
            )
            if not ids:
                continue
            await conn.execute(
                t.consents.insert(),
                [
                    {
                        "recipient_id": rid,
                        "given_at": now,
                        "method": consent.method,
                        "text": consent.text,
                        "source": consent.source,
                    }
                    for rid in ids
                ],
            )
            added += len(ids)
    return added


async def raise_confirm_floor(conn: Any, channel: str, address_hash: str, now: datetime) -> None:
    """Refuse, from now on, every confirmation link issued for the address until `now`."""
    values = {"not_before": now}
    await conn.execute(
        insert_for(conn)(t.confirm_floors)
        .values(channel=channel, address_hash=address_hash, **values)
        .on_conflict_do_update(index_elements=["channel", "address_hash"], set_=values)
    )


async def keep_recipient_ids_unused(conn: Any) -> None:
    """Move the subscriber id sequence past every id ever used, erased ones included (the
    ledger still names them, "r:<id>"), so none is given again: after a restore, which
    writes the rows with their ids (and would leave the sequence at the highest row)."""
    highest = await conn.scalar(
        sa.text(
            "SELECT MAX(n) FROM ("
            " SELECT MAX(id) AS n FROM recipients"
            " UNION ALL SELECT MAX(recipient_id) FROM consents"
            " UNION ALL SELECT MAX(CAST(SUBSTR(target, 3) AS INTEGER)) FROM deliveries"
            "  WHERE target LIKE 'r:%'"
            ") AS used"
        )
    )
    if not highest:
        return
    if conn.dialect.name == "sqlite":
        seq = await conn.scalar(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'recipients'")
        )
        if seq is None:
            await conn.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('recipients', :n)"),
                {"n": int(highest)},
            )
        elif seq < highest:
            await conn.execute(
                sa.text("UPDATE sqlite_sequence SET seq = :n WHERE name = 'recipients'"),
                {"n": int(highest)},
            )
        return
    name = await conn.scalar(sa.text("SELECT pg_get_serial_sequence('recipients', 'id')"))
    last = await conn.scalar(sa.text(f"SELECT last_value FROM {name}"))
    if last is None or last <= highest:
        await conn.execute(sa.text("SELECT setval(:seq, :n)"), {"seq": name, "n": int(highest)})


def _by_address(channel: str, address_hash: str) -> sa.ColumnElement[bool]:
    return sa.and_(t.recipients.c.channel == channel, t.recipients.c.address_hash == address_hash)


async def _find(conn: Any, channel: str, address_hash: str) -> Any:
    """The subscriber row for a channel and keyed hash, or None."""
    return (
        await conn.execute(sa.select(t.recipients).where(_by_address(channel, address_hash)))
    ).first()


async def _find_id(conn: Any, channel: str, address_hash: str) -> int | None:
    rid = await conn.scalar(sa.select(t.recipients.c.id).where(_by_address(channel, address_hash)))
    return int(rid) if rid is not None else None
