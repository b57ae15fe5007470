"""The 20-working-day clock for proactive items (条例 Art26).

An item that must be published proactively goes out within 20 working days of
being made (成文日期, `written_at`) or changed. For an item not yet published the
clock runs from its 成文日期; for a published item with a revision waiting for
review it runs from that revision's last edit (the change). The annual report
counts publications and corrections that came later than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from publisher.calendar import WorkCalendar
from publisher.models import Disclosure, ItemStatus
from publisher.store import schema as t
from publisher.store.sql import SqlStore

#: Art26: 自该政府信息形成或者变更之日起20个工作日内
PUBLISH_DAYS = 20

#: statuses of an item that has not gone out yet
NOT_YET_PUBLISHED = (
    ItemStatus.DRAFT,
    ItemStatus.IN_REVIEW,
    ItemStatus.REJECTED,
    ItemStatus.APPROVED,
    ItemStatus.SCHEDULED,
)


def publication_deadline(made_on: date, calendar: WorkCalendar) -> date:
    return calendar.add_working_days(made_on, PUBLISH_DAYS)


def is_late(made_at: datetime, published_at: datetime, tz: ZoneInfo, cal: WorkCalendar) -> bool:
    """Published after the 20th working day from the day it was made or changed (site dates)."""
    made_on = made_at.astimezone(tz).date()
    return published_at.astimezone(tz).date() > publication_deadline(made_on, cal)


@dataclass(frozen=True, slots=True)
class ItemClock:
    item_id: str
    title: str
    status: ItemStatus
    #: "written": not yet published, from 成文日期; "changed": a revision of a published item
    reason: str
    starts_on: date
    deadline: date
    #: working days from today to the deadline; negative once it has passed
    working_days_left: int
    publish_at: datetime | None


async def items_due(
    store: SqlStore, calendar: WorkCalendar, today: date, within: int
) -> list[ItemClock]:
    """Proactive items whose clock runs out within `within` working days or has run out,
    most urgent first."""
    tz = store.config.site.tz
    i, live, pending = t.items, t.revisions, t.revisions.alias("pending")
    stmt = (
        sa.select(
            i.c.id,
            i.c.status,
            i.c.written_at,
            i.c.publish_at,
            live.c.title,
            pending.c.created_at.label("changed_at"),
            pending.c.disclosure.label("pending_disclosure"),
        )
        .select_from(
            i.join(
                live, sa.and_(live.c.item_id == i.c.id, live.c.number == i.c.revision)
            ).outerjoin(
                pending,
                sa.and_(pending.c.item_id == i.c.id, pending.c.number == i.c.pending_revision),
            )
        )
        .where(
            i.c.imported.is_(False),
            sa.or_(
                sa.and_(
                    i.c.status.in_([s.value for s in NOT_YET_PUBLISHED]),
                    i.c.disclosure == Disclosure.PROACTIVE.value,
                ),
                sa.and_(
                    i.c.status == ItemStatus.PUBLISHED.value, i.c.pending_revision.is_not(None)
                ),
            ),
        )
    )
    async with store.read() as conn:
        rows = (await conn.execute(stmt)).all()
    out: list[ItemClock] = []
    for row in rows:
        if row.changed_at is not None and row.status == ItemStatus.PUBLISHED.value:
            if row.pending_disclosure != Disclosure.PROACTIVE.value:
                continue
            reason, made = "changed", row.changed_at
        else:
            reason, made = "written", row.written_at
        starts_on = made.astimezone(tz).date()
        due = publication_deadline(starts_on, calendar)
        left = calendar.working_days_between(today, due)
        if left > within:
            continue
        out.append(
            ItemClock(
                item_id=row.id,
                title=row.title,
                status=ItemStatus(row.status),
                reason=reason,
                starts_on=starts_on,
                deadline=due,
                working_days_left=left,
                publish_at=row.publish_at,
            )
        )
    out.sort(key=lambda c: (c.deadline, c.item_id))
    return out
