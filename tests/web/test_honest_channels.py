"""Issue 18, "never claim what did not happen": a channel that cannot deliver says so —
the subscribe forms and the API refuse instead of promising a code, the deliveries API
reports each channel's state, and a draft's feed preview carries no epoch."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import Api
from tests.web import assert_problem, create, submit_and_approve

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _ledger_rows(store: SqlStore) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(t.deliveries)) or 0)


async def test_api_refuses_a_code_no_gateway_would_send(api: Api, sqlite_store: SqlStore) -> None:
    for channel, address in (("sms", "13700137000"), ("email", "zhang@example.org")):
        status, body, headers = await api.call(
            "POST", "/api/v1/subscribers", who=None, json={"channel": channel, "address": address}
        )
        assert_problem(status, body, headers, 503, channel)
        assert body["type"].endswith("channel-unavailable")
        assert body["channel"] == channel
    assert await _ledger_rows(sqlite_store) == 0  # nothing queued that could never go out


async def test_subscribe_page_says_sms_and_email_are_not_open(
    api: Api, sqlite_store: SqlStore
) -> None:
    resp = await api.client.get("/subscribe")
    html = await resp.text()
    assert resp.status == 200
    assert "短信订阅暂未开通" in html and "邮件订阅暂未开通" in html
    # neither form is offered as if it worked; the feeds still are
    assert 'action="/subscribe/sms"' not in html and 'action="/subscribe/email"' not in html
    assert "/feeds/all.atom" in html

    # a form posted anyway (an old page) promises nothing either
    token = CSRF.search(html)
    assert token is None  # no form on the page: take a token from another form's cookie
    for path, field, value in (
        ("/subscribe/sms", "number", "13700137000"),
        ("/subscribe/email", "email", "zhang@example.org"),
    ):
        leave = await (await api.client.get("/subscribe/leave")).text()
        found = CSRF.search(leave)
        assert found, leave
        resp = await api.client.post(
            path, data={field: value, "csrf_token": found[1]}, allow_redirects=False
        )
        page = await resp.text()
        assert resp.status == 503, page
        assert "暂未开通" in page and "验证码已发送" not in page and "请查收邮件" not in page
    assert await _ledger_rows(sqlite_store) == 0


async def test_deliveries_report_each_channels_state(api: Api) -> None:
    item = await create(api, channels=["portal", "rss", "sms", "email", "board"])
    await submit_and_approve(api, item["id"])
    status, body, _ = await api.call("GET", f"/api/v1/items/{item['id']}/deliveries")
    assert status == 200, body
    states = {name: found["state"] for name, found in body["channels"].items()}
    assert states == {
        "portal": "not_configured",
        "rss": "active",
        "sms": "not_configured",
        "email": "not_configured",
        "board": "no_targets",
    }
    assert "gateway" in body["channels"]["sms"]["reason"]
    assert "SMTP" in body["channels"]["email"]["reason"]
    assert "endpoint" in body["channels"]["portal"]["reason"]
    assert "board" in body["channels"]["board"]["reason"]
    assert body["channels"]["rss"]["reason"] is None
    assert not any(found["dry_run"] for found in body["channels"].values())


async def test_draft_feed_preview_never_says_epoch(api: Api) -> None:
    item = await create(api, channels=["rss"])
    status, body, _ = await api.call("GET", f"/api/v1/items/{item['id']}/preview")
    assert status == 200, body
    text: Any = body["channels"]["rss"]["preview"]
    assert "<updated>" in text, text
    assert "1970-01-01" not in text, text
