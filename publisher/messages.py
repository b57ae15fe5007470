"""Transactional messages: one text to one address (a verification code), through the
same adapter and ledger as everything else.

The ledger row is subject "msg:<id>", target "m:<id>", urgent-first priority and
never held by quiet hours (the resident is waiting for it). The address and the
text are kept encrypted, like a subscriber's address.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from publisher.addresses import AddressBox
from publisher.ledger import PRIORITY_TRANSACTIONAL, DeliveryState
from publisher.store import schema as t
from publisher.store.sql import SqlStore, utcnow


async def queue_message(
    store: SqlStore, channel: str, address: str, text: str, *, purpose: str
) -> int:
    """Queue `text` to the (normalised) `address` on `channel`; returns the ledger row id."""
    box = AddressBox(store.config.data_key())
    async with store.write() as conn:
        return await insert_message(conn, box, channel, address, text, purpose=purpose)


async def insert_message(
    conn: AsyncConnection, box: AddressBox, channel: str, address: str, text: str, *, purpose: str
) -> int:
    """queue_message in the caller's transaction (with what else it writes, e.g. a board
    pack's "operator told" stamp, so a message is queued exactly once)."""
    now = utcnow()
    message_id = (
        await conn.execute(
            t.messages.insert()
            .values(
                channel=channel,
                purpose=purpose,
                address_hash=box.hash(channel, address),
                address_enc=box.seal(address),
                body_enc=box.seal(text),
                created_at=now,
            )
            .returning(t.messages.c.id)
        )
    ).scalar_one()
    delivery_id = (
        await conn.execute(
            t.deliveries.insert()
            .values(
                subject=f"msg:{message_id}",
                channel=channel,
                target=f"m:{message_id}",
                item_id=None,
                state=DeliveryState.QUEUED.value,
                priority=PRIORITY_TRANSACTIONAL,
                bypass_quiet=True,
                attempts=0,
                due_at=now,
                created_at=now,
                updated_at=now,
            )
            .returning(t.deliveries.c.id)
        )
    ).scalar_one()
    await conn.execute(
        t.delivery_events.insert().values(
            delivery_id=delivery_id,
            at=now,
            from_state=None,
            to_state=DeliveryState.QUEUED.value,
            detail=purpose,
        )
    )
    return int(delivery_id)
