"""Issue 18, "never claim what did not happen": a channel that cannot deliver says so —
the subscribe forms and the API refuse instead of promising a code, the deliveries API
reports each channel's state, and a draft's feed preview carries no epoch."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from publisher.config import Config
from publisher.content import ItemCreate, content_from
from publisher.fanout import FanOut
from publisher.ledger import Ledger
from publisher.readiness import CHANNELS, ChannelState, readiness
from publisher.recipients import Consent, Recipients
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import EDITOR, Api, dry_run_channels, item_fields, publish
from tests.web import assert_problem, create, open_api, submit_and_approve
from tests.web.test_staff_ui import Browser, _open, form

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


@pytest.fixture
async def staff_ui(config: Config) -> AsyncIterator[tuple[Any, SqlStore]]:
    async for pair in _open(config):
        yield pair


async def test_item_page_says_which_channels_wait_for_configuration(staff_ui: Any) -> None:
    client, store = staff_ui
    content = content_from(
        ItemCreate.model_validate(item_fields(channels=list(CHANNELS))), store.config
    )
    item = await publish(store, await store.create_item(content, actor=EDITOR))
    # a subscriber on SMS, which has no gateway: the row is planned and waits
    await Recipients(store).subscribe(
        "sms", "13700137000", Consent("staff", "同意接收", source="test")
    )
    fanout = FanOut(store, Ledger(store))
    await fanout.ensure_endpoints()
    await fanout.plan_pending()

    bob = Browser(client)
    await bob.login("bob")
    status, html, _ = await bob.get(f"/staff/items/{item.id}")
    assert status == 200, html
    text = re.sub(r"\s+", " ", html)
    assert "等待配置：未配置短信网关" in text and "等待配置 1" in text  # the queued sms row
    assert "等待配置：未配置邮件服务器" in text
    assert "等待配置：未配置门户网站推送地址" in text
    assert "没有张贴该分类的信息公告栏" in text
    resp = await client.get(f"/staff/items/{item.id}/progress")
    data = await resp.json()
    assert data["readiness"]["sms"]["state"] == "not_configured"
    assert data["readiness"]["rss"]["state"] == "active"
    assert {c["channel"] for c in data["idle"]} == {"portal", "email", "board"}


def test_openapi_documents_channel_states_and_the_503() -> None:
    from publisher.web.openapi import build_document

    doc = build_document()
    ok = doc["paths"]["/api/v1/items/{item_id}/deliveries"]["get"]["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    state = schema["properties"]["channels"]["additionalProperties"]["properties"]["state"]
    assert state["enum"] == ["active", "not_configured", "no_targets"]
    assert "503" in doc["paths"]["/api/v1/subscribers"]["post"]["responses"]


async def test_compose_preview_says_which_channels_cannot_deliver(staff_ui: Any) -> None:
    client, _store = staff_ui
    alice = Browser(client)
    await alice.login("alice")
    fields = [(k, v) for k, v in form().items() if k != "channels"]
    fields += [("channels", c) for c in CHANNELS]
    fields += [("action", "preview"), ("csrf_token", alice.csrf)]
    resp = await client.post("/staff/items/new", data=fields, allow_redirects=False)
    html = await resp.text()
    assert resp.status == 200, html
    for note in (
        "等待配置：未配置短信网关",
        "等待配置：未配置邮件服务器",
        "等待配置：未配置门户网站推送地址",
        "没有张贴该分类的信息公告栏",
    ):
        assert note in html, note
    assert 'data-readiness="not_configured"' in html and 'data-readiness="no_targets"' in html


async def test_subscribers_of_other_categories_are_no_targets(
    config: Config, tmp_path: Path
) -> None:
    async with open_api(dry_run_channels(config, tmp_path / "outbox")) as (_api, store):
        await Recipients(store).subscribe(
            "sms", "13700137000", Consent("staff", "同意接收", source="test"), categories=["czys"]
        )
        nync = await readiness(store, ["sms", "email"], category="nync")
        assert nync["sms"].state is ChannelState.NO_TARGETS and nync["sms"].dry_run
        assert "nync" in nync["sms"].reason
        assert nync["email"].state is ChannelState.NO_TARGETS
        czys = await readiness(store, ["sms"], category="czys")
        assert czys["sms"].state is ChannelState.ACTIVE and czys["sms"].dry_run
