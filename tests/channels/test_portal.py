"""The portal channel: Standard Webhooks signatures, what each answer of the portal means,
the payload against its JSON Schema, and — through a real worker on both backends — a
loopback portal that checks every signature and fails the first attempts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import socket
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.base import (
    PermanentDeliveryError,
    Receipt,
    ReceiptState,
    Subject,
    Target,
    TransientDeliveryError,
)
from channels.portal import (
    PortalChannel,
    PortalSettings,
    decode_secret,
    endpoint_key,
    retry_after_seconds,
    sign,
)
from publisher.config import Config
from publisher.content import ItemCreate, content_from
from publisher.delivery import DeliveryWorker
from publisher.errors import ConfigError
from publisher.models import Action, Item
from publisher.store.sql import SqlStore
from tests.conftest import BACKENDS, EDITOR, REPO, item_fields, publish
from tests.conftest import store_on as open_store
from tests.engine.helpers import api_on, ledger_rows, running, wait_channel_settled

SCHEMA = json.loads((REPO / "schemas" / "portal-event.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def whsec(seed: str) -> str:
    return "whsec_" + base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


#: one secret per portal endpoint (by path on the loopback portal)
SECRETS = {"/city": whsec("city"), "/county": whsec("county"), "/strict": whsec("strict")}
COUNTY_SECRET_ENV = "GK_TEST_PORTAL_COUNTY_SECRET"


def independent_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The spec's algorithm written out again, sharing no code with channels.portal."""
    key = base64.b64decode(secret[len("whsec_") :])
    mac = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, "sha256")
    return "v1," + base64.b64encode(mac.digest()).decode()


def readme_verify() -> Callable[[str, Mapping[str, str], bytes], bool]:
    """The signature check the README gives portal developers, run as they would run it."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### How the city portal consumes the push", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's portal section has no Python sample"
    namespace: dict[str, Any] = {}
    exec(found.group(1), namespace)
    verify: Callable[[str, Mapping[str, str], bytes], bool] = namespace["verify"]
    return verify


# -- a loopback portal ------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One raw request as the portal got it, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    status: int

    @property
    def msg_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class PortalServer:
    """Checks each request's signature with its endpoint's secret (the README's code), records
    every raw request, fails each message's first `fail_first` attempts with 503, and refuses
    every request to the paths in `refuse` with a 400 and the given text."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self.secrets = dict(secrets)
        self.verify = readme_verify()
        self.received: list[Received] = []
        self.fail_first = 0
        self.refuse: dict[str, str] = {}
        self._attempts: Counter[tuple[str, str]] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        ok = self.verify(self.secrets[path], request.headers, body)
        attempt_key = (path, headers.get("webhook-id", ""))
        self._attempts[attempt_key] += 1
        if not ok:
            response = web.Response(status=401, text="bad signature")
        elif path in self.refuse:
            response = web.Response(status=400, text=self.refuse[path])
        elif self._attempts[attempt_key] <= self.fail_first:
            response = web.Response(status=503, text="busy", headers={"Retry-After": "1"})
        else:
            response = web.Response(status=204)
        self.received.append(Received(path, headers, body, ok, response.status))
        return response

    def app(self) -> web.Application:
        app = web.Application()
        for path in self.secrets:
            app.router.add_post(path, self.handle)
        return app

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
async def portal() -> AsyncIterator[tuple[PortalServer, str]]:
    server = PortalServer(SECRETS)
    test_server = TestServer(server.app(), host="127.0.0.1")
    await test_server.start_server()
    try:
        yield server, str(test_server.make_url("")).rstrip("/")
    finally:
        await test_server.close()


# -- unit: signatures, ids, secrets --------------------------------------------------------------

ITEM_ID = "0b6c2a4e-93f1-4c57-9a0e-5d2f1e7c8a90"
OTHER_ID = "7d1e0c3b-2a45-4f60-8b9c-1a2b3c4d5e6f"
BASE = "http://127.0.0.1:8080"


def make_subject(**overrides: Any) -> Subject:
    sha = hashlib.sha256(b"pdf bytes").hexdigest()
    fields: dict[str, Any] = {
        "key": "event:7",
        "kind": "published",
        "item_id": ITEM_ID,
        "revision": 1,
        "title": "关于<b>冬季</b>农田水利 & 𠮷野家🌾的通知",
        "summary": "各村：现将有关事项通知如下。",
        "body": "各村：\n\n现将有关事项通知如下。",
        "body_html": "<p>各村：</p>\n<p>现将有关事项通知如下 &amp; 𠮷。</p>\n",
        "category": "nync",
        "category_name": "农业农村",
        "agency": "上余镇人民政府",
        "index_no": "113308810026305088/2026-00001",
        "doc_no": "上政发〔2026〕3号",
        "written_at": datetime(2026, 11, 19, 16, 0, tzinfo=UTC),
        "published_at": datetime(2026, 11, 21, 1, 30, tzinfo=UTC),
        "urgent": False,
        "public_url": f"{BASE}/items/{ITEM_ID}",
        "attachments": (
            {
                "filename": "附件 1.pdf",
                "content_type": "application/pdf",
                "sha256": sha,
                "size": 9,
                "url": f"{BASE}/items/{ITEM_ID}/attachments/a1/%E9%99%84%E4%BB%B6%201.pdf",
            },
        ),
        "site_name": "上余镇政府信息公开",
        "event_at": datetime(2026, 11, 21, 1, 30, 5, tzinfo=UTC),
        "related": (
            {
                "id": OTHER_ID,
                "kind": "interprets",
                "title": "政策解读",
                "url": f"{BASE}/items/{OTHER_ID}",
            },
        ),
    }
    fields.update(overrides)
    return Subject(**fields)


def make_target(address: str = "http://127.0.0.1:9/city", **settings: Any) -> Target:
    return Target("e:3", "portal", address, "city", settings or {"secret": SECRETS["/city"]})


@asynccontextmanager
async def started(config: Config, seconds: float = 5.0) -> AsyncIterator[PortalChannel]:
    adapter = PortalChannel(PortalSettings(timeout=seconds), config.site)
    async with AsyncExitStack() as stack:
        await adapter.start(stack)
        yield adapter


def test_signature_matches_the_spec_example() -> None:
    # the example from the Standard Webhooks specification, byte for byte
    key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_each_attempt_is_signed_with_a_stable_id(
    config: Config, portal: tuple[PortalServer, str]
) -> None:
    server, base = portal
    target = make_target(f"{base}/city")
    subject = make_subject()
    async with started(config) as adapter:
        rendered = adapter.render(subject, target)
        assert adapter.render(subject, target) == rendered  # pure
        first = await adapter.deliver(rendered, target, delivery_id="41")
        await asyncio.sleep(1.05)  # the next attempt is signed in a later second
        second = await adapter.deliver(rendered, target, delivery_id="41")
    assert (
        first
        == second
        == Receipt(ReceiptState.DELIVERED, provider_id=rendered.headers["webhook-id"])
    )
    one, two = server.received
    assert one.msg_id == two.msg_id == rendered.headers["webhook-id"]
    assert one.msg_id.startswith("msg_")
    assert one.body == two.body == rendered.body
    assert int(two.headers["webhook-timestamp"]) > int(one.headers["webhook-timestamp"])
    for got in (one, two):
        assert got.signature_ok and got.status == 204
        expected = independent_signature(
            SECRETS["/city"], got.msg_id, got.headers["webhook-timestamp"], got.body
        )
        assert got.headers["webhook-signature"] == expected
        assert got.headers["content-type"] == "application/json"
    assert one.headers["webhook-signature"] != two.headers["webhook-signature"]


def test_webhook_id_is_one_per_event_and_endpoint(config: Config) -> None:
    adapter = PortalChannel(PortalSettings(), config.site)
    city, county = make_target(), replace(make_target(), key="e:4", name="county")
    published = make_subject()
    ids = {
        adapter.render(s, t).headers["webhook-id"]
        for s in (
            published,
            make_subject(kind="corrected", revision=2, key="event:8"),
            make_subject(kind="withdrawn", revision=2, key="event:9"),
            make_subject(item_id=OTHER_ID),
        )
        for t in (city, county)
    }
    assert len(ids) == 8
    # nor does it hang on database row numbers (event or ledger ids), which a new database reuses
    assert (
        adapter.render(replace(published, key="event:1"), city).headers
        == adapter.render(published, city).headers
    )


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "exactly one of secret or secret_env"),
        ({"secret": SECRETS["/city"], "secret_env": "X"}, "exactly one"),
        ({"secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "must start with 'whsec_'"),
        ({"secret": "whsec_not*base64!"}, "not valid base64"),
        ({"secret": "whsec_" + base64.b64encode(b"short").decode()}, "5 bytes; at least 24"),
        ({"secret_env": "GK_TEST_UNSET_SECRET"}, "GK_TEST_UNSET_SECRET is not set"),
        ({"secret": SECRETS["/city"], "secrets": "x"}, "unknown setting 'secrets'"),
    ],
)
def test_bad_secrets_are_named_never_quoted(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as caught:
        endpoint_key(settings, environ={})
    for value in settings.values():
        if value.startswith("whsec_") and len(value) > 12:
            assert value[6:] not in str(caught.value)


def test_a_secret_from_the_environment() -> None:
    env = {COUNTY_SECRET_ENV: SECRETS["/county"] + "\n"}
    key = endpoint_key({"secret_env": COUNTY_SECRET_ENV}, env)
    assert key == hashlib.sha256(b"county").digest()


async def test_a_bad_secret_at_send_time_fails_for_good(config: Config) -> None:
    secret = "whsec_" + base64.b64encode(b"sixteen byte key").decode()
    async with started(config) as adapter:
        rendered = adapter.render(make_subject(), make_target())
        with pytest.raises(PermanentDeliveryError) as caught:
            await adapter.deliver(rendered, make_target(secret=secret), delivery_id="1")
    assert caught.value.reason == "misconfigured"
    assert "'city'" in str(caught.value) and "16 bytes" in str(caught.value)
    assert secret[6:] not in str(caught.value)


# -- unit: what the portal's answer means -------------------------------------------------------------


@asynccontextmanager
async def answering(
    respond: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A loopback server answering every POST with `respond`; yields its URL."""
    app = web.Application()
    app.router.add_post("/push", respond)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/push"))
    finally:
        await server.close()


async def attempt(config: Config, url: str, seconds: float = 5.0) -> Receipt:
    """One attempt at pushing the example subject to `url`, given `seconds` to answer."""
    async with started(config, seconds) as adapter:
        target = make_target(url)
        return await adapter.deliver(
            adapter.render(make_subject(), target), target, delivery_id="5"
        )


def answer(
    status: int, text: str = "", headers: dict[str, str] | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def respond(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=status, text=text, headers=headers)

    return respond


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_2xx_is_delivered(config: Config, status: int) -> None:
    async with answering(answer(status)) as url:
        receipt = await attempt(config, url)
    assert receipt.state is ReceiptState.DELIVERED
    assert receipt.provider_id and receipt.provider_id.startswith("msg_")


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (408, None, None),
        (429, {"Retry-After": "7"}, 7.0),
        (500, None, None),
        (502, None, None),
        (503, {"Retry-After": "120"}, 120.0),
    ],
)
async def test_408_429_and_5xx_are_retried(
    config: Config, status: int, headers: dict[str, str] | None, retry_after: float | None
) -> None:
    async with answering(answer(status, "busy", headers)) as url:
        with pytest.raises(TransientDeliveryError) as caught:
            await attempt(config, url)
    assert caught.value.retry_after == retry_after
    assert f"HTTP {status}" in str(caught.value) and "'city'" in str(caught.value)


async def test_retry_after_as_an_http_date(config: Config) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    async with answering(answer(429, headers={"Retry-After": later})) as url:
        with pytest.raises(TransientDeliveryError) as caught:
            await attempt(config, url)
    assert caught.value.retry_after is not None
    assert 85 <= caught.value.retry_after <= 90


def test_retry_after_forms() -> None:
    now = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    assert retry_after_seconds("30", now) == 30
    assert retry_after_seconds(" 0 ", now) == 0
    assert retry_after_seconds("Sat, 21 Nov 2026 08:02:00 GMT", now) == 120
    assert retry_after_seconds("Sat, 21 Nov 2026 07:00:00 GMT", now) == 0  # already past
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-5", now) is None
    assert retry_after_seconds(None, now) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
async def test_other_4xx_fail_for_good_with_the_portal_s_words(config: Config, status: int) -> None:
    said = "索引号 <113308810026305088/2026-00001> 已存在 & 不能重复"
    async with answering(answer(status, said)) as url:
        with pytest.raises(PermanentDeliveryError) as caught:
            await attempt(config, url)
    assert caught.value.reason == "rejected"
    assert str(caught.value) == f"portal endpoint 'city': HTTP {status}: {said}"


async def test_a_long_or_undecodable_refusal_is_cut_and_kept_readable(config: Config) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=400, body=b"\xff\xfe bad \xe4\xb8" + b"x" * 20_000)

    async with answering(respond) as url:
        with pytest.raises(PermanentDeliveryError) as caught:
            await attempt(config, url)
    message = str(caught.value)
    assert message.startswith("portal endpoint 'city': HTTP 400: \ufffd\ufffd bad \ufffd")
    assert message.endswith("x…")
    assert len(message) < 600


async def test_redirects_are_not_followed(config: Config) -> None:
    calls: list[str] = []

    async def respond(request: web.Request) -> web.StreamResponse:
        calls.append(request.method)
        await request.read()
        raise web.HTTPPermanentRedirect("/elsewhere")

    async with answering(respond) as url:
        with pytest.raises(PermanentDeliveryError) as caught:
            await attempt(config, url)
    assert calls == ["POST"]
    assert caught.value.reason == "misconfigured" and "HTTP 308" in str(caught.value)


async def test_no_answer_in_time_is_retried(config: Config) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response(status=204)

    async with answering(slow) as url:
        with pytest.raises(TransientDeliveryError) as caught:
            await attempt(config, url, seconds=0.2)
    assert "no answer within 0.2 s" in str(caught.value)
    assert caught.value.retry_after is None


async def test_connection_refused_is_retried(config: Config) -> None:
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientDeliveryError) as caught:
        await attempt(config, f"http://127.0.0.1:{port}/push")
    assert "'city'" in str(caught.value) and "ClientConnectorError" in str(caught.value)


async def test_a_non_http_address_fails_for_good(config: Config) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await attempt(config, "ftp://portal.example/push")
    assert caught.value.reason == "misconfigured" and "http://" in str(caught.value)


# -- the payload and its schema ------------------------------------------------------------------


def test_the_payload_meets_its_schema(config: Config) -> None:
    adapter = PortalChannel(PortalSettings(), config.site)
    for kind in ("published", "corrected", "withdrawn", "expired"):
        subject = make_subject(
            kind=kind, correction_note="更正文号" if kind == "corrected" else None
        )
        event = json.loads(adapter.render(subject, make_target()).body)
        VALIDATOR.validate(event)
        assert event["type"] == f"item.{kind}"
    data = event["data"]
    assert data["title"] == "关于<b>冬季</b>农田水利 & 𠮷野家🌾的通知"  # JSON carries text as it is
    assert data["body_html"] == make_subject().body_html
    assert data["category"] == {"slug": "nync", "name": "农业农村"}
    assert data["written_at"] == "2026-11-20T00:00:00+08:00"  # site time
    assert event["timestamp"] == "2026-11-21T09:30:05+08:00"
    [attachment] = data["attachments"]
    assert attachment["sha256"] == hashlib.sha256(b"pdf bytes").hexdigest()
    assert data["related"] == [dict(make_subject().related[0])]
    # Chinese goes out as UTF-8, not \u escapes
    assert "农业农村".encode() in adapter.render(make_subject(), make_target()).body


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["type"], "item.updated"),
        (["data", "index_no"], 17),
        (["data", "attachments", 0, "sha256"], "not-a-hash"),
        (["data", "category", "slug"], "农业"),
        (["data", "id"], "not-a-uuid"),
        (["data", "surprise"], True),
    ],
)
def test_the_schema_refuses_what_the_portal_would_misread(
    config: Config, path: list[Any], value: Any
) -> None:
    adapter = PortalChannel(PortalSettings(), config.site)
    event = json.loads(adapter.render(make_subject(), make_target()).body)
    node = event
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    assert not VALIDATOR.is_valid(event)


def test_the_schema_requires_every_field(config: Config) -> None:
    adapter = PortalChannel(PortalSettings(), config.site)
    event = json.loads(adapter.render(make_subject(), make_target()).body)
    for name in list(event["data"]):
        partial = {**event, "data": {k: v for k, v in event["data"].items() if k != name}}
        assert not VALIDATOR.is_valid(partial), name


# -- engine: through a real worker, on SQLite and PostgreSQL ---------------------------------------------

PORTAL_ONLY = {
    "DELIVERY__POLL_SECONDS": "0.05",
    "DELIVERY__HEARTBEAT_SECONDS": "1",
    "CHANNELS__PORTAL__RETRY_BASE_SECONDS": "0.05",
    "CHANNELS__PORTAL__RETRY_CAP_SECONDS": "0.2",
    **{f"CHANNELS__{name}__ENABLED": "false" for name in ("RSS", "SMS", "EMAIL", "BOARD")},
}


def portal_config(config: Config, base: str) -> Config:
    """`config` with three portal endpoints on the loopback portal: city takes every
    category (inline secret), county only 农业农村 (secret from the environment), strict
    only 其他 (and refuses, when told to)."""
    tree = config.model_dump()
    tree["channels"]["portal"]["endpoints"] = [
        {"name": "city", "address": f"{base}/city", "settings": {"secret": SECRETS["/city"]}},
        {
            "name": "county",
            "address": f"{base}/county",
            "categories": ["nync"],
            "settings": {"secret_env": COUNTY_SECRET_ENV},
        },
        {
            "name": "strict",
            "address": f"{base}/strict",
            "categories": ["qt"],
            "settings": {"secret": SECRETS["/strict"]},
        },
    ]
    return Config.model_validate(tree)


@pytest.fixture
async def portal_store(
    request: pytest.FixtureRequest,
    config_factory: Callable[..., Config],
    portal: tuple[PortalServer, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[SqlStore]:
    monkeypatch.setenv(COUNTY_SECRET_ENV, SECRETS["/county"])
    _, base = portal
    config = portal_config(config_factory(**PORTAL_ONLY), base)
    async with open_store(config, getattr(request, "param", "sqlite")) as store:
        yield store


BOTH_BACKENDS = pytest.mark.parametrize("portal_store", BACKENDS, indirect=True)


async def portal_item(store: SqlStore, **overrides: Any) -> Item:
    overrides.setdefault("channels", ["portal"])
    content = content_from(ItemCreate.model_validate(item_fields(**overrides)), store.config)
    return await store.create_item(content, actor=EDITOR)


async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


@BOTH_BACKENDS
async def test_each_event_reaches_each_endpoint_once_through_retries(
    portal_store: SqlStore, portal: tuple[PortalServer, str]
) -> None:
    server, _ = portal
    server.fail_first = 2  # every message: 503, 503, then accepted
    store = portal_store
    interpreted = await publish(store, await portal_item(store, title="上余镇农田水利政策"))
    draft = await portal_item(store, title="尚未发布的草稿")
    item = await portal_item(
        store,
        title="关于<b>冬季</b>农田水利 & 𠮷野家🌾的解读",
        related=[
            {"item_id": interpreted.id, "kind": "interprets"},
            {"item_id": draft.id, "kind": "see-also"},
        ],
    )
    pdf = b"%PDF-1.4 water works"
    await store.add_attachment(
        item.id, "附件 1.pdf", "application/pdf", chunks_of(pdf), actor=EDITOR
    )
    async with running(store) as worker, api_on(store, worker) as api:
        await wait_channel_settled(store, interpreted.id, "portal")
        before = len(server.received)
        await publish(store, item)
        await wait_channel_settled(store, item.id, "portal")
        # the pushed attachment URL is one the public route answers, with the pushed hash
        pushed = next(
            r.event for r in server.received[before:] if r.path == "/city" and r.status == 204
        )
        [attachment] = pushed["data"]["attachments"]
        assert attachment["sha256"] == hashlib.sha256(pdf).hexdigest()
        assert attachment["size"] == len(pdf) and attachment["filename"] == "附件 1.pdf"
        public = attachment["url"].removeprefix(store.config.site.public_base)
        status, got, _ = await api.call("GET", public, who=None)
        assert status == 200 and got == pdf

        fresh = await store.get_item(item.id)
        await store.update_item(
            item.id,
            {"title": "关于冬季农田水利的解读（更正）", "correction_note": "更正标题"},
            actor=EDITOR,
            if_match=fresh.etag,
        )
        await store.transition(item.id, Action.SUBMIT, actor=EDITOR)
        status, body, _ = await api.call("POST", f"/api/v1/items/{item.id}/approve", who="bob")
        assert status == 200, body
        await wait_channel_settled(store, item.id, "portal")

        status, body, _ = await api.call(
            "POST", f"/api/v1/items/{item.id}/withdraw", who="bob", json={"reason": "政策调整"}
        )
        assert status == 200, body
        await wait_channel_settled(store, item.id, "portal")

    kinds = [e.kind for e in await store.events(item.id)]
    assert kinds == ["published", "corrected", "withdrawn"]
    rows = await ledger_rows(store, item.id, "portal")
    # three events × two endpoints (strict takes only 其他), each delivered on its third try
    assert len(rows) == 6
    assert {(r.state, r.attempts) for r in rows} == {("delivered", 3)}

    received = server.received[before:]
    assert all(r.signature_ok for r in received)
    by_message: defaultdict[tuple[str, str], list[Received]] = defaultdict(list)
    for r in received:
        by_message[(r.path, r.msg_id)].append(r)
    # one webhook-id per event and endpoint, and every retry of it reused that id and body
    assert Counter(path for path, _ in by_message) == {"/city": 3, "/county": 3}
    for tries in by_message.values():
        assert [r.status for r in tries] == [503, 503, 204]
        assert len({r.body for r in tries}) == 1
    delivered_ids = {r.msg_id for r in received if r.status == 204}
    assert len(delivered_ids) == 6
    assert {r.provider_id for r in rows} == delivered_ids

    for path, other in (("/city", "/county"), ("/county", "/city")):
        events = [r.event for r in server.at(path)[-9:] if r.status == 204]
        assert [e["type"] for e in events] == ["item.published", "item.corrected", "item.withdrawn"]
        for e in events:
            VALIDATOR.validate(e)
            datetime.fromisoformat(e["timestamp"])
        published, corrected, withdrawn = (e["data"] for e in events)
        assert published["title"] == "关于<b>冬季</b>农田水利 & 𠮷野家🌾的解读"
        assert published["revision"] == 1 and published["index_no"]
        assert corrected["title"] == "关于冬季农田水利的解读（更正）"
        assert corrected["revision"] == 2 and corrected["correction_note"] == "更正标题"
        assert (
            withdrawn["index_no"]
            == published["index_no"]
            == (await store.get_item(item.id)).index_no
        )
        # the related draft is not named outside
        assert published["related"] == [
            {
                "id": interpreted.id,
                "kind": "interprets",
                "title": "上余镇农田水利政策",
                "url": f"{store.config.site.public_base}/items/{interpreted.id}",
            }
        ]
        # each endpoint's requests are signed with its own secret, not the other's
        for r in server.at(path):
            assert not server.verify(SECRETS[other], r.headers, r.body)


@BOTH_BACKENDS
async def test_a_refusal_ends_failed_with_the_portal_s_words_for_staff(
    portal_store: SqlStore, portal: tuple[PortalServer, str]
) -> None:
    server, _ = portal
    refusal = "缺少必填字段: 文号 <doc_no>"
    server.refuse["/strict"] = refusal
    store = portal_store
    item = await publish(store, await portal_item(store, category="qt"))
    async with running(store) as worker, api_on(store, worker) as api:
        await wait_channel_settled(store, item.id, "portal")
        status, body, _ = await api.call("GET", f"/api/v1/items/{item.id}/deliveries")
    assert status == 200, body
    assert body["counts"] == {"portal": {"delivered": 1, "failed": 1}}
    shown = {d["target"]: d for d in body["deliveries"]}
    assert set(shown) == {"city", "strict"}  # county takes only 农业农村
    failed = shown["strict"]
    assert failed["state"] == "failed" and failed["reason"] == "rejected"
    assert failed["attempts"] == 1
    assert failed["last_error"] == f"portal endpoint 'strict': HTTP 400: {refusal}"
    assert shown["city"]["state"] == "delivered"
    assert shown["city"]["provider_id"].startswith("msg_")
    assert [r.status for r in server.at("/strict")] == [400]  # not tried again
    assert server.at("/county") == []


@BOTH_BACKENDS
async def test_endpoints_take_only_their_categories(
    portal_store: SqlStore, portal: tuple[PortalServer, str]
) -> None:
    server, _ = portal
    store = portal_store
    farming = await publish(store, await portal_item(store, category="nync"))
    relief = await publish(store, await portal_item(store, category="shjz"))
    other = await publish(store, await portal_item(store, category="qt"))
    async with running(store):
        for item in (farming, relief, other):
            await wait_channel_settled(store, item.id, "portal")
    reached: defaultdict[str, set[str]] = defaultdict(set)
    for r in server.received:
        assert r.signature_ok and r.status == 204
        reached[r.event["data"]["id"]].add(r.path)
    assert reached == {
        farming.id: {"/city", "/county"},
        relief.id: {"/city"},
        other.id: {"/city", "/strict"},
    }


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ({"settings": {}}, "exactly one of secret or secret_env"),
        ({"settings": {"secret_env": "GK_TEST_UNSET_SECRET"}}, "GK_TEST_UNSET_SECRET is not set"),
        ({"settings": {"secret": "whsec_c2hvcnQ="}}, "5 bytes"),
        ({"address": "portal.example/push"}, "http:// or https://"),
    ],
)
async def test_a_worker_will_not_start_with_an_endpoint_it_cannot_sign_for(
    config_factory: Callable[..., Config],
    endpoint: dict[str, Any],
    problem: str,
) -> None:
    config = portal_config(config_factory(**PORTAL_ONLY), "http://127.0.0.1:9")
    tree = config.model_dump()
    tree["channels"]["portal"]["endpoints"][1].update(endpoint)
    async with open_store(Config.model_validate(tree), "sqlite") as store:
        with pytest.raises(ConfigError) as caught:
            await DeliveryWorker(store).start()
    key = "address" if "address" in endpoint else "settings"
    assert str(caught.value).startswith(f"channels.portal.endpoints.1.{key}: ")
    assert problem in str(caught.value) and "'county'" in str(caught.value)
    assert "c2hvcnQ" not in str(caught.value)
