"""条例 Art30: 补正 is asked once (一次性), within 7 working days of receipt.

The 7 days count as the 20 of Art33 do: the day of receipt is not counted, the limit
is the 7th working day after it, by the 2025 calendar with its holidays and 调休.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from publisher.calendar import DayKind, SpecialDay, WorkCalendar, parse_calendar_file, set_year
from publisher.errors import ValidationFailed
from publisher.register import (
    ApplicantType,
    DisclosureRequest,
    PauseIn,
    PauseKind,
    Register,
    RequestIn,
    ResumeIn,
    correction_limit,
)
from publisher.store.sql import SqlStore
from tests.cli.test_cli import cli, make_site, ok, one_line_error
from tests.conftest import Api
from tests.report import CALENDAR_2025
from tests.web import assert_problem

D = date.fromisoformat

#: (received, the 7th working day after it: the last day to ask for 补正)
LIMITS = [
    ("2025-03-03", "2025-03-12"),  # Monday: one weekend in between
    ("2025-03-07", "2025-03-18"),  # Friday: across two weekends
    ("2025-04-01", "2025-04-11"),  # across 清明节 (4/4–4/6)
    ("2025-09-26", "2025-10-13"),  # across 国庆节, with 调休 on 9/28 and 10/11 counted
    ("2025-03-08", "2025-03-18"),  # received on a Saturday: Monday is the first day
]


def _days() -> list[SpecialDay]:
    return parse_calendar_file(CALENDAR_2025.read_text(encoding="utf-8"), "cal")


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar.of(_days(), [2025])


async def _register(store: SqlStore) -> Register:
    await set_year(store, 2025, _days(), actor="alice")
    return Register(store)


async def _add(register: Register, received: str) -> int:
    new = RequestIn(
        received_on=D(received), applicant_type=ApplicantType.NATURAL_PERSON, subject="低保名单"
    )
    return (await register.add(new, actor="alice")).id


def _pause(kind: str, on: str) -> PauseIn:
    return PauseIn(kind=PauseKind(kind), started_on=D(on))


@pytest.mark.parametrize(("received", "limit"), LIMITS)
def test_the_limit_is_the_7th_working_day_after_receipt(
    cal: WorkCalendar, received: str, limit: str
) -> None:
    req = DisclosureRequest(
        id=1,
        received_on=D(received),
        applicant_type=ApplicantType.NATURAL_PERSON,
        applicant=None,
        subject="x",
        extended_on=None,
        outcome=None,
        closed_on=None,
        note=None,
        pauses=(),
        created_by="alice",
    )
    assert correction_limit(req, cal) == D(limit)
    assert cal.working_days_between(D(received), D(limit)) == 7


@pytest.mark.parametrize(("received", "limit"), LIMITS)
async def test_correction_on_the_7th_working_day_is_accepted(
    store: SqlStore, received: str, limit: str
) -> None:
    register = await _register(store)
    request_id = await _add(register, received)
    req = await register.pause(request_id, _pause("correction", limit))
    assert [(p.kind, p.started_on) for p in req.pauses] == [(PauseKind.CORRECTION, D(limit))]


@pytest.mark.parametrize(
    ("received", "late", "limit"),
    [
        ("2025-03-03", "2025-03-13", "2025-03-12"),
        ("2025-09-26", "2025-10-14", "2025-10-13"),  # 8th working day after 国庆
        ("2025-04-01", "2025-04-12", "2025-04-11"),  # a Saturday after the limit
    ],
)
async def test_correction_after_the_7th_working_day_is_refused(
    store: SqlStore, received: str, late: str, limit: str
) -> None:
    register = await _register(store)
    request_id = await _add(register, received)
    with pytest.raises(ValidationFailed) as refused:
        await register.pause(request_id, _pause("correction", late))
    assert str(refused.value) == (
        f"request {request_id}: 补正 must be asked within 7 working days of receipt "
        f"(by {limit}); Art. 30"
    )
    assert (await register.get(request_id)).pauses == ()
    # the same day is fine for a consultation (Art32), which the rule does not touch
    req = await register.pause(request_id, _pause("consultation", late))
    assert [p.kind for p in req.pauses] == [PauseKind.CONSULTATION]


async def test_correction_is_asked_once(store: SqlStore) -> None:
    register = await _register(store)
    request_id = await _add(register, "2025-03-03")
    await register.pause(request_id, _pause("correction", "2025-03-04"))
    # asked again while waiting, or after the corrected request came: refused either way
    with pytest.raises(ValidationFailed, match=r"told to correct once \(Art\. 30\)"):
        await register.pause(request_id, _pause("correction", "2025-03-05"))
    await register.resume(request_id, ResumeIn(ended_on=D("2025-03-06")))
    with pytest.raises(ValidationFailed, match=r"told to correct once \(Art\. 30\)"):
        await register.pause(request_id, _pause("correction", "2025-03-07"))
    req = await register.get(request_id)
    assert [(p.kind, p.ended_on) for p in req.pauses] == [(PauseKind.CORRECTION, D("2025-03-06"))]


async def test_consultations_are_not_limited(store: SqlStore) -> None:
    register = await _register(store)
    request_id = await _add(register, "2025-03-03")
    await register.pause(request_id, _pause("correction", "2025-03-12"))
    await register.resume(request_id, ResumeIn(ended_on=D("2025-03-20")))
    # long after day 7, and twice: consultations stop the clock as before
    await register.pause(request_id, _pause("consultation", "2025-03-25"))
    await register.resume(request_id, ResumeIn(ended_on=D("2025-03-28")))
    req = await register.pause(request_id, _pause("consultation", "2025-04-02"))
    assert [p.kind for p in req.pauses] == [
        PauseKind.CORRECTION,
        PauseKind.CONSULTATION,
        PauseKind.CONSULTATION,
    ]


async def test_a_calendar_given_by_the_caller_is_used(store: SqlStore) -> None:
    register = Register(store)  # nothing entered in the store: weekends only …
    request_id = await _add(register, "2025-09-26")
    with pytest.raises(ValidationFailed, match=r"by 2025-10-07\); Art\. 30; .*2025 not entered"):
        await register.pause(request_id, _pause("correction", "2025-10-13"))
    # … while the official calendar, given by the caller, counts 国庆 and 调休
    cal = WorkCalendar.of(_days(), [2025])
    req = await register.pause(request_id, _pause("correction", "2025-10-13"), cal)
    assert req.pauses[0].started_on == D("2025-10-13")


def test_the_cli_refuses_with_one_line(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    ok(cli(site, "db", "upgrade"))
    ok(cli(site, "calendar", "set", "2025", "--file", str(CALENDAR_2025)))
    out = ok(cli(site, "requests", "add", "--received", "2025-03-03", "--applicant-type", "research", "--subject", "预算")).stdout  # fmt: skip
    request_id = out.split()[1].rstrip(":")
    late = cli(site, "requests", "pause", request_id, "--kind", "correction", "--on", "2025-03-13")
    one_line_error(late, "补正", "7 working days", "by 2025-03-12", "Art. 30")
    ok(cli(site, "requests", "pause", request_id, "--kind", "correction", "--on", "2025-03-12"))
    ok(cli(site, "requests", "resume", request_id, "--on", "2025-03-14"))
    again = cli(site, "requests", "pause", request_id, "--kind", "correction", "--on", "2025-03-17")
    one_line_error(again, "correct once", "Art. 30")


async def test_the_api_refuses_with_a_problem(api: Api) -> None:
    calendar: dict[str, list[dict[str, str | None]]] = {"holidays": [], "workdays": []}
    for d in _days():
        kind = "holidays" if d.kind is DayKind.HOLIDAY else "workdays"
        calendar[kind].append({"date": d.day.isoformat(), "name": d.name})
    status, _, _ = await api.call("PUT", "/api/v1/calendar/2025", json=calendar)
    assert status == 200
    new = {"received_on": "2025-09-26", "applicant_type": "business", "subject": "村道资金"}
    status, req, _ = await api.call("POST", "/api/v1/requests", json=new)
    assert status == 201, req
    path = f"/api/v1/requests/{req['id']}/pause"
    late = {"kind": "correction", "started_on": "2025-10-14"}
    status, body, headers = await api.call("POST", path, json=late)
    assert_problem(status, body, headers, 422, "补正", "by 2025-10-13", "Art. 30")
    in_time = {"kind": "correction", "started_on": "2025-10-13"}
    status, req, _ = await api.call("POST", path, json=in_time)
    assert status == 200 and req["paused"], req
    status, body, headers = await api.call("POST", path, json=in_time)
    assert_problem(status, body, headers, 422, "correct once", "Art. 30")
