"""Working days by the official 2025 schedule: weekends, holidays and make-up days (调休)."""

from __future__ import annotations

from datetime import date

import pytest

from publisher.calendar import (
    DayKind,
    SpecialDay,
    WorkCalendar,
    check_year,
    load_calendar,
    parse_calendar_file,
    set_year,
    year_days,
)
from publisher.errors import ValidationFailed
from tests.report import (
    CALENDAR_2025,
    HOLIDAYS_2025,
    WORKDAYS_2025,
    official_working_days,
)

D = date.fromisoformat


@pytest.fixture
def cal2025() -> WorkCalendar:
    days = parse_calendar_file(CALENDAR_2025.read_text(encoding="utf-8"), "calendar-2025.txt")
    return WorkCalendar.of(days, [2025])


def test_the_file_gives_the_official_schedule(cal2025: WorkCalendar) -> None:
    assert cal2025.holidays == HOLIDAYS_2025
    assert cal2025.workdays == WORKDAYS_2025
    first = D("2025-01-01").toordinal()
    year = [date.fromordinal(n) for n in range(first, first + 365)]
    working = [d for d in year if cal2025.is_working_day(d)]
    assert working == official_working_days(2025)
    # 261 weekdays, 18 of them off, 5 weekend days worked
    assert len(working) == 248


@pytest.mark.parametrize(
    ("day", "working"),
    [
        ("2025-09-28", True),  # Sunday worked before 国庆
        ("2025-09-30", True),
        ("2025-10-01", False),
        ("2025-10-06", False),  # 中秋 falls inside the 国庆 break
        ("2025-10-08", False),  # a Wednesday off
        ("2025-10-09", True),
        ("2025-10-11", True),  # Saturday worked after 国庆
        ("2025-10-12", False),
        ("2025-01-26", True),  # Sunday worked before 春节
        ("2025-02-03", False),  # a Monday inside 春节
        ("2025-06-02", False),  # 端午 Monday
        ("2025-06-07", False),  # an ordinary Saturday
    ],
)
def test_working_days_around_holidays(cal2025: WorkCalendar, day: str, working: bool) -> None:
    assert cal2025.is_working_day(D(day)) is working


def test_twenty_working_days_across_national_day(cal2025: WorkCalendar) -> None:
    # made on Friday 19 September: 9/22–26 (5), Sunday 9/28 (6), 9/29–30 (8), then the
    # break 10/1–8, 10/9–10 (10), Saturday 10/11 (11), 10/13–17 (16), 10/20–23 (20)
    assert cal2025.add_working_days(D("2025-09-19"), 20) == D("2025-10-23")
    # counting weekends only would have said 17 October
    assert WorkCalendar().add_working_days(D("2025-09-19"), 20) == D("2025-10-17")
    assert cal2025.add_working_days(D("2025-09-30"), 1) == D("2025-10-09")
    assert cal2025.add_working_days(D("2025-09-26"), 1) == D("2025-09-28")
    assert cal2025.add_working_days(D("2025-10-10"), 1) == D("2025-10-11")
    assert cal2025.add_working_days(D("2025-09-19"), 0) == D("2025-09-19")


def test_twenty_working_days_across_spring_festival(cal2025: WorkCalendar) -> None:
    # 1/20–24 (5), Sunday 1/26 (6), 1/27 (7), break 1/28–2/4, 2/5–7 (10), Saturday 2/8 (11),
    # 2/10–14 (16), 2/17–20 (20)
    assert cal2025.add_working_days(D("2025-01-17"), 20) == D("2025-02-20")


def test_working_days_between_counts_both_ways(cal2025: WorkCalendar) -> None:
    assert cal2025.working_days_between(D("2025-09-30"), D("2025-10-09")) == 1
    assert cal2025.working_days_between(D("2025-10-09"), D("2025-09-30")) == -1
    assert cal2025.working_days_between(D("2025-09-19"), D("2025-10-23")) == 20
    assert cal2025.working_days_between(D("2025-10-01"), D("2025-10-01")) == 0
    assert cal2025.missing_years(D("2025-10-01"), D("2026-01-05")) == [2026]


@pytest.mark.parametrize(
    ("days", "words"),
    [
        ([SpecialDay(D("2025-10-09"), DayKind.WORKDAY)], ["2025-10-09", "saturday or sunday"]),
        ([SpecialDay(D("2026-01-01"), DayKind.HOLIDAY)], ["2026-01-01", "not in 2025"]),
        (
            [
                SpecialDay(D("2025-10-11"), DayKind.WORKDAY),
                SpecialDay(D("2025-10-11"), DayKind.HOLIDAY),
            ],
            ["2025-10-11", "both"],
        ),
    ],
)
def test_bad_schedules_are_refused_naming_the_date(
    days: list[SpecialDay], words: list[str]
) -> None:
    with pytest.raises(ValidationFailed) as exc:
        check_year(2025, days)
    for word in words:
        assert word in exc.value.detail.lower()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2025-10-01 holiday\n2025-10-02 off", ["line 2", "holiday|workday"]),
        ("2025-13-01 holiday", ["line 1", "2025-13-01"]),
        ("2025-10-08..2025-10-01 holiday", ["line 1", "ends before"]),
    ],
)
def test_calendar_file_errors_name_the_line(text: str, words: list[str]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_calendar_file(text, "cal.txt")
    for word in words:
        assert word in exc.value.detail


async def test_a_year_round_trips_through_the_store(store) -> None:
    days = parse_calendar_file(CALENDAR_2025.read_text(encoding="utf-8"), "cal")
    assert await year_days(store, 2025) == (False, [])
    await set_year(store, 2025, days, actor="alice")
    entered, stored = await year_days(store, 2025)
    assert entered
    assert {(d.day, d.kind) for d in stored} == {(d.day, d.kind) for d in days}
    assert next(d.name for d in stored if d.day == D("2025-10-11")) == "国庆节调休"
    cal = await load_calendar(store)
    assert cal.add_working_days(D("2025-09-19"), 20) == D("2025-10-23")
    # entering a year again replaces it: here, with no holidays at all
    await set_year(store, 2025, [], actor="alice")
    assert await year_days(store, 2025) == (True, [])
    assert (await load_calendar(store)).add_working_days(D("2025-09-19"), 20) == D("2025-10-17")
