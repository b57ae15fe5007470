"""The confidentiality review (保密审查): the queue, one item's review, approve, reject."""

from __future__ import annotations

import difflib
from typing import Any

from aiohttp import web

from publisher.errors import PublisherError
from publisher.models import Action, Channel, Item, Revision
from publisher.pii import PiiKind
from publisher.policy import Do, may
from publisher.store.sql import Actor, PersonalDataNotAcknowledged, scan_revision
from publisher.text import render_body
from publisher.textclean import ForbiddenCharacters
from publisher.web.keys import CONFIG, SCHEDULER, STORE, WORKER
from publisher.web.problems import read_form
from publisher.web.ui import views, wording
from publisher.web.ui.compose import _item, _staff
from publisher.web.ui.preview import previews
from publisher.web.ui.render import gettext_for, render
from publisher.web.ui.session import current_session
from publisher.web.ui.views import N_

routes = web.RouteTableDef()
CHANNELS = frozenset(c.value for c in Channel)

PII_LABELS = {
    PiiKind.RESIDENT_ID: N_("Resident ID number"),
    PiiKind.MOBILE: N_("Mobile number"),
    PiiKind.BANK_CARD: N_("Bank card number"),
}
#: the fields a correction's difference is shown for, in this order
DIFF_FIELDS = (
    ("title", N_("Title")),
    ("summary", N_("Summary")),
    ("doc_no", N_("Document number")),
    ("body", N_("Body")),
)


@routes.get("/staff/review")
async def queue(request: web.Request) -> web.Response:
    items = await views.review_queue(request.app[STORE])
    me = current_session(request).user.name
    return render(
        request,
        "queue.html",
        rows=[
            {**views.item_row(request, i), "mine": (i.pending or i.revision).author == me}
            for i in items
        ],
    )


def reviewed_revision(item: Item) -> Revision:
    return item.pending if item.pending is not None else item.revision


def differences(old: Revision, new: Revision, request: web.Request) -> list[dict[str, Any]]:
    """Line by line, per field, what a correction changes in the published text."""
    out = []
    for name, label in DIFF_FIELDS:
        before = getattr(old.content, name) or ""
        after = getattr(new.content, name) or ""
        if before == after:
            continue
        lines = []
        for line in difflib.ndiff(before.splitlines(), after.splitlines()):
            tag = line[:1]
            if tag == "?":
                continue
            op = {"+": "ins", "-": "del"}.get(tag, "same")
            lines.append((op, line[2:]))
        out.append({"label": views.tr(request, label), "lines": lines})
    return out


def _pii_field(request: web.Request, field: str) -> str:
    """The field a finding is in, by its label: body, title, attachments[报告.pdf] …"""
    name, bracket, rest = field.partition("[")
    label = wording.field_label(gettext_for(request).gettext, name)
    return f"{label}[{rest}" if bracket else label


def why_not(request: web.Request, item: Item) -> str | None:
    """Why the current user may not approve this item (None: they may)."""
    _ = gettext_for(request).gettext
    user = current_session(request).user
    if reviewed_revision(item).author == user.name:
        return _(
            "You wrote this revision, so you cannot approve it yourself: the confidentiality "
            "review must be done by a second person (four-eyes rule). Ask another reviewer."
        )
    if not may(user.role, Do.ITEM_APPROVE):
        return _("Only reviewers and administrators carry out the confidentiality review.")
    if not views.under_review(item):
        return _("This item is not waiting for review.")
    return None


async def _review_page(
    request: web.Request, item: Item, *, error: str | None = None, status: int = 200
) -> web.Response:
    config = request.app[CONFIG]
    rev = reviewed_revision(item)
    findings = scan_revision(item, rev)
    correction = item.pending is not None
    return render(
        request,
        "review.html",
        status=status,
        item=item,
        rev=rev,
        row=views.item_row(request, item),
        body_html=render_body(rev.content.body, rev.content.body_format),
        warnings=[
            {
                "kind": views.tr(request, PII_LABELS[f.kind]),
                "field": _pii_field(request, f.field),
                "match": f.masked,
            }
            for f in findings
        ],
        previews=await previews(config, request.app[STORE], rev.content, item),
        channel_labels={c.value: views.channel_label(request, c) for c in Channel},
        diff=differences(item.revision, rev, request) if correction else [],
        correction=correction,
        correction_note=rev.correction_note or "",
        resend_options=[(c.value, views.channel_label(request, c)) for c in rev.content.channels],
        resend_default={"portal", "rss", "board"},
        blocked=why_not(request, item),
        waiting=views.under_review(item),
        error=error,
    )


@routes.get("/staff/items/{item_id}/review")
async def review(request: web.Request) -> web.Response:
    return await _review_page(request, await _item(request))


def _actor(request: web.Request) -> Actor:
    user = current_session(request).user
    return Actor(user.name, user.role)


async def _after_transition(request: web.Request) -> None:
    scheduler = request.app.get(SCHEDULER)
    if scheduler is not None:
        await scheduler.wake()
    worker = request.app.get(WORKER)
    if worker is not None:
        worker.wake()


@routes.post("/staff/items/{item_id}/approve")
async def approve(request: web.Request) -> web.StreamResponse:
    item = await _item(request)
    _ = gettext_for(request).gettext
    blocked = why_not(request, item)
    if blocked:
        return await _review_page(request, item, error=blocked, status=403)
    form = await read_form(request)
    resend = None
    if item.pending is not None:
        resend = frozenset(
            Channel(c) for c in form.getall("resend", []) if isinstance(c, str) and c in CHANNELS
        )
    try:
        await request.app[STORE].transition(
            item.id,
            Action.APPROVE,
            actor=_actor(request),
            acknowledge_personal_data=form.get("acknowledge") == "on",
            resend=resend,
        )
    except PersonalDataNotAcknowledged:
        return await _review_page(
            request,
            item,
            error=_(
                "The text shows personal data. Tick the box to confirm you checked it may be "
                "published, or reject the item."
            ),
            status=409,
        )
    except PublisherError as exc:
        return await _review_page(
            request, item, error=wording.core_message(_, exc.detail), status=exc.status
        )
    await _after_transition(request)
    raise web.HTTPSeeOther(f"{_staff(request)}/items/{item.id}?approved=1")


@routes.post("/staff/items/{item_id}/reject")
async def reject(request: web.Request) -> web.StreamResponse:
    item = await _item(request)
    _ = gettext_for(request).gettext
    form = await read_form(request)
    reason = form.get("reason")
    reason = reason.strip()[:2000] if isinstance(reason, str) else ""
    if not reason:
        return await _review_page(
            request, item, error=_("Give a reason for the rejection."), status=422
        )
    try:
        await request.app[STORE].transition(
            item.id, Action.REJECT, actor=_actor(request), reason=reason
        )
    except ForbiddenCharacters as exc:
        error = views.forbidden_characters(request, exc.characters, exc.field)
        return await _review_page(request, item, error=error, status=422)
    except PublisherError as exc:
        return await _review_page(
            request, item, error=wording.core_message(_, exc.detail), status=exc.status
        )
    raise web.HTTPSeeOther(f"{_staff(request)}/items/{item.id}?rejected=1")
