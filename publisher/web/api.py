"""/api/v1 handlers: parse the request, call the core, serialize the answer."""

from __future__ import annotations

import json
import mimetypes
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from publisher import workflow
from publisher.config import Config
from publisher.content import ItemCreate, ItemPatch, changes_from, content_from
from publisher.errors import (
    NotFound,
    PayloadTooLarge,
    PreconditionRequired,
    PublisherError,
    UnsupportedMediaType,
    ValidationFailed,
)
from publisher.models import (
    Action,
    Attachment,
    AuditEntry,
    Channel,
    Disclosure,
    Item,
    ItemStatus,
    Revision,
)
from publisher.store.sql import Actor, ItemQuery, SqlStore, attachment_path, scan_revision
from publisher.text import derive_summary, render_body
from publisher.web.keys import CONFIG, SCHEDULER, STORE, WORKER, current_user

routes = web.RouteTableDef()
M = TypeVar("M", bound=BaseModel)


class TransitionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000)


class ApproveBody(TransitionBody):
    acknowledge_personal_data: StrictBool = Field(
        default=False,
        description=(
            "Required (true) when the revision under review shows unmasked personal data "
            "(resident ID, mobile or bank card numbers); recorded in the audit log."
        ),
    )
    resend: list[Channel] | None = Field(
        default=None,
        description=(
            "When approving a correction (更正) of a published item: the channels that send it "
            "again. Default: portal, rss and board; sms and email only when listed here."
        ),
    )


class ReasonRequired(TransitionBody):
    reason: str = Field(min_length=1, max_length=2000)


# -- request helpers ---------------------------------------------------------


async def read_body(request: web.Request, limit: int) -> bytearray:
    """The request's body, refused (413) past `limit` bytes before more is read."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    raw = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return raw


def decode_json(raw: bytes | bytearray, error: type[PublisherError]) -> Any:
    """JSON text as Python; anything else raises `error` saying what is wrong."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error("body: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise error(
            f"body: not JSON (malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise error("body: JSON nested too deeply") from None


async def read_json(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """Parse a JSON body into `model`; every failure is a 4xx problem."""
    raw = await read_body(request, request.app[CONFIG].server.max_body_bytes)
    if not raw.strip():
        if optional:
            return model.model_validate({})
        raise ValidationFailed("body: a JSON object is required")
    ctype = request.content_type
    if ctype not in ("application/json", "application/merge-patch+json") and not ctype.endswith(
        "+json"
    ):
        raise UnsupportedMediaType(f"send JSON with Content-Type: application/json, not {ctype!r}")
    data = decode_json(raw, ValidationFailed)
    if not isinstance(data, dict):
        raise ValidationFailed("body: must be a JSON object")
    if _has_nul(data):  # PostgreSQL text cannot hold U+0000: a 500 at insert otherwise
        raise ValidationFailed("body: text must not contain the NUL character (\\u0000)")
    return model.model_validate(data)


def _has_nul(value: Any) -> bool:
    stack = [value]  # no recursion: the JSON may be nested as deep as the parser allows
    while stack:
        v = stack.pop()
        if isinstance(v, str) and "\x00" in v:
            return True
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _resend_choice(body: TransitionBody) -> frozenset[Channel] | None:
    chosen = body.resend if isinstance(body, ApproveBody) else None
    return frozenset(chosen) if chosen is not None else None


async def _wake_scheduler(request: web.Request) -> None:
    scheduler = request.app.get(SCHEDULER)
    if scheduler is not None:
        await scheduler.wake()


def _actor(request: web.Request) -> Actor:
    user = current_user(request)
    return Actor(user.name, user.role)


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: must be an integer, not {raw!r}") from None
    if not lo <= value <= hi:
        raise ValidationFailed(f"{name}: must be between {lo} and {hi}")
    return value


def _enum_param(request: web.Request, name: str, enum: type[Any]) -> Any:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise ValidationFailed(f"{name}: {raw!r} is not one of {allowed}") from None


# -- serialization -------------------------------------------------------------


def iso(value: datetime | None, config: Config) -> str | None:
    return value.astimezone(config.site.tz).isoformat() if value else None


def attachment_json(a: Attachment, item_id: str) -> dict[str, Any]:
    return {
        "id": a.id,
        "filename": a.filename,
        "content_type": a.content_type,
        "size": a.size,
        "sha256": a.sha256,
        "revision": a.revision,
        "url": f"/items/{item_id}/attachments/{a.id}/{a.filename}",
    }


def revision_json(rev: Revision, config: Config) -> dict[str, Any]:
    c = rev.content
    category = config.category(c.category)
    return {
        "revision": rev.number,
        "title": c.title,
        "summary": c.summary or derive_summary(c.body, config.items.summary_chars, c.body_format),
        "summary_derived": c.summary is None,
        "body": c.body,
        "format": c.body_format.value,
        "body_html": render_body(c.body, c.body_format),
        "category": c.category,
        "category_name": category.name if category else None,
        "agency": c.agency,
        "doc_no": c.doc_no,
        "written_at": iso(c.written_at, config),
        "disclosure": c.disclosure.value,
        "disclosure_reason": c.disclosure_reason,
        "channels": [ch.value for ch in c.channels],
        "publish_at": iso(c.publish_at, config),
        "expires_at": iso(c.expires_at, config),
        "urgent": c.urgent,
        "related": [{"item_id": r.item_id, "kind": r.kind.value} for r in c.related],
        "legal_kind": c.legal_kind.value if c.legal_kind else None,
        "valid_from": c.valid_from.isoformat() if c.valid_from else None,
        "valid_until": c.valid_until.isoformat() if c.valid_until else None,
        "repealed_on": c.repealed_on.isoformat() if c.repealed_on else None,
        "author": rev.author,
        "revised_at": iso(rev.created_at, config),
        "correction_note": rev.correction_note,
    }


def item_json(item: Item, config: Config) -> dict[str, Any]:
    out = {
        "id": item.id,
        "status": item.status.value,
        "index_no": item.index_no,
        **revision_json(item.revision, config),
        "version": item.version,
        "created_by": item.created_by,
        "created_at": iso(item.created_at, config),
        "updated_at": iso(item.updated_at, config),
        "published_at": iso(item.published_at, config),
        "expired_at": iso(item.expired_at, config),
        "withdrawn_at": iso(item.withdrawn_at, config),
        "imported": item.imported,
        "attachments": [
            attachment_json(a, item.id)
            for a in item.attachments
            if a.revision <= item.revision.number
        ],
        "pending": None,
        "personal_data_warnings": [],
    }
    under_review = item.revision
    if item.pending is not None:
        pending = revision_json(item.pending, config)
        pending["state"] = item.pending_state.value if item.pending_state else None
        pending["attachments"] = [attachment_json(a, item.id) for a in item.attachments]
        pending["changed_fields"] = sorted(
            k
            for k, v in pending.items()
            if k in out
            and k not in ("revision", "author", "revised_at", "attachments")
            and out[k] != v
        )
        out["pending"] = pending
        under_review = item.pending
    out["personal_data_warnings"] = [
        {"kind": f.kind.value, "field": f.field, "match": f.masked}
        for f in scan_revision(item, under_review)
    ]
    return out


def audit_json(e: AuditEntry, config: Config) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": iso(e.at, config),
        "actor": e.actor,
        "action": e.action,
        "from": e.from_status,
        "to": e.to_status,
        "revision": e.revision,
        "reason": e.reason,
        "details": e.details,
    }


def json_response(data: Any, status: int = 200, etag: str | None = None) -> web.Response:
    resp = web.json_response(
        data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False, default=str)
    )
    if etag:
        resp.headers["ETag"] = etag
    return resp


# -- handlers --------------------------------------------------------------------


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    from publisher.store import current_revision

    store = request.app[STORE]
    # the schema revision changes only through `publisher db upgrade` (which a running
    # service does at its start): read once, not an Alembic context per probe
    schema = _SCHEMA_SEEN.get(store)
    if schema is None:
        schema = _SCHEMA_SEEN[store] = await current_revision(store)
    body: dict[str, Any] = {"status": "ok", "store": store.engine.dialect.name, "schema": schema}
    worker = request.app.get(WORKER)
    if worker is not None and worker.failing_since is not None:
        # deliveries wait (nothing is lost) until the database answers again
        body["status"] = "degraded"
        body["worker"] = {
            "turns_failing_for_seconds": round(time.time() - worker.failing_since, 1),
            "outcomes_waiting": worker.outcomes_waiting,
        }
    return json_response(body)


_SCHEMA_SEEN: weakref.WeakKeyDictionary[SqlStore, str | None] = weakref.WeakKeyDictionary()


@routes.post("/api/v1/items")
async def create_item(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    payload = await read_json(request, ItemCreate)
    item = await request.app[STORE].create_item(
        content_from(payload, config), actor=_actor(request)
    )
    resp = json_response(item_json(item, config), status=201, etag=item.etag)
    resp.headers["Location"] = f"/api/v1/items/{item.id}"
    return resp


@routes.get("/api/v1/items")
async def list_items(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    page = _int_param(request, "page", 1, 1, 1_000_000)
    per_page = _int_param(request, "per_page", 20, 1, 200)
    year = _int_param(request, "year", 0, 1900, 2200) if "year" in request.query else None
    category = request.query.get("category")
    if category is not None and config.category(category) is None:
        raise ValidationFailed(f"category: unknown category {category!r}")
    if "\x00" in request.query.get("q", ""):  # PostgreSQL text cannot hold NUL
        raise ValidationFailed("q: must not contain the NUL character")
    query = ItemQuery(
        status=_enum_param(request, "status", ItemStatus),
        category=category,
        year=year,
        text=(request.query.get("q") or "").strip() or None,
        disclosure=_enum_param(request, "disclosure", Disclosure),
        limit=per_page,
        offset=(page - 1) * per_page,
    )
    items, total = await request.app[STORE].list_items(query)
    return json_response(
        {
            "items": [item_json(i, config) for i in items],
            "page": page,
            "per_page": per_page,
            "total": total,
        }
    )


@routes.get("/api/v1/items/{item_id}")
async def get_item(request: web.Request) -> web.Response:
    item = await request.app[STORE].get_item(request.match_info["item_id"])
    if request.headers.get("If-None-Match") == item.etag:
        return web.Response(status=304, headers={"ETag": item.etag})
    return json_response(item_json(item, request.app[CONFIG]), etag=item.etag)


@routes.patch("/api/v1/items/{item_id}")
async def patch_item(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    store = request.app[STORE]
    item_id = request.match_info["item_id"]
    if_match = request.headers.get("If-Match")
    if not if_match:
        await store.get_item(item_id)  # an unknown id is a 404 first
        raise PreconditionRequired(
            "send If-Match with the ETag from GET /api/v1/items/{id}, so a concurrent edit is "
            "not overwritten"
        )
    patch = await read_json(request, ItemPatch)
    if not patch.model_fields_set:
        raise ValidationFailed("body: no field to change")
    item = await store.update_item(
        item_id, changes_from(patch, config), actor=_actor(request), if_match=if_match.strip()
    )
    await _wake_scheduler(request)
    return json_response(item_json(item, config), etag=item.etag)


async def _transition(
    request: web.Request, action: Action, body_model: type[TransitionBody]
) -> web.Response:
    body = await read_json(request, body_model, optional=True)
    item = await request.app[STORE].transition(
        request.match_info["item_id"],
        action,
        actor=_actor(request),
        reason=body.reason,
        acknowledge_personal_data=getattr(body, "acknowledge_personal_data", False),
        resend=_resend_choice(body),
    )
    await _wake_scheduler(request)
    worker = request.app.get(WORKER)
    if worker is not None:
        worker.wake()
    return json_response(item_json(item, request.app[CONFIG]), etag=item.etag)


@routes.post("/api/v1/items/{item_id}/submit")
async def submit_item(request: web.Request) -> web.Response:
    return await _transition(request, Action.SUBMIT, TransitionBody)


@routes.post("/api/v1/items/{item_id}/approve")
async def approve_item(request: web.Request) -> web.Response:
    return await _transition(request, Action.APPROVE, ApproveBody)


@routes.post("/api/v1/items/{item_id}/reject")
async def reject_item(request: web.Request) -> web.Response:
    return await _transition(request, Action.REJECT, ReasonRequired)


@routes.post("/api/v1/items/{item_id}/withdraw")
async def withdraw_item(request: web.Request) -> web.Response:
    return await _transition(request, Action.WITHDRAW, ReasonRequired)


@routes.get("/api/v1/items/{item_id}/audit")
async def item_audit(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    entries = await request.app[STORE].audit(request.match_info["item_id"])
    return json_response({"entries": [audit_json(e, config) for e in entries]})


async def _upload_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(65536):
        yield chunk


@routes.post("/api/v1/items/{item_id}/attachments")
async def upload_attachment(request: web.Request) -> web.Response:
    store = request.app[STORE]
    item_id = request.match_info["item_id"]
    await store.get_item(item_id)
    if not request.content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType("upload the file as multipart/form-data in a field named 'file'")
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and (not isinstance(part, BodyPartReader) or part.name != "file"):
            part = await reader.next()
    except (ValueError, AssertionError) as exc:
        raise ValidationFailed(f"body: malformed multipart data: {exc}") from None
    except HttpProcessingError as exc:  # e.g. a control character in a part's header
        raise ValidationFailed(f"body: malformed multipart data: {exc.message}") from None
    if part is None or not isinstance(part, BodyPartReader):
        raise ValidationFailed("file: no form field named 'file'")
    filename = part.filename or ""
    with suppress(UnicodeDecodeError):  # aiohttp clients percent-encode the whole name;
        filename = unquote(filename, errors="strict")  # browsers encode '"', CR and LF
    if not filename:
        raise ValidationFailed("file: the part has no filename")
    ctype = part.headers.get("Content-Type") or mimetypes.guess_type(filename)[0]
    att = await store.add_attachment(
        item_id,
        filename,
        ctype or "application/octet-stream",
        _upload_chunks(part),
        actor=_actor(request),
    )
    return json_response(attachment_json(att, item_id), status=201)


@routes.get("/api/v1/items/{item_id}/attachments/{attachment_id}")
async def staff_attachment(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    att = await store.get_attachment(
        request.match_info["item_id"], request.match_info["attachment_id"]
    )
    return _file_response(store, att)


@routes.get("/items/{item_id}/attachments/{attachment_id}/{filename}")
async def public_attachment(request: web.Request) -> web.StreamResponse:
    """Attachments of published proactive items, for anyone; 404 for everything else."""
    store = request.app[STORE]
    item_id = request.match_info["item_id"]
    try:
        item = await store.get_item(item_id)
    except NotFound:
        raise NotFound(f"nothing at {request.path}") from None
    att = next((a for a in item.attachments if a.id == request.match_info["attachment_id"]), None)
    if (
        att is None
        or not workflow.is_publicly_visible(item.status, item.content.disclosure)
        or att.revision > item.revision.number
    ):
        raise NotFound(f"nothing at {request.path}")
    return _file_response(store, att)


def _file_response(store: SqlStore, att: Attachment) -> web.StreamResponse:
    path = attachment_path(store.config.attachments_path, att.sha256)
    if not path.exists():
        raise NotFound(f"the file of attachment {att.id} is missing from storage")
    resp = web.FileResponse(path)
    resp.content_type = att.content_type
    resp.headers["Content-Disposition"] = _disposition(att.filename)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["ETag"] = f'"{att.sha256}"'
    return resp


def _disposition(filename: str) -> str:
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
