"""Per-channel previews of an item as it is being written.

Each preview is the channel adapter's own pure `render(subject, target)`, looked up
through the channel registry (channels.load_adapter_class), so a channel shows here
as soon as its adapter exists, exactly as it will send. A channel without an adapter
says so instead.

Staff see each one as its reader will: the portal's card with the rendered body, the
entry as a feed reader shows it, the email's HTML part as a mail client shows it (with
its sender and subject), the SMS bubble, the poster. The payload itself (JSON, the Atom
entry, the MIME message, the poster's HTML) is one click away, in a <details>.
"""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import nh3
import sqlalchemy as sa
from lxml import etree
from markupsafe import Markup

from channels import load_adapter_class
from channels.base import AdapterContext, Subject, Target
from publisher.config import Config
from publisher.models import Channel, Content, Item
from publisher.readiness import readiness
from publisher.store import schema as t
from publisher.store.sql import SqlStore, utcnow
from publisher.subjects import attachment_links, content_subject
from publisher.web.ui import views

#: a sample target per channel: previews never name a real resident or endpoint
SAMPLE_TARGETS: dict[str, Target] = {
    "portal": Target("e:0", "portal", "https://portal.example.invalid/push", "preview"),
    "rss": Target("e:0", "rss", "all"),
    "sms": Target("r:0", "sms", "+8613800000000"),
    "email": Target("r:0", "email", "resident@example.invalid"),
    "board": Target("e:0", "board", "board-preview", "preview"),
}
#: ids of items not saved yet: a fixed placeholder, so links have their real length
PLACEHOLDER_ID = str(uuid.UUID(int=0))


@dataclass(frozen=True, slots=True)
class ChannelPreview:
    channel: str
    #: none: no adapter for this channel yet (or it failed to render: see `error`)
    text: str | None = None
    #: "sms" | "json" | "xml" | "html" | "text"
    kind: str = "text"
    units: int | None = None
    chars: int | None = None
    subscribers: int | None = None
    error: str | None = None
    missing: bool = False
    disabled: bool = False
    #: the payload as it goes out (pretty JSON, the Atom entry, the MIME message, HTML)
    raw: str | None = None
    #: what the reader sees: title, lines of meta data, the body as HTML (sanitized)
    view: dict[str, Any] | None = None
    #: whether the channel can deliver (publisher.readiness): active, not_configured,
    #: no_targets; `note` says it in words (an untranslated msgid, None when active)
    state: str = "active"
    note: str | None = None


def subject_for(
    config: Config, content: Content, item: Item | None, *, now: datetime | None = None
) -> Subject:
    item_id = item.id if item is not None else PLACEHOLDER_ID
    revision = item.revision.number if item else 1
    return content_subject(
        config,
        content,
        key="preview",
        kind="published",
        item_id=item_id,
        revision=revision,
        index_no=item.index_no if item is not None else None,
        published_at=(item.published_at if item and item.published_at else now or utcnow()),
        event_at=now or utcnow(),
        attachments=(attachment_links(config, item.id, item.attachments, revision) if item else ()),
    )


async def sms_subscribers(store: SqlStore, category: str) -> int:
    """Active SMS subscribers who would get an item of `category` (for the cost estimate)."""
    r = t.recipients
    async with store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(r.c.categories).where(r.c.channel == "sms", r.c.status == "active")
            )
        ).scalars()
        return sum(1 for cats in rows if not cats or category in cats)


def _kind(content_type: str, channel: str) -> str:
    if channel == "sms":
        return "sms"
    if "json" in content_type:
        return "json"
    if "xml" in content_type:
        return "xml"
    if "html" in content_type:
        return "html"
    return "text"


async def previews(
    config: Config, store: SqlStore, content: Content, item: Item | None
) -> list[ChannelPreview]:
    subject = subject_for(config, content, item)
    out: list[ChannelPreview] = []
    ready = await readiness(
        store, [c.value for c in Channel if c in content.channels], category=content.category
    )
    for channel in Channel:
        if channel not in content.channels:
            continue
        name = channel.value
        found = ready[name]
        st, note = found.state.value, views.readiness_msgid(found)
        cfg = config.channels.get(name)
        if not cfg.enabled:
            out.append(ChannelPreview(name, disabled=True, state=st, note=note))
            continue
        try:
            cls = load_adapter_class(name, cfg.adapter)
        except LookupError:
            out.append(ChannelPreview(name, missing=True, state=st, note=note))
            continue
        try:
            adapter = cls(
                cls.Settings.model_validate(cfg.settings),
                config.site,
                AdapterContext(config, store),
            )
            rendered = adapter.render(subject, SAMPLE_TARGETS[name])
        except Exception as exc:  # a preview must never break the form
            out.append(
                ChannelPreview(name, error=str(exc) or type(exc).__name__, state=st, note=note)
            )
            continue
        kind = _kind(rendered.content_type, name)
        text = (
            rendered.preview
            if rendered.preview is not None
            else rendered.body.decode("utf-8", "replace")
        )
        if kind == "json" and rendered.body:
            text = _pretty_json(rendered.body)
        raw, view = text, None
        if name == "portal" and rendered.body:
            view = portal_view(rendered.body)
        elif name == "rss":
            view = feed_view(text)
        elif name == "email" and rendered.body:
            view = mail_view(rendered.body)
            raw = view["raw"] if view else rendered.body.decode("utf-8", "replace")
            if view is not None:
                text = str(view["html"])
                kind = "html"
        out.append(
            ChannelPreview(
                name,
                text=text,
                raw=raw,
                view=view,
                kind=kind,
                units=rendered.units,
                chars=len(text) if kind == "sms" else None,
                subscribers=await sms_subscribers(store, content.category)
                if kind == "sms"
                else None,
                state=st,
                note=note,
            )
        )
    return out


def _pretty_json(body: bytes) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    return json.dumps(data, ensure_ascii=False, indent=2)


def _clean(html: str) -> Markup:
    """HTML from a payload, safe to put in a staff page (it came from our renderer; this
    keeps a page safe even if a payload ever carried more)."""
    return Markup(nh3.clean(html, link_rel="noopener noreferrer"))


def portal_view(body: bytes) -> dict[str, Any] | None:
    """The portal's card: the fields of the event it shows, the body rendered."""
    try:
        data = json.loads(body).get("data") or {}
    except (ValueError, AttributeError):
        return None
    category = data.get("category") or {}
    return {
        "title": str(data.get("title") or ""),
        "meta": [
            str(v)
            for v in (
                category.get("name"),
                data.get("agency"),
                data.get("doc_no"),
                data.get("index_no"),
                (data.get("published_at") or "")[:10],
            )
            if v
        ],
        "summary": str(data.get("summary") or ""),
        "html": _clean(str(data.get("body_html") or "")),
        "attachments": [str(a.get("filename", "")) for a in data.get("attachments") or []],
    }


ATOM = "{http://www.w3.org/2005/Atom}"


def feed_view(entry_xml: str) -> dict[str, Any] | None:
    """The Atom entry as a feed reader lists it: title, date, source, the content."""
    try:
        entry = etree.fromstring(entry_xml.encode())
    except etree.XMLSyntaxError:
        return None

    def text(tag: str) -> str:
        found = entry.find(ATOM + tag)
        return (found.text or "").strip() if found is not None else ""

    link = entry.find(ATOM + "link")
    content = entry.find(ATOM + "content")
    body = content.text or "" if content is not None else ""
    if content is not None and content.get("type") not in ("html", "xhtml"):
        body = str(Markup.escape(body))
    return {
        "title": text("title"),
        "meta": [v for v in (text("updated")[:16].replace("T", " "), text("name")) if v],
        "summary": text("summary"),
        "html": _clean(body),
        "link": link.get("href", "") if link is not None else "",
    }


def mail_view(message: bytes) -> dict[str, Any] | None:
    """The email as a mail client shows it: sender, subject and the HTML part."""
    msg = email.message_from_bytes(message, policy=email.policy.default)
    if not isinstance(msg, EmailMessage):
        return None
    part = msg.get_body(("html", "plain"))
    if part is None or not isinstance(part, EmailMessage):
        return None
    content = str(part.get_content())
    if part.get_content_type() != "text/html":
        content = f"<pre>{Markup.escape(content)}</pre>"
    return {
        "title": str(msg.get("Subject", "")),
        "from": str(msg.get("From", "")),
        "to": str(msg.get("To", "")),
        "html": content,
        "raw": _readable(msg),
    }


def _readable(msg: EmailMessage) -> str:
    """The message with its headers and parts decoded (base64 helps nobody reading it)."""
    lines = [f"{name}: {value}" for name, value in msg.items()]
    for part in msg.walk():
        if part.is_multipart() or not isinstance(part, EmailMessage):
            continue
        lines += ["", f"--- {part.get_content_type()} ---", str(part.get_content()).rstrip()]
    return "\n".join(lines)
