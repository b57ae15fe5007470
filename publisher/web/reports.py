"""Staff routes for the statutory clocks and the annual report: the working-day calendar,
items near their 20-working-day deadline, the request register, report entries and
the report itself."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from publisher.calendar import DayKind, SpecialDay, load_calendar, set_year, year_days
from publisher.clocks import ItemClock, items_due
from publisher.config import Config
from publisher.errors import ValidationFailed
from publisher.register import (
    CloseIn,
    ExtendIn,
    PauseIn,
    Register,
    RequestIn,
    ResumeIn,
    request_json,
)
from publisher.reports.annual import build_report
from publisher.reports.entries import AnnualEntries, get_entries, put_entries
from publisher.reports.render import MEDIA_TYPES, ReportFormat, render
from publisher.web.api import _enum_param, _int_param, iso, json_response, read_json
from publisher.web.keys import CONFIG, STORE, current_user
from publisher.web.openapi_parts import json_body, param, problems

routes = web.RouteTableDef()


def today(config: Config) -> date:
    return datetime.now(config.site.tz).date()


def _year(request: web.Request) -> int:
    raw = request.match_info["year"]
    if not raw.isdigit() or not 1900 <= int(raw) <= 2200:
        raise ValidationFailed(f"year: {raw!r} is not a year between 1900 and 2200")
    return int(raw)


def _request_id(request: web.Request) -> int:
    raw = request.match_info["request_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise ValidationFailed(f"request_id: {raw!r} is not a request number")
    return int(raw)


# -- calendar --------------------------------------------------------------------------


class CalendarDayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    date: date
    name: str | None = Field(default=None, max_length=64)


class CalendarIn(BaseModel):
    """A year's official schedule (国务院办公厅 节假日安排); replaces what was entered."""

    model_config = ConfigDict(extra="forbid")
    holidays: list[CalendarDayIn] = Field(default_factory=list, max_length=366)
    workdays: list[CalendarDayIn] = Field(
        default_factory=list, max_length=366, description="调休上班日 (weekend days worked)"
    )


def calendar_json(year: int, entered: bool, days: list[SpecialDay]) -> dict[str, Any]:
    def of(kind: DayKind) -> list[dict[str, Any]]:
        return [{"date": d.day.isoformat(), "name": d.name} for d in days if d.kind is kind]

    return {
        "year": year,
        "entered": entered,
        "holidays": of(DayKind.HOLIDAY),
        "workdays": of(DayKind.WORKDAY),
    }


@routes.get("/api/v1/calendar/{year}")
async def get_calendar(request: web.Request) -> web.Response:
    year = _year(request)
    entered, days = await year_days(request.app[STORE], year)
    return json_response(calendar_json(year, entered, days))


@routes.put("/api/v1/calendar/{year}")
async def put_calendar(request: web.Request) -> web.Response:
    year = _year(request)
    body = await read_json(request, CalendarIn)
    days = [SpecialDay(d.date, DayKind.HOLIDAY, d.name) for d in body.holidays] + [
        SpecialDay(d.date, DayKind.WORKDAY, d.name) for d in body.workdays
    ]
    store = request.app[STORE]
    await set_year(store, year, days, actor=current_user(request).name)
    entered, stored = await year_days(store, year)
    return json_response(calendar_json(year, entered, stored))


# -- items near their deadline ---------------------------------------------------------------


def clock_json(c: ItemClock, config: Config) -> dict[str, Any]:
    return {
        "item_id": c.item_id,
        "title": c.title,
        "status": c.status.value,
        "clock": c.reason,
        "starts_on": c.starts_on.isoformat(),
        "deadline": c.deadline.isoformat(),
        "working_days_left": c.working_days_left,
        "overdue": c.working_days_left < 0,
        "publish_at": iso(c.publish_at, config),
    }


@routes.get("/api/v1/items-due")
async def get_items_due(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    store = request.app[STORE]
    within = _int_param(request, "within", 5, 0, 20)
    calendar = await load_calendar(store)
    now = today(config)
    clocks = await items_due(store, calendar, now, within)
    return json_response(
        {
            "today": now.isoformat(),
            "within": within,
            "calendar_missing": calendar.missing_years(now),
            "items": [clock_json(c, config) for c in clocks],
        }
    )


# -- the request register ---------------------------------------------------------------------


async def _answer(request: web.Request, req: Any, status: int = 200) -> web.Response:
    config = request.app[CONFIG]
    calendar = await load_calendar(request.app[STORE])
    return json_response(request_json(req, calendar, today(config)), status=status)


@routes.post("/api/v1/requests")
async def add_request(request: web.Request) -> web.Response:
    body = await read_json(request, RequestIn)
    req = await Register(request.app[STORE]).add(body, actor=current_user(request).name)
    resp = await _answer(request, req, 201)
    resp.headers["Location"] = f"/api/v1/requests/{req.id}"
    return resp


@routes.get("/api/v1/requests")
async def list_requests(request: web.Request) -> web.Response:
    store = request.app[STORE]
    year = _int_param(request, "year", 0, 1900, 2200) if "year" in request.query else None
    state = request.query.get("state")
    if state not in (None, "open", "all"):
        raise ValidationFailed(f"state: {state!r} is not one of open, all")
    found = await Register(store).find(year=year, open_only=state == "open")
    calendar = await load_calendar(store)
    now = today(request.app[CONFIG])
    return json_response(
        {"requests": [request_json(r, calendar, now) for r in found], "total": len(found)}
    )


@routes.get("/api/v1/requests/{request_id}")
async def get_request(request: web.Request) -> web.Response:
    req = await Register(request.app[STORE]).get(_request_id(request))
    return await _answer(request, req)


@routes.post("/api/v1/requests/{request_id}/pause")
async def pause_request(request: web.Request) -> web.Response:
    body = await read_json(request, PauseIn)
    req = await Register(request.app[STORE]).pause(_request_id(request), body)
    return await _answer(request, req)


@routes.post("/api/v1/requests/{request_id}/resume")
async def resume_request(request: web.Request) -> web.Response:
    body = await read_json(request, ResumeIn)
    req = await Register(request.app[STORE]).resume(_request_id(request), body)
    return await _answer(request, req)


@routes.post("/api/v1/requests/{request_id}/extend")
async def extend_request(request: web.Request) -> web.Response:
    store = request.app[STORE]
    body = await read_json(request, ExtendIn)
    req = await Register(store).extend(_request_id(request), body, await load_calendar(store))
    return await _answer(request, req)


@routes.post("/api/v1/requests/{request_id}/close")
async def close_request(request: web.Request) -> web.Response:
    body = await read_json(request, CloseIn)
    req = await Register(request.app[STORE]).close(_request_id(request), body)
    return await _answer(request, req)


# -- the annual report -------------------------------------------------------------------------


@routes.get("/api/v1/reports/annual/{year}/entries")
async def get_report_entries(request: web.Request) -> web.Response:
    entries = await get_entries(request.app[STORE], _year(request))
    return json_response(entries.model_dump(mode="json"))


@routes.put("/api/v1/reports/annual/{year}/entries")
async def put_report_entries(request: web.Request) -> web.Response:
    year = _year(request)
    body = await read_json(request, AnnualEntries)
    store = request.app[STORE]
    await put_entries(store, year, body, actor=current_user(request).name)
    return json_response((await get_entries(store, year)).model_dump(mode="json"))


@routes.post("/api/v1/reports/annual/{year}/item")
async def annual_report_item(request: web.Request) -> web.Response:
    """The report as a DRAFT item (body in Markdown, the PDF attached), for the usual review
    and publication; 409 naming the cell when it does not add up."""
    from publisher.reports.publish import publish_as_item
    from publisher.web.api import _actor, item_json

    year = _year(request)
    config = request.app[CONFIG]
    item = await publish_as_item(request.app[STORE], year, actor=_actor(request))
    resp = json_response(item_json(item, config), status=201, etag=item.etag)
    resp.headers["Location"] = f"/api/v1/items/{item.id}"
    return resp


@routes.get("/reports/annual/{year}")
async def annual_report(request: web.Request) -> web.Response:
    """The report in the 2021 template; 409 naming the cell when it does not add up."""
    year = _year(request)
    fmt = _enum_param(request, "format", ReportFormat) or ReportFormat.HTML
    report = await build_report(request.app[STORE], year)
    body = render(report, fmt)
    resp = web.Response(body=body, headers={"Content-Type": MEDIA_TYPES[fmt]})
    if fmt in (ReportFormat.PDF, ReportFormat.CSV):
        resp.headers["Content-Disposition"] = (
            f'attachment; filename="annual-report-{year}.{fmt.value}"'
        )
    return resp


# -- OpenAPI (merged into the document by publisher.web.openapi) --------------------------------

OPENAPI_MODELS: list[type[BaseModel]] = [
    CalendarIn,
    RequestIn,
    PauseIn,
    ResumeIn,
    ExtendIn,
    CloseIn,
    AnnualEntries,
]


_OK_BODY = {"content": {"application/json": {"schema": {"type": "object"}}}}
_OK = {"description": "ok", **_OK_BODY}
_REQ = param("request_id")


def _request_action(summary: str, model: type[BaseModel]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_REQ],
            "requestBody": json_body(model),
            "responses": {"200": _OK, **problems(401, 404, 409, 422)},
        }
    }


OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/calendar/{year}": {
        "get": {
            "summary": "A year's holidays and make-up working days (调休), and whether entered",
            "parameters": [param("year")],
            "responses": {"200": _OK, **problems(401, 422)},
        },
        "put": {
            "summary": "Enter a year's official holiday schedule (replaces the year)",
            "parameters": [param("year")],
            "requestBody": json_body(CalendarIn),
            "responses": {"200": _OK, **problems(401, 413, 415, 422)},
        },
    },
    "/api/v1/items-due": {
        "get": {
            "summary": "Proactive items whose 20-working-day clock (条例 Art26) runs out within "
            "`within` working days (default 5), or has run out",
            "parameters": [param("within", "query")],
            "responses": {"200": _OK, **problems(401, 422)},
        }
    },
    "/api/v1/requests": {
        "post": {
            "summary": "Register a disclosure request (依申请公开)",
            "requestBody": json_body(RequestIn),
            "responses": {"201": _OK, **problems(401, 413, 415, 422)},
        },
        "get": {
            "summary": "Requests received in `year` or open at its start; `state=open` for "
            "open ones; each with its deadline",
            "parameters": [param("year", "query"), param("state", "query", "string")],
            "responses": {"200": _OK, **problems(401, 422)},
        },
    },
    "/api/v1/requests/{request_id}": {
        "get": {
            "summary": "One request with its pauses, deadline and outcome",
            "parameters": [_REQ],
            "responses": {"200": _OK, **problems(401, 404, 422)},
        }
    },
    "/api/v1/requests/{request_id}/pause": _request_action(
        "Stop the clock: 补正 (restarts it when resumed) or third-party consultation", PauseIn
    ),
    "/api/v1/requests/{request_id}/resume": _request_action(
        "End the open pause (the corrected request arrived, or the consultation ended)", ResumeIn
    ),
    "/api/v1/requests/{request_id}/extend": _request_action(
        "The one extension of 20 working days, decided before the deadline", ExtendIn
    ),
    "/api/v1/requests/{request_id}/close": _request_action(
        "Close with exactly one outcome (a leaf of table 三)", CloseIn
    ),
    "/api/v1/reports/annual/{year}/entries": {
        "get": {
            "summary": "What staff entered for the year's report (defaults when nothing)",
            "parameters": [param("year")],
            "responses": {"200": _OK, **problems(401, 422)},
        },
        "put": {
            "summary": "Enter the year's cells the store cannot count, and the free text",
            "parameters": [param("year")],
            "requestBody": json_body(AnnualEntries),
            "responses": {"200": _OK, **problems(401, 413, 415, 422)},
        },
    },
    "/api/v1/reports/annual/{year}/item": {
        "post": {
            "summary": "Create a draft item of the year's report (title 「<agency><year>年政府信息"
            "公开工作年度报告」, category `reports.category`, the report as Markdown, the PDF "
            "attached) for review and publication; 409 naming the cell when it does not add up",
            "parameters": [param("year")],
            "responses": {
                "201": {"description": "the draft item (as GET /api/v1/items/{id})", **_OK_BODY},
                **problems(401, 403, 409, 422),
            },
        }
    },
    "/reports/annual/{year}": {
        "get": {
            "summary": "The annual report (2021 template) as html, pdf, csv or json; 409 naming "
            "the cell when its arithmetic does not add up",
            "parameters": [param("year"), param("format", "query", "string")],
            "responses": {
                "200": {"description": "the report"},
                **problems(401, 409, 422),
            },
        }
    },
}
