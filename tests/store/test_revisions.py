"""Edits after approval: a pending revision that goes through review again (更正)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from publisher.errors import Conflict, FourEyesViolation, PreconditionFailed
from publisher.models import Action, Channel, ItemStatus, RevisionState
from publisher.store.sql import EventKind, ItemQuery
from tests.conftest import ADMIN, EDITOR, EDITOR2, REVIEWER, publish

A = Action
NEW_TITLE = "关于上余镇2026年冬季农田水利建设的通知（更正）"


async def test_edit_of_published_item_waits_for_review_and_goes_out_as_correction(store, new_item):
    live = await publish(store, await new_item())
    old_title = live.content.title

    edited = await store.update_item(
        live.id,
        {"title": NEW_TITLE, "correction_note": "标题年份有误"},
        actor=EDITOR2,
        if_match=live.etag,
    )
    # the item stays live with its published text; the edit waits as a pending revision
    assert edited.status is ItemStatus.PUBLISHED
    assert edited.content.title == old_title
    assert edited.revision.number == 1
    assert edited.pending is not None
    assert edited.pending.number == 2
    assert edited.pending.content.title == NEW_TITLE
    assert edited.pending.author == EDITOR2.name
    assert edited.pending_state is RevisionState.DRAFT
    # staff searching the catalogue still find the published text
    found, _ = await store.list_items(ItemQuery(text="更正"))
    assert found == []

    submitted = await store.transition(live.id, A.SUBMIT, actor=EDITOR2)
    assert submitted.pending_state is RevisionState.IN_REVIEW
    assert submitted.status is ItemStatus.PUBLISHED
    assert submitted.content.title == old_title

    corrected = await store.transition(live.id, A.APPROVE, actor=REVIEWER)
    assert corrected.status is ItemStatus.PUBLISHED
    assert corrected.content.title == NEW_TITLE
    assert corrected.revision.number == 2
    assert corrected.revision.correction_note == "标题年份有误"
    assert corrected.pending is None and corrected.pending_state is None
    assert corrected.index_no == live.index_no
    assert corrected.published_at == live.published_at

    events = await store.events(live.id)
    assert [(e.kind, e.revision) for e in events] == [
        (EventKind.PUBLISHED, 1),
        (EventKind.CORRECTED, 2),
    ]
    # the correction reaches (at least) the public catalogue, never beyond the item's channels
    assert Channel.PORTAL in events[1].channels
    assert set(events[1].channels) <= set(live.content.channels)
    found, _ = await store.list_items(ItemQuery(text="更正"))
    assert [i.id for i in found] == [live.id]

    # a second correction is revision 3
    again = await store.update_item(
        live.id, {"body": "更正后的正文。"}, actor=EDITOR, if_match=corrected.etag
    )
    assert again.pending is not None and again.pending.number == 3
    assert again.pending.content.title == NEW_TITLE  # builds on the live text


async def test_pending_revision_needs_someone_other_than_its_author(store, new_item):
    live = await publish(store, await new_item())
    # the admin corrects an item someone else wrote, an editor polishes the correction…
    edited = await store.update_item(live.id, {"title": "草"}, actor=ADMIN, if_match=live.etag)
    await store.update_item(live.id, {"title": NEW_TITLE}, actor=EDITOR2, if_match=edited.etag)
    await store.transition(live.id, A.SUBMIT, actor=ADMIN)
    # …and cannot also approve the correction
    with pytest.raises(FourEyesViolation):
        await store.transition(live.id, A.APPROVE, actor=ADMIN)
    item = await store.get_item(live.id)
    assert item.content.title == live.content.title
    assert item.pending_state is RevisionState.IN_REVIEW
    assert [e.kind for e in await store.events(live.id)] == [EventKind.PUBLISHED]

    done = await store.transition(live.id, A.APPROVE, actor=REVIEWER)
    assert done.content.title == NEW_TITLE


async def test_rejected_revision_keeps_the_live_text_and_can_be_reworked(store, new_item):
    live = await publish(store, await new_item())
    await store.update_item(live.id, {"title": NEW_TITLE}, actor=EDITOR, if_match=live.etag)
    await store.transition(live.id, A.SUBMIT, actor=EDITOR)
    rejected = await store.transition(live.id, A.REJECT, actor=REVIEWER, reason="更正理由不足")

    assert rejected.status is ItemStatus.PUBLISHED
    assert rejected.content.title == live.content.title
    assert rejected.revision.number == 1
    assert rejected.pending_state is RevisionState.REJECTED
    assert [e.kind for e in await store.events(live.id)] == [EventKind.PUBLISHED]
    reject_row = (await store.audit(live.id))[-1]
    assert (reject_row.action, reject_row.reason, reject_row.revision) == (
        "reject",
        "更正理由不足",
        2,
    )

    reworked = await store.update_item(
        live.id, {"title": NEW_TITLE + "二"}, actor=EDITOR, if_match=rejected.etag
    )
    assert reworked.pending is not None and reworked.pending.number == 2
    assert reworked.pending_state is RevisionState.DRAFT
    await store.transition(live.id, A.SUBMIT, actor=EDITOR)
    done = await store.transition(live.id, A.APPROVE, actor=REVIEWER)
    assert done.content.title == NEW_TITLE + "二"
    assert done.revision.number == 2


async def test_pending_revision_in_review_cannot_change(store, new_item):
    live = await publish(store, await new_item())
    edited = await store.update_item(
        live.id, {"title": NEW_TITLE}, actor=EDITOR, if_match=live.etag
    )
    in_review = await store.transition(live.id, A.SUBMIT, actor=EDITOR)
    assert in_review.etag != edited.etag
    with pytest.raises(Conflict, match="in review"):
        await store.update_item(live.id, {"title": "又改了"}, actor=EDITOR, if_match=in_review.etag)

    async def chunks():
        yield b"%PDF-1.4"

    with pytest.raises(Conflict):
        await store.add_attachment(live.id, "a.pdf", "application/pdf", chunks(), actor=EDITOR)
    item = await store.get_item(live.id)
    assert item.pending is not None and item.pending.content.title == NEW_TITLE
    assert item.attachments == ()
    # submitting twice is no move
    with pytest.raises(Conflict):
        await store.transition(live.id, A.SUBMIT, actor=EDITOR)


async def test_stale_if_match_is_refused_and_nothing_is_written(store, new_item):
    draft = await new_item()
    fresh = await store.update_item(draft.id, {"title": "甲"}, actor=EDITOR, if_match=draft.etag)
    with pytest.raises(PreconditionFailed) as err:
        await store.update_item(draft.id, {"title": "乙"}, actor=EDITOR2, if_match=draft.etag)
    assert err.value.status == 412
    assert (await store.get_item(draft.id)).content.title == "甲"

    live = await publish(store, await store.get_item(draft.id))
    assert live.etag != fresh.etag
    with pytest.raises(PreconditionFailed):
        await store.update_item(live.id, {"title": "丙"}, actor=EDITOR, if_match=fresh.etag)
    item = await store.get_item(live.id)
    assert item.pending is None and item.content.title == "甲"


async def test_withdrawn_and_expired_items_cannot_be_edited_or_corrected(store, new_item):
    withdrawn = await publish(store, await new_item())
    withdrawn = await store.transition(withdrawn.id, A.WITHDRAW, actor=REVIEWER, reason="撤回")
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    expired = await publish(store, await new_item(expires_at=soon))
    await store.expire_due(datetime.now(UTC) + timedelta(hours=2))
    expired = await store.get_item(expired.id)
    assert expired.status is ItemStatus.EXPIRED

    for item in (withdrawn, expired):
        with pytest.raises(Conflict, match=item.status.value):
            await store.update_item(item.id, {"title": "改"}, actor=EDITOR, if_match=item.etag)
        after = await store.get_item(item.id)
        assert after.pending is None and after.version == item.version

    # withdrawing a published item drops the correction waiting on it
    live = await publish(store, await new_item())
    await store.update_item(live.id, {"title": NEW_TITLE}, actor=EDITOR, if_match=live.etag)
    gone = await store.transition(live.id, A.WITHDRAW, actor=REVIEWER, reason="撤回")
    assert gone.status is ItemStatus.WITHDRAWN
    assert gone.pending is None and gone.pending_state is None
    assert gone.content.title == live.content.title


async def test_correction_of_scheduled_item_moves_its_publication(store, new_item):
    now = datetime.now(UTC)
    item = await new_item(publish_at=(now + timedelta(hours=1)).isoformat())
    scheduled = await publish(store, item)
    assert scheduled.status is ItemStatus.SCHEDULED
    later = now + timedelta(hours=3)
    await store.update_item(
        item.id,
        {"title": NEW_TITLE, "publish_at": later},
        actor=EDITOR,
        if_match=scheduled.etag,
    )
    await store.transition(item.id, A.SUBMIT, actor=EDITOR)
    approved = await store.transition(item.id, A.APPROVE, actor=REVIEWER)
    assert approved.status is ItemStatus.SCHEDULED
    assert approved.content.publish_at == later

    assert await store.publish_due(now + timedelta(hours=2)) == []
    assert await store.publish_due(now + timedelta(hours=4)) == [item.id]
    live = await store.get_item(item.id)
    assert live.status is ItemStatus.PUBLISHED
    assert live.content.title == NEW_TITLE
    assert [(e.kind, e.revision) for e in await store.events(item.id)] == [(EventKind.PUBLISHED, 2)]
