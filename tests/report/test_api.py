"""The calendar, items-due and request-register routes: answers and RFC 9457 problems."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.report import CALENDAR_2025
from tests.web import assert_problem


def _calendar_body() -> dict[str, Any]:
    holidays, workdays = [], []
    from publisher.calendar import DayKind, parse_calendar_file

    for d in parse_calendar_file(CALENDAR_2025.read_text(encoding="utf-8"), "cal"):
        entry = {"date": d.day.isoformat(), "name": d.name}
        (holidays if d.kind is DayKind.HOLIDAY else workdays).append(entry)
    return {"holidays": holidays, "workdays": workdays}


async def test_calendar_round_trips(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/v1/calendar/2025")
    assert status == 200 and body["entered"] is False
    status, body, _ = await api.call("PUT", "/api/v1/calendar/2025", json=_calendar_body())
    assert status == 200, body
    assert body["entered"] is True
    assert {"date": "2025-09-28", "name": "国庆节调休"} in body["workdays"]
    assert len(body["holidays"]) == 28  # 1 + 8 + 3 + 5 + 3 + 8
    status, again, _ = await api.call("GET", "/api/v1/calendar/2025")
    assert again == body


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"workdays": [{"date": "2025-10-09"}]}, ["2025-10-09", "saturday or sunday"]),
        ({"holidays": [{"date": "2024-10-01"}]}, ["not in 2025"]),
        ({"holidays": [{"date": "2025-02-30"}]}, ["holidays.0.date"]),
        ({"holiday": []}, ["holiday", "unknown field"]),
    ],
)
async def test_bad_calendars_are_problems(api: Api, body: Any, words: list[str]) -> None:
    status, answer, headers = await api.call("PUT", "/api/v1/calendar/2025", json=body)
    assert_problem(status, answer, headers, 422, *words)


async def test_a_request_through_its_life(api: Api) -> None:
    await api.call("PUT", "/api/v1/calendar/2025", json=_calendar_body())
    new = {"received_on": "2025-09-19", "applicant_type": "business", "subject": "村道资金"}
    status, req, headers = await api.call("POST", "/api/v1/requests", json=new)
    assert status == 201, req
    assert headers["Location"] == f"/api/v1/requests/{req['id']}"
    assert req["deadline"] == "2025-10-23" and req["state"] == "open"
    path = f"/api/v1/requests/{req['id']}"
    status, req, _ = await api.call(
        "POST", path + "/pause", json={"kind": "consultation", "started_on": "2025-09-26"}
    )
    assert status == 200 and req["paused"] and req["deadline"] is None
    status, req, _ = await api.call("POST", path + "/resume", json={"ended_on": "2025-10-10"})
    assert req["deadline"] == "2025-10-30"
    status, req, _ = await api.call("POST", path + "/extend", json={"extended_on": "2025-10-29"})
    assert status == 200 and req["deadline"] == "2025-11-27"
    status, body, headers = await api.call(
        "POST", path + "/extend", json={"extended_on": "2025-10-30"}
    )
    assert_problem(status, body, headers, 409, "one extension")
    status, req, _ = await api.call(
        "POST", path + "/close", json={"outcome": "refused.third_party", "closed_on": "2025-11-20"}
    )
    assert req["state"] == "closed" and req["outcome"] == "refused.third_party"
    status, body, headers = await api.call(
        "POST", path + "/close", json={"outcome": "granted", "closed_on": "2025-11-21"}
    )
    assert_problem(status, body, headers, 409, "closed on 2025-11-20")
    status, listed, _ = await api.call("GET", "/api/v1/requests?year=2025")
    assert [r["id"] for r in listed["requests"]] == [req["id"]]
    status, listed, _ = await api.call("GET", "/api/v1/requests?year=2025&state=open")
    assert listed["requests"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "expected", "words"),
    [
        ("POST", "/api/v1/requests", {"received_on": "2025-01-02", "applicant_type": "company", "subject": "x"}, 422, ["applicant_type"]),
        ("POST", "/api/v1/requests", {"received_on": "2025-01-02", "applicant_type": "business", "subject": "  "}, 422, ["subject"]),
        ("POST", "/api/v1/requests", {"received_on": "1800-01-02", "applicant_type": "business", "subject": "x"}, 422, ["received_on", "1800"]),
        ("POST", "/api/v1/requests", {"received_on": "2025-01-02", "applicant_type": "natural_person", "applicant": "张三\u200b", "subject": "x"}, 422, ["applicant", "U+200B"]),
        ("POST", "/api/v1/requests", {"received_on": "2025-01-02", "applicant_type": "business", "subject": "x\x0by"}, 422, ["subject", "U+000B"]),
        ("POST", "/api/v1/requests", {"received_on": "2025-01-02", "applicant_type": "business", "subject": "x", "note": "\x1b"}, 422, ["note", "U+001B"]),
        ("POST", "/api/v1/requests/{id}/close", {"outcome": "refused", "closed_on": "2025-02-01"}, 422, ["outcome"]),
        ("POST", "/api/v1/requests/{id}/close", {"outcome": "granted", "closed_on": "2024-12-01"}, 422, ["closed_on", "before"]),
        ("POST", "/api/v1/requests/{id}/resume", {"ended_on": "2025-02-01"}, 409, ["not paused"]),
        ("POST", "/api/v1/requests/{id}/extend", {"extended_on": "2025-06-01"}, 409, ["deadline", "passed"]),
        ("POST", "/api/v1/requests/{id}/pause", {"kind": "holiday", "started_on": "2025-02-01"}, 422, ["kind"]),
        ("POST", "/api/v1/requests/999999/close", {"outcome": "granted", "closed_on": "2025-02-01"}, 404, ["999999"]),
        ("GET", "/api/v1/requests/abc", None, 422, ["request_id"]),
        ("GET", "/api/v1/requests?state=closed", None, 422, ["state"]),
        ("GET", "/api/v1/items-due?within=99", None, 422, ["within"]),
        ("GET", "/api/v1/calendar/99999", None, 422, ["year"]),
    ],
)  # fmt: skip
async def test_bad_register_input_is_a_problem(
    api: Api, method: str, path: str, body: Any, expected: int, words: list[str]
) -> None:
    new = {"received_on": "2025-01-02", "applicant_type": "natural_person", "subject": "x"}
    status, req, _ = await api.call("POST", "/api/v1/requests", json=new)
    assert status == 201
    kwargs = {"json": body} if body is not None else {}
    status, answer, headers = await api.call(method, path.replace("{id}", str(req["id"])), **kwargs)
    assert_problem(status, answer, headers, expected, *words)


async def test_items_due_route(api: Api) -> None:
    from tests.web import create

    item = await create(api, written_at="2020-01-06")
    status, body, _ = await api.call("GET", "/api/v1/items-due")
    assert status == 200
    (clock,) = body["items"]
    assert clock["item_id"] == item["id"] and clock["overdue"] is True
    assert clock["deadline"] == "2020-02-03"  # weekends only: 2020 was never entered
    assert 2020 not in body["calendar_missing"]  # the list is about today's year
