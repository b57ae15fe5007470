"""Notice boards on the web: staff API, operators' signed pages, and item layouts as PDF.

- `/api/v1/boards …` (staff, bearer token): list, add, read and edit boards (the
  operator's contact masked in every answer), a board's packs with their state and
  flags, a pack's PDF, and `POST /api/v1/boards/{id}/posted {"pack": …}` to record a
  posting for an operator who cannot use the link.
- `/boards/{board_id}/packs/{pack_id}?token=…` (the pack's PDF) and `…/confirm?token=…`
  (a page with one button; its POST confirms): no login, the signed token is the key.
  A forged, altered or expired token gets a 403 page and changes nothing; no 500.
- `GET /items/{item_id}/board.pdf?size=A4|A3[&orientation=portrait|landscape]`: the
  layout of a published proactive item for anyone (it is public information; 404 for
  anything else, alike); `GET /api/v1/items/{item_id}/board.pdf` gives staff the same
  for any item, with the revision under review, as a preview.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from datetime import date
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from channels.board import (
    ORIENTATIONS,
    PAPERS,
    UNTIL_NOTICE,
    Poster,
    environment,
    local_day,
    pdf_async,
    poster_html,
)
from publisher import packs, workflow
from publisher.boards import BoardCreate, BoardPatch, Boards
from publisher.config import Config
from publisher.errors import Forbidden, NotFound, ValidationFailed
from publisher.models import Item, Revision
from publisher.packs import BadPackToken, ExpiredPackToken, LinkPurpose, PackLinks, PackNotReady
from publisher.policy import Do, may
from publisher.shortlinks import ShortLinks
from publisher.text import render_body
from publisher.web.api import json_response, read_json
from publisher.web.keys import CONFIG, STORE, current_user
from publisher.web.openapi_parts import json_body, param, problems

log = logging.getLogger("publisher.boards")
routes = web.RouteTableDef()

#: operators' pages carry a secret in the URL: no referrer, no caching, no script
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_ITEM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NUMBER = re.compile(r"[1-9][0-9]{0,11}")
#: public layouts made recently: (item, version, paper, orientation) -> PDF
_LAYOUTS: OrderedDict[tuple[str, int, str, str], bytes] = OrderedDict()
_LAYOUT_CACHE = 16


class PostedBody(BaseModel):
    """Record that a board posted a pack (for an operator who did not confirm by link)."""

    model_config = ConfigDict(extra="forbid")
    pack: int = Field(ge=1, le=10**12, description="the pack's id")


def _require(request: web.Request, action: Do) -> None:
    """Refuse (403) unless publisher.policy lets the user's role do `action` (the policy
    middleware checks it first; this keeps the handler safe on its own)."""
    role = current_user(request).role
    if not may(role, action):
        raise Forbidden(f"role {role.value} may not do {action.value} (publisher.policy)")


def _number(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not _NUMBER.fullmatch(raw):
        raise NotFound(f"no {name.removesuffix('_id')} {raw!r}")
    return int(raw)


# -- layouts of items ---------------------------------------------------------------------------


def item_poster(config: Config, item: Item, revision: Revision) -> Poster:
    c = revision.content
    tz = config.site.tz
    cat = config.category(c.category)
    posted = local_day(item.published_at, tz) or date.today().isoformat()
    return Poster(
        title=c.title,
        body_html=render_body(c.body, c.body_format),
        index_no=item.index_no,
        category_name=cat.name if cat else c.category,
        agency=c.agency,
        written_at=local_day(c.written_at, tz),
        doc_no=c.doc_no,
        urgent=c.urgent,
        posted_on=posted,
        take_down_on=local_day(c.expires_at, tz) or UNTIL_NOTICE,
        short_url=ShortLinks(config).url(item.id),
        correction_note=revision.correction_note,
    )


def _layout_params(request: web.Request) -> tuple[str, str]:
    """(paper, orientation) from ?size= and ?orientation=; ValueError says what is wrong."""
    size = request.query.get("size", "A4").strip().upper()
    orientation = request.query.get("orientation", "portrait").strip().lower()
    if size not in PAPERS:
        raise ValueError(f"size: must be A4 or A3, not {request.query.get('size', '')[:20]!r}")
    if orientation not in ORIENTATIONS:
        raise ValueError("orientation: must be portrait or landscape")
    return size, orientation


async def _layout_pdf(
    config: Config, item: Item, revision: Revision, paper: str, orientation: str
) -> bytes:
    key = (item.id, item.version, paper, orientation)
    cached = _LAYOUTS.get(key)
    if cached is not None and revision is item.revision:
        _LAYOUTS.move_to_end(key)
        return cached
    html = poster_html(
        item_poster(config, item, revision),
        site_name=config.site.name,
        site_agency=config.site.agency,
        paper=paper,
        orientation=orientation,
    )
    pdf = await pdf_async([html])
    if revision is item.revision:
        _LAYOUTS[key] = pdf
        while len(_LAYOUTS) > _LAYOUT_CACHE:
            _LAYOUTS.popitem(last=False)
    return pdf


def _pdf_response(pdf: bytes, filename: str, *, public: bool) -> web.Response:
    headers = {
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename)}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache" if public else "no-store",
    }
    return web.Response(body=pdf, content_type="application/pdf", headers=headers)


@routes.get("/items/{item_id}/board.pdf")
async def public_layout(request: web.Request) -> web.Response:
    """A published proactive item's notice-board layout; a 404 problem (alike) for anything
    else, 422 for a size or orientation it does not know."""
    config = request.app[CONFIG]
    store = request.app[STORE]
    item_id = request.match_info["item_id"]
    item = None
    if _ITEM_ID.fullmatch(item_id):
        try:
            item = await store.get_item(item_id)
        except NotFound:
            item = None
    if item is None or not workflow.is_publicly_visible(item.status, item.content.disclosure):
        # like the public attachments: a file route answers problems, the same for an
        # unknown id as for an item the public may not see
        raise NotFound(f"no published item {item_id}")
    try:
        paper, orientation = _layout_params(request)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None
    etag = hashlib.sha256(f"{item.etag}|{paper}|{orientation}".encode()).hexdigest()[:32]
    if any(tag.value in (etag, "*") for tag in request.if_none_match or ()):
        resp = web.Response(status=304)
        resp.etag = etag
        return resp
    pdf = await _layout_pdf(config, item, item.revision, paper, orientation)
    resp = _pdf_response(pdf, f"{item.index_no or item.id}-{paper}.pdf", public=True)
    resp.etag = etag
    return resp


@routes.get("/api/v1/items/{item_id}/board.pdf")
async def staff_layout(request: web.Request) -> web.Response:
    """Any item's layout as a board would print it (the revision under review if any)."""
    config = request.app[CONFIG]
    item = await request.app[STORE].get_item(request.match_info["item_id"])
    try:
        paper, orientation = _layout_params(request)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None
    revision = item.pending or item.revision
    pdf = await _layout_pdf(config, item, revision, paper, orientation)
    return _pdf_response(pdf, f"preview-{item.id}-{paper}.pdf", public=False)


# -- staff API: boards and packs ---------------------------------------------------------------


@routes.get("/api/v1/boards")
async def list_boards(request: web.Request) -> web.Response:
    boards = await Boards(request.app[STORE]).all()
    return json_response({"boards": [b.public_json() for b in boards]})


@routes.post("/api/v1/boards")
async def add_board(request: web.Request) -> web.Response:
    _require(request, Do.BOARD_EDIT)
    body = await read_json(request, BoardCreate)
    board = await Boards(request.app[STORE]).add(body)
    log.info("board %d (%s) added by %s", board.id, board.name, current_user(request).name)
    resp = json_response(board.public_json(), status=201)
    resp.headers["Location"] = f"/api/v1/boards/{board.id}"
    return resp


@routes.get("/api/v1/boards/{board_id}")
async def get_board(request: web.Request) -> web.Response:
    board = await Boards(request.app[STORE]).get(_number(request, "board_id"))
    return json_response(board.public_json())


@routes.patch("/api/v1/boards/{board_id}")
async def edit_board(request: web.Request) -> web.Response:
    _require(request, Do.BOARD_EDIT)
    board_id = _number(request, "board_id")
    body = await read_json(request, BoardPatch)
    board = await Boards(request.app[STORE]).edit(board_id, body)
    return json_response(board.public_json())


@routes.get("/api/v1/boards/{board_id}/packs")
async def board_packs(request: web.Request) -> web.Response:
    store = request.app[STORE]
    board = await Boards(store).get(_number(request, "board_id"))
    return json_response({"board": board.id, "packs": await packs.list_packs(store, board.id)})


@routes.get("/api/v1/boards/{board_id}/packs/{pack_id}/pdf")
async def staff_pack_pdf(request: web.Request) -> web.Response:
    store = request.app[STORE]
    board_id, pack_id = _number(request, "board_id"), _number(request, "pack_id")
    pack = await packs.pack_row(store, pack_id)
    if int(pack.board_id) != board_id:
        raise NotFound(f"board {board_id} has no pack {pack_id}")
    pdf = await packs.pack_pdf(store, pack_id)
    return _pdf_response(pdf, f"pack-{pack_id}.pdf", public=False)


@routes.post("/api/v1/boards/{board_id}/posted")
async def record_posted(request: web.Request) -> web.Response:
    """Staff record that the board posted (and took down) what a pack lists."""
    _require(request, Do.BOARD_RECORD_POSTING)
    store = request.app[STORE]
    board_id = _number(request, "board_id")
    body = await read_json(request, PostedBody)
    await Boards(store).get(board_id)
    done = await packs.confirm(store, board_id, body.pack, by=current_user(request).name)
    return json_response(
        {
            "board": done.board_id,
            "pack": done.pack_id,
            "confirmed_at": done.confirmed_at.isoformat(),
            "confirmed_by": done.confirmed_by,
            "repeat": done.repeat,
        }
    )


# -- operators' pages ------------------------------------------------------------------------------


def _page(
    request: web.Request,
    heading: str,
    message: str,
    *,
    status: int = 200,
    **context: Any,
) -> web.Response:
    config = request.app[CONFIG]
    context.setdefault("action", None)
    context.setdefault("pack", None)
    html = (
        environment()
        .get_template("board/page.html")
        .render(site_name=config.site.name, heading=heading, message=message, **context)
    )
    return web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


def _refused(request: web.Request, expired: bool) -> web.Response:
    if expired:
        message = "此链接已过期。请联系镇党政办公室重新发送张贴单。"
    else:
        message = "此链接无效。请使用短信或邮件中的完整链接。"
    return _page(request, "链接无效" if not expired else "链接已过期", message, status=403)


async def _checked(
    request: web.Request, purpose: LinkPurpose
) -> tuple[int, int, Any] | web.Response:
    """(board id, pack id, pack) if the link's token is good; else the 403 page."""
    config = request.app[CONFIG]
    raw_board, raw_pack = request.match_info["board_id"], request.match_info["pack_id"]
    if not (_NUMBER.fullmatch(raw_board) and _NUMBER.fullmatch(raw_pack)):
        return _refused(request, False)
    board_id, pack_id = int(raw_board), int(raw_pack)
    try:
        PackLinks(config).check(purpose, board_id, pack_id, request.query.get("token", ""))
    except ExpiredPackToken:
        return _refused(request, True)
    except BadPackToken:
        log.info("refused a %s link for board %d pack %d", purpose.value, board_id, pack_id)
        return _refused(request, False)
    try:
        pack = await packs.pack_row(request.app[STORE], pack_id)
    except NotFound:
        return _page(request, "未找到张贴单", "该张贴单不存在。", status=404)
    if int(pack.board_id) != board_id:
        return _page(request, "未找到张贴单", "该张贴单不存在。", status=404)
    return board_id, pack_id, pack


@routes.get("/boards/{board_id}/packs/{pack_id}")
async def operator_pdf(request: web.Request) -> web.Response:
    checked = await _checked(request, LinkPurpose.PDF)
    if isinstance(checked, web.Response):
        return checked
    _, pack_id, _ = checked
    pdf = await packs.pack_pdf(request.app[STORE], pack_id)
    resp = _pdf_response(pdf, f"pack-{pack_id}.pdf", public=False)
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


async def _summary(request: web.Request, pack_id: int) -> dict[str, Any]:
    store = request.app[STORE]
    # as things stand: an item withdrawn or expired since is to come down, not go up
    lines = await packs.current_lines(store, pack_id)
    titles = {}
    for line in lines:
        try:
            rev = await store.get_revision(line.item_id, int(line.revision))
            titles[(line.item_id, line.action, line.revision)] = rev.content.title
        except NotFound:
            titles[(line.item_id, line.action, line.revision)] = ""
    return {
        "post": [
            {"index_no": x.index_no or "—", "title": titles[(x.item_id, x.action, x.revision)]}
            for x in lines
            if x.action == packs.PackAction.POST.value
        ],
        "take_down": [
            {
                "index_no": x.index_no or "—",
                "title": titles[(x.item_id, x.action, x.revision)],
                "reason": x.reason,
            }
            for x in lines
            if x.action == packs.PackAction.TAKEDOWN.value
        ],
    }


@routes.get("/boards/{board_id}/packs/{pack_id}/confirm")
async def confirm_page(request: web.Request) -> web.Response:
    checked = await _checked(request, LinkPurpose.CONFIRM)
    if isinstance(checked, web.Response):
        return checked
    board_id, pack_id, pack = checked
    board = await Boards(request.app[STORE]).get(board_id)
    tz = request.app[CONFIG].site.tz
    summary = await _summary(request, pack_id)
    if pack.confirmed_at is not None:
        return _page(
            request,
            "已确认张贴",
            f"第 {pack_id} 号张贴单已于 {pack.confirmed_at.astimezone(tz):%Y-%m-%d %H:%M} 确认。",
            pack=summary,
        )
    return _page(
        request,
        f"确认张贴：{board.name}公开栏",
        f"请在按下表张贴、撤下第 {pack_id} 号张贴单的各份材料后，点击下面的按钮确认。",
        pack=summary,
        action=f"{request.path}?token={quote(request.query.get('token', ''), safe='')}",
    )


@routes.post("/boards/{board_id}/packs/{pack_id}/confirm")
async def confirm(request: web.Request) -> web.Response:
    checked = await _checked(request, LinkPurpose.CONFIRM)
    if isinstance(checked, web.Response):
        return checked
    board_id, pack_id, _ = checked
    tz = request.app[CONFIG].site.tz
    try:
        done = await packs.confirm(request.app[STORE], board_id, pack_id, by="operator")
    except PackNotReady as exc:
        return _page(request, "暂不能确认", f"该张贴单暂不能确认（{exc.detail}）。", status=409)
    if not done.repeat:
        log.info("board %d confirmed posting pack %d", board_id, pack_id)
    return _page(
        request,
        "已确认张贴",
        f"谢谢！第 {pack_id} 号张贴单已于 {done.confirmed_at.astimezone(tz):%Y-%m-%d %H:%M} 确认。",
    )


# -- OpenAPI (merged into the document by publisher.web.openapi) ----------------------------------

OPENAPI_MODELS: list[type[BaseModel]] = [BoardCreate, BoardPatch, PostedBody]


_OK = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}
_PDF = {"description": "the PDF", "content": {"application/pdf": {}}}
_PAGE = {"description": "an HTML page", "content": {"text/html": {}}}
_LAYOUT_QUERY = [
    {"name": "size", "in": "query", "schema": {"type": "string", "enum": ["A4", "A3"]}},
    {
        "name": "orientation",
        "in": "query",
        "schema": {"type": "string", "enum": ["portrait", "landscape"]},
    },
]
_TOKEN = {"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}
_BOARD, _PACK = param("board_id"), param("pack_id")
_ITEM = param("item_id", kind="string")

OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/boards": {
        "get": {
            "summary": "Notice boards (operators' contacts masked)",
            "responses": {"200": _OK, **problems(401)},
        },
        "post": {
            "summary": "Add a notice board (editor, admin)",
            "requestBody": json_body(BoardCreate),
            "responses": {"201": _OK, **problems(401, 403, 409, 422)},
        },
    },
    "/api/v1/boards/{board_id}": {
        "get": {
            "summary": "One board",
            "parameters": [_BOARD],
            "responses": {"200": _OK, **problems(401, 404)},
        },
        "patch": {
            "summary": 'Change a board (editor, admin); "" clears an operator contact',
            "parameters": [_BOARD],
            "requestBody": json_body(BoardPatch),
            "responses": {"200": _OK, **problems(401, 403, 404, 409, 422)},
        },
    },
    "/api/v1/boards/{board_id}/packs": {
        "get": {
            "summary": "A board's print packs: state, confirmation, flags (overdue, short_posting)",
            "parameters": [_BOARD],
            "responses": {"200": _OK, **problems(401, 404)},
        }
    },
    "/api/v1/boards/{board_id}/packs/{pack_id}/pdf": {
        "get": {
            "summary": "A pack's PDF",
            "parameters": [_BOARD, _PACK],
            "responses": {"200": _PDF, **problems(401, 404)},
        }
    },
    "/api/v1/boards/{board_id}/posted": {
        "post": {
            "summary": "Record that the board posted a pack: its delivery becomes delivered",
            "parameters": [_BOARD],
            "requestBody": json_body(PostedBody),
            "responses": {"200": _OK, **problems(401, 404, 409, 422)},
        }
    },
    "/api/v1/items/{item_id}/board.pdf": {
        "get": {
            "summary": "Preview of any item's notice-board layout (the revision under review, if any)",
            "parameters": [_ITEM, *_LAYOUT_QUERY],
            "responses": {"200": _PDF, **problems(401, 404, 422)},
        }
    },
    "/items/{item_id}/board.pdf": {
        "get": {
            "summary": "A published item's notice-board layout (public)",
            "parameters": [_ITEM, *_LAYOUT_QUERY],
            "responses": {"200": _PDF, **problems(404, 422)},
        }
    },
    "/boards/{board_id}/packs/{pack_id}": {
        "get": {
            "summary": "A pack's PDF for the board's operator (signed link)",
            "parameters": [_BOARD, _PACK, _TOKEN],
            "responses": {"200": _PDF, "403": _PAGE, "404": _PAGE},
        }
    },
    "/boards/{board_id}/packs/{pack_id}/confirm": {
        "get": {
            "summary": "The operator's confirmation page (signed link)",
            "parameters": [_BOARD, _PACK, _TOKEN],
            "responses": {"200": _PAGE, "403": _PAGE, "404": _PAGE},
        },
        "post": {
            "summary": "The operator confirms posting: the pack's delivery becomes delivered",
            "parameters": [_BOARD, _PACK, _TOKEN],
            "responses": {"200": _PAGE, "403": _PAGE, "404": _PAGE, "409": _PAGE},
        },
    },
}
