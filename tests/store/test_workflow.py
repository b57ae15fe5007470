"""The review workflow through the store: transitions, roles, four-eyes, audit."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from publisher import workflow
from publisher.errors import (
    Conflict,
    Forbidden,
    FourEyesViolation,
    InvalidTransition,
    ValidationFailed,
)
from publisher.models import Action, Item, ItemStatus
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import ADMIN, EDITOR, EDITOR2, REVIEWER, REVIEWER2, publish

S = ItemStatus
A = Action
USER_ACTIONS = sorted(workflow.ACTION_ROLES)
SYSTEM_ACTIONS = sorted(set(A) - set(workflow.ACTION_ROLES))


def soon(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def force_status(store: SqlStore, item: Item, status: ItemStatus) -> Item:
    """Put an item in a status the public flow only passes through (approved)."""
    async with store.write() as conn:
        await conn.execute(
            t.items.update()
            .where(t.items.c.id == item.id)
            .values(status=status.value, version=t.items.c.version + 1)
        )
    return await store.get_item(item.id)


async def reach(store: SqlStore, new_item, status: ItemStatus) -> Item:
    """A fresh item in `status`, got there the way users and the scheduler do."""
    if status is S.SCHEDULED:
        item = await new_item(publish_at=soon(hours=1))
        item = await publish(store, item)
    elif status is S.EXPIRED:
        item = await publish(store, await new_item(expires_at=soon(hours=1)))
        await store.expire_due(datetime.now(UTC) + timedelta(hours=2))
        item = await store.get_item(item.id)
    else:
        item = await new_item()
        if status is not S.DRAFT:
            item = await store.transition(item.id, A.SUBMIT, actor=EDITOR)
        if status is S.REJECTED:
            item = await store.transition(item.id, A.REJECT, actor=REVIEWER, reason="typo")
        elif status is S.APPROVED:
            item = await force_status(store, item, S.APPROVED)
        elif status in (S.PUBLISHED, S.WITHDRAWN):
            item = await store.transition(item.id, A.APPROVE, actor=REVIEWER)
            if status is S.WITHDRAWN:
                item = await store.transition(item.id, A.WITHDRAW, actor=REVIEWER, reason="x")
    assert item.status is status
    return item


async def do(store: SqlStore, item: Item, action: Action) -> Item:
    """Make `action` happen to `item` the way the product makes it happen."""
    if action is A.SUBMIT or action is A.REOPEN:
        return await store.transition(item.id, action, actor=EDITOR)
    if action in (A.APPROVE, A.REJECT, A.WITHDRAW):
        return await store.transition(item.id, action, actor=REVIEWER, reason="why not")
    if action is A.EXPIRE:
        await store.expire_due(datetime.now(UTC) + timedelta(days=1))
    elif action is A.PUBLISH and item.status is S.SCHEDULED:
        await store.publish_due(datetime.now(UTC) + timedelta(days=1))
    return await store.get_item(item.id)


async def test_every_legal_transition_works_and_is_audited(store, new_item):
    for (src, action), dst in workflow.TRANSITIONS.items():
        pair = f"{src.value} --{action.value}--> {dst.value}"
        if src is S.APPROVED and action is not A.WITHDRAW:
            # approved is passed through at once: approve an in_review item and look
            # at the system's move on from approved
            overrides = {"publish_at": soon(hours=1)} if action is A.SCHEDULE else {}
            item = await new_item(**overrides)
            await store.transition(item.id, A.SUBMIT, actor=EDITOR)
            after = await store.transition(item.id, A.APPROVE, actor=REVIEWER)
            who = workflow.SYSTEM_ACTOR
        else:
            if src is S.PUBLISHED and action is A.EXPIRE:
                item = await publish(store, await new_item(expires_at=soon(hours=1)))
            else:
                item = await reach(store, new_item, src)
            after = await do(store, item, action)
            who = {
                A.SUBMIT: EDITOR.name,
                A.REOPEN: EDITOR.name,
                A.APPROVE: REVIEWER.name,
                A.REJECT: REVIEWER.name,
                A.WITHDRAW: REVIEWER.name,
            }.get(action, workflow.SYSTEM_ACTOR)
        rows = [
            e
            for e in await store.audit(item.id)
            if (e.from_status, e.to_status) == (src.value, dst.value)
        ]
        assert len(rows) == 1, f"{pair}: expected one audit row, got {rows}"
        assert (rows[0].action, rows[0].actor) == (action.value, who), pair
        # approve moves on at once, to published for an item without publish_at
        assert after.status is (S.PUBLISHED if action is A.APPROVE else dst), pair


async def test_every_illegal_move_is_a_409_and_changes_nothing(store, new_item):
    for status in S:
        item = await reach(store, new_item, status)
        audit_before = await store.audit(item.id)
        illegal = [a for a in USER_ACTIONS if (status, a) not in workflow.TRANSITIONS]
        assert illegal
        for action in illegal:
            pair = f"{action.value} from {status.value}"
            # the admin may do anything a role may do, so only the table can refuse
            with pytest.raises(InvalidTransition) as err:
                await store.transition(item.id, action, actor=ADMIN, reason="because")
            assert err.value.status == 409, pair
            assert status.value in err.value.detail and action.value in err.value.detail, pair
            after = await store.get_item(item.id)
            assert (after.status, after.version) == (item.status, item.version), pair
        assert await store.audit(item.id) == audit_before, status
    # the message says what can be done instead
    draft = await new_item()
    with pytest.raises(InvalidTransition, match="from draft you can: submit"):
        await store.transition(draft.id, A.APPROVE, actor=REVIEWER)


async def test_nobody_may_make_the_system_moves_by_hand(store, new_item):
    item = await new_item()
    await store.transition(item.id, A.SUBMIT, actor=EDITOR)
    item = await force_status(store, item, S.APPROVED)
    assert SYSTEM_ACTIONS == [A.EXPIRE, A.PUBLISH, A.SCHEDULE]
    for action in SYSTEM_ACTIONS:
        for actor in (EDITOR, REVIEWER, ADMIN):
            with pytest.raises(Forbidden):
                await store.transition(item.id, action, actor=actor)
    assert (await store.get_item(item.id)).status is S.APPROVED


async def test_editor_cannot_approve_reject_or_withdraw(store, new_item):
    item = await new_item()
    await store.transition(item.id, A.SUBMIT, actor=EDITOR)
    for action in (A.APPROVE, A.REJECT):
        with pytest.raises(Forbidden) as err:
            await store.transition(item.id, action, actor=EDITOR2, reason="r")
        assert err.value.status == 403
    live = await publish(store, await new_item())
    with pytest.raises(Forbidden):
        await store.transition(live.id, A.WITHDRAW, actor=EDITOR, reason="r")
    assert (await store.get_item(item.id)).status is S.IN_REVIEW
    assert (await store.get_item(live.id)).status is S.PUBLISHED


async def test_reviewer_cannot_create_edit_submit_or_attach(store, new_item):
    with pytest.raises(Forbidden):
        await new_item(actor=REVIEWER)
    item = await new_item()
    with pytest.raises(Forbidden):
        await store.update_item(item.id, {"title": "改"}, actor=REVIEWER, if_match=item.etag)
    with pytest.raises(Forbidden):
        await store.transition(item.id, A.SUBMIT, actor=REVIEWER)

    async def chunks():
        yield b"data"

    with pytest.raises(Forbidden):
        await store.add_attachment(item.id, "a.txt", "text/plain", chunks(), actor=REVIEWER)
    after = await store.get_item(item.id)
    assert after.status is S.DRAFT
    assert after.content.title == item.content.title
    assert after.attachments == ()


async def test_admin_author_cannot_approve_own_item_another_reviewer_can(store, new_item):
    item = await new_item(actor=ADMIN)
    await store.transition(item.id, A.SUBMIT, actor=ADMIN)
    with pytest.raises(FourEyesViolation) as err:
        await store.transition(item.id, A.APPROVE, actor=ADMIN)
    assert err.value.status == 403
    assert (await store.get_item(item.id)).status is S.IN_REVIEW
    live = await store.transition(item.id, A.APPROVE, actor=REVIEWER2)
    assert live.status is S.PUBLISHED
    approve = [e for e in await store.audit(item.id) if e.action == "approve"]
    assert [e.actor for e in approve] == [REVIEWER2.name]
    # an admin may approve what someone else wrote
    assert (await publish(store, await new_item(), reviewer=ADMIN)).status is S.PUBLISHED


async def test_author_cannot_approve_after_someone_else_touched_the_draft(store, new_item):
    """Four-eyes holds for the item's author even when another editor fixed a typo."""
    item = await new_item(actor=ADMIN)
    item = await store.update_item(
        item.id, {"title": "关于冬季农田水利建设的通知（修订）"}, actor=EDITOR, if_match=item.etag
    )
    await store.transition(item.id, A.SUBMIT, actor=ADMIN)
    with pytest.raises(FourEyesViolation):
        await store.transition(item.id, A.APPROVE, actor=ADMIN)
    assert (await store.get_item(item.id)).status is S.IN_REVIEW
    # a reviewer who wrote none of it can
    assert (await store.transition(item.id, A.APPROVE, actor=REVIEWER)).status is S.PUBLISHED


async def test_approve_answers_with_the_new_status(store, new_item):
    cases = [(None, S.PUBLISHED), (soon(hours=-2), S.PUBLISHED), (soon(hours=2), S.SCHEDULED)]
    for publish_at, expected in cases:
        item = await new_item(**({"publish_at": publish_at} if publish_at else {}))
        await store.transition(item.id, A.SUBMIT, actor=EDITOR)
        answered = await store.transition(item.id, A.APPROVE, actor=REVIEWER)
        assert answered.status is expected, publish_at
        assert (await store.get_item(item.id)).status is expected
        if expected is S.PUBLISHED:
            assert answered.index_no is not None and answered.published_at is not None
        else:
            assert answered.index_no is None and answered.published_at is None


async def test_item_in_review_is_locked_and_rejection_needs_a_reason(store, new_item):
    item = await new_item()
    item = await store.transition(item.id, A.SUBMIT, actor=EDITOR)
    with pytest.raises(Conflict):
        await store.update_item(item.id, {"title": "改"}, actor=EDITOR, if_match=item.etag)
    assert (await store.get_item(item.id)).content.title == item.content.title
    for reason in (None, "", "   "):
        with pytest.raises(ValidationFailed, match="reason"):
            await store.transition(item.id, A.REJECT, actor=REVIEWER, reason=reason)
    assert (await store.get_item(item.id)).status is S.IN_REVIEW
    rejected = await store.transition(item.id, A.REJECT, actor=REVIEWER, reason="缺少落款")
    assert rejected.status is S.REJECTED


async def test_rejected_item_edited_goes_back_to_draft(store, new_item):
    item = await new_item()
    await store.transition(item.id, A.SUBMIT, actor=EDITOR)
    rejected = await store.transition(item.id, A.REJECT, actor=REVIEWER, reason="缺少落款")
    assert rejected.status is S.REJECTED
    edited = await store.update_item(
        item.id,
        {"body": rejected.content.body + "\n\n上余镇人民政府"},
        actor=EDITOR,
        if_match=rejected.etag,
    )
    assert edited.status is S.DRAFT
    assert edited.content.body.endswith("上余镇人民政府")
    assert edited.pending is None
    reopen = [e for e in await store.audit(item.id) if e.action == "reopen"]
    assert [(e.actor, e.from_status, e.to_status) for e in reopen] == [
        (EDITOR.name, "rejected", "draft")
    ]
    # and it can go round again
    assert (await publish(store, edited)).status is S.PUBLISHED


async def test_every_transition_is_audited_with_who_from_to_and_reason(store, new_item):
    item = await new_item()
    await store.transition(item.id, A.SUBMIT, actor=EDITOR)
    await store.transition(item.id, A.REJECT, actor=REVIEWER, reason="请补充附件")
    item = await store.get_item(item.id)
    await store.update_item(item.id, {"title": "新标题"}, actor=EDITOR2, if_match=item.etag)
    await store.transition(item.id, A.SUBMIT, actor=EDITOR2)
    await store.transition(item.id, A.APPROVE, actor=REVIEWER2)
    await store.transition(item.id, A.WITHDRAW, actor=REVIEWER, reason="发布有误")

    moves = [
        (e.action, e.actor, e.from_status, e.to_status, e.reason)
        for e in await store.audit(item.id)
        if e.from_status != e.to_status
    ]
    assert moves == [
        ("create", "alice", None, "draft", None),
        ("submit", "alice", "draft", "in_review", None),
        ("reject", "bob", "in_review", "rejected", "请补充附件"),
        ("reopen", "carol", "rejected", "draft", None),
        ("submit", "carol", "draft", "in_review", None),
        ("approve", "dave", "in_review", "approved", None),
        ("publish", "system", "approved", "published", None),
        ("withdraw", "bob", "published", "withdrawn", "发布有误"),
    ]


async def test_audit_log_is_append_only_and_in_order(store, new_item):
    item = await new_item()
    await store.transition(item.id, A.SUBMIT, actor=EDITOR)
    first = await store.audit(item.id)
    other = await new_item(actor=EDITOR2)
    await store.transition(item.id, A.APPROVE, actor=REVIEWER)
    await store.transition(item.id, A.WITHDRAW, actor=REVIEWER, reason="重复发布")
    later = await store.audit(item.id)

    assert later[: len(first)] == first  # nothing earlier changed or vanished
    assert len(later) > len(first)
    assert [e.id for e in later] == sorted({e.id for e in later})
    assert all(a.at <= b.at for a, b in itertools.pairwise(later))
    assert {e.item_id for e in later} == {item.id}
    # the whole log interleaves items in the order things happened
    everything = await store.audit()
    assert [e.id for e in everything] == sorted(e.id for e in everything)
    assert {e.item_id for e in everything} == {item.id, other.id}
    assert [e.action for e in everything][:3] == ["create", "submit", "create"]
