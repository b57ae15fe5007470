"""The annual report published as an item: a draft with the report as its body and the PDF
attached, through review to publication; refused (409 naming the cell) when it does not
add up; the category from `reports.category`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from publisher.config import Config
from publisher.errors import ConfigError
from publisher.web.keys import CONFIG
from tests.conftest import Api
from tests.report.test_api import _calendar_body
from tests.web import assert_problem, open_api

YEAR = 2025
TITLE = f"上余镇人民政府{YEAR}年政府信息公开工作年度报告"


async def _a_year_of_requests(api: Api) -> None:
    """Three requests of 2025 and one carried in from 2024: two answered, two open."""
    for received, applicant, outcome in (
        ("2024-12-29", "natural_person", "granted"),
        ("2025-03-03", "natural_person", "refused.third_party"),
        ("2025-05-06", "business", None),
        ("2025-11-12", "research", None),
    ):
        new = {"received_on": received, "applicant_type": applicant, "subject": "村道资金"}
        status, req, _ = await api.call("POST", "/api/v1/requests", json=new)
        assert status == 201, req
        if outcome is not None:
            close = {"outcome": outcome, "closed_on": "2025-03-20"}
            status, req, _ = await api.call(
                "POST", f"/api/v1/requests/{req['id']}/close", json=close
            )
            assert status == 200, req


async def test_the_report_becomes_a_draft_that_goes_through_review(api: Api) -> None:
    await _a_year_of_requests(api)
    entries = {"table2": {"licensing": 7}, "problems": "公开栏更新不及时。"}
    status, body, _ = await api.call("PUT", f"/api/v1/reports/annual/{YEAR}/entries", json=entries)
    assert status == 200, body

    status, item, headers = await api.call("POST", f"/api/v1/reports/annual/{YEAR}/item")
    assert status == 201, item
    assert headers["Location"] == f"/api/v1/items/{item['id']}"
    rev = item  # the live revision's fields are the item's own
    assert item["status"] == "draft" and item["created_by"] == "alice"
    assert rev["title"] == TITLE
    assert rev["category"] == "zwgk"  # no reports.category: the first taxonomy entry
    assert api.client.app is not None
    today = datetime.now(api.client.app[CONFIG].site.tz).date()
    assert rev["written_at"].startswith(today.isoformat())
    # the body carries the report's numbers: table 三 from the register, entered cells, text
    body_text = rev["body"]
    assert "| 一、本年新收政府信息公开申请数量 | 1 | 1 | 1 | 0 | 0 | 0 | 3 |" in body_text
    assert "| 二、上年结转政府信息公开申请数量 | 1 | 0 | 0 | 0 | 0 | 0 | 1 |" in body_text
    assert "| 四、结转下年度继续办理 | 0 | 1 | 1 | 0 | 0 | 0 | 2 |" in body_text
    assert "| 行政许可 | 7 |" in body_text and "公开栏更新不及时。" in body_text
    # the request carried in from 2024 was answered in March: weeks after its deadline
    assert "| 逾期答复的政府信息公开申请（超过法定期限）（件） | 1 |" in body_text
    (pdf,) = item["attachments"]
    assert pdf["filename"] == f"{YEAR}年政府信息公开工作年度报告.pdf"
    assert pdf["content_type"] == "application/pdf" and pdf["size"] > 1000

    # the author cannot approve it; another person can, and then it is out like any item
    await api.call("POST", f"/api/v1/items/{item['id']}/submit")
    status, body, headers = await api.call("POST", f"/api/v1/items/{item['id']}/approve")
    assert_problem(status, body, headers, 403)
    status, body, _ = await api.call("POST", f"/api/v1/items/{item['id']}/approve", who="bob")
    assert status == 200, body
    assert body["status"] == "published" and body["index_no"]
    resp = await api.client.get(pdf["url"])  # the public item page's attachment
    assert resp.status == 200 and (await resp.read()).startswith(b"%PDF")


async def test_a_report_that_does_not_add_up_makes_no_item(api: Api) -> None:
    entries = {"table4": {"reconsideration": {"upheld": 1, "total": 0}}}
    status, body, _ = await api.call("PUT", f"/api/v1/reports/annual/{YEAR}/entries", json=entries)
    assert status == 200, body
    status, body, headers = await api.call("POST", f"/api/v1/reports/annual/{YEAR}/item")
    assert_problem(status, body, headers, 409, "表四 行政复议 总计")
    status, listing, _ = await api.call("GET", "/api/v1/items")
    assert status == 200 and listing["total"] == 0


@pytest.mark.parametrize(
    ("who", "path", "expected", "words"),
    [
        ("bob", f"/api/v1/reports/annual/{YEAR}/item", 403, ["reviewer"]),
        ("alice", "/api/v1/reports/annual/1800/item", 422, ["1800"]),
        (None, f"/api/v1/reports/annual/{YEAR}/item", 401, []),
    ],
)
async def test_who_and_which_year(
    api: Api, who: str | None, path: str, expected: int, words: list[str]
) -> None:
    status, body, headers = await api.call("POST", path, who=who)
    assert_problem(status, body, headers, expected, *words)


async def test_the_category_comes_from_config(config_factory: Callable[..., Config]) -> None:
    async with open_api(config_factory(REPORTS__CATEGORY="czys")) as (api, _):
        status, item, _ = await api.call("POST", f"/api/v1/reports/annual/{YEAR}/item")
        assert status == 201, item
        assert item["category"] == "czys"
        status, again, _ = await api.call("POST", f"/api/v1/reports/annual/{YEAR}/item")
        assert status == 201 and again["id"] != item["id"]  # a second draft, not a change


def test_an_unknown_report_category_is_a_config_error(
    config_factory: Callable[..., Config],
) -> None:
    with pytest.raises(ConfigError, match=r"reports\.category: 'nope' is not a taxonomy slug"):
        config_factory(REPORTS__CATEGORY="nope")


async def test_requests_answered_late_are_counted(api: Api) -> None:
    # 2025-09-19, with the official 2025 schedule: the deadline is 2025-10-23 (see test_api)
    status, body, _ = await api.call("PUT", "/api/v1/calendar/2025", json=_calendar_body())
    assert status == 200, body
    for closed_on in ("2025-10-23", "2025-10-24", "2025-10-24"):
        new = {"received_on": "2025-09-19", "applicant_type": "business", "subject": "村道资金"}
        status, req, _ = await api.call("POST", "/api/v1/requests", json=new)
        assert req["deadline"] == "2025-10-23"
        close = {"outcome": "granted", "closed_on": closed_on}
        status, req, _ = await api.call("POST", f"/api/v1/requests/{req['id']}/close", json=close)
        assert status == 200, req
    # one more answered on 10-24, but extended before its deadline: not late
    status, req, _ = await api.call("POST", "/api/v1/requests", json=new)
    path = f"/api/v1/requests/{req['id']}"
    status, req, _ = await api.call("POST", path + "/extend", json={"extended_on": "2025-10-20"})
    assert req["deadline"] == "2025-11-20"
    status, req, _ = await api.call("POST", path + "/close", json=close)
    assert status == 200, req
    status, report, _ = await api.call("GET", "/reports/annual/2025?format=json")
    assert status == 200, report
    assert report["tables"]["summary"]["late_answers"]["count"] == 2
