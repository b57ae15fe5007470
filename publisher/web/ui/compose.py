"""Compose once: one form for an item, a preview per channel, save as draft, submit.

The form posts to itself with one of three buttons (preview, save, submit), so it
works without script; ui.js only refreshes the preview as the text is typed, by
POSTing the same form to /staff/preview, which answers the preview fragment alone.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from publisher import textclean
from publisher.config import Config
from publisher.content import ItemCreate, ItemPatch, changes_from, content_from
from publisher.errors import Forbidden, PublisherError, ValidationFailed
from publisher.models import (
    EDITABLE_IN_PLACE,
    LIVE_STATUSES,
    Action,
    BodyFormat,
    Channel,
    Content,
    Disclosure,
    Item,
    RelationKind,
    RevisionState,
)
from publisher.policy import Do, may
from publisher.store import schema as t
from publisher.store.sql import Actor, SqlStore
from publisher.web.keys import CONFIG, SCHEDULER, STORE
from publisher.web.problems import read_form
from publisher.web.ui import views, wording
from publisher.web.ui.preview import previews
from publisher.web.ui.render import gettext_for, render
from publisher.web.ui.session import current_session
from publisher.web.ui.views import N_

routes = web.RouteTableDef()

TEXT_FIELDS = (
    "title",
    "summary",
    "body",
    "format",
    "category",
    "agency",
    "doc_no",
    "written_at",
    "disclosure",
    "disclosure_reason",
    "publish_at",
    "expires_at",
    "correction_note",
)
#: fields that may be left empty (then: not given)
OPTIONAL = frozenset(TEXT_FIELDS) - {"title", "body", "category", "written_at", "disclosure"}
RELATED_ROWS = 3
MAX_FIELD_CHARS = 250_000
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: the compose form's fields, labelled as everywhere in the UI (wording.FIELD_LABELS)
FIELD_LABELS = {
    name: wording.FIELD_LABELS[name]
    for name in (
        "title", "summary", "body", "format", "category", "agency", "doc_no", "written_at",
        "disclosure", "disclosure_reason", "channels", "publish_at", "expires_at", "urgent",
        "related", "attachments", "correction_note",
    )
}  # fmt: skip


@dataclass
class FormState:
    """What the form shows: the values as typed, and what is wrong with them."""

    values: dict[str, str]
    channels: list[str]
    urgent: bool
    related: list[tuple[str, str]]
    errors: dict[str, str] = field(default_factory=dict)

    def error_list(self, request: web.Request) -> list[tuple[str, str, str]]:
        return [
            (name, views.tr(request, FIELD_LABELS.get(name, N_("The item"))), message)
            for name, message in self.errors.items()
        ]


def blank_form(config: Config) -> FormState:
    today = datetime.now(config.site.tz).date().isoformat()
    values = dict.fromkeys(TEXT_FIELDS, "")
    values.update(
        written_at=today,
        format=BodyFormat.TEXT.value,
        disclosure=Disclosure.PROACTIVE.value,
        category=config.taxonomy[0].slug,
        agency=config.site.agency,
    )
    return FormState(
        values, list(config.items.default_channels), False, [("", "see-also")] * RELATED_ROWS
    )


def form_from_item(request: web.Request, item: Item) -> FormState:
    rev = item.pending or item.revision
    c = rev.content
    values = {
        "title": c.title,
        "summary": c.summary or "",
        "body": c.body,
        "format": c.body_format.value,
        "category": c.category,
        "agency": c.agency,
        "doc_no": c.doc_no or "",
        "written_at": views.local_input(request, c.written_at, date_only=True),
        "disclosure": c.disclosure.value,
        "disclosure_reason": c.disclosure_reason or "",
        "publish_at": views.local_input(request, c.publish_at),
        "expires_at": views.local_input(request, c.expires_at),
        "correction_note": rev.correction_note or "",
    }
    # text stored before the store refused control characters: the form shows it without
    # them (a person cannot see them to delete them), so saving the form mends the item
    for name, value in values.items():
        values[name] = textclean.clean(value, line=name in ItemPatch.line_fields)[0]
    related = [(r.item_id, r.kind.value) for r in c.related]
    related += [("", "see-also")] * max(1, RELATED_ROWS - len(related))
    return FormState(values, [ch.value for ch in c.channels], c.urgent, related)


def form_from_post(form: MultiDictProxy[Any]) -> FormState:
    values = {}
    for name in TEXT_FIELDS:
        raw = form.get(name, "")
        values[name] = raw[:MAX_FIELD_CHARS].replace("\r\n", "\n") if isinstance(raw, str) else ""
    # a form from before the choice existed (or without it) is plain text, the default
    values["format"] = values["format"] or BodyFormat.TEXT.value
    channels = [c for c in form.getall("channels", []) if isinstance(c, str)]
    ids = [v for v in form.getall("related_id", []) if isinstance(v, str)]
    kinds = [v for v in form.getall("related_kind", []) if isinstance(v, str)]
    related = [(i.strip()[:128], k) for i, k in zip(ids, kinds, strict=False)][:100]
    related += [("", "see-also")] * max(0, RELATED_ROWS - len(related))
    return FormState(values, channels, form.get("urgent") == "on", related)


async def _resolve_related(
    request: web.Request, store: SqlStore, state: FormState
) -> list[dict[str, str]]:
    """Related rows as API relations; an entry may be an item id or a 索引号."""
    out = []
    for ident, kind in state.related:
        if not ident:
            continue
        if kind not in {k.value for k in RelationKind}:
            state.errors["related"] = views.tr(request, N_("is not one of the choices"))
            continue
        item_id = ident if _UUID.fullmatch(ident) else None
        if item_id is None:
            async with store.read() as conn:
                item_id = await conn.scalar(
                    sa.select(t.items.c.id).where(t.items.c.index_no == ident)
                )
        if item_id is None:
            state.errors["related"] = views.tr(
                request, N_("there is no item with the index number or id %(value)s")
            ) % {"value": ident}
            continue
        out.append({"item_id": item_id, "kind": kind})
    return out


def _payload(state: FormState) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        if name == "correction_note":
            continue
        value = state.values[name].strip() if name != "body" else state.values[name]
        if name in OPTIONAL and not value.strip():
            data[name] = None
        else:
            data[name] = value
    data["channels"] = state.channels
    data["urgent"] = state.urgent
    return data


def _record_errors(request: web.Request, state: FormState, exc: Exception) -> None:
    """What is wrong, in the UI's language, against the field it is about."""
    _ = gettext_for(request).gettext
    if isinstance(exc, ValidationError):
        for err in exc.errors():
            loc = err["loc"]
            name = str(loc[0]) if loc else "form"
            if err["type"] == textclean.ERROR_TYPE:
                msg = views.forbidden_characters(request, str(err.get("ctx", {})["characters"]))
            else:
                msg = wording.pydantic_message(_, err)
            state.errors.setdefault(name, msg)
    elif isinstance(exc, textclean.ForbiddenCharacters) and exc.field in FIELD_LABELS:
        state.errors.setdefault(exc.field, views.forbidden_characters(request, exc.characters))
    elif isinstance(exc, PublisherError):
        name, sep, _rest = exc.detail.partition(": ")
        message = wording.core_message(_, exc.detail)
        if sep and name in FIELD_LABELS:
            label = _(FIELD_LABELS[name])
            state.errors.setdefault(name, wording.without_label(message, label))
        else:
            state.errors.setdefault("form", message)


async def content_of(request: web.Request, state: FormState) -> Content | None:
    """The Content the form describes, or None with `state.errors` saying why."""
    config = request.app[CONFIG]
    related = await _resolve_related(request, request.app[STORE], state)
    if "\x00" in "".join(state.values.values()):
        state.errors["form"] = views.forbidden_characters(request, "U+0000")
        return None
    try:
        payload = ItemCreate.model_validate({**_payload(state), "related": related})
        content = content_from(payload, config)
    except (ValidationError, PublisherError) as exc:
        _record_errors(request, state, exc)
        return None
    return None if state.errors else content


def _actor(request: web.Request) -> Actor:
    user = current_session(request).user
    return Actor(user.name, user.role)


def editable(item: Item) -> bool:
    return item.status in EDITABLE_IN_PLACE or (
        item.status in LIVE_STATUSES and item.pending_state is not RevisionState.IN_REVIEW
    )


def _compose_page(
    request: web.Request,
    state: FormState,
    *,
    item: Item | None,
    channel_previews: list[Any] | None = None,
    status: int = 200,
    notice: str | None = None,
) -> web.Response:
    config = request.app[CONFIG]
    _ = gettext_for(request).gettext
    return render(
        request,
        "compose.html",
        status=status,
        item=item,
        item_status=views.status_label(request, item.status) if item else "",
        correction=item is not None and item.status in LIVE_STATUSES,
        form=state,
        errors=state.error_list(request),
        categories=config.taxonomy,
        channel_options=[(c.value, views.channel_label(request, c)) for c in Channel],
        disclosure_options=[(d.value, _(views.DISCLOSURE_LABELS[d])) for d in Disclosure],
        relation_options=[(k.value, _(views.RELATION_LABELS[k])) for k in RelationKind],
        previews=channel_previews,
        notice=notice,
        labels={k: _(v) for k, v in FIELD_LABELS.items()},
        channel_labels={c.value: views.channel_label(request, c) for c in Channel},
        attachments=item.attachments if item else (),
        max_upload=wording.size_text(config.storage.max_upload_bytes),
        size_text=wording.size_text,
    )


def _check_editor(request: web.Request) -> None:
    if not may(current_session(request).user.role, Do.ITEM_EDIT):
        raise Forbidden(
            gettext_for(request).gettext("Only editors and administrators write items.")
        )


@routes.get("/staff/items/new")
async def new_item(request: web.Request) -> web.Response:
    _check_editor(request)
    return _compose_page(request, blank_form(request.app[CONFIG]), item=None)


@routes.get("/staff/items/{item_id}/edit")
async def edit_item(request: web.Request) -> web.Response:
    _check_editor(request)
    item = await _item(request)
    _ = gettext_for(request).gettext
    notice = None
    if request.query.get("saved"):
        notice = _("Saved.")
    if not editable(item):
        raise web.HTTPSeeOther(f"{_staff(request)}/items/{item.id}")
    return _compose_page(request, form_from_item(request, item), item=item, notice=notice)


async def _item(request: web.Request) -> Item:
    item_id = request.match_info["item_id"]
    if not _UUID.fullmatch(item_id):
        raise web.HTTPNotFound()
    return await request.app[STORE].get_item(item_id)


def _staff(request: web.Request) -> str:
    from publisher.web.public import url_prefix

    return url_prefix(request.app[CONFIG]) + "/staff"


@routes.post("/staff/items/new")
async def create_item(request: web.Request) -> web.StreamResponse:
    _check_editor(request)
    return await _save(request, None)


@routes.post("/staff/items/{item_id}/edit")
async def update_item(request: web.Request) -> web.StreamResponse:
    _check_editor(request)
    return await _save(request, await _item(request))


async def _save(request: web.Request, item: Item | None) -> web.StreamResponse:
    form = await read_form(request)
    state = form_from_post(form)
    action = form.get("action", "save")
    content = await content_of(request, state)
    store = request.app[STORE]
    if content is None:
        return _compose_page(request, state, item=item, status=422)
    if action == "preview":
        return _compose_page(
            request,
            state,
            item=item,
            channel_previews=await previews(request.app[CONFIG], store, content, item),
        )
    actor = _actor(request)
    try:
        if item is None:
            saved = await store.create_item(content, actor=actor)
        else:
            version = form.get("version")
            version = version if isinstance(version, str) else ""
            patch = ItemPatch.model_validate(
                {
                    **{k: v for k, v in _payload(state).items()},
                    "related": [
                        {"item_id": r.item_id, "kind": r.kind.value} for r in content.related
                    ],
                    **(
                        {"correction_note": state.values["correction_note"].strip() or None}
                        if item.status in LIVE_STATUSES
                        else {}
                    ),
                }
            )
            saved = await store.update_item(
                item.id,
                changes_from(patch, request.app[CONFIG]),
                actor=actor,
                if_match=f'"{item.id}.{version}"',
            )
        for upload in form.getall("attachments", []):
            if isinstance(upload, web.FileField) and upload.filename:
                await store.add_attachment(
                    saved.id,
                    upload.filename,
                    upload.content_type or "application/octet-stream",
                    _chunks(upload),
                    actor=actor,
                )
        if action == "submit":
            await store.transition(saved.id, Action.SUBMIT, actor=actor)
            scheduler = request.app.get(SCHEDULER)
            if scheduler is not None:
                await scheduler.wake()
            raise web.HTTPSeeOther(f"{_staff(request)}/items/{saved.id}?submitted=1")
    except (ValidationFailed, ValidationError) as exc:
        _record_errors(request, state, exc)
        return _compose_page(request, state, item=item, status=422)
    except PublisherError as exc:
        state.errors["form"] = wording.core_message(gettext_for(request).gettext, exc.detail)
        return _compose_page(request, state, item=item, status=exc.status)
    raise web.HTTPSeeOther(f"{_staff(request)}/items/{saved.id}/edit?saved=1")


async def _chunks(upload: web.FileField) -> AsyncIterator[bytes]:
    while chunk := upload.file.read(65536):
        yield chunk


@routes.post("/staff/preview")
async def preview_fragment(request: web.Request) -> web.Response:
    """The previews alone, for the script that refreshes them as the text is typed."""
    form = await read_form(request)
    state = form_from_post(form)
    store = request.app[STORE]
    item = None
    item_id = form.get("item_id")
    if isinstance(item_id, str) and _UUID.fullmatch(item_id):
        item = await store.get_item(item_id)
    content = await content_of(request, state)
    channel_previews = (
        await previews(request.app[CONFIG], store, content, item) if content else None
    )
    return render(
        request,
        "_previews.html",
        status=200 if content else 422,
        previews=channel_previews,
        errors=state.error_list(request),
        channel_labels={c.value: views.channel_label(request, c) for c in Channel},
    )
