"""Tests of the statutory clocks, the request register and the annual report.

`OFFICIAL_2025` is the State Council's 2025 schedule written out by hand, apart from
the calendar file the code parses, so the tests can count working days their own way.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
CALENDAR_2025 = HERE / "calendar-2025.txt"


def _span(first: str, last: str) -> set[date]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return {a + timedelta(days=i) for i in range((b - a).days + 1)}


#: 国务院办公厅关于2025年部分节假日安排的通知: days off …
HOLIDAYS_2025 = (
    {date(2025, 1, 1)}
    | _span("2025-01-28", "2025-02-04")
    | _span("2025-04-04", "2025-04-06")
    | _span("2025-05-01", "2025-05-05")
    | _span("2025-05-31", "2025-06-02")
    | _span("2025-10-01", "2025-10-08")
)
#: … and the weekend days worked instead (调休上班)
WORKDAYS_2025 = {
    date(2025, 1, 26),
    date(2025, 2, 8),
    date(2025, 4, 27),
    date(2025, 9, 28),
    date(2025, 10, 11),
}


def official_working_days(year: int) -> list[date]:
    """Every working day of `year` by the official schedule (2025) or weekdays (other years)."""
    out = []
    day = date(year, 1, 1)
    while day.year == year:
        if day in WORKDAYS_2025 or (day.weekday() < 5 and day not in HOLIDAYS_2025):
            out.append(day)
        day += timedelta(days=1)
    return out
