"""The working-day calendar every statutory clock counts in (工作日).

A day is a working day when it is Monday to Friday and not a public holiday, or
when it is an official make-up working day (调休上班日, usually a weekend day next
to a holiday). The State Council publishes the holidays and make-up days once a
year; staff enter them per year (`publisher calendar set`, `PUT /api/v1/calendar/{year}`).
A year nobody has entered counts weekends only, and says so where it matters.

Counting follows the regulation's "X个工作日内": the day an event happens is not
counted, the deadline is the X-th working day after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

import sqlalchemy as sa

from publisher.errors import ValidationFailed
from publisher.store import schema as t
from publisher.store.sql import SqlStore, utcnow
from publisher.textclean import refuse


class DayKind(StrEnum):
    HOLIDAY = "holiday"  #: 放假: a day off, whatever weekday it falls on
    WORKDAY = "workday"  #: 调休上班: a weekend day that is worked


@dataclass(frozen=True, slots=True)
class SpecialDay:
    day: date
    kind: DayKind
    name: str | None = None  #: the holiday it belongs to, e.g. 国庆节


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """Holidays and make-up working days; everything else is Monday–Friday."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    #: years whose official schedule has been entered
    years: frozenset[int] = field(default=frozenset())

    @classmethod
    def of(cls, days: Iterable[SpecialDay], years: Iterable[int] = ()) -> WorkCalendar:
        days = list(days)
        return cls(
            holidays=frozenset(d.day for d in days if d.kind is DayKind.HOLIDAY),
            workdays=frozenset(d.day for d in days if d.kind is DayKind.WORKDAY),
            years=frozenset(years),
        )

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (`start` itself is not counted); n ≥ 0."""
        if n < 0:
            raise ValueError("n must not be negative")
        day = start
        while n > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                n -= 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days d with start < d ≤ end; negative (the days from end to start) when
        end is before start. The working days left until a deadline, or past it."""
        if end < start:
            return -self.working_days_between(end, start)
        return sum(
            1
            for offset in range(1, (end - start).days + 1)
            if self.is_working_day(start + timedelta(days=offset))
        )

    def missing_years(self, *days: date) -> list[int]:
        """The years among `days` whose schedule nobody has entered."""
        return sorted({d.year for d in days} - self.years)


# -- parsing (CLI options and calendar files) -------------------------------------

_LINE = re.compile(
    r"^(?P<start>\d{4}-\d{2}-\d{2})(?:\.\.(?P<end>\d{4}-\d{2}-\d{2}))?"
    r"\s+(?P<kind>holiday|workday)(?:\s+(?P<name>\S.*))?$"
)


def parse_day(text: str, what: str = "date") -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationFailed(f"{what}: {text!r} is not a date (YYYY-MM-DD)") from None


def parse_span(text: str, what: str = "date") -> list[date]:
    """`2025-10-01` or a range `2025-10-01..2025-10-08` (both ends included)."""
    first, sep, last = text.partition("..")
    start = parse_day(first, what)
    end = parse_day(last, what) if sep else start
    if end < start:
        raise ValidationFailed(f"{what}: {text!r} ends before it starts")
    if (end - start).days > 366:
        raise ValidationFailed(f"{what}: {text!r} is longer than a year")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def parse_calendar_file(text: str, source: str) -> list[SpecialDay]:
    """Lines `DATE[..DATE] holiday|workday [name]`; `#` starts a comment."""
    days: list[SpecialDay] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            raise ValidationFailed(
                f"{source}, line {number}: expected 'YYYY-MM-DD[..YYYY-MM-DD] holiday|workday "
                f"[name]', got {line!r}"
            )
        span = m["start"] + (f"..{m['end']}" if m["end"] else "")
        for day in parse_span(span, f"{source}, line {number}"):
            days.append(SpecialDay(day, DayKind(m["kind"]), m["name"]))
    return days


def check_year(year: int, days: Sequence[SpecialDay]) -> None:
    """The rules a year's schedule must meet; raises ValidationFailed naming the date."""
    if not 1900 <= year <= 2200:
        raise ValidationFailed(f"year: {year} is outside 1900–2200")
    seen: dict[date, DayKind] = {}
    for d in days:
        if d.day.year != year:
            raise ValidationFailed(f"{d.day.isoformat()}: not in {year}")
        if d.name is not None and len(d.name) > 64:
            raise ValidationFailed(f"{d.day.isoformat()}: name longer than 64 characters")
        refuse(f"{d.day.isoformat()}: name", d.name, line=True)
        if seen.get(d.day, d.kind) is not d.kind:
            raise ValidationFailed(f"{d.day.isoformat()}: both a holiday and a make-up workday")
        if d.kind is DayKind.WORKDAY and d.day.weekday() < 5:
            raise ValidationFailed(
                f"{d.day.isoformat()}: a make-up workday (调休) must be a Saturday or Sunday; "
                "weekdays are working days already"
            )
        seen[d.day] = d.kind


# -- the store --------------------------------------------------------------------


async def set_year(store: SqlStore, year: int, days: Sequence[SpecialDay], *, actor: str) -> None:
    """Replace the year's holidays and make-up days (one transaction)."""
    check_year(year, days)
    unique = {d.day: d for d in days}
    now = utcnow()
    async with store.write() as conn:
        await conn.execute(t.calendar_days.delete().where(t.calendar_days.c.year == year))
        await conn.execute(t.calendar_years.delete().where(t.calendar_years.c.year == year))
        if unique:
            await conn.execute(
                t.calendar_days.insert(),
                [
                    {"day": d.day, "year": year, "kind": d.kind.value, "name": d.name}
                    for d in sorted(unique.values(), key=lambda d: d.day)
                ],
            )
        await conn.execute(
            t.calendar_years.insert().values(year=year, updated_at=now, updated_by=actor)
        )


async def year_days(store: SqlStore, year: int) -> tuple[bool, list[SpecialDay]]:
    """Whether the year was entered, and its special days in date order."""
    async with store.read() as conn:
        entered = await conn.scalar(
            sa.select(t.calendar_years.c.year).where(t.calendar_years.c.year == year)
        )
        rows = (
            await conn.execute(
                sa.select(t.calendar_days)
                .where(t.calendar_days.c.year == year)
                .order_by(t.calendar_days.c.day)
            )
        ).all()
    return entered is not None, [SpecialDay(r.day, DayKind(r.kind), r.name) for r in rows]


async def load_calendar(store: SqlStore) -> WorkCalendar:
    """Every entered year: a few dozen rows a year, so all of them at once."""
    async with store.read() as conn:
        rows = (await conn.execute(sa.select(t.calendar_days))).all()
        years = (await conn.scalars(sa.select(t.calendar_years.c.year))).all()
    return WorkCalendar.of((SpecialDay(r.day, DayKind(r.kind), r.name) for r in rows), years)
