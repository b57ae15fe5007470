"""What several staff pages share: labels, item rows, the review queue."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from publisher.models import Channel, Disclosure, Item, ItemStatus, RelationKind, RevisionState
from publisher.readiness import ChannelState, Readiness
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from publisher.web.keys import CONFIG
from publisher.web.ui.render import gettext_for


def N_(message: str) -> str:
    """Marks a string for extraction; it is translated where it is shown."""
    return message


#: labels of the fields a ForbiddenCharacters error outside the item form may name
FIELD_NAMES: Mapping[str, str] = {"reason": N_("Reason"), "user name": N_("User name")}


def forbidden_characters(request: web.Request, characters: str, field: str | None = None) -> str:
    """What a page says about a text holding characters it may not (publisher.textclean):
    after the field's label on a form, or naming the field (`field`) on its own."""
    _ = gettext_for(request).gettext
    if field is None:
        return _(
            "contains a control or invisible character that cannot be saved (%(chars)s); "
            "remove it and try again"
        ) % {"chars": characters}
    return _(
        "%(field)s contains a control or invisible character that cannot be saved "
        "(%(chars)s); remove it and try again"
    ) % {"field": _(FIELD_NAMES[field]) if field in FIELD_NAMES else field, "chars": characters}


STATUS_LABELS: Mapping[ItemStatus, str] = {
    ItemStatus.DRAFT: N_("Draft"),
    ItemStatus.IN_REVIEW: N_("In review"),
    ItemStatus.REJECTED: N_("Rejected"),
    ItemStatus.APPROVED: N_("Approved"),
    ItemStatus.SCHEDULED: N_("Scheduled"),
    ItemStatus.PUBLISHED: N_("Published"),
    ItemStatus.EXPIRED: N_("Expired"),
    ItemStatus.WITHDRAWN: N_("Withdrawn"),
}
CHANNEL_LABELS: Mapping[Channel, str] = {
    Channel.PORTAL: N_("City portal"),
    Channel.RSS: N_("RSS / Atom feeds"),
    Channel.SMS: N_("SMS"),
    Channel.EMAIL: N_("Email"),
    Channel.BOARD: N_("Notice boards"),
}
DISCLOSURE_LABELS: Mapping[Disclosure, str] = {
    Disclosure.PROACTIVE: N_("Proactive disclosure"),
    Disclosure.ON_REQUEST: N_("Disclosure on request"),
    Disclosure.WITHHELD: N_("Not disclosed"),
}
RELATION_LABELS: Mapping[RelationKind, str] = {
    RelationKind.INTERPRETS: N_("Interprets"),
    RelationKind.AMENDS: N_("Amends"),
    RelationKind.REPEALS: N_("Repeals"),
    RelationKind.SEE_ALSO: N_("See also"),
}
STATE_LABELS: Mapping[str, str] = {
    "queued": N_("Queued"),
    "sending": N_("Sending"),
    "sent": N_("Sent"),
    "delivered": N_("Delivered"),
    "retrying": N_("Retrying"),
    "failed": N_("Failed"),
    "deferred": N_("Deferred"),
    "skipped": N_("Skipped"),
    "unknown": N_("Unknown"),
}
ROLE_LABELS: Mapping[str, str] = {
    "editor": N_("Editor"),
    "reviewer": N_("Reviewer"),
    "admin": N_("Administrator"),
}


def tr(request: web.Request, message: str) -> str:
    return gettext_for(request).gettext(message)


def status_label(request: web.Request, status: ItemStatus) -> str:
    return tr(request, STATUS_LABELS[status])


def channel_label(request: web.Request, channel: Channel | str) -> str:
    try:
        return tr(request, CHANNEL_LABELS[Channel(channel)])
    except ValueError:
        return str(channel)


#: what staff read for a channel that cannot deliver, by (channel, state); "*": any channel
READINESS_NOTES: Mapping[tuple[str, str], str] = {
    ("sms", "not_configured"): N_("Waiting for configuration: no SMS gateway"),
    ("email", "not_configured"): N_("Waiting for configuration: no SMTP server"),
    ("portal", "not_configured"): N_("Waiting for configuration: no portal endpoint"),
    ("*", "not_configured"): N_("Waiting for configuration"),
    ("board", "no_targets"): N_("No notice board carries this category"),
    ("*", "no_targets"): N_("No subscriber takes this category"),
}


def readiness_msgid(found: Readiness) -> str | None:
    """The (untranslated) words for a channel's state; None when it delivers for real."""
    if found.state is ChannelState.ACTIVE:
        return N_("Dry run: written to files, not sent") if found.dry_run else None
    return READINESS_NOTES.get((found.channel, found.state.value)) or READINESS_NOTES.get(
        ("*", found.state.value)
    )


def readiness_note(request: web.Request, found: Readiness) -> str:
    """A channel's state in words ("" when it delivers for real; 试运行 for a dry run)."""
    msgid = readiness_msgid(found)
    return tr(request, msgid) if msgid else ""


def state_label(request: web.Request, state: str) -> str:
    label = STATE_LABELS.get(state)
    return tr(request, label) if label else state


#: delivery reasons staff should read in words (the others show as their code)
REASON_LABELS: Mapping[str, str] = {
    "entry_left_out": N_(
        "Left out of the feeds: the text holds a character that cannot be published; "
        "edit the item to remove it"
    ),
}


def reason_label(request: web.Request, reason: str | None) -> str:
    label = REASON_LABELS.get(reason or "")
    return tr(request, label) if label else reason or ""


def local_time(request: web.Request, value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(request.app[CONFIG].site.tz).strftime("%Y-%m-%d %H:%M")


def local_input(request: web.Request, value: datetime | None, *, date_only: bool = False) -> str:
    """A datetime as an <input type=date|datetime-local> value, in site time."""
    if value is None:
        return ""
    local = value.astimezone(request.app[CONFIG].site.tz)
    return local.date().isoformat() if date_only else local.strftime("%Y-%m-%dT%H:%M")


def under_review(item: Item) -> bool:
    return item.status is ItemStatus.IN_REVIEW or item.pending_state is RevisionState.IN_REVIEW


def item_row(request: web.Request, item: Item) -> dict[str, Any]:
    config = request.app[CONFIG]
    category = config.category(item.content.category)
    return {
        "id": item.id,
        "title": item.content.title,
        "status": item.status.value,
        "status_label": status_label(request, item.status),
        "correction": item.pending_state is not None,
        "index_no": item.index_no or "",
        "category": category.name if category else item.content.category,
        "updated": local_time(request, item.updated_at),
        "author": (item.pending or item.revision).author,
    }


async def review_queue(store: SqlStore) -> list[Item]:
    """Items whose text waits for the confidentiality review: new items and corrections."""
    async with store.read() as conn:
        ids = (
            await conn.execute(
                sa.select(t.items.c.id)
                .where(
                    sa.or_(
                        t.items.c.status == ItemStatus.IN_REVIEW.value,
                        t.items.c.pending_state == RevisionState.IN_REVIEW.value,
                    )
                )
                .order_by(t.items.c.updated_at)
                .limit(200)
            )
        ).scalars()
        wanted = list(ids)
    return [await store.get_item(i) for i in wanted]
