"""The item routes of /api/v1 as a client sees them: status codes, headers, JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from publisher.content import ItemCreate, content_from
from publisher.store.sql import SqlStore
from tests.conftest import Api, item_fields
from tests.web import assert_problem, create, submit_and_approve

RESIDENT_ID = "11010519491231002X"  # GB 11643 check digit valid
MOBILE = "13812345678"
BANK_CARD = "6222021234567890128"  # Luhn valid
PII_BODY = f"申请人身份证号{RESIDENT_ID}，联系电话{MOBILE}，补助发放至银行卡{BANK_CARD}。"


def _future(days: int = 3) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def _get(api: Api, item_id: str, who: str = "alice") -> tuple[dict[str, Any], str]:
    status, body, headers = await api.call("GET", f"/api/v1/items/{item_id}", who=who)
    assert status == 200, body
    return body, headers["ETag"]


async def _list(api: Api, query: str = "") -> dict[str, Any]:
    status, body, _ = await api.call("GET", f"/api/v1/items{query}", who="bob")
    assert status == 200, body
    return dict(body)


def _ids(page: dict[str, Any]) -> set[str]:
    return {i["id"] for i in page["items"]}


# -- create and read --------------------------------------------------------------


async def test_create_answers_201_with_location_and_etag(api: Api) -> None:
    fields = item_fields(doc_no="上政发〔2026〕12号", channels=["portal", "rss", "rss"])
    status, body, headers = await api.call("POST", "/api/v1/items", json=fields)
    assert status == 201, body
    assert headers["Location"] == f"/api/v1/items/{body['id']}"
    assert headers["ETag"] and headers["ETag"].startswith('"')
    assert body["status"] == "draft"
    assert body["title"] == fields["title"]
    assert body["category"] == "nync" and body["category_name"] == "农业农村"
    assert body["agency"] == "上余镇人民政府"  # site.agency by default
    assert body["doc_no"] == "上政发〔2026〕12号"
    assert body["channels"] == ["portal", "rss"]
    assert body["index_no"] is None  # assigned only at publication
    assert body["summary"] and body["summary_derived"] is True
    assert body["written_at"].startswith("2026-11-20T00:00:00+08:00")
    assert body["created_by"] == "alice" and body["revision"] == 1
    assert body["personal_data_warnings"] == [] and body["pending"] is None

    # the Location answers with the same item and the same ETag
    status, got, get_headers = await api.call("GET", headers["Location"], who="bob")
    assert status == 200
    assert got["id"] == body["id"] and got["title"] == body["title"]
    assert get_headers["ETag"] == headers["ETag"]


async def test_get_with_matching_if_none_match_is_304(api: Api) -> None:
    item = await create(api)
    _, etag = await _get(api, item["id"])
    status, body, headers = await api.call(
        "GET", f"/api/v1/items/{item['id']}", headers={"If-None-Match": etag}
    )
    assert status == 304 and body == b""
    assert headers["ETag"] == etag
    # a different ETag gets the item
    status, body, _ = await api.call(
        "GET", f"/api/v1/items/{item['id']}", headers={"If-None-Match": '"other.1"'}
    )
    assert status == 200 and body["id"] == item["id"]


# -- list, filters, pagination -----------------------------------------------------


async def test_list_filters_by_status_category_year_and_text(
    api: Api, sqlite_store: SqlStore
) -> None:
    water = await create(api, title="关于秸秆禁烧工作的通知", category="nync")
    relief = await create(
        api,
        title="社会救助资金发放情况",
        body="本季度城乡低保金已按时足额发放到户。",
        category="shjz",
    )
    live = await create(api, title="上余镇应急预案", category="yjgl")
    live = await submit_and_approve(api, live["id"])
    assert live["status"] == "published" and live["index_no"]
    archived = await sqlite_store.import_item(
        content_from(
            ItemCreate.model_validate(
                item_fields(title="上余镇2013年政府信息公开年度报告", written_at="2014-01-10")
            ),
            sqlite_store.config,
        ),
        index_no="113308810026305088/2014-00007",
        published_at=datetime(2014, 1, 15, 2, 0, tzinfo=UTC),
        actor="import",
    )
    everything = {water["id"], relief["id"], live["id"], archived.id}

    page = await _list(api)
    assert _ids(page) == everything and page["total"] == 4

    page = await _list(api, "?status=draft")
    assert _ids(page) == {water["id"], relief["id"]} and page["total"] == 2
    page = await _list(api, "?status=published")
    assert _ids(page) == {live["id"], archived.id}
    page = await _list(api, "?category=shjz")
    assert _ids(page) == {relief["id"]} and page["total"] == 1
    page = await _list(api, "?status=published&category=yjgl")
    assert _ids(page) == {live["id"]}

    page = await _list(api, "?year=2014")
    assert _ids(page) == {archived.id}
    this_year = datetime.fromisoformat(live["published_at"]).year
    page = await _list(api, f"?year={this_year}")
    assert _ids(page) == everything - {archived.id}
    page = await _list(api, "?year=1999")
    assert page["items"] == [] and page["total"] == 0

    # text query: title, 索引号 (assigned and imported), body text
    assert _ids(await _list(api, "?q=秸秆禁烧")) == {water["id"]}
    assert _ids(await _list(api, "?q=低保金")) == {relief["id"]}
    assert _ids(await _list(api, f"?q={live['index_no']}")) == {live["id"]}
    assert _ids(await _list(api, "?q=2014-00007")) == {archived.id}
    assert _ids(await _list(api, "?q=年度报告&year=2014")) == {archived.id}
    # LIKE wildcards in the query are taken literally
    assert (await _list(api, "?q=%25"))["total"] == 0
    assert (await _list(api, "?q=_"))["total"] == 0


async def test_list_paginates_with_total(api: Api) -> None:
    created = {(await create(api, title=f"第{n}号通知"))["id"] for n in range(5)}
    seen: list[str] = []
    for page_no, expected in ((1, 2), (2, 2), (3, 1)):
        page = await _list(api, f"?page={page_no}&per_page=2")
        assert page["page"] == page_no and page["per_page"] == 2 and page["total"] == 5
        assert len(page["items"]) == expected
        seen += [i["id"] for i in page["items"]]
    assert len(seen) == 5 and set(seen) == created  # no item twice, none missing
    past_the_end = await _list(api, "?page=4&per_page=2")
    assert past_the_end["items"] == [] and past_the_end["total"] == 5
    default = await _list(api)
    assert default["page"] == 1 and default["per_page"] == 20 and len(default["items"]) == 5


# -- workflow ---------------------------------------------------------------------


async def test_submit_approve_publishes_with_an_index_no(api: Api) -> None:
    item = await create(api)
    _, draft_etag = await _get(api, item["id"])
    status, body, headers = await api.call("POST", f"/api/v1/items/{item['id']}/submit")
    assert status == 200 and body["status"] == "in_review"
    assert headers["ETag"] != draft_etag  # every change bumps the ETag
    status, body, _ = await api.call(
        "POST", f"/api/v1/items/{item['id']}/approve", who="bob", json={"reason": "无涉密内容"}
    )
    assert status == 200, body
    assert body["status"] == "published"
    assert body["index_no"].startswith("113308810026305088/")
    assert body["published_at"] is not None


async def test_approve_with_future_publish_at_answers_scheduled(api: Api) -> None:
    item = await create(api, publish_at=_future())
    body = await submit_and_approve(api, item["id"])
    assert body["status"] == "scheduled"
    assert body["index_no"] is None and body["published_at"] is None


async def test_approve_with_past_publish_at_answers_published(api: Api) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    item = await create(api, publish_at=past)
    live = await submit_and_approve(api, item["id"])
    assert live["status"] == "published"


async def test_reject_then_edit_and_resubmit(api: Api) -> None:
    item = await create(api)
    await api.call("POST", f"/api/v1/items/{item['id']}/submit")
    status, body, _ = await api.call(
        "POST", f"/api/v1/items/{item['id']}/reject", who="dave", json={"reason": "请补充文号"}
    )
    assert status == 200 and body["status"] == "rejected"
    _, etag = await _get(api, item["id"])
    status, body, _ = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"doc_no": "上政发〔2026〕3号"},
        headers={"If-Match": etag},
    )
    assert status == 200 and body["status"] == "draft" and body["doc_no"] == "上政发〔2026〕3号"
    body = await submit_and_approve(api, item["id"], reviewer="dave")
    assert body["status"] == "published"


async def test_withdraw_a_published_item(api: Api) -> None:
    item = await submit_and_approve(api, (await create(api))["id"])
    status, body, _ = await api.call(
        "POST", f"/api/v1/items/{item['id']}/withdraw", who="bob", json={"reason": "内容有误"}
    )
    assert status == 200 and body["status"] == "withdrawn"
    assert body["withdrawn_at"] is not None
    assert body["index_no"] == item["index_no"]  # a published number is never reused


async def test_author_cannot_approve_own_item(api: Api) -> None:
    # an admin may both write and review, but never review their own writing
    item = await create(api, who="root-admin")
    status, _, _ = await api.call("POST", f"/api/v1/items/{item['id']}/submit", who="root-admin")
    assert status == 200
    status, body, headers = await api.call(
        "POST", f"/api/v1/items/{item['id']}/approve", who="root-admin"
    )
    assert_problem(status, body, headers, 403, "root-admin", "another reviewer")
    assert body["type"].endswith("four-eyes")
    after, _ = await _get(api, item["id"])
    assert after["status"] == "in_review" and after["index_no"] is None
    # another reviewer can
    body = await submit_and_approve_only(api, item["id"], "bob")
    assert body["status"] == "published"


async def submit_and_approve_only(api: Api, item_id: str, reviewer: str) -> dict[str, Any]:
    status, body, _ = await api.call("POST", f"/api/v1/items/{item_id}/approve", who=reviewer)
    assert status == 200, body
    return dict(body)


async def test_editors_cannot_approve_and_reviewers_cannot_edit(api: Api) -> None:
    item = await create(api)
    await api.call("POST", f"/api/v1/items/{item['id']}/submit")
    status, body, headers = await api.call(
        "POST", f"/api/v1/items/{item['id']}/approve", who="carol"
    )
    assert_problem(status, body, headers, 403, "editor")
    status, body, headers = await api.call("POST", "/api/v1/items", who="bob", json=item_fields())
    assert_problem(status, body, headers, 403, "reviewer")


# -- edits, ETags and revisions -------------------------------------------------------


async def test_patch_with_if_match_returns_the_new_etag(api: Api) -> None:
    item = await create(api)
    before, etag = await _get(api, item["id"])
    status, body, headers = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"title": "关于冬季农田水利建设的补充通知", "urgent": True},
        headers={"If-Match": etag},
    )
    assert status == 200, body
    assert body["title"] == "关于冬季农田水利建设的补充通知" and body["urgent"] is True
    new_etag = headers["ETag"]
    assert new_etag != etag
    after, get_etag = await _get(api, item["id"])
    assert get_etag == new_etag
    assert after["title"] == "关于冬季农田水利建设的补充通知"
    assert after["body"] == before["body"]  # untouched fields stay
    # the new ETag is good for the next edit
    status, body, _ = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"summary": "冬修水利"},
        headers={"If-Match": new_etag},
    )
    assert status == 200 and body["summary"] == "冬修水利" and body["summary_derived"] is False


async def test_edit_of_published_item_is_a_pending_revision(api: Api) -> None:
    item = await submit_and_approve(api, (await create(api))["id"])
    published_title = item["title"]
    _, etag = await _get(api, item["id"])
    status, body, _ = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"title": "关于冬季农田水利建设的通知（更正）", "correction_note": "更正日期"},
        headers={"If-Match": etag},
    )
    assert status == 200, body
    # the item keeps its status and its published text; the edit waits for review
    assert body["status"] == "published"
    assert body["title"] == published_title
    assert body["revision"] == 1
    pending = body["pending"]
    assert pending is not None
    assert pending["state"] == "draft"
    assert pending["title"] == "关于冬季农田水利建设的通知（更正）"
    assert pending["revision"] == 2
    assert pending["correction_note"] == "更正日期"
    assert "title" in pending["changed_fields"] and "body" not in pending["changed_fields"]

    status, body, _ = await api.call("POST", f"/api/v1/items/{item['id']}/submit")
    assert status == 200 and body["status"] == "published"
    assert body["pending"]["state"] == "in_review" and body["title"] == published_title

    body = await submit_and_approve_only(api, item["id"], "dave")
    assert body["status"] == "published"
    assert body["title"] == "关于冬季农田水利建设的通知（更正）"
    assert body["revision"] == 2 and body["pending"] is None
    assert body["index_no"] == item["index_no"]  # a correction keeps the 索引号


# -- personal data -----------------------------------------------------------------


async def test_personal_data_warnings_are_shown_masked(api: Api) -> None:
    item = await create(api, body=PII_BODY, title=f"关于{MOBILE[:3]}号段的说明")
    warnings = item["personal_data_warnings"]
    assert {(w["kind"], w["field"]) for w in warnings} == {
        ("resident_id", "body"),
        ("mobile", "body"),
        ("bank_card", "body"),
    }
    by_kind = {w["kind"]: w["match"] for w in warnings}
    assert by_kind["resident_id"] == "110105********002X"
    assert by_kind["mobile"] == "138****5678"
    assert by_kind["bank_card"] == "6222***********0128"
    text = repr(warnings)
    for secret in (RESIDENT_ID, MOBILE, BANK_CARD):
        assert secret not in text  # the warning itself leaks nothing
    got, _ = await _get(api, item["id"], who="bob")
    assert got["personal_data_warnings"] == warnings


async def test_personal_data_in_title_and_summary_is_found(api: Api) -> None:
    item = await create(api, title=f"联系人电话{MOBILE}", summary=f"身份证{RESIDENT_ID}")
    fields = {(w["kind"], w["field"]) for w in item["personal_data_warnings"]}
    assert fields == {("mobile", "title"), ("resident_id", "summary")}


async def test_masked_personal_data_gives_no_warning(api: Api) -> None:
    body = (
        "联系电话138****1234，身份证号110105********002X，银行卡6222 **** **** 0128。"
        "身份证号校验位错误：110105194912310021。"
    )
    item = await create(api, body=body)
    assert item["personal_data_warnings"] == []
    live = await submit_and_approve(api, item["id"])
    assert live["status"] == "published"


async def test_approving_personal_data_needs_an_acknowledgement(api: Api) -> None:
    item = await create(api, body=PII_BODY)
    await api.call("POST", f"/api/v1/items/{item['id']}/submit")

    for payload in (None, {}, {"acknowledge_personal_data": False}):
        status, body, headers = await api.call(
            "POST", f"/api/v1/items/{item['id']}/approve", who="bob", json=payload
        )
        assert_problem(status, body, headers, 409, "personal data", "acknowledge_personal_data")
        assert body["type"].endswith("personal-data")
        assert {f["kind"] for f in body["findings"]} == {"resident_id", "mobile", "bank_card"}
        assert RESIDENT_ID not in repr(body)
    after, _ = await _get(api, item["id"])
    assert after["status"] == "in_review" and after["index_no"] is None

    status, body, _ = await api.call(
        "POST",
        f"/api/v1/items/{item['id']}/approve",
        who="bob",
        json={"acknowledge_personal_data": True, "reason": "当事人同意公开"},
    )
    assert status == 200, body
    assert body["status"] == "published"

    status, audit, _ = await api.call("GET", f"/api/v1/items/{item['id']}/audit")
    assert status == 200
    approve = next(e for e in audit["entries"] if e["action"] == "approve")
    assert approve["actor"] == "bob" and approve["reason"] == "当事人同意公开"
    acknowledged = approve["details"]["personal_data_acknowledged"]
    assert {f["kind"] for f in acknowledged} == {"resident_id", "mobile", "bank_card"}
    assert RESIDENT_ID not in repr(audit)


async def test_personal_data_in_a_revision_needs_an_acknowledgement(api: Api) -> None:
    item = await submit_and_approve(api, (await create(api))["id"])
    _, etag = await _get(api, item["id"])
    status, body, _ = await api.call(
        "PATCH",
        f"/api/v1/items/{item['id']}",
        json={"body": PII_BODY},
        headers={"If-Match": etag},
    )
    assert status == 200
    # the warnings are about the revision under review
    assert {w["kind"] for w in body["personal_data_warnings"]} == {
        "resident_id",
        "mobile",
        "bank_card",
    }
    await api.call("POST", f"/api/v1/items/{item['id']}/submit")
    status, body, headers = await api.call("POST", f"/api/v1/items/{item['id']}/approve", who="bob")
    assert_problem(status, body, headers, 409, "personal data")
    status, body, _ = await api.call(
        "POST",
        f"/api/v1/items/{item['id']}/approve",
        who="bob",
        json={"acknowledge_personal_data": True},
    )
    assert status == 200 and body["body"] == PII_BODY


# -- audit --------------------------------------------------------------------------


async def test_audit_lists_every_transition(api: Api) -> None:
    item = await create(api)
    item_id = item["id"]
    await api.call("POST", f"/api/v1/items/{item_id}/submit")
    await api.call("POST", f"/api/v1/items/{item_id}/reject", who="bob", json={"reason": "缺附件"})
    _, etag = await _get(api, item_id)
    await api.call(
        "PATCH", f"/api/v1/items/{item_id}", json={"summary": "补"}, headers={"If-Match": etag}
    )
    await submit_and_approve(api, item_id, reviewer="dave")
    await api.call("POST", f"/api/v1/items/{item_id}/withdraw", who="bob", json={"reason": "撤回"})

    status, body, headers = await api.call("GET", f"/api/v1/items/{item_id}/audit", who="bob")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    moves = [(e["action"], e["actor"], e["from"], e["to"]) for e in body["entries"]]
    assert moves == [
        ("create", "alice", None, "draft"),
        ("submit", "alice", "draft", "in_review"),
        ("reject", "bob", "in_review", "rejected"),
        ("reopen", "alice", "rejected", "draft"),
        ("edit", "alice", None, None),
        ("submit", "alice", "draft", "in_review"),
        ("approve", "dave", "in_review", "approved"),
        ("publish", "system", "approved", "published"),
        ("withdraw", "bob", "published", "withdrawn"),
    ]
    reasons = {e["action"]: e["reason"] for e in body["entries"] if e["reason"]}
    assert reasons == {"reject": "缺附件", "withdraw": "撤回"}
    for e in body["entries"]:
        assert e["at"] and e["at"].endswith("+08:00")  # site-local time
    publish = next(e for e in body["entries"] if e["action"] == "publish")
    assert publish["details"]["index_no"]
