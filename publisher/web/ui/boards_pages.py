"""Notice boards (村务 / 政务公开栏) for staff: the boards, their recent print packs, and
recording a posting the operator confirmed by phone; admins add and edit boards.

Everything goes through the same core functions as the API (publisher.web.boards) and
`publisher boards …`: `Boards.add` / `Boards.edit` with `parse_board` for validation,
`packs.list_packs` for states and flags, `packs.confirm` for a posting (its ledger row
becomes `delivered` and a delivery event names who recorded it), `packs.pack_pdf` for
the PDF. An operator's phone and email are shown masked only, and the edit form never
carries them back: an empty field keeps the stored contact.

Roles: every staff role may see the boards (as GET /api/v1/boards lets any staff token);
editors and admins record postings (the office staff who take the operator's call);
adding and editing a board is for admins only.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from publisher import packs
from publisher.addresses import mask
from publisher.boards import (
    ORIENTATIONS,
    PAPERS,
    Board,
    BoardCreate,
    BoardPatch,
    Boards,
    parse_board,
)
from publisher.errors import (
    Conflict,
    Forbidden,
    ItemNotFound,
    NotFound,
    PublisherError,
    ValidationFailed,
)
from publisher.packs import PackNotReady
from publisher.policy import Do, may
from publisher.textclean import ERROR_TYPE, ForbiddenCharacters
from publisher.web.boards import _number, _pdf_response
from publisher.web.keys import CONFIG, STORE
from publisher.web.problems import read_form
from publisher.web.ui import views, wording
from publisher.web.ui.admin import _check_admin
from publisher.web.ui.compose import _staff
from publisher.web.ui.render import gettext_for, render
from publisher.web.ui.session import current_session
from publisher.web.ui.views import N_, forbidden_characters

routes = web.RouteTableDef()
log = logging.getLogger("publisher.web.ui.boards")

#: packs shown per board on the list page (newest first)
RECENT_PACKS = 10
MAX_FIELD = 1024

EVENT_LABELS = {
    "published": N_("Published"),
    "corrected": N_("Corrected"),
    "withdrawn": N_("Withdrawn"),
    "expired": N_("Expired"),
}
FLAG_LABELS = {
    "overdue": N_("Overdue: not confirmed in time"),
    "short_posting": N_("Short posting: taken down before the board's minimum days"),
}
PAPER_LABELS = {"A4": "A4", "A3": "A3"}
ORIENTATION_LABELS = {"portrait": N_("Portrait"), "landscape": N_("Landscape")}
#: the form's fields, by the names the core's messages use
FIELD_LABELS = {
    "name": N_("Board name"),
    "location": N_("Location"),
    "paper": N_("Paper"),
    "orientation": N_("Orientation"),
    "categories": N_("Categories carried"),
    "min_days": N_("Minimum posting days"),
    "operator_phone": N_("Operator's mobile number"),
    "operator_email": N_("Operator's email address"),
    "enabled": N_("Enabled"),
}
#: packs whose ledger row staff may mark delivered (packs.confirm accepts these)
CONFIRMABLE = ("sent", "unknown")


# roles: all staff view boards and packs; editors + admins record postings; admins add/edit
def _can_record(request: web.Request) -> bool:
    return may(current_session(request).user.role, Do.BOARD_RECORD_POSTING)


def _field(form: MultiDictProxy[Any], name: str, limit: int = MAX_FIELD) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


# -- the list ------------------------------------------------------------------------------


async def _pack_rows(request: web.Request, board: Board) -> list[dict[str, Any]]:
    store = request.app[STORE]
    tr = gettext_for(request).gettext
    titles: dict[str, str] = {}
    rows = []
    for p in (await packs.list_packs(store, board.id))[:RECENT_PACKS]:
        item_id = str(p["item_id"])
        if item_id not in titles:
            try:
                titles[item_id] = (await store.get_item(item_id)).content.title
            except ItemNotFound:
                titles[item_id] = ""
        event = str(p["event"])
        rows.append(
            {
                "id": p["id"],
                "item_id": item_id,
                "title": titles[item_id],
                "index_nos": ", ".join(dict.fromkeys([*p["post"], *p["take_down"]])),
                "post": len(p["post"]),
                "take_down": len(p["take_down"]),
                "event": tr(EVENT_LABELS[event]) if event in EVENT_LABELS else event,
                "state": views.state_label(request, p["state"]) if p["state"] else "—",
                "sent": _local(request, p["sent_at"]),
                "confirmed": _local(request, p["confirmed_at"]),
                "confirmed_by": p["confirmed_by"] or "",
                "flags": [tr(FLAG_LABELS.get(f, f)) for f in p["flags"]],
                "confirmable": p["confirmed_at"] is None and p["state"] in CONFIRMABLE,
            }
        )
    return rows


def _local(request: web.Request, iso: str | None) -> str:
    return views.local_time(request, datetime.fromisoformat(iso)) if iso else ""


def _board_row(request: web.Request, board: Board) -> dict[str, Any]:
    config = request.app[CONFIG]
    names = []
    for slug in board.categories:
        cat = config.category(slug)
        names.append(cat.name if cat else slug)
    tr = gettext_for(request).gettext
    return {
        "id": board.id,
        "name": board.name,
        "location": board.location,
        "paper": board.paper,
        "orientation": tr(ORIENTATION_LABELS.get(board.orientation, board.orientation)),
        "categories": "、".join(names),
        "min_days": board.min_days,
        "phone": mask(board.operator_phone) if board.operator_phone else "",
        "email": mask(board.operator_email) if board.operator_email else "",
        "enabled": board.enabled,
    }


@routes.get("/staff/boards")
async def boards_page(request: web.Request) -> web.Response:
    _ = gettext_for(request).gettext
    notices = {
        "added": _("The board is added."),
        "saved": _("The board is saved."),
        "posted": _("The posting is recorded; the pack is delivered."),
    }
    notice = next((v for k, v in notices.items() if k in request.query), None)
    return await _list(request, notice=notice)


async def _list(
    request: web.Request, *, notice: str | None = None, error: str | None = None, status: int = 200
) -> web.Response:
    boards = await Boards(request.app[STORE]).all()
    user = current_session(request).user
    return render(
        request,
        "boards.html",
        status=status,
        notice=notice,
        error=error,
        boards=[{**_board_row(request, b), "packs": await _pack_rows(request, b)} for b in boards],
        can_record=_can_record(request),
        is_admin=may(user.role, Do.BOARD_EDIT),
    )


@routes.get("/staff/boards/{board_id}/packs/{pack_id}/pdf")
async def pack_pdf(request: web.Request) -> web.Response:
    """The pack's PDF for staff (as GET /api/v1/boards/{id}/packs/{pack}/pdf, by session)."""
    store = request.app[STORE]
    board_id, pack_id = _number(request, "board_id"), _number(request, "pack_id")
    pack = await packs.pack_row(store, pack_id)
    if int(pack.board_id) != board_id:
        raise NotFound(f"board {board_id} has no pack {pack_id}")
    return _pdf_response(await packs.pack_pdf(store, pack_id), f"pack-{pack_id}.pdf", public=False)


@routes.post("/staff/boards/{board_id}/packs/{pack_id}/posted")
async def record_posted(request: web.Request) -> web.StreamResponse:
    """Staff record that the operator confirmed the posting (by phone): the same core call
    as POST /api/v1/boards/{id}/posted; the delivery event names the member of staff."""
    _ = gettext_for(request).gettext
    if not _can_record(request):
        raise Forbidden(_("Only editors and administrators record postings."))
    board_id, pack_id = _number(request, "board_id"), _number(request, "pack_id")
    await read_form(request)  # a body that is not a form is refused (400)
    store = request.app[STORE]
    await Boards(store).get(board_id)
    name = current_session(request).user.name
    try:
        done = await packs.confirm(store, board_id, pack_id, by=name)
    except PackNotReady as exc:
        return await _list(
            request,
            error=_("Pack %(pack)s cannot be marked posted yet (%(detail)s).")
            % {"pack": pack_id, "detail": wording.core_message(_, exc.detail)},
            status=409,
        )
    if not done.repeat:
        log.info("board %d pack %d recorded posted by %s", board_id, pack_id, name)
    raise web.HTTPSeeOther(f"{_staff(request)}/boards?posted={pack_id}#board-{board_id}")


# -- adding and editing (admins) -----------------------------------------------------------


def _form_page(
    request: web.Request,
    *,
    board: Board | None,
    values: dict[str, Any],
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    config = request.app[CONFIG]
    tr = gettext_for(request).gettext
    return render(
        request,
        "board_form.html",
        status=status,
        board=board,
        masked_phone=mask(board.operator_phone) if board and board.operator_phone else "",
        masked_email=mask(board.operator_email) if board and board.operator_email else "",
        values=values,
        error=error,
        papers=[(p, PAPER_LABELS[p]) for p in PAPERS],
        orientations=[(o, tr(ORIENTATION_LABELS[o])) for o in ORIENTATIONS],
        categories=[(c.slug, c.name) for c in config.taxonomy],
        labels={k: tr(v) for k, v in FIELD_LABELS.items()},
    )


def _values(board: Board | None) -> dict[str, Any]:
    if board is None:
        return {
            "name": "",
            "location": "",
            "paper": "A4",
            "orientation": "portrait",
            "categories": [],
            "min_days": "0",
            "enabled": True,
        }
    return {
        "name": board.name,
        "location": board.location,
        "paper": board.paper,
        "orientation": board.orientation,
        "categories": list(board.categories),
        "min_days": str(board.min_days),
        "enabled": board.enabled,
    }


def _submitted(form: MultiDictProxy[Any]) -> dict[str, Any]:
    """What the form says, as the page re-shows it (never the contacts)."""
    return {
        "name": _field(form, "name", 256),
        "location": _field(form, "location", 512),
        "paper": _field(form, "paper", 16),
        "orientation": _field(form, "orientation", 16),
        "categories": [c[:64] for c in form.getall("categories", []) if isinstance(c, str)][:100],
        "min_days": _field(form, "min_days", 16).strip(),
        "enabled": form.get("enabled") == "on",
    }


def _data(values: dict[str, Any], form: MultiDictProxy[Any], *, new: bool) -> dict[str, Any]:
    """The API's body for these values: contacts only when typed (or cleared on edit)."""
    data: dict[str, Any] = {k: v for k, v in values.items() if k != "min_days"}
    data["min_days"] = values["min_days"] or 0
    for key in ("operator_phone", "operator_email"):
        typed = _field(form, key, 320).strip()
        if typed:
            data[key] = typed
        elif not new and form.get(f"clear_{key}") == "on":
            data[key] = ""
    return data


def _message(request: web.Request, exc: PublisherError) -> str:
    """The core's "field: message" in the UI's language, the field as the form labels it."""
    tr = gettext_for(request).gettext
    field, sep, _rest = exc.detail.partition(": ")
    base = field.split(".")[0]
    label = tr(FIELD_LABELS[base]) if sep and base in FIELD_LABELS else None
    if isinstance(exc, ForbiddenCharacters):
        return f"{label or field}: {forbidden_characters(request, exc.characters)}"
    if isinstance(exc, BoardInputInvalid):
        return f"{label or field}: {wording.pydantic_message(tr, exc.error)}"
    said = wording.core_message(tr, exc.detail)
    if said == wording.core_message(tr, "") and label is not None:
        return f"{label}: {tr('is not valid')}"
    return said


class BoardInputInvalid(ValidationFailed):
    """parse_board's ValidationFailed with pydantic's first error kept, to say it in words."""

    def __init__(self, detail: str, error: ErrorDetails) -> None:
        super().__init__(detail)
        self.error = error


def _parse(model: type[BoardCreate] | type[BoardPatch], data: dict[str, Any]) -> Any:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] != ERROR_TYPE:  # forbidden characters: parse_board says which
            field = ".".join(str(p) for p in err["loc"])
            raise BoardInputInvalid(f"{field}: {err['msg']}", err) from None
    return parse_board(model, data)


@routes.get("/staff/boards/new")
async def new_board(request: web.Request) -> web.Response:
    _check_admin(request, Do.BOARD_EDIT)
    return _form_page(request, board=None, values=_values(None))


@routes.post("/staff/boards/new")
async def add_board(request: web.Request) -> web.StreamResponse:
    _check_admin(request, Do.BOARD_EDIT)
    form = await read_form(request)
    values = _submitted(form)
    try:
        body = _parse(BoardCreate, _data(values, form, new=True))
        board = await Boards(request.app[STORE]).add(body)
    except (ValidationFailed, Conflict) as exc:
        return _form_page(
            request,
            board=None,
            values=values,
            error=_message(request, exc),
            status=exc.status,
        )
    log.info("board %d (%s) added by %s", board.id, board.name, current_session(request).user.name)
    raise web.HTTPSeeOther(f"{_staff(request)}/boards?added={board.id}#board-{board.id}")


@routes.get("/staff/boards/{board_id}/edit")
async def edit_page(request: web.Request) -> web.Response:
    _check_admin(request, Do.BOARD_EDIT)
    board = await Boards(request.app[STORE]).get(_number(request, "board_id"))
    return _form_page(request, board=board, values=_values(board))


@routes.post("/staff/boards/{board_id}/edit")
async def edit_board(request: web.Request) -> web.StreamResponse:
    _check_admin(request, Do.BOARD_EDIT)
    boards = Boards(request.app[STORE])
    board = await boards.get(_number(request, "board_id"))
    form = await read_form(request)
    values = _submitted(form)
    try:
        body = _parse(BoardPatch, _data(values, form, new=False))
        board = await boards.edit(board.id, body)
    except (ValidationFailed, Conflict) as exc:
        return _form_page(
            request,
            board=board,
            values=values,
            error=_message(request, exc),
            status=exc.status,
        )
    log.info("board %d (%s) edited by %s", board.id, board.name, current_session(request).user.name)
    raise web.HTTPSeeOther(f"{_staff(request)}/boards?saved={board.id}#board-{board.id}")
