"""Delivery visibility for staff, and /metrics."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from publisher.addresses import AddressBox, mask
from publisher.config import Config
from publisher.errors import ConfigError, Unauthorized, ValidationFailed
from publisher.ledger import DeliveryState, Ledger, item_rows
from publisher.metrics import METRICS
from publisher.packs import flags as board_flags
from publisher.readiness import item_readiness
from publisher.store import schema as t
from publisher.tokens import same_token
from publisher.web.api import _enum_param, _int_param, iso, json_response
from publisher.web.keys import CONFIG, STORE, WORKER

routes = web.RouteTableDef()


async def target_labels(
    conn: AsyncConnection, config: Config, targets: Iterable[str], *, erased: str = "(erased)"
) -> dict[str, str]:
    """What staff see for each ledger target: a resident's address masked (138****1234),
    an endpoint's name; `erased` where the resident is gone or the key cannot read it."""
    targets = list(targets)
    rids = [int(x[2:]) for x in targets if x.startswith("r:")]
    eids = [int(x[2:]) for x in targets if x.startswith("e:")]
    r, e = t.recipients, t.endpoints
    sealed = (
        dict((await conn.execute(sa.select(r.c.id, r.c.address_enc).where(r.c.id.in_(rids)))).all())
        if rids
        else {}
    )
    names = (
        dict((await conn.execute(sa.select(e.c.id, e.c.name).where(e.c.id.in_(eids)))).all())
        if eids
        else {}
    )
    box = None
    if sealed:
        try:
            box = AddressBox(config.data_key())
        except ConfigError:  # no key here: show that an address exists, not what it is
            box = None
    labels = {}
    for target in targets:
        kind, _, ident = target.partition(":")
        if kind == "r":
            enc = sealed.get(int(ident))
            labels[target] = mask(box.open(enc)) if (box and enc) else erased
        elif kind == "e":
            labels[target] = str(names.get(int(ident), target))
        else:
            labels[target] = target
    return labels


@routes.get("/api/v1/items/{item_id}/deliveries")
async def item_deliveries(request: web.Request) -> web.Response:
    """Counts per channel × state, and a page of rows with addresses masked."""
    store = request.app[STORE]
    config = request.app[CONFIG]
    item_id = request.match_info["item_id"]
    item = await store.get_item(item_id)
    state = _enum_param(request, "state", DeliveryState)
    channel = request.query.get("channel")
    if channel is not None and channel not in ("portal", "rss", "sms", "email", "board"):
        raise ValidationFailed(f"channel: unknown channel {channel!r}")
    page = _int_param(request, "page", 1, 1, 1_000_000)
    per_page = _int_param(request, "per_page", 50, 1, 500)
    d = t.deliveries
    cond = [item_rows(item_id)]  # the item's own rows and the digests that list it
    if state is not None:
        cond.append(d.c.state == state.value)
    if channel is not None:
        cond.append(d.c.channel == channel)
    async with store.read() as conn:
        total = await conn.scalar(sa.select(sa.func.count()).select_from(d).where(*cond))
        rows = (
            await conn.execute(
                sa.select(d, t.item_events.c.kind)
                .outerjoin(
                    t.item_events,
                    d.c.subject == sa.literal("event:") + sa.cast(t.item_events.c.id, sa.String),
                )
                .where(*cond)
                .order_by(d.c.id)
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        ).all()
        labels = await target_labels(conn, config, [r.target for r in rows])
    # notice boards: packs not confirmed in time (overdue), items taken down too soon
    flagged = await board_flags(store, list(rows))

    return json_response(
        {
            "item_id": item_id,
            "counts": await Ledger(store).counts(item_id),
            # whether each of the item's channels can deliver at all: rows of a channel
            # that is not_configured stay queued until it is
            "channels": {
                name: found.as_json() for name, found in (await item_readiness(store, item)).items()
            },
            "deliveries": [
                {
                    "id": r.id,
                    "subject": r.subject,
                    "event": r.kind or r.subject.partition(":")[0],
                    "channel": r.channel,
                    "target": labels[r.target],
                    "state": r.state,
                    "attempts": r.attempts,
                    "reason": r.reason,
                    "last_error": r.last_error,
                    "provider_id": r.provider_id,
                    "units": r.units,
                    "due_at": iso(r.due_at, config),
                    "sent_at": iso(r.sent_at, config),
                    "delivered_at": iso(r.delivered_at, config),
                    "updated_at": iso(r.updated_at, config),
                    "flags": flagged.get(r.id, []),
                }
                for r in rows
            ],
            "page": page,
            "per_page": per_page,
            "total": int(total or 0),
        }
    )


@routes.post("/api/v1/items/{item_id}/deliveries/retry")
async def retry_deliveries(request: web.Request) -> web.Response:
    """Requeue the item's failed and unknown rows, except those that would publish an
    item since withdrawn or expired (counted in `left`, with the reason)."""
    store = request.app[STORE]
    item_id = request.match_info["item_id"]
    await store.get_item(item_id)
    done = await Ledger(store).retry(item_id)
    worker = request.app.get(WORKER)
    if worker is not None:
        worker.wake()
    return json_response(
        {
            "item_id": item_id,
            "requeued": done.requeued,
            "left": done.left,
            "left_reason": done.left_reason,
        }
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; to loopback clients, or with metrics.token as a bearer token."""
    cfg = request.app[CONFIG].metrics
    header = request.headers.get("Authorization", "")
    token_ok = bool(cfg.token) and same_token(header, f"Bearer {cfg.token}")
    loopback = False
    if cfg.allow_loopback and request.remote:
        try:
            loopback = ipaddress.ip_address(request.remote).is_loopback
        except ValueError:
            loopback = False
    if not (token_ok or loopback):
        raise Unauthorized("metrics are served to loopback clients or with the metrics token")
    body = await METRICS.render(request.app[STORE])
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
