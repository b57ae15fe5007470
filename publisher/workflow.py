"""The review workflow as data, and the rules around it (pure: no I/O).

Only this module decides which moves are legal, who may make them and which
channels an item may reach; the store applies the decision in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from publisher.errors import Forbidden, FourEyesViolation, InvalidTransition
from publisher.models import Action, Channel, Content, Disclosure, ItemStatus, Role
from publisher.policy import POLICY, Do

S = ItemStatus
A = Action

#: (from, action) -> to. Anything not here answers 409.
TRANSITIONS: dict[tuple[ItemStatus, Action], ItemStatus] = {
    (S.DRAFT, A.SUBMIT): S.IN_REVIEW,
    (S.IN_REVIEW, A.APPROVE): S.APPROVED,
    (S.IN_REVIEW, A.REJECT): S.REJECTED,
    (S.REJECTED, A.REOPEN): S.DRAFT,
    (S.APPROVED, A.SCHEDULE): S.SCHEDULED,
    (S.APPROVED, A.PUBLISH): S.PUBLISHED,
    (S.SCHEDULED, A.PUBLISH): S.PUBLISHED,
    (S.PUBLISHED, A.EXPIRE): S.EXPIRED,
    (S.APPROVED, A.WITHDRAW): S.WITHDRAWN,
    (S.SCHEDULED, A.WITHDRAW): S.WITHDRAWN,
    (S.PUBLISHED, A.WITHDRAW): S.WITHDRAWN,
}

#: who may ask for each action (from publisher.policy, the one table); system actions
#: (schedule, publish, expire) have no role
ACTION_ROLES: dict[Action, frozenset[Role]] = {
    A.SUBMIT: POLICY[Do.ITEM_SUBMIT],
    A.REOPEN: POLICY[Do.ITEM_REOPEN],
    A.APPROVE: POLICY[Do.ITEM_APPROVE],
    A.REJECT: POLICY[Do.ITEM_REJECT],
    A.WITHDRAW: POLICY[Do.ITEM_WITHDRAW],
}
EDIT_ROLES = POLICY[Do.ITEM_EDIT]

#: the actor recorded for moves the scheduler makes
SYSTEM_ACTOR = "system"


def next_status(current: ItemStatus, action: Action) -> ItemStatus:
    """The status `action` leads to from `current`; raises InvalidTransition."""
    try:
        return TRANSITIONS[(current, action)]
    except KeyError:
        allowed = sorted(a.value for (s, a) in TRANSITIONS if s == current)
        hint = f"; from {current.value} you can: {', '.join(allowed)}" if allowed else ""
        raise InvalidTransition(
            f"cannot {action.value} an item that is {current.value}{hint}",
            item_status=current.value,  # not "status": that is the problem document's HTTP status
            action=action.value,
        ) from None


def check_role(role: Role, action: Action) -> None:
    allowed = ACTION_ROLES.get(action)
    if allowed is None or role not in allowed:
        raise Forbidden(f"role {role.value} may not {action.value} items")


def check_can_edit(role: Role) -> None:
    if role not in EDIT_ROLES:
        raise Forbidden(f"role {role.value} may not create or edit items")


def check_four_eyes(author: str, approver: str) -> None:
    """The confidentiality review must be done by someone other than the author."""
    if author == approver:
        raise FourEyesViolation(
            f"{approver} wrote this revision and cannot also approve it; "
            "another reviewer must do the confidentiality review (保密审查)"
        )


def after_approval(content: Content, now: datetime) -> Action:
    """Approval moves on at once: to scheduled for a future publish_at, else to published."""
    if content.publish_at is not None and content.publish_at > now:
        return A.SCHEDULE
    return A.PUBLISH


def public_channels(
    disclosure: Disclosure, requested: Iterable[Channel], enabled: Iterable[Channel]
) -> frozenset[Channel]:
    """The channels an item may actually reach.

    Only proactive (主动公开) items ever leave the store; on_request items are
    counted for staff and withheld items stay put. Every fan-out and every public
    page asks this one function.
    """
    if disclosure is not Disclosure.PROACTIVE:
        return frozenset()
    return frozenset(requested) & frozenset(enabled)


def is_publicly_visible(status: ItemStatus, disclosure: Disclosure) -> bool:
    return status is ItemStatus.PUBLISHED and disclosure is Disclosure.PROACTIVE
