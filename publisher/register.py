"""The register of disclosure requests (依申请公开) and their working-day clocks.

A request is answered within 20 working days of its receipt (条例 Art33), once
extendable by at most 20 more. Asking the applicant to correct the request (补正,
Art30) restarts the clock from the day the corrected request arrives; consulting a
third party or another agency (Art32/34) stops it for as long as that takes. The
applicant is told to correct once (一次性), within 7 working days of receipt (Art30). A
request ends with exactly one outcome, a leaf of table 三 of the annual report; a
request still open at the end of a year is carried over into the next (结转).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Annotated

import sqlalchemy as sa
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from sqlalchemy.ext.asyncio import AsyncConnection

from publisher.atrest import APPLICANT, FieldBox
from publisher.calendar import WorkCalendar, load_calendar
from publisher.content import NonBlank
from publisher.errors import Conflict, NotFound, ValidationFailed
from publisher.store import schema as t
from publisher.store.sql import SqlStore, utcnow
from publisher.textclean import CleanTextModel

#: Art33: 20 working days, and one extension of at most 20
ANSWER_DAYS = 20
EXTENSION_DAYS = 20
#: Art30: the applicant is told to correct (补正) once, within 7 working days of receipt
CORRECTION_DAYS = 7


class ApplicantType(StrEnum):
    """The columns of table 三."""

    NATURAL_PERSON = "natural_person"  #: 自然人
    BUSINESS = "business"  #: 商业企业
    RESEARCH = "research"  #: 科研机构
    PUBLIC_INTEREST = "public_interest"  #: 社会公益组织
    LEGAL_SERVICES = "legal_services"  #: 法律服务机构
    OTHER_ORG = "other_org"  #: 其他 (法人或其他组织)


APPLICANT_LABELS: dict[ApplicantType, str] = {
    ApplicantType.NATURAL_PERSON: "自然人",
    ApplicantType.BUSINESS: "商业企业",
    ApplicantType.RESEARCH: "科研机构",
    ApplicantType.PUBLIC_INTEREST: "社会公益组织",
    ApplicantType.LEGAL_SERVICES: "法律服务机构",
    ApplicantType.OTHER_ORG: "其他",
}


class Outcome(StrEnum):
    """The leaves of 三、本年度办理结果 in table 三, in the template's order."""

    GRANTED = "granted"  #: （一）予以公开
    PARTIAL = "partial"  #: （二）部分公开
    REFUSED_STATE_SECRET = "refused.state_secret"  #: （三）1
    REFUSED_LAW = "refused.law"  #: （三）2
    REFUSED_SECURITY = "refused.security"  #: （三）3 三安全一稳定
    REFUSED_THIRD_PARTY = "refused.third_party"  #: （三）4
    REFUSED_INTERNAL = "refused.internal"  #: （三）5
    REFUSED_PROCESS = "refused.process"  #: （三）6
    REFUSED_ENFORCEMENT = "refused.enforcement"  #: （三）7
    REFUSED_QUERY = "refused.query"  #: （三）8
    UNABLE_NOT_HELD = "unable.not_held"  #: （四）1
    UNABLE_NEEDS_CREATION = "unable.needs_creation"  #: （四）2
    UNABLE_UNCLEAR = "unable.unclear"  #: （四）3
    DECLINED_PETITION = "declined.petition"  #: （五）1
    DECLINED_REPEATED = "declined.repeated"  #: （五）2
    DECLINED_PUBLICATION = "declined.publication"  #: （五）3
    DECLINED_EXCESSIVE = "declined.excessive"  #: （五）4
    DECLINED_CONFIRMATION = "declined.confirmation"  #: （五）5
    OTHER_NO_CORRECTION = "other.no_correction"  #: （六）1
    OTHER_FEE_UNPAID = "other.fee_unpaid"  #: （六）2
    OTHER = "other.other"  #: （六）3


class PauseKind(StrEnum):
    CORRECTION = "correction"  #: 补正: the clock restarts when the corrected request arrives
    CONSULTATION = "consultation"  #: 征求第三方意见: the clock stops meanwhile


@dataclass(frozen=True, slots=True)
class Pause:
    id: int
    kind: PauseKind
    started_on: date
    ended_on: date | None


@dataclass(frozen=True, slots=True)
class DisclosureRequest:
    id: int
    received_on: date
    applicant_type: ApplicantType
    applicant: str | None
    subject: str
    extended_on: date | None
    outcome: Outcome | None
    closed_on: date | None
    note: str | None
    pauses: tuple[Pause, ...]
    created_by: str

    @property
    def is_open(self) -> bool:
        return self.closed_on is None

    def open_at_end_of(self, year: int) -> bool:
        """Received by 31 December of `year` and not closed by then: carried over (结转)."""
        end = date(year, 12, 31)
        return self.received_on <= end and (self.closed_on is None or self.closed_on > end)


def correction_limit(req: DisclosureRequest, calendar: WorkCalendar) -> date:
    """The last day to tell the applicant to correct the request (Art30): the 7th working
    day after the day of receipt, which is not counted itself (as the 20 days of Art33)."""
    return calendar.add_working_days(req.received_on, CORRECTION_DAYS)


def check_correction(req: DisclosureRequest, started_on: date, calendar: WorkCalendar) -> None:
    """Art30: a 补正 is asked once (一次性), within 7 working days of receipt."""
    if any(p.kind is PauseKind.CORRECTION for p in req.pauses):
        raise ValidationFailed(
            f"request {req.id}: a request is told to correct once (Art. 30); "
            "it was asked for 补正 already"
        )
    limit = correction_limit(req, calendar)
    if started_on > limit:
        missing = calendar.missing_years(req.received_on, limit)
        unentered = (
            f"; working days of {', '.join(map(str, missing))} not entered, weekends only"
            if missing
            else ""
        )
        raise ValidationFailed(
            f"request {req.id}: 补正 must be asked within {CORRECTION_DAYS} working days of "
            f"receipt (by {limit.isoformat()}); Art. 30{unentered}"
        )


def deadline(req: DisclosureRequest, calendar: WorkCalendar) -> date | None:
    """The last day to answer, or None while the clock is stopped (an open pause)."""
    start = req.received_on
    pauses = sorted(req.pauses, key=lambda p: p.started_on)
    for p in pauses:
        if p.kind is PauseKind.CORRECTION:
            if p.ended_on is None:
                return None  # waiting for the applicant's correction
            start = max(start, p.ended_on)  # Art30: counted from the corrected request
    days = ANSWER_DAYS + (EXTENSION_DAYS if req.extended_on else 0)
    for p in pauses:
        if p.kind is PauseKind.CONSULTATION:
            if p.ended_on is None:
                return None  # Art32: the consultation's time is not counted
            if p.ended_on > start:
                days += calendar.working_days_between(max(p.started_on, start), p.ended_on)
    return calendar.add_working_days(start, days)


# -- input -------------------------------------------------------------------------

#: the days the register takes: written YYYY-MM-DD, in the years 1900–2200
_ISO_DAY = re.compile(r"(19\d\d|2[01]\d\d|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
_DAY_PATTERN = "^(19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


def _iso_day(value: object) -> object:
    """Only a date written YYYY-MM-DD in a sane range: pydantic alone would take the number 0
    as 1970-01-01 (a Unix time) and any year from 1 to 9999."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        shown = repr(value)[:24]
        raise ValueError(f"{shown} is not a date written YYYY-MM-DD in the years 1900–2200")
    return value


Day = Annotated[
    date,
    BeforeValidator(_iso_day),
    WithJsonSchema({"type": "string", "format": "date", "pattern": _DAY_PATTERN}),
]


class RequestIn(CleanTextModel):
    """No text may hold a character XML cannot (publisher.textclean); the applicant's name
    no invisible one either."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    line_fields = frozenset({"applicant"})
    received_on: Day = Field(description="收到申请之日")
    applicant_type: ApplicantType
    applicant: str | None = Field(default=None, max_length=255, description="name; optional")
    subject: NonBlank = Field(max_length=5000, description="the information asked for")
    note: str | None = Field(default=None, max_length=5000)


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: PauseKind
    started_on: Day


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ended_on: Day = Field(description="补正 received, or the consultation answered")


class ExtendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extended_on: Day


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Outcome
    closed_on: Day


def _check_day(what: str, day: date) -> None:
    if not 1900 <= day.year <= 2200:
        raise ValidationFailed(f"{what}: year {day.year} is outside 1900–2200")


# -- the store ----------------------------------------------------------------------


class Register:
    """Disclosure requests in the store; each change is one transaction."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._box: FieldBox | None = None

    @property
    def box(self) -> FieldBox:
        """The applicant's name is sealed with the data key (publisher.atrest)."""
        if self._box is None:
            self._box = FieldBox(self.store.config.data_key(), APPLICANT)
        return self._box

    async def add(self, new: RequestIn, *, actor: str) -> DisclosureRequest:
        _check_day("received_on", new.received_on)
        now = utcnow()
        async with self.store.write() as conn:
            request_id = (
                await conn.execute(
                    t.disclosure_requests.insert()
                    .values(
                        received_on=new.received_on,
                        applicant_type=new.applicant_type.value,
                        applicant=self.box.seal(new.applicant) if new.applicant else None,
                        subject=new.subject,
                        note=new.note or None,
                        created_by=actor,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(t.disclosure_requests.c.id)
                )
            ).scalar_one()
        return await self.get(int(request_id))

    async def get(self, request_id: int) -> DisclosureRequest:
        found = await self._load(t.disclosure_requests.c.id == request_id)
        if not found:
            raise NotFound(f"no disclosure request with id {request_id}")
        return found[0]

    async def find(
        self, *, year: int | None = None, open_only: bool = False
    ) -> list[DisclosureRequest]:
        """Requests received in `year` or open at its start; all when no year is given."""
        r = t.disclosure_requests.c
        cond: list[sa.ColumnElement[bool]] = []
        if year is not None:
            cond.append(
                sa.or_(
                    r.received_on.between(date(year, 1, 1), date(year, 12, 31)),
                    sa.and_(
                        r.received_on < date(year, 1, 1),
                        sa.or_(r.closed_on.is_(None), r.closed_on >= date(year, 1, 1)),
                    ),
                )
            )
        if open_only:
            cond.append(r.closed_on.is_(None))
        return await self._load(*cond)

    async def pause(
        self, request_id: int, body: PauseIn, calendar: WorkCalendar | None = None
    ) -> DisclosureRequest:
        """Stop the clock. A 补正 is refused after the 7th working day from receipt or when
        the request was asked to correct before (Art30); `calendar` is the store's when
        not given."""
        _check_day("started_on", body.started_on)
        workdays: WorkCalendar | None = None
        if body.kind is PauseKind.CORRECTION:
            workdays = calendar if calendar is not None else await load_calendar(self.store)
        async with self.store.write() as conn:
            req = await self._open_request(conn, request_id)
            if body.started_on < req.received_on:
                raise ValidationFailed("started_on: before the request was received")
            if workdays is not None:
                check_correction(req, body.started_on, workdays)
            if any(p.ended_on is None for p in req.pauses):
                raise Conflict(f"request {request_id} is already paused; resume it first")
            last = max((p.ended_on for p in req.pauses if p.ended_on), default=None)
            if last is not None and body.started_on < last:
                raise ValidationFailed("started_on: before the previous pause ended")
            await conn.execute(
                t.request_pauses.insert().values(
                    request_id=request_id, kind=body.kind.value, started_on=body.started_on
                )
            )
            await self._touch(conn, request_id)
        return await self.get(request_id)

    async def resume(self, request_id: int, body: ResumeIn) -> DisclosureRequest:
        _check_day("ended_on", body.ended_on)
        async with self.store.write() as conn:
            req = await self._open_request(conn, request_id)
            current = next((p for p in req.pauses if p.ended_on is None), None)
            if current is None:
                raise Conflict(f"request {request_id} is not paused")
            if body.ended_on < current.started_on:
                raise ValidationFailed("ended_on: before the pause started")
            await conn.execute(
                t.request_pauses.update()
                .where(t.request_pauses.c.id == current.id)
                .values(ended_on=body.ended_on)
            )
            await self._touch(conn, request_id)
        return await self.get(request_id)

    async def extend(
        self, request_id: int, body: ExtendIn, calendar: WorkCalendar
    ) -> DisclosureRequest:
        _check_day("extended_on", body.extended_on)
        async with self.store.write() as conn:
            req = await self._open_request(conn, request_id)
            if req.extended_on is not None:
                raise Conflict(
                    f"request {request_id} was extended on {req.extended_on}; "
                    "the regulation allows one extension"
                )
            if body.extended_on < req.received_on:
                raise ValidationFailed("extended_on: before the request was received")
            due = deadline(req, calendar)
            if due is not None and body.extended_on > due:
                raise Conflict(
                    f"request {request_id}: the deadline {due} has passed; an extension must "
                    "be decided before it"
                )
            await self._touch(conn, request_id, extended_on=body.extended_on)
        return await self.get(request_id)

    async def close(self, request_id: int, body: CloseIn) -> DisclosureRequest:
        _check_day("closed_on", body.closed_on)
        async with self.store.write() as conn:
            req = await self._open_request(conn, request_id)
            if body.closed_on < req.received_on:
                raise ValidationFailed("closed_on: before the request was received")
            for p in req.pauses:
                if body.closed_on < p.started_on:
                    raise ValidationFailed("closed_on: before a pause of the request started")
            # an applicant who never sends the correction ends the request with its pause
            await conn.execute(
                t.request_pauses.update()
                .where(
                    t.request_pauses.c.request_id == request_id,
                    t.request_pauses.c.ended_on.is_(None),
                )
                .values(ended_on=body.closed_on)
            )
            await self._touch(
                conn, request_id, outcome=body.outcome.value, closed_on=body.closed_on
            )
        return await self.get(request_id)

    # -- internals --

    async def _open_request(self, conn: AsyncConnection, request_id: int) -> DisclosureRequest:
        rows = await self._fetch(conn, t.disclosure_requests.c.id == request_id)
        if not rows:
            raise NotFound(f"no disclosure request with id {request_id}")
        if not rows[0].is_open:
            raise Conflict(
                f"request {request_id} was closed on {rows[0].closed_on} "
                f"({rows[0].outcome}); it can no longer change"
            )
        return rows[0]

    async def _touch(self, conn: AsyncConnection, request_id: int, **values: object) -> None:
        await conn.execute(
            t.disclosure_requests.update()
            .where(t.disclosure_requests.c.id == request_id)
            .values(updated_at=utcnow(), **values)
        )

    async def _load(self, *cond: sa.ColumnElement[bool]) -> list[DisclosureRequest]:
        async with self.store.read() as conn:
            return await self._fetch(conn, *cond)

    async def _fetch(
        self, conn: AsyncConnection, *cond: sa.ColumnElement[bool]
    ) -> list[DisclosureRequest]:
        r = t.disclosure_requests
        rows = (await conn.execute(sa.select(r).where(*cond).order_by(r.c.id))).all()
        ids = [row.id for row in rows]
        pauses: dict[int, list[Pause]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for p in (
                await conn.execute(
                    sa.select(t.request_pauses)
                    .where(t.request_pauses.c.request_id.in_(chunk))
                    .order_by(t.request_pauses.c.id)
                )
            ).all():
                pauses.setdefault(p.request_id, []).append(
                    Pause(p.id, PauseKind(p.kind), p.started_on, p.ended_on)
                )
        return [
            DisclosureRequest(
                id=row.id,
                received_on=row.received_on,
                applicant_type=ApplicantType(row.applicant_type),
                applicant=self.box.open(row.applicant) if row.applicant else None,
                subject=row.subject,
                extended_on=row.extended_on,
                outcome=Outcome(row.outcome) if row.outcome else None,
                closed_on=row.closed_on,
                note=row.note,
                pauses=tuple(pauses.get(row.id, ())),
                created_by=row.created_by,
            )
            for row in rows
        ]


def request_json(req: DisclosureRequest, calendar: WorkCalendar, today: date) -> dict[str, object]:
    due = deadline(req, calendar) if req.is_open else None
    return {
        "id": req.id,
        "received_on": req.received_on.isoformat(),
        "applicant_type": req.applicant_type.value,
        "applicant_type_name": APPLICANT_LABELS[req.applicant_type],
        "applicant": req.applicant,
        "subject": req.subject,
        "note": req.note,
        "extended_on": req.extended_on.isoformat() if req.extended_on else None,
        "pauses": [
            {
                "kind": p.kind.value,
                "started_on": p.started_on.isoformat(),
                "ended_on": p.ended_on.isoformat() if p.ended_on else None,
            }
            for p in req.pauses
        ],
        "state": "open" if req.is_open else "closed",
        "paused": req.is_open and any(p.ended_on is None for p in req.pauses),
        "deadline": due.isoformat() if due else None,
        "working_days_left": calendar.working_days_between(today, due) if due else None,
        "outcome": req.outcome.value if req.outcome else None,
        "closed_on": req.closed_on.isoformat() if req.closed_on else None,
        "created_by": req.created_by,
    }
