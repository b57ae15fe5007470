"""Statutory clocks: requests (20 working days, pauses, one extension) and proactive items."""

from __future__ import annotations

from datetime import date

import pytest

from publisher.calendar import WorkCalendar, parse_calendar_file, set_year
from publisher.clocks import items_due
from publisher.models import Action
from publisher.register import (
    ApplicantType,
    DisclosureRequest,
    Pause,
    PauseKind,
    deadline,
)
from tests.conftest import EDITOR, REVIEWER, publish
from tests.report import CALENDAR_2025

D = date.fromisoformat


@pytest.fixture
def cal() -> WorkCalendar:
    days = parse_calendar_file(CALENDAR_2025.read_text(encoding="utf-8"), "cal")
    return WorkCalendar.of(days, [2025])


def _req(received: str, *pauses: tuple[str, str, str | None], extended: str | None = None):
    return DisclosureRequest(
        id=1,
        received_on=D(received),
        applicant_type=ApplicantType.NATURAL_PERSON,
        applicant=None,
        subject="x",
        extended_on=D(extended) if extended else None,
        outcome=None,
        closed_on=None,
        note=None,
        pauses=tuple(
            Pause(n, PauseKind(kind), D(a), D(b) if b else None)
            for n, (kind, a, b) in enumerate(pauses)
        ),
        created_by="alice",
    )


def test_request_deadline_across_national_day(cal: WorkCalendar) -> None:
    assert deadline(_req("2025-09-19"), cal) == D("2025-10-23")
    # the one extension adds 20 more working days: 10/24 … 11/20
    assert deadline(_req("2025-09-19", extended="2025-10-20"), cal) == D("2025-11-20")


def test_correction_restarts_and_consultation_stops_the_clock(cal: WorkCalendar) -> None:
    # asked to correct on 9/22; the corrected request came on 9/30: counted from 9/30
    req = _req("2025-09-19", ("correction", "2025-09-22", "2025-09-30"))
    assert deadline(req, cal) == cal.add_working_days(D("2025-09-30"), 20) == D("2025-11-04")
    # waiting for the correction, or for the third party: no deadline runs
    assert deadline(_req("2025-09-19", ("correction", "2025-09-22", None)), cal) is None
    assert deadline(_req("2025-09-19", ("consultation", "2025-09-22", None)), cal) is None
    # a consultation from 9/26 to 10/10 takes 9/28, 9/29, 9/30, 10/9, 10/10 off the clock
    req = _req("2025-09-19", ("consultation", "2025-09-26", "2025-10-10"))
    assert deadline(req, cal) == cal.add_working_days(D("2025-10-23"), 5) == D("2025-10-30")


async def test_items_due_lists_clocks_near_or_past_their_end(store, new_item) -> None:
    days = parse_calendar_file(CALENDAR_2025.read_text(encoding="utf-8"), "cal")
    await set_year(store, 2025, days, actor="alice")
    from publisher.calendar import load_calendar

    cal = await load_calendar(store)
    overdue = await new_item(written_at="2025-09-10")  # deadline 10/14, across 国庆
    near = await new_item(written_at="2025-09-19")  # deadline 2025-10-23
    far = await new_item(written_at="2025-10-20")  # deadline 2025-11-17
    elsewhere = await new_item(
        written_at="2025-09-01", disclosure="on_request", disclosure_reason="依申请"
    )
    done = await publish(store, await new_item(written_at="2025-09-01"))
    changed = await store.update_item(
        done.id, {"title": "更正后的标题"}, actor=EDITOR, if_match=done.etag
    )
    assert changed.pending is not None
    clocks = await items_due(store, cal, D("2025-10-20"), within=5)
    by_id = {c.item_id: c for c in clocks}
    assert set(by_id) == {overdue.id, near.id}  # the change was made today: 20 days left
    assert by_id[overdue.id].deadline == D("2025-10-14")
    assert by_id[overdue.id].working_days_left == -4  # 10/15, 16, 17, 20
    assert by_id[near.id].working_days_left == 3
    assert [c.item_id for c in clocks] == [overdue.id, near.id]
    assert far.id not in by_id and elsewhere.id not in by_id
    # a reviewer approving the late item stops its clock
    await store.transition(overdue.id, Action.SUBMIT, actor=EDITOR)
    await store.transition(overdue.id, Action.APPROVE, actor=REVIEWER)
    assert overdue.id not in {c.item_id for c in await items_due(store, cal, D("2025-10-20"), 5)}
