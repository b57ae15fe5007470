"""GET /api/v1/items/{id}/preview: what each channel of an item would send, before it does.

The adapters' own (pure) render is used, so the preview is the message. For SMS it
also says what it costs: billed segments per message × the active subscribers who
take the item's category = the estimated total.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from channels import load_adapter_class
from channels.base import AdapterContext, PermanentDeliveryError, Subject, Target
from channels.sms import SmsChannel
from publisher.config import Config
from publisher.errors import ConfigError
from publisher.fanout import _takes
from publisher.models import Item
from publisher.store.sql import SqlStore, utcnow
from publisher.subjects import attachment_links, content_subject
from publisher.web.api import json_response
from publisher.web.keys import CONFIG, STORE

routes = web.RouteTableDef()
log = logging.getLogger("publisher.web.preview")

#: a target that stands for any target of the channel (feeds: the feed of everything)
SAMPLE_TARGETS = {"portal": "https://portal.example.invalid/push", "rss": "all"}


def item_subject(config: Config, item: Item) -> Subject:
    """The subject a publication of the revision under review (or the live one) would be."""
    rev = item.pending or item.revision
    return content_subject(
        config,
        rev.content,
        key="preview",
        kind="published" if item.pending is None or item.published_at is None else "corrected",
        item_id=item.id,
        revision=rev.number,
        index_no=item.index_no,
        # a draft has no publication time yet: the preview shows it as published now
        # (never a missing time, which a feed would print as the epoch)
        published_at=item.published_at or utcnow(),
        event_at=item.updated_at,
        correction_note=rev.correction_note,
        attachments=attachment_links(config, item.id, item.attachments, rev.number),
    )


async def sms_audience(store: SqlStore, category: str) -> int:
    """Active SMS subscribers (not suppressed) who take `category` now."""
    page = (
        "SELECT r.categories FROM recipients r LEFT JOIN suppressions s "
        "ON s.channel = r.channel AND s.address_hash = r.address_hash "
        "WHERE r.channel = 'sms' AND r.status = 'active' AND r.frequency = 'immediate' "
        "AND s.address_hash IS NULL"
    )
    async with store.read() as conn:
        rows = (await conn.exec_driver_sql(page)).all()
    return sum(1 for (cats,) in rows if _takes(cats, category))


async def channel_preview(
    config: Config, store: SqlStore, name: str, subject: Subject
) -> dict[str, Any]:
    cfg = config.channels.get(name)
    if not cfg.enabled:
        return {"available": False, "detail": f"channel {name} is disabled"}
    try:
        cls = load_adapter_class(name, cfg.adapter)
        settings = cls.Settings.model_validate(cfg.settings)
    except LookupError as exc:
        return {"available": False, "detail": str(exc)}
    except ValueError as exc:  # pydantic's ValidationError is one
        return {"available": False, "detail": f"channels.{name}.settings: invalid ({exc!s:.200})"}
    adapter = cls(settings, config.site, AdapterContext(config, store))
    target = Target("preview", name, SAMPLE_TARGETS.get(name, ""), "preview")
    try:
        if isinstance(adapter, SmsChannel):
            text = adapter.compose_for(subject, adapter.primary)
            audience = await sms_audience(store, subject.category)
            return {
                "available": bool(adapter.sms.gateways),
                "text": text.text,
                "encoding": text.segments.encoding.value,
                "units": text.segments.units,
                "segments": text.segments.parts,
                "truncated": text.truncated,
                "subscribers": audience,
                "estimated_segments": text.segments.parts * audience,
            }
        rendered = adapter.render(subject, target)
    except (PermanentDeliveryError, ConfigError) as exc:
        return {"available": False, "detail": str(exc)}
    except Exception:  # one channel's failure never makes the whole preview a 500
        log.exception("preview of %s for %s failed", name, subject.key)
        return {"available": False, "detail": f"the {name} preview failed; it has been logged"}
    body: Any = rendered.preview
    if body is None and rendered.body:
        text_body = rendered.body.decode("utf-8", errors="replace")
        body = json.loads(text_body) if "json" in rendered.content_type else text_body
    return {"available": True, "content_type": rendered.content_type, "preview": body}


@routes.get("/api/v1/items/{item_id}/preview")
async def item_preview(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    store = request.app[STORE]
    item = await store.get_item(request.match_info["item_id"])
    subject = item_subject(config, item)
    channels = (item.pending or item.revision).content.channels
    return json_response(
        {
            "item_id": item.id,
            "revision": (item.pending or item.revision).number,
            "channels": {
                ch.value: await channel_preview(config, store, ch.value, subject) for ch in channels
            },
        }
    )
