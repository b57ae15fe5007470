"""SMS pumping (issue 16): codes only to numbers of the allowed regions, each gateway given
the number in the form it documents (never a foreign number's national digits), limits on
the destination dialled and on the client's network, and a ceiling across all numbers
that stops codes honestly and says so in /metrics and on the staff home page."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from channels.base import PermanentDeliveryError
from channels.sms import check_destination, gateway_number
from channels.sms_aliyun import aliyun_number
from publisher.addresses import RegionNotAllowed
from publisher.config import Config
from publisher.messages import queue_message
from publisher.models import Role
from publisher.recipients import Consent, Recipients, import_subscribers
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from publisher.subscriptions import CodePolicy, CodeSubscriptions, TooManyRequests
from tests.engine.helpers import eventually, running
from tests.sms import kannel as kn
from tests.sms.conftest import ENGINE, served
from tests.sms.test_web import SECRET, app_on, open_store, web_config
from tests.web import assert_problem
from tests.web.test_resident_pages import Resident
from tests.web.test_staff_ui import PASSWORD, Browser

UK_PREMIUM = "+449098790000"
BRAZIL = "+5513980013800"  # its national digits are those of a Chinese mobile number
CHINA = "+8613980013800"
CONSENT = Consent(method="staff", text="同意", source="test")


@pytest.fixture
def sms_web(config_factory: Callable[..., Config]) -> Callable[..., Any]:
    def make(**settings: Any) -> Any:
        return open_store(web_config(config_factory(**ENGINE), **settings), "sqlite")

    return make


async def messages(store: SqlStore) -> int:
    async with store.read() as conn:
        n = await conn.scalar(sa.select(sa.func.count()).select_from(t.messages))
    return int(n or 0)


# -- the number each gateway gets -------------------------------------------------------------


def test_kannel_never_gets_a_foreign_numbers_national_digits() -> None:
    assert gateway_number(CHINA, "national") == "13980013800"
    assert gateway_number(BRAZIL, "national") == "005513980013800"
    assert gateway_number(UK_PREMIUM, "national") == "00449098790000"
    assert gateway_number(CHINA, "international") == "008613980013800"
    assert gateway_number(UK_PREMIUM, "e164") == "+449098790000"
    # a gateway whose SMSC is in Hong Kong writes Hong Kong numbers nationally, no others
    assert gateway_number("+85251234567", "national", "HK") == "51234567"
    assert gateway_number(CHINA, "national", "HK") == "008613980013800"
    for bad in ("13980013800", "+86123", "nonsense"):
        with pytest.raises(PermanentDeliveryError):
            gateway_number(bad, "national")


def test_aliyun_gets_its_documented_forms() -> None:
    # SendSms PhoneNumbers: mainland numbers as the 11 digits; international and HK/MO/TW
    # as country code and number, without + or 00
    assert aliyun_number(CHINA) == "13980013800"
    assert aliyun_number(BRAZIL) == "5513980013800"
    assert aliyun_number("+85251234567") == "85251234567"


def test_the_channel_refuses_a_number_outside_the_regions() -> None:
    check_destination(CHINA, frozenset({"CN"}))
    for number in (UK_PREMIUM, BRAZIL):
        with pytest.raises(PermanentDeliveryError) as caught:
            check_destination(number, frozenset({"CN"}))
        assert caught.value.reason == "region_not_allowed"


# -- subscribing: every door refuses a foreign number ---------------------------------------


async def test_the_api_refuses_numbers_outside_the_allowed_regions(sms_web: Any) -> None:
    async with sms_web() as store, app_on(store) as api:
        for number in (UK_PREMIUM, BRAZIL, "00449098790000"):
            ask = {"channel": "sms", "address": number}
            status, body, headers = await api.call(
                "POST", "/api/v1/subscribers", who=None, json=ask
            )
            assert_problem(status, body, headers, 422, "not accepted", "CN")
            assert body["type"].endswith("region-not-allowed")
            assert number.lstrip("+0") not in str(body)
        assert await messages(store) == 0
        status, _, _ = await api.call(
            "POST", "/api/v1/subscribers", who=None, json={"channel": "sms", "address": CHINA}
        )
        assert status == 202
        assert await messages(store) == 1


async def test_the_allowed_regions_are_a_setting(sms_web: Any) -> None:
    async with sms_web(allowed_regions=["CN", "HK"]) as store, app_on(store) as api:
        ask = {"channel": "sms", "address": "+85251234567"}
        status, body, _ = await api.call("POST", "/api/v1/subscribers", who=None, json=ask)
        assert status == 202, body
        status, body, headers = await api.call(
            "POST", "/api/v1/subscribers", who=None, json={"channel": "sms", "address": BRAZIL}
        )
        assert_problem(status, body, headers, 422, "CN, HK")


async def test_the_web_form_refuses_in_chinese(sms_web: Any) -> None:
    async with sms_web() as store, app_on(store) as api:
        resident = Resident(api)
        await resident.get("/subscribe")
        status, html, _ = await resident.post("/subscribe/sms", {"number": UK_PREMIUM})
        assert status == 422
        assert "此号码无法订阅：本站只向中国大陆的手机号码发送短信。" in html
        assert await messages(store) == 0


async def test_a_keyword_from_a_foreign_number_subscribes_nobody_and_gets_no_reply(
    sms_web: Any,
) -> None:
    async with sms_web() as store, app_on(store) as api:
        status, body, headers = await api.call(
            "GET", f"/sms/inbound?secret={SECRET}&from=%2B449098790000&text=DY", who=None
        )
        assert status == 200 and body == b""
        assert headers["X-Publisher-Refused"] == "region_not_allowed"
        async with store.read() as conn:
            n = await conn.scalar(sa.select(sa.func.count()).select_from(t.recipients))
        assert n == 0


async def test_an_import_or_a_staff_subscription_refuses_a_foreign_number(sms_web: Any) -> None:
    async with sms_web() as store:
        recipients = Recipients(store)
        with pytest.raises(RegionNotAllowed):
            await import_subscribers(recipients, "sms", [CHINA, BRAZIL], CONSENT)
        with pytest.raises(RegionNotAllowed):
            await recipients.subscribe("sms", UK_PREMIUM, CONSENT)
        assert await import_subscribers(recipients, "sms", [CHINA], CONSENT) == 1


# -- limits -------------------------------------------------------------------------------------


async def test_rotating_ipv6_addresses_within_a_64_is_one_client(sms_web: Any) -> None:
    async with sms_web() as store:
        flow = CodeSubscriptions(store, CodePolicy(per_ip_hour=3))
        for n in range(3):
            await flow.request_code("sms", f"1380013800{n}", [], f"2001:db8:1:2::{n + 1:x}")
        with pytest.raises(TooManyRequests):
            await flow.request_code("sms", "13800138009", [], "2001:db8:1:2:ffff::9")
        # another /64 is another client; an IPv4 address is counted alone
        await flow.request_code("sms", "13800138010", [], "2001:db8:1:3::1")
        for n in range(3):
            await flow.request_code("sms", f"1390013900{n}", [], "192.0.2.7")
        with pytest.raises(TooManyRequests):
            await flow.request_code("sms", "13900139009", [], "::ffff:192.0.2.7")
        await flow.request_code("sms", "13900139010", [], "192.0.2.8")


async def test_a_foreign_number_with_chinese_digits_does_not_share_nor_dodge_limits(
    sms_web: Any,
) -> None:
    """The reproduction: 3 codes to +86 13980013800, then 2 more to the same phone as
    +55 13980013800 — 5 in an hour against 3. Now the Brazilian number is refused, and
    where Brazil is allowed it is dialled as itself (00 55 …), a different destination."""
    async with sms_web() as store:
        flow = CodeSubscriptions(store, CodePolicy(per_number_hour=3, per_ip_hour=100))
        for _ in range(3):
            await flow.request_code("sms", CHINA, [], "192.0.2.1")
        with pytest.raises(TooManyRequests):
            await flow.request_code("sms", CHINA, [], "192.0.2.1")
        with pytest.raises(RegionNotAllowed):
            await flow.request_code("sms", BRAZIL, [], "192.0.2.1")
        assert await messages(store) == 3


# -- the ceiling across all numbers --------------------------------------------------------------


async def test_the_hourly_ceiling_stops_codes_and_says_so(sms_web: Any) -> None:
    async with sms_web(max_codes_per_hour=2) as store, app_on(store) as api:
        for n in range(2):
            ask = {"channel": "sms", "address": f"1380013800{n}"}
            status, body, _ = await api.call("POST", "/api/v1/subscribers", who=None, json=ask)
            assert status == 202 and body["status"] == "code_sent"
        ask = {"channel": "sms", "address": "13800138009"}
        status, body, headers = await api.call("POST", "/api/v1/subscribers", who=None, json=ask)
        assert_problem(status, body, headers, 503, "ceiling")
        assert "code_sent" not in str(body)
        assert 0 < int(headers["Retry-After"]) <= 3600
        assert await messages(store) == 2
        # the resident's form: a Chinese page, no "code sent"
        resident = Resident(api)
        await resident.get("/subscribe")
        status, html, headers = await resident.post("/subscribe/sms", {"number": "13800138008"})
        assert status == 503
        assert "验证码暂停发送" in html and "未发送验证码" in html
        assert await messages(store) == 2
        # /metrics
        resp = await api.client.get("/metrics")
        text = await resp.text()
        assert resp.status == 200
        assert re.search(r"^publisher_sms_code_ceiling_reached 1\.0$", text, re.M)
        assert re.search(r"^publisher_sms_code_ceiling 2\.0$", text, re.M)
        assert re.search(r"^publisher_sms_codes_refused_ceiling_total [1-9]", text, re.M)
        # the staff home page
        await store.add_user("erin", Role.ADMIN, PASSWORD)
        staff = Browser(api.client)
        await staff.login("erin")
        status, html, _ = await staff.get("/staff/")
        assert status == 200 and 'id="sms-code-ceiling"' in html
        assert "短信验证码已暂停发送" in html


async def test_below_the_ceiling_there_is_no_alert(sms_web: Any) -> None:
    async with sms_web(max_codes_per_hour=5) as store, app_on(store) as api:
        ask = {"channel": "sms", "address": "13800138000"}
        assert (await api.call("POST", "/api/v1/subscribers", who=None, json=ask))[0] == 202
        text = await (await api.client.get("/metrics")).text()
        assert re.search(r"^publisher_sms_code_ceiling_reached 0\.0$", text, re.M)
        assert re.search(r"^publisher_sms_codes_this_hour 1\.0$", text, re.M)
        await store.add_user("erin", Role.ADMIN, PASSWORD)
        staff = Browser(api.client)
        await staff.login("erin")
        status, html, _ = await staff.get("/staff/")
        assert status == 200 and "sms-code-ceiling" not in html


# -- through a real Kannel ------------------------------------------------------------------------


async def test_kannel_gets_international_numbers_for_foreign_regions(
    kannel: kn.Kannel, sms_store_factory: Any
) -> None:
    async with sms_store_factory(kannel, allowed_regions=["CN", "GB", "BR"]) as store:
        mark = kannel.mark()
        async with running(store) as worker, served(store, kannel.app_port, worker) as api:
            for number in (UK_PREMIUM, BRAZIL, CHINA):
                ask = {"channel": "sms", "address": number}
                status, body, _ = await api.call("POST", "/api/v1/subscribers", who=None, json=ask)
                assert status == 202, body

            async def all_arrived() -> bool:
                return len(kannel.received(mark)) >= 3

            await eventually(all_arrived, 20, "three codes at the SMSC")
            got = sorted(m.to for m in kannel.received(mark))
            assert got == ["00449098790000", "005513980013800", "13980013800"]


async def test_a_foreign_number_already_queued_never_reaches_kannel(
    kannel: kn.Kannel, sms_store_factory: Any
) -> None:
    async with sms_store_factory(kannel) as store:
        mark = kannel.mark()
        await queue_message(store, "sms", UK_PREMIUM, "您的验证码是123456", purpose="verify_code")
        await queue_message(store, "sms", CHINA, "您的验证码是654321", purpose="verify_code")
        async with running(store):

            async def settled() -> bool:
                async with store.read() as conn:
                    rows = (await conn.execute(sa.select(t.deliveries))).all()
                return len(rows) == 2 and all(
                    r.state in ("failed", "sent", "delivered") for r in rows
                )

            await eventually(settled, 20, "both rows settled")
        async with store.read() as conn:
            rows = (await conn.execute(sa.select(t.deliveries).order_by(t.deliveries.c.id))).all()
        assert (rows[0].state, rows[0].reason) == ("failed", "region_not_allowed")
        assert [m.to for m in kannel.received(mark)] == ["13980013800"]


def test_another_adapters_settings_give_the_strict_default(
    config_factory: Callable[..., Config],
) -> None:
    """A third-party SMS adapter has settings of its own: its `allowed_regions` is read if
    given, else CN alone — never "every region"."""
    from channels.sms import allowed_regions

    def with_settings(settings: dict[str, Any]) -> Config:
        tree = config_factory().model_dump()
        tree["channels"]["sms"]["settings"] = settings
        return Config.model_validate(tree)

    assert allowed_regions(with_settings({"url": "http://127.0.0.1:9/send"})) == {"CN"}
    both = with_settings({"url": "http://127.0.0.1:9/send", "allowed_regions": ["CN", "HK"]})
    assert allowed_regions(both) == {"CN", "HK"}
    assert allowed_regions(with_settings({})) == {"CN"}
