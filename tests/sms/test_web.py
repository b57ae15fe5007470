"""SMS on the web side without a gateway: subscribing by code (limits, no enumeration,
consent), delivery reports (forged, malformed, early), keywords, short links."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from channels.sms import dlr_key, dlr_token, sms_settings
from publisher.addresses import AddressBox
from publisher.config import Config
from publisher.errors import Conflict
from publisher.ledger import DeliveryState, Ledger, Outcome, ReceiptResult
from publisher.messages import queue_message
from publisher.recipients import Consent, Recipients, RecipientStatus
from publisher.shortlinks import ShortLinks
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from publisher.web import make_app
from tests.conftest import BACKENDS, EDITOR, Api, item_fields, publish
from tests.sms.conftest import ENGINE, open_store
from tests.web import assert_problem

SECRET = "inbound-shared-secret-for-tests"
NUMBER = "13800138000"
CONSENT_STAFF = Consent(method="staff", text="同意", source="test")
MASKED = "138****8000"


def web_config(config: Config, **settings: Any) -> Config:
    tree = config.model_dump()
    tree["channels"]["sms"]["settings"] = {
        "gateways": [
            {
                "url": "http://127.0.0.1:9/cgi-bin/sendsms",
                "username": "u",
                "password": "p",
                "sender": "10690000",
            }
        ],
        "inbound_secret": SECRET,
        **settings,
    }
    return Config.model_validate(tree)


@asynccontextmanager
async def app_on(store: SqlStore) -> AsyncIterator[Api]:
    with contextlib.suppress(Conflict):  # a second app on the same store
        await store.add_user(EDITOR.name, EDITOR.role)
    token = await store.create_token(EDITOR.name)
    async with TestClient(TestServer(make_app(store.config, store))) as client:
        yield Api(client, {EDITOR.name: token})


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sms_web(config_factory: Callable[..., Config], backend: str) -> Callable[..., Any]:
    def make(**settings: Any) -> Any:
        return open_store(web_config(config_factory(**ENGINE), **settings), backend)

    return make


@pytest.fixture
def sms_web_sqlite(config_factory: Callable[..., Config]) -> Callable[..., Any]:
    """For checks that do not depend on the backend."""

    def make(**settings: Any) -> Any:
        return open_store(web_config(config_factory(**ENGINE), **settings), "sqlite")

    return make


async def sent_code(store: SqlStore) -> str:
    """The code in the newest transactional message (decrypted, as the phone would see it)."""
    box = AddressBox(store.config.data_key())
    async with store.read() as conn:
        body = await conn.scalar(
            sa.select(t.messages.c.body_enc).order_by(t.messages.c.id.desc()).limit(1)
        )
    found = re.search(r"\d{6}", box.open(body))
    assert found
    return found.group(0)


# -- subscribing by code --------------------------------------------------------------------


async def test_subscribing_by_code_records_consent_and_never_shows_the_number(
    sms_web: Any,
) -> None:
    async with sms_web() as store, app_on(store) as api:
        ask = {"channel": "sms", "address": "138 0013 8000", "categories": ["nync"]}
        status, body, _ = await api.call("POST", "/api/v1/subscribers", who=None, json=ask)
        assert status == 202, body
        assert body == {
            "status": "code_sent",
            "channel": "sms",
            "address": MASKED,
            "expires_in": 600,
        }
        # a transactional ledger row: first in line, never held by quiet hours, no item
        async with store.read() as conn:
            [row] = (await conn.execute(sa.select(t.deliveries))).all()
            raw = [
                *(await conn.execute(sa.select(t.messages))).all(),
                *(await conn.execute(sa.select(t.verifications))).all(),
            ]
        assert row.subject.startswith("msg:") and row.target.startswith("m:")
        assert row.priority == 20 and row.bypass_quiet and row.item_id is None
        assert NUMBER not in repr(raw)  # address and text kept encrypted, the code hashed
        code = await sent_code(store)
        assert code not in repr(raw)

        wrong = "000000" if code != "000000" else "111111"
        verify = {"channel": "sms", "address": NUMBER, "code": wrong}
        status, body, headers = await api.call(
            "POST", "/api/v1/subscribers/verify", who=None, json=verify
        )
        assert_problem(status, body, headers, 422, "wrong or expired")
        status, body, _ = await api.call(
            "POST", "/api/v1/subscribers/verify", who=None, json=verify | {"code": code}
        )
        assert status == 200, body
        assert body == {
            "status": "subscribed",
            "channel": "sms",
            "address": MASKED,
            "categories": ["nync"],
        }
        sub = await Recipients(store).get("sms", NUMBER)
        assert sub.status is RecipientStatus.ACTIVE and sub.categories == ("nync",)
        async with store.read() as conn:
            [consent] = (
                await conn.execute(sa.select(t.consents).where(t.consents.c.recipient_id == sub.id))
            ).all()
        assert consent.method == "web_verified" and "退订" in consent.text
        assert consent.source == "web 127.0.0.0/24"
        # a used code is spent
        status, _, _ = await api.call(
            "POST", "/api/v1/subscribers/verify", who=None, json=verify | {"code": code}
        )
        assert status == 422

        # asking again for a subscribed number answers exactly as for a new one
        status, again, _ = await api.call("POST", "/api/v1/subscribers", who=None, json=ask)
        assert status == 202
        status, fresh, _ = await api.call(
            "POST", "/api/v1/subscribers", who=None, json=ask | {"address": "13900139000"}
        )
        assert status == 202
        assert again == fresh | {"address": MASKED}


async def test_a_code_allows_five_tries(sms_web: Any) -> None:
    async with sms_web() as store, app_on(store) as api:
        ask = {"channel": "sms", "address": NUMBER}
        assert (await api.call("POST", "/api/v1/subscribers", who=None, json=ask))[0] == 202
        code = await sent_code(store)
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(5):
            status, _, _ = await api.call(
                "POST", "/api/v1/subscribers/verify", who=None, json=ask | {"code": wrong}
            )
            assert status == 422
        status, body, headers = await api.call(
            "POST", "/api/v1/subscribers/verify", who=None, json=ask | {"code": code}
        )
        assert_problem(status, body, headers, 422, "wrong or expired")
        with pytest.raises(Exception, match="no sms subscriber"):
            await Recipients(store).get("sms", NUMBER)


async def test_an_expired_code_is_refused(sms_web: Any) -> None:
    async with sms_web() as store, app_on(store) as api:
        ask = {"channel": "sms", "address": NUMBER}
        assert (await api.call("POST", "/api/v1/subscribers", who=None, json=ask))[0] == 202
        code = await sent_code(store)
        async with store.write() as conn:
            await conn.execute(
                t.verifications.update().values(expires_at=sa.func.current_timestamp())
            )
        status, body, headers = await api.call(
            "POST", "/api/v1/subscribers/verify", who=None, json=ask | {"code": code}
        )
        assert_problem(status, body, headers, 422, "wrong or expired")


async def test_code_requests_are_limited_per_number_and_per_ip_across_restarts(
    sms_web: Any,
) -> None:
    async with sms_web(codes_per_number_hour=2, codes_per_ip_hour=3) as store:
        ask = {"channel": "sms", "address": NUMBER}
        async with app_on(store) as api:
            for _ in range(2):
                assert (await api.call("POST", "/api/v1/subscribers", who=None, json=ask))[0] == 202
        async with TestClient(TestServer(make_app(store.config, store))) as client:  # a restart
            resp = await client.post("/api/v1/subscribers", json=ask)
            body = await resp.json(content_type=None)
            assert_problem(resp.status, body, resp.headers, 429, "too many")
            assert 0 < int(resp.headers["Retry-After"]) <= 3600
            assert NUMBER not in str(body)
            # another number from the same client: the per-IP limit (3, the refused one counted)
            resp = await client.post("/api/v1/subscribers", json=ask | {"address": "13900139000"})
            assert resp.status == 429
        async with store.read() as conn:
            n = await conn.scalar(sa.select(sa.func.count()).select_from(t.messages))
        assert n == 2  # the refused requests sent nothing


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"channel": "sms", "address": "12345"}, "not a valid phone number"),
        ({"channel": "sms", "address": "call me"}, "not a phone number"),
        ({"channel": "sms", "address": NUMBER, "categories": ["nope"]}, "unknown category"),
        ({"channel": "fax", "address": "a@example.org"}, "sms or email"),
        ({"channel": "sms"}, "address"),
        ({"channel": "sms", "address": NUMBER, "extra": 1}, "unknown field"),
        ({"channel": "sms", "address": NUMBER, "categories": "nync"}, "categories"),
    ],
)
async def test_bad_subscription_requests_are_problems_without_the_number(
    sms_web_sqlite: Any, payload: dict[str, Any], words: str
) -> None:
    async with sms_web_sqlite() as store, app_on(store) as api:
        status, body, headers = await api.call(
            "POST", "/api/v1/subscribers", who=None, json=payload
        )
        assert_problem(status, body, headers, 422, words)
        assert NUMBER not in str(body) and "12345" not in body["detail"]


# -- delivery reports --------------------------------------------------------------------------


async def sent_row(store: SqlStore) -> int:
    """A transactional row taken to `sent`, as a worker would after Kannel accepted it."""
    delivery_id = await queue_message(store, "sms", "+8613800138000", "测试", purpose="test")
    ledger = Ledger(store)
    [(claimed, _)] = await ledger.cycle("w1", [], "sms", 1)
    assert claimed.id == delivery_id
    await ledger.record(
        "w1", [Outcome(delivery_id, DeliveryState.SENT, provider_id="k:1", units=1)]
    )
    return delivery_id


async def state_of(store: SqlStore, delivery_id: int) -> tuple[str, int]:
    async with store.read() as conn:
        state = await conn.scalar(
            sa.select(t.deliveries.c.state).where(t.deliveries.c.id == delivery_id)
        )
        events = await conn.scalar(
            sa.select(sa.func.count()).where(t.delivery_events.c.delivery_id == delivery_id)
        )
    return str(state), int(events or 0)


async def test_reports_are_checked_then_recorded_once(sms_web: Any) -> None:
    async with sms_web() as store, app_on(store) as api:
        delivery_id = await sent_row(store)
        key = dlr_key(store.config, sms_settings(store.config))
        token = dlr_token(key, str(delivery_id))
        before = await state_of(store, delivery_id)
        for query, expected, words in [
            (f"id={delivery_id}&t=AAAAAAAAAAAAAAAAAAAAAA&status=1", 403, "token"),
            (f"id={delivery_id}&status=1", 403, "token"),
            (f"id={delivery_id + 1}&t={token}&status=1", 403, "token"),  # another row's token
            (f"t={token}&status=1", 422, "id"),
            (f"id=x&t={token}&status=1", 422, "id"),
            (f"id={delivery_id}&t={token}&status=3", 422, "status"),
            (f"id={delivery_id}&t={token}&status=", 422, "status"),
        ]:
            status, body, headers = await api.call("GET", f"/sms/dlr?{query}", who=None)
            assert_problem(status, body, headers, expected, words)
        assert await state_of(store, delivery_id) == before

        # an intermediate report (accepted by the SMSC) changes nothing
        status, body, _ = await api.call(
            "GET", f"/sms/dlr?id={delivery_id}&t={token}&status=8", who=None
        )
        assert status == 200 and await state_of(store, delivery_id) == before
        status, body, _ = await api.call(
            "GET", f"/sms/dlr?id={delivery_id}&t={token}&status=16", who=None
        )
        assert status == 200 and body["result"] == "applied"
        assert await state_of(store, delivery_id) == ("failed", before[1] + 1)
        status, body, _ = await api.call(
            "GET", f"/sms/dlr?id={delivery_id}&t={token}&status=1", who=None
        )
        assert status == 200 and body["result"] == "duplicate"
        assert await state_of(store, delivery_id) == ("failed", before[1] + 1)
        async with store.read() as conn:
            reason = await conn.scalar(
                sa.select(t.deliveries.c.reason).where(t.deliveries.c.id == delivery_id)
            )
        assert reason == "smsc_reject"


async def test_a_report_that_overtakes_the_worker_waits_for_its_record(sms_web: Any) -> None:
    async with sms_web() as store:
        delivery_id = await queue_message(store, "sms", "+8613800138000", "测试", purpose="test")
        ledger = Ledger(store)
        await ledger.cycle("w1", [], "sms", 1)  # claimed: `sending`
        report = asyncio.create_task(
            ledger.record_receipt(delivery_id, "sms", DeliveryState.DELIVERED, detail="report 1")
        )
        await asyncio.sleep(0.3)
        assert not report.done()
        await ledger.record("w1", [Outcome(delivery_id, DeliveryState.SENT, units=1)])
        assert await asyncio.wait_for(report, 5) is ReceiptResult.APPLIED
        async with store.read() as conn:
            steps = (
                await conn.scalars(
                    sa.select(t.delivery_events.c.to_state)
                    .where(t.delivery_events.c.delivery_id == delivery_id)
                    .order_by(t.delivery_events.c.id)
                )
            ).all()
        assert list(steps) == ["queued", "sending", "sent", "delivered"]
        # a report for a row that never leaves `sending` gives up, changing nothing
        other = await queue_message(store, "sms", "+8613800138000", "测试", purpose="test")
        await ledger.cycle("w1", [], "sms", 1)
        result = await ledger.record_receipt(
            other, "sms", DeliveryState.DELIVERED, detail="x", wait_seconds=0.2
        )
        assert result is ReceiptResult.IN_FLIGHT
        assert (await state_of(store, other))[0] == "sending"


# -- keywords without Kannel ------------------------------------------------------------------


async def test_inbound_needs_the_secret_and_a_number(sms_web_sqlite: Any) -> None:
    async with sms_web_sqlite() as store, app_on(store) as api:
        for query, expected, words in [
            (f"from={NUMBER}&text=DY", 403, "secret"),
            (f"secret=wrong&from={NUMBER}&text=DY", 403, "secret"),
            (f"secret={SECRET}&text=DY", 422, "from"),
            (f"secret={SECRET}&from=12&text=DY", 422, "from"),
        ]:
            status, body, headers = await api.call("GET", f"/sms/inbound?{query}", who=None)
            assert_problem(status, body, headers, expected, words)
        assert NUMBER not in str(body)
    async with sms_web_sqlite(inbound_secret=None) as store, app_on(store) as api:
        status, body, headers = await api.call(
            "GET", f"/sms/inbound?secret=&from={NUMBER}&text=DY", who=None
        )
        assert_problem(status, body, headers, 403, "secret")


async def test_keywords_change_the_subscription(sms_web: Any) -> None:
    async with sms_web() as store, app_on(store) as api:

        async def say(text: str) -> str:
            status, body, headers = await api.call(
                "GET", f"/sms/inbound?secret={SECRET}&from={NUMBER}&to=10690000&text={text}",
                who=None,
            )  # fmt: skip
            assert status == 200 and headers["X-Kannel-Coding"] == "2"
            return body.decode()

        recipients = Recipients(store)
        assert "尚未订阅" in await say("CX")
        assert "农业农村" in await say("DY NY")
        assert (await recipients.get("sms", NUMBER)).categories == ("nync",)
        await say("dy zs")  # adds to what is there
        assert (await recipients.get("sms", NUMBER)).categories == ("nync", "tdzs")
        assert "农业农村、土地征收" in await say("CX")
        assert "未找到栏目代码XX" in await say("DY XX")
        await say("DY")
        assert (await recipients.get("sms", NUMBER)).categories == ()
        for word in ("TD", "t", " R ", "退订", "stop"):
            await say("DY")
            assert "已退订" in await say(word)
            assert (await recipients.get("sms", NUMBER)).status is RecipientStatus.UNSUBSCRIBED
        assert await recipients.is_suppressed("sms", NUMBER)
        await say("DY")  # the resident's own keyword lifts the suppression
        assert not await recipients.is_suppressed("sms", NUMBER)


# -- short links ------------------------------------------------------------------------------


async def test_short_links_lead_only_to_published_proactive_items(sms_web: Any) -> None:
    async with sms_web() as store, app_on(store) as api:
        links = ShortLinks(store.config)
        from publisher.content import ItemCreate, content_from

        def content(**kw: Any) -> Any:
            return content_from(
                ItemCreate.model_validate(item_fields(channels=["portal"], **kw)), store.config
            )

        live = await publish(store, await store.create_item(content(), actor=EDITOR))
        draft = await store.create_item(content(title="草稿"), actor=EDITOR)
        code = links.code(live.id)
        assert len(code) == 8 and code == ShortLinks(store.config).code(live.id)  # stable
        resp = await api.client.get(f"/s/{code}", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == f"/items/{live.id}"
        for other in (links.code(draft.id), "AAAAAAAA", "short", "x" * 200, "%E4%B8%AD" * 3):
            status, body, headers = await api.call("GET", f"/s/{other}", who=None)
            assert_problem(status, body, headers, 404)


async def test_short_links_keep_the_path_the_site_is_served_under(
    config_factory: Callable[..., Config],
) -> None:
    config = web_config(
        config_factory(**ENGINE, SITE__BASE_URL="https://gk.example.gov.cn/gongkai")
    )
    async with open_store(config, "sqlite") as store, app_on(store) as api:
        from publisher.content import ItemCreate, content_from

        fields = ItemCreate.model_validate(item_fields(channels=["portal"]))
        live = await publish(
            store, await store.create_item(content_from(fields, store.config), actor=EDITOR)
        )
        code = ShortLinks(store.config).code(live.id)
        resp = await api.client.get(f"/s/{code}", allow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == f"/gongkai/items/{live.id}"


# -- preview ----------------------------------------------------------------------------------


async def test_the_preview_shows_the_sms_and_what_it_will_cost(sms_web: Any) -> None:
    from publisher.content import ItemCreate, content_from

    async with sms_web() as store, app_on(store) as api:
        recipients = Recipients(store)
        consent = CONSENT_STAFF
        await recipients.subscribe("sms", "13800000001", consent)  # every category
        await recipients.subscribe("sms", "13800000002", consent, categories=["nync"])
        await recipients.subscribe("sms", "13800000003", consent, categories=["qt"])
        await recipients.subscribe("sms", "13800000004", consent, categories=["nync"])
        await recipients.unsubscribe("sms", "13800000004", how="test")
        summary = "为做好冬季农田水利建设工作，现将有关事项通知如下。" * 10
        item = await store.create_item(
            content_from(
                ItemCreate.model_validate(item_fields(channels=["sms", "portal"], summary=summary)),
                store.config,
            ),
            actor=EDITOR,
        )
        status, body, _ = await api.call("GET", f"/api/v1/items/{item.id}/preview")
        assert status == 200, body
        sms = body["channels"]["sms"]
        assert sms["available"] and sms["truncated"]
        assert sms["segments"] == 3 and sms["encoding"] == "ucs2"
        assert sms["text"].startswith("【上余镇政府信息公开】关于上余镇") and sms["text"].endswith(
            " 回复TD退订"
        )
        assert f"/s/{ShortLinks(store.config).code(item.id)} " in sms["text"]
        assert sms["subscribers"] == 2 and sms["estimated_segments"] == 6
        # a channel switched off says so (these tests run SMS only)
        assert body["channels"]["portal"] == {
            "available": False,
            "detail": "channel portal is disabled",
        }
        status, body, headers = await api.call("GET", f"/api/v1/items/{item.id}/preview", who=None)
        assert_problem(status, body, headers, 401)
