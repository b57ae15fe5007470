"""The second gateway type (Alibaba Cloud SMS's SendSms, against a loopback server that
checks the signature) and failover between gateways."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from channels.base import (
    AdapterContext,
    DeferDelivery,
    PermanentDeliveryError,
    Subject,
    Target,
    TransientDeliveryError,
)
from channels.sms import SmsChannel, sms_settings
from channels.sms_aliyun import (
    ALIYUN_CODES,
    Verdict,
    aliyun_number,
    aliyun_verdict,
    percent_encode,
    rpc_signature,
)
from channels.sms_text import segments
from publisher.config import Config
from publisher.errors import ConfigError
from publisher.recipients import Recipients, import_subscribers
from publisher.shortlinks import ShortLinks
from publisher.store.sql import SqlStore
from tests.conftest import BACKENDS
from tests.engine.conftest import CONSENT, phone
from tests.engine.helpers import eventually, ledger_rows, published_item, running
from tests.sms import fake_gateways as fg
from tests.sms.conftest import ENGINE, open_store

# -- the signature -------------------------------------------------------------------------------

#: the worked example of Alibaba Cloud's SendSms documentation (GET, secret "testSecret")
DOC_PARAMS = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}


def test_the_signature_of_the_documented_example() -> None:
    assert rpc_signature("GET", DOC_PARAMS, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    # a Signature already among the parameters is not signed
    assert rpc_signature("GET", {**DOC_PARAMS, "Signature": "x"}, "testSecret") == (
        "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    )
    assert rpc_signature("POST", DOC_PARAMS, "testSecret") != "zJDF+Lrzhj/ThnlvIToysFRq6t4="


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("a b", "a%20b"),
        ("*", "%2A"),
        ("~-_.", "~-_."),
        ("/=&+", "%2F%3D%26%2B"),
        ("派", "%E6%B4%BE"),
    ],
)
def test_percent_encoding_follows_the_rpc_rules(raw: str, encoded: str) -> None:
    assert percent_encode(raw) == encoded


@pytest.mark.parametrize(
    ("code", "verdict", "reason"),
    [
        ("OK", Verdict.SENT, "sent"),
        ("isv.BUSINESS_LIMIT_CONTROL", Verdict.GATEWAY, "rate_limited"),
        ("isv.AMOUNT_NOT_ENOUGH", Verdict.GATEWAY, "no_balance"),
        ("SignatureDoesNotMatch", Verdict.GATEWAY, "misconfigured"),
        ("isv.SMS_TEMPLATE_ILLEGAL", Verdict.GATEWAY, "misconfigured"),
        ("isp.SYSTEM_ERROR", Verdict.GATEWAY, "gateway_error"),
        ("isv.MOBILE_NUMBER_ILLEGAL", Verdict.MESSAGE, "bad_address"),
        ("isv.BLACK_KEY_CONTROL_LIMIT", Verdict.MESSAGE, "content_rejected"),
        ("isv.SOMETHING_NEW", Verdict.MESSAGE, "rejected"),
    ],
)
def test_answer_codes(code: str, verdict: Verdict, reason: str) -> None:
    meaning = aliyun_verdict(code)
    assert (meaning.verdict, meaning.reason) == (verdict, reason)


def test_every_gateway_fault_is_retried_and_every_message_fault_is_not() -> None:
    assert {m.verdict for m in ALIYUN_CODES.values()} == set(Verdict)


@pytest.mark.parametrize(
    ("e164", "sent_as"),
    [("+8613800138000", "13800138000"), ("+85251234567", "85251234567")],
)
def test_numbers_as_the_platform_takes_them(e164: str, sent_as: str) -> None:
    assert aliyun_number(e164) == sent_as


# -- configuration -----------------------------------------------------------------------------


def with_gateways(config: Config, gateways: list[dict[str, Any]], **settings: Any) -> Config:
    tree = config.model_dump()
    tree["channels"]["sms"]["settings"] = {
        "gateways": gateways,
        "callback_base_url": "http://127.0.0.1:9",
        **settings,
    }
    return Config.model_validate(tree)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"access_key_secret": None}, "give exactly one of access_key_secret"),
        ({"sign_name": "【上余镇】"}, "gateways.0.sign_name: give the signature"),
        (
            {"templates": {**fg.TEMPLATES, "message": {"code": "SMS_1", "text": "码${pin}"}}},
            "gateways.0.templates: message: unknown variable(s) pin",
        ),
        (
            {
                "templates": {
                    **fg.TEMPLATES,
                    "published": {"code": "SMS_1", "text": "【镇】${title}"},
                }
            },
            "leave it out",
        ),
        ({"templates": {"published": fg.TEMPLATES["published"]}}, "templates.corrected"),
        ({"daily_segment_cap": 2}, "gateways.0.daily_segment_cap: 2 is less than max_segments"),
        ({"type": "twilio"}, "gateways.0"),
    ],
)
def test_a_bad_aliyun_gateway_is_one_line_naming_the_key(
    config: Config, change: dict[str, Any], words: str
) -> None:
    gateway = {k: v for k, v in (fg.aliyun_gateway("http://127.0.0.1:9/") | change).items()}
    with pytest.raises(ConfigError) as caught:
        sms_settings(with_gateways(config, [gateway]))
    message = caught.value.detail
    assert message.startswith("channels.sms.settings") and words in message, message
    assert "\n" not in message and fg.ACCESS_KEY_SECRET not in message


def test_the_secret_from_the_environment_and_its_absence(config: Config) -> None:
    gateway = fg.aliyun_gateway("http://127.0.0.1:9/", access_key_secret=None)
    gateway["access_key_secret_env"] = "GK_ALIYUN_SECRET"
    [settings] = sms_settings(with_gateways(config, [gateway])).gateways
    assert settings.resolve_secret({"GK_ALIYUN_SECRET": "s3cret-value"}) == "s3cret-value"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="access_key_secret_env: the environment variable"):
        settings.resolve_secret({})  # type: ignore[union-attr]


# -- an adapter on a store, with fake gateways -----------------------------------------------------


def item_subject(config: Config, title: str = "关于冬季农田水利建设的通知") -> Subject:
    return Subject(
        key="event:1", kind="published", item_id="0b7f1f43-5c61-4f4e-9f3c-6a1d8c2f9e10",
        revision=1, title=title, summary="请各村于十二月十日前上报计划。", body="",
        body_html="", category="nync", category_name="农业农村", agency="上余镇人民政府",
        index_no=None, doc_no=None, written_at=None, published_at=None, urgent=False,
        public_url="http://127.0.0.1:8080/items/x", site_name=config.site.name,
    )  # fmt: skip


def code_subject(config: Config) -> Subject:
    return Subject(
        key="msg:1", kind="message", item_id=None, revision=None, title="", summary="",
        body="您的验证码是042517，10分钟内有效。", body_html="", category="", category_name="",
        agency="", index_no=None, doc_no=None, written_at=None, published_at=None,
        urgent=True, public_url="", site_name=config.site.name,
    )  # fmt: skip


@asynccontextmanager
async def adapter_on(
    store: SqlStore, gateways: list[dict[str, Any]], **settings: Any
) -> AsyncIterator[SmsChannel]:
    config = with_gateways(store.config, gateways, **settings)
    adapter = SmsChannel(sms_settings(config), config.site, AdapterContext(config, store))
    async with AsyncExitStack() as stack:
        await adapter.start(stack)
        yield adapter


TARGET = Target("r:1", "sms", "+8613800138000")


async def test_an_item_and_a_code_through_aliyun(sms_sqlite_store: SqlStore) -> None:
    store = sms_sqlite_store
    fake = fg.FakeAliyun()
    async with fg.serve(fake) as url, adapter_on(store, [fg.aliyun_gateway(url)]) as adapter:
        subject = item_subject(
            store.config, "【紧急】关于冬季农田水利建设、道路养护和防火安全的通知"
        )
        rendered = adapter.render(subject, TARGET)
        receipt = await adapter.deliver(rendered, TARGET, delivery_id="41")
        code = await adapter.deliver(
            adapter.render(code_subject(store.config), TARGET), TARGET, delivery_id="42"
        )
    assert fake.refused == []
    item, message = fake.accepted
    short = ShortLinks(store.config).code(subject.item_id or "")
    assert item["TemplateCode"] == "SMS_460001" and item["OutId"] == "41"
    assert item["PhoneNumbers"] == "13800138000" and item["SignName"] == fg.SIGN_NAME
    # the platform adds 【SignName】: no 【】 of ours anywhere, values cut to 35 characters
    assert item["TemplateParam"] == (
        '{"title":"[紧急]关于冬季农田水利建设、道路养护和防火安全的通知","short":"' + short + '"}'
    )
    assert message["TemplateCode"] == "SMS_460003"
    assert message["TemplateParam"] == '{"code":"042517"}'
    # what is billed: the signature the platform adds and the template filled in
    expected = f"【{fg.SIGN_NAME}】[紧急]关于冬季农田水利建设、道路养护和防火安全的通知，详见 gk.example.gov.cn/s/{short} 回TD退订"
    assert rendered.preview == expected
    assert receipt.units == segments(expected).parts == 2  # 74 UTF-16 units
    assert receipt.provider_id == "aliyun:000001^0" and code.provider_id == "aliyun:000002^0"


async def test_a_wrong_secret_is_a_gateway_fault_and_never_shown(
    sms_sqlite_store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The platform refuses the signature: retried (and failed over), with only the code
    in the error; neither the secret nor the platform's message (with the number)."""
    caplog.set_level(logging.DEBUG)
    store = sms_sqlite_store
    fake = fg.FakeAliyun(secret="the-platform-has-another-secret")
    async with fg.serve(fake) as url, adapter_on(store, [fg.aliyun_gateway(url)]) as adapter:
        rendered = adapter.render(item_subject(store.config), TARGET)
        with pytest.raises(TransientDeliveryError) as caught:
            await adapter.deliver(rendered, TARGET, delivery_id="7")
    said = str(caught.value)
    assert said == "sms gateway 'aliyun': HTTP 400: SignatureDoesNotMatch"
    assert [c for c, _ in fake.refused] == ["SignatureDoesNotMatch"]
    for text in (said, caplog.text):
        assert fg.ACCESS_KEY_SECRET not in text and "13800138000" not in text


async def test_a_bad_number_fails_that_message_only(sms_sqlite_store: SqlStore) -> None:
    store = sms_sqlite_store
    fake = fg.FakeAliyun()
    async with (
        fg.serve(fake) as url,
        adapter_on(store, [fg.aliyun_gateway(url)], allowed_regions=["CN", "GB"]) as adapter,
    ):
        abroad = Target("r:2", "sms", "+449098790000")  # the fake takes mainland numbers only
        rendered = adapter.render(item_subject(store.config), abroad)
        with pytest.raises(PermanentDeliveryError) as caught:
            await adapter.deliver(rendered, abroad, delivery_id="8")
        assert caught.value.reason == "bad_address"
        assert adapter.health["aliyun"].failures == 0  # the gateway answered: it is fine


# -- failover ------------------------------------------------------------------------------------


async def test_failover_after_repeated_failures_and_back_after_the_cool_down(
    sms_sqlite_store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = sms_sqlite_store
    kannel, aliyun = fg.FakeKannel(status=503), fg.FakeAliyun()
    async with fg.serve(kannel) as k_url, fg.serve(aliyun) as a_url:
        gateways = [
            {"name": "town", "url": k_url, "username": "u", "password": "p", "sender": "10690000"},
            fg.aliyun_gateway(a_url),
        ]
        async with adapter_on(
            store, gateways, failover_after=2, failover_cooldown_seconds=0.3
        ) as adapter:
            subject = item_subject(store.config)

            async def send(n: int) -> str:
                rendered = adapter.render(subject, TARGET)
                receipt = await adapter.deliver(rendered, TARGET, delivery_id=str(n))
                return (receipt.provider_id or "").split(":")[0]

            # the preferred gateway fails: each attempt is retried by the core, and after
            # two in a row it rests and the next gateway takes the messages
            for n in (1, 2):
                with pytest.raises(TransientDeliveryError, match="'town': HTTP 503"):
                    await send(n)
            assert [await send(n) for n in (3, 4)] == ["aliyun", "aliyun"]
            assert "'town' failed 2 times in a row; it rests" in caplog.text

            # after the cool-down it is tried first again: still failing, it rests at once
            await asyncio.sleep(0.35)
            with pytest.raises(TransientDeliveryError):
                await send(5)
            assert await send(6) == "aliyun"

            # it recovers: after the next cool-down the messages go back to it
            kannel.status = 202
            await asyncio.sleep(0.35)
            assert [await send(n) for n in (7, 8)] == ["town", "town"]
            assert "'town' answers again" in caplog.text
    assert len(kannel.accepted) == 2 and len(aliyun.accepted) == 3
    # the text each got: Kannel ours with 【signature】, Alibaba Cloud the template
    assert kannel.accepted[0]["text"].startswith(f"【{store.config.site.name}】")
    assert aliyun.accepted[0]["TemplateCode"] == "SMS_460001"


async def test_every_gateway_resting_defers_items_but_not_codes(sms_sqlite_store: SqlStore) -> None:
    store = sms_sqlite_store
    kannel = fg.FakeKannel(status=503)
    async with fg.serve(kannel) as url:
        gateway = {"url": url, "username": "u", "password": "p", "sender": "10690000"}
        async with adapter_on(
            store, [gateway], failover_after=1, failover_cooldown_seconds=60
        ) as adapter:
            item = adapter.render(item_subject(store.config), TARGET)
            with pytest.raises(TransientDeliveryError):
                await adapter.deliver(item, TARGET, delivery_id="1")
            with pytest.raises(DeferDelivery) as caught:
                await adapter.deliver(item, TARGET, delivery_id="2")
            assert caught.value.reason == "gateways_resting"
            kannel.status = 202  # a code still tries the resting gateway: the resident waits
            code = adapter.render(code_subject(store.config), TARGET)
            assert (await adapter.deliver(code, TARGET, delivery_id="3")).provider_id
    assert len(kannel.accepted) == 1


# -- through the engine ----------------------------------------------------------------------------


@pytest.fixture
def sms_sqlite_store_factory(config_factory: Callable[..., Config]) -> Callable[..., Any]:
    def make(backend: str, gateways: list[dict[str, Any]], **settings: Any) -> Any:
        config = with_gateways(config_factory(**ENGINE), gateways, **settings)
        return open_store(config, backend)

    return make


@pytest.fixture
async def sms_sqlite_store(config_factory: Callable[..., Config]) -> AsyncIterator[SqlStore]:
    async with open_store(config_factory(**ENGINE), "sqlite") as store:
        yield store


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_engine_fails_over_from_a_dead_gateway_to_aliyun(
    sms_sqlite_store_factory: Callable[..., Any], backend: str
) -> None:
    """The preferred gateway refuses connections: after three failures in a row the rest of
    the item goes out through Alibaba Cloud, and the failed attempts are retried there."""
    fake = fg.FakeAliyun()
    async with fg.serve(fake) as url:
        dead = {"name": "town", "url": "http://127.0.0.1:9/cgi-bin/sendsms", "username": "u",
                "password": "p", "sender": "10690000"}  # fmt: skip
        async with sms_sqlite_store_factory(
            backend, [dead, fg.aliyun_gateway(url)], failover_after=3
        ) as store:
            numbers = [phone(i) for i in range(30)]
            await import_subscribers(Recipients(store), "sms", numbers, CONSENT)
            async with running(store) as worker:
                item = await published_item(store)
                worker.wake()

                async def all_sent() -> bool:
                    rows = await ledger_rows(store, item.id, "sms")
                    return len(rows) == 30 and all(r.state == "sent" for r in rows)

                await eventually(all_sent, 30, "every row sent through aliyun")
            rows = await ledger_rows(store, item.id, "sms")
    assert all(r.provider_id.startswith("aliyun:") for r in rows)
    assert sorted(p["PhoneNumbers"] for p in fake.accepted) == sorted(n[3:] for n in numbers)
    assert fake.refused == []
    retried = [r for r in rows if r.attempts > 1]
    assert 1 <= len(retried) <= 20  # the attempts that met the dead gateway (≤ concurrency)
    assert all("'town': cannot connect" in (r.last_error or "") for r in retried)
