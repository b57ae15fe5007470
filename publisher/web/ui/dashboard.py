"""One item for staff: its status and actions, the deliveries per channel and state
(refreshed while fan-out runs), the rows that need attention, and the audit trail."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from publisher.errors import PublisherError
from publisher.ledger import FINAL, DeliveryState, Ledger
from publisher.models import Action, Channel, Item, ItemStatus
from publisher.packs import packs_awaiting_operator
from publisher.policy import Do, may
from publisher.readiness import ChannelState, Readiness, item_readiness
from publisher.store import schema as t
from publisher.store.sql import utcnow
from publisher.web.deliveries import target_labels
from publisher.web.keys import CONFIG, STORE, WORKER
from publisher.web.problems import read_form
from publisher.web.ui import views, wording
from publisher.web.ui.compose import _item, _staff, editable
from publisher.web.ui.render import gettext_for, render
from publisher.web.ui.review import _actor, _after_transition
from publisher.web.ui.session import current_session

routes = web.RouteTableDef()

#: rows staff should look at, with their reasons
ATTENTION = (
    DeliveryState.FAILED,
    DeliveryState.DEFERRED,
    DeliveryState.UNKNOWN,
    DeliveryState.RETRYING,
)
ATTENTION_ROWS = 50
FINAL_VALUES = frozenset(s.value for s in FINAL)
#: the order states are shown in (and stacked in the progress bar)
STATE_ORDER = [s.value for s in DeliveryState]


#: a board row `sent` whose operator has not been told yet (shown apart, not finished)
AWAITING_OPERATOR = "awaiting_operator"


def progress(counts: dict[str, dict[str, int]], *, awaiting_operator: int = 0) -> dict[str, Any]:
    """Per channel: total, finished, percent and the counts by state; and overall.
    `awaiting_operator` board rows are `sent` (the pack is made) while the operator's
    notice has not gone out: they count as AWAITING_OPERATOR, not as finished."""
    channels = []
    all_total = all_done = 0
    for channel in [c.value for c in Channel]:
        states = dict(counts.get(channel) or {})
        if not states:
            continue
        if channel == Channel.BOARD.value and awaiting_operator:
            waiting = min(awaiting_operator, states.get(DeliveryState.SENT.value, 0))
            states[DeliveryState.SENT.value] -= waiting
            states[AWAITING_OPERATOR] = waiting
            states = {s: n for s, n in states.items() if n}
        total = sum(states.values())
        done = sum(n for s, n in states.items() if s in FINAL_VALUES)
        all_total += total
        all_done += done
        channels.append(
            {
                "channel": channel,
                "total": total,
                "done": done,
                "percent": round(100 * done / total) if total else 100,
                "states": {s: states[s] for s in [*STATE_ORDER, AWAITING_OPERATOR] if s in states},
            }
        )
    return {
        "channels": channels,
        "total": all_total,
        "done": all_done,
        "percent": round(100 * all_done / all_total) if all_total else 100,
        "settled": all_done == all_total,
    }


async def attention_rows(request: web.Request, item: Item) -> list[dict[str, Any]]:
    store = request.app[STORE]
    config = request.app[CONFIG]
    d = t.deliveries
    async with store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(d)
                .where(d.c.item_id == item.id, d.c.state.in_([s.value for s in ATTENTION]))
                .order_by(d.c.id)
                .limit(ATTENTION_ROWS)
            )
        ).all()
        labels = await target_labels(conn, config, [r.target for r in rows], erased="—")

    return [
        {
            "channel": views.channel_label(request, r.channel),
            "target": labels[r.target],
            "state": views.state_label(request, r.state),
            "reason": views.reason_label(request, r.reason),
            "error": (r.last_error or "")[:200],
            "attempts": r.attempts,
            "due": views.local_time(request, r.due_at),
        }
        for r in rows
    ]


def _labelled(
    request: web.Request, prog: dict[str, Any], ready: dict[str, Readiness]
) -> dict[str, Any]:
    """Labels in the staff's language; each of the item's channels says whether it can
    deliver (`readiness`); rows of a channel that is not configured are waiting for it."""
    _ = gettext_for(request).gettext
    for ch in prog["channels"]:
        ch["label"] = views.channel_label(request, ch["channel"])
        ch["state_labels"] = {s: views.state_label(request, s) for s in ch["states"]}
        found = ready.get(ch["channel"])
        if found is not None and found.state is ChannelState.NOT_CONFIGURED:
            ch["state_labels"][DeliveryState.QUEUED.value] = _("Waiting for configuration")
        if AWAITING_OPERATOR in ch["states"]:
            ch["state_labels"][AWAITING_OPERATOR] = _("Print pack made, operator not yet told")
    prog["readiness"] = {
        name: {**found.as_json(), "note": views.readiness_note(request, found)}
        for name, found in ready.items()
    }
    with_rows = {ch["channel"] for ch in prog["channels"]}
    prog["idle"] = [
        {
            "channel": name,
            "label": views.channel_label(request, name),
            "note": views.readiness_note(request, found)
            or _("Nothing planned for this channel yet"),
        }
        for name, found in ready.items()
        if name not in with_rows
    ]
    return prog


async def item_progress_data(request: web.Request, item: Item) -> dict[str, Any]:
    store = request.app[STORE]
    counts = await Ledger(store).counts(item.id)
    awaiting = await packs_awaiting_operator(store, item.id) if Channel.BOARD.value in counts else 0
    ready = await item_readiness(store, item)
    return _labelled(request, progress(counts, awaiting_operator=awaiting), ready)


#: how long after publication a page with no deliveries yet keeps looking for them
PLANNING_GRACE = timedelta(minutes=5)


def _planning_soon(item: Item) -> bool:
    """Just published and nothing planned yet: the fan-out is about to start."""
    return (
        item.status is ItemStatus.PUBLISHED
        and item.published_at is not None
        and utcnow() - item.published_at < PLANNING_GRACE
    )


def _status_text(request: web.Request, value: str | None) -> str:
    try:
        return views.status_label(request, ItemStatus(value)) if value else ""
    except ValueError:
        return value or ""


@routes.get("/staff/items/{item_id}")
async def item_page(request: web.Request) -> web.Response:
    store = request.app[STORE]
    item = await _item(request)
    user = current_session(request).user
    _ = gettext_for(request).gettext
    prog = await item_progress_data(request, item)
    notices = {
        "submitted": _("Submitted for review."),
        "approved": _("Approved."),
        "rejected": _("Rejected; the author can edit the item and submit it again."),
        "retried": _("Failed deliveries were queued again."),
        "withdrawn": _("Withdrawn."),
    }
    notice = next((v for k, v in notices.items() if k in request.query), None)
    left = request.query.get("left", "")
    if "retried" in request.query and left.isdigit() and int(left) > 0:
        why = (
            _("the item has expired")
            if request.query.get("why") == "expired"
            else _("the item has been withdrawn")
        )
        notice = _(
            "%(left)s deliveries were not queued again: %(why)s, and nothing publishes it again."
        ) % {"left": int(left), "why": why}
    audit = await store.audit(item.id, limit=200)
    is_editor = may(user.role, Do.ITEM_EDIT)
    is_reviewer = may(user.role, Do.ITEM_WITHDRAW)
    return render(
        request,
        "item.html",
        item=item,
        row=views.item_row(request, item),
        progress=prog,
        poll=not prog["settled"] or _planning_soon(item),
        attention=await attention_rows(request, item),
        audit=[
            {
                "at": views.local_time(request, e.at),
                "actor": wording.actor_label(_, e.actor),
                "action": wording.action_label(_, e.action),
                "from": _status_text(request, e.from_status),
                "to": _status_text(request, e.to_status),
                "revision": e.revision or "",
                "reason": e.reason or "",
            }
            for e in reversed(audit)
        ],
        notice=notice,
        can_edit=is_editor and editable(item),
        can_submit=is_editor and item.status is ItemStatus.DRAFT,
        can_submit_correction=is_editor
        and item.pending is not None
        and item.pending_state is not None
        and item.pending_state.value == "draft",
        can_review=is_reviewer and views.under_review(item),
        can_withdraw=is_reviewer
        and item.status in (ItemStatus.APPROVED, ItemStatus.SCHEDULED, ItemStatus.PUBLISHED),
        # only what a retry would requeue: never the publication of a withdrawn item
        can_retry=await Ledger(store).retryable(item.id) > 0,
        public_url=f"{request.app[CONFIG].site.public_base}/items/{item.id}"
        if item.status is ItemStatus.PUBLISHED
        else None,
    )


@routes.get("/staff/items/{item_id}/progress")
async def item_progress(request: web.Request) -> web.Response:
    """Counts per channel and state as JSON, for the page's polling script."""
    item = await _item(request)
    prog = await item_progress_data(request, item)
    return web.json_response(
        prog,
        dumps=lambda d: json.dumps(d, ensure_ascii=False),
        headers={"Cache-Control": "no-store"},
    )


@routes.post("/staff/items/{item_id}/retry")
async def retry(request: web.Request) -> web.StreamResponse:
    item = await _item(request)
    done = await Ledger(request.app[STORE]).retry(item.id)
    worker = request.app.get(WORKER)
    if worker is not None:
        worker.wake()
    query = f"retried={done.requeued}"
    if done.left:
        query += f"&left={done.left}&why={done.left_reason}"
    raise web.HTTPSeeOther(f"{_staff(request)}/items/{item.id}?{query}")


@routes.post("/staff/items/{item_id}/submit")
async def submit(request: web.Request) -> web.StreamResponse:
    item = await _item(request)
    await request.app[STORE].transition(item.id, Action.SUBMIT, actor=_actor(request))
    await _after_transition(request)
    raise web.HTTPSeeOther(f"{_staff(request)}/items/{item.id}?submitted=1")


@routes.post("/staff/items/{item_id}/withdraw")
async def withdraw(request: web.Request) -> web.StreamResponse:
    item = await _item(request)
    form = await read_form(request)
    reason = form.get("reason")
    reason = reason.strip()[:2000] if isinstance(reason, str) else ""
    if not reason:
        raise PublisherError(gettext_for(request).gettext("Give a reason for the withdrawal."))
    await request.app[STORE].transition(
        item.id, Action.WITHDRAW, actor=_actor(request), reason=reason
    )
    await _after_transition(request)
    raise web.HTTPSeeOther(f"{_staff(request)}/items/{item.id}?withdrawn=1")
