"""Whether each channel can deliver, as the core knows it — never claimed, reported.

- `active`: the channel has what it sends through and someone (or somewhere) to send to.
- `not_configured`: it has nothing to send through (no SMS gateway, no SMTP server, no
  portal endpoint; disabled, or no adapter). Its deliveries stay `queued`.
- `no_targets`: it could send, but nobody takes it (no subscriber, no board) — for an
  item: nobody who takes the item's category.

`dry_run` says the channel writes what it would send to files (channels.outbox).
The adapters answer for their own settings (ChannelAdapter.unconfigured / dry_run);
the targets are counted here, as the fan-out would find them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from channels import load_adapter_class
from publisher.config import Config
from publisher.errors import ChannelUnavailable
from publisher.fanout import SUBSCRIBER_CHANNELS, _takes
from publisher.models import Channel, Item
from publisher.store import schema as t
from publisher.store.sql import SqlStore

CHANNELS = tuple(c.value for c in Channel)


class ChannelState(StrEnum):
    ACTIVE = "active"
    NOT_CONFIGURED = "not_configured"
    NO_TARGETS = "no_targets"


@dataclass(frozen=True, slots=True)
class Readiness:
    channel: str
    state: ChannelState
    #: why it cannot deliver (English, for staff and logs); "" when active
    reason: str = ""
    dry_run: bool = False
    #: endpoints or boards it would reach; None when not counted (subscribers)
    targets: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason or None,
            "dry_run": self.dry_run,
            "targets": self.targets,
        }


def configured(config: Config, channel: str) -> Readiness:
    """What the settings alone say: ACTIVE (so far) or NOT_CONFIGURED, with the reason."""
    cfg = config.channels.get(channel)
    if not cfg.enabled:
        return Readiness(channel, ChannelState.NOT_CONFIGURED, f"channels.{channel} is disabled")
    try:
        cls = load_adapter_class(channel, cfg.adapter)
        settings = cls.Settings.model_validate(cfg.settings)
    except LookupError as exc:
        return Readiness(channel, ChannelState.NOT_CONFIGURED, str(exc))
    except ValueError as exc:  # pydantic's ValidationError is one
        return Readiness(
            channel,
            ChannelState.NOT_CONFIGURED,
            f"channels.{channel}.settings: invalid ({str(exc).splitlines()[0]:.200})",
        )
    why = cls.unconfigured(settings)
    if why is not None:
        return Readiness(channel, ChannelState.NOT_CONFIGURED, why)
    return Readiness(channel, ChannelState.ACTIVE, dry_run=cls.dry_run(settings))


def can_send(config: Config, channel: str) -> bool:
    """Whether a message on `channel` (a code, a confirmation link) would go anywhere."""
    return configured(config, channel).state is ChannelState.ACTIVE


def require_channel(config: Config, channel: str) -> None:
    """ChannelUnavailable (503) unless a message on `channel` would go out."""
    found = configured(config, channel)
    if found.state is not ChannelState.ACTIVE:
        raise ChannelUnavailable(channel, found.reason)


#: subscriber rows read per query while looking for one who takes a category
PAGE = 1000


async def _count_targets(store: SqlStore, channel: str, category: str | None) -> int | None:
    """Endpoints (portal, boards) that take `category`, counted. For subscriber channels:
    None when someone takes it (looked for page by page, stopping at the first: the staff
    page polls this, and a channel may have a hundred thousand subscribers), else 0."""
    if channel not in SUBSCRIBER_CHANNELS:
        e = t.endpoints
        query = sa.select(e.c.categories).where(e.c.channel == channel, e.c.enabled.is_(True))
        async with store.read() as conn:
            rows = (await conn.execute(query)).all()
        return sum(1 for (cats,) in rows if category is None or _takes(cats or [], category))
    r, s = t.recipients, t.suppressions
    last = 0
    while True:
        query = (
            sa.select(r.c.id, r.c.categories)
            .select_from(
                r.outerjoin(
                    s, sa.and_(s.c.channel == r.c.channel, s.c.address_hash == r.c.address_hash)
                )
            )
            .where(
                r.c.channel == channel,
                r.c.status == "active",
                s.c.address_hash.is_(None),
                r.c.id > last,
            )
            .order_by(r.c.id)
            .limit(1 if category is None else PAGE)
        )
        async with store.read() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return 0
        if category is None or any(_takes(cats or [], category) for _, cats in rows):
            return None
        last = int(rows[-1][0])


async def readiness(
    store: SqlStore, channels: Iterable[str] = CHANNELS, *, category: str | None = None
) -> dict[str, Readiness]:
    """Per channel: its state; with `category`, targets are those that take it."""
    config: Config = store.config
    out: dict[str, Readiness] = {}
    for channel in channels:
        found = configured(config, channel)
        if found.state is ChannelState.ACTIVE and channel != "rss":  # feeds are files: always
            n = await _count_targets(store, channel, category)
            if n == 0:
                if channel == "portal" and not await _count_targets(store, channel, None):
                    # its targets are configuration: none at all is a channel not configured
                    found = Readiness(
                        channel,
                        ChannelState.NOT_CONFIGURED,
                        "no portal endpoint configured (channels.portal.endpoints)",
                        targets=0,
                    )
                else:
                    who = {"board": "no notice board", "portal": "no portal endpoint"}.get(
                        channel, "no subscriber"
                    )
                    scope = f" takes category {category}" if category else ""
                    found = Readiness(
                        channel,
                        ChannelState.NO_TARGETS,
                        f"{who}{scope or ' yet'}",
                        dry_run=found.dry_run,
                        targets=0,
                    )
            else:
                found = Readiness(channel, found.state, dry_run=found.dry_run, targets=n)
        out[channel] = found
    return out


async def item_readiness(store: SqlStore, item: Item) -> dict[str, Readiness]:
    """The states of the channels an item goes out on (its live or pending revision)."""
    content = (item.pending or item.revision).content
    return await readiness(
        store, [c.value for c in Channel if c in content.channels], category=content.category
    )
