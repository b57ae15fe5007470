"""Subscribing by email: double opt-in through a real worker and SMTP server, consent,
the same answer for known and unknown addresses, limits, bad addresses, expired and
tampered links, the manage page and RFC 8058 one-click unsubscribe."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from publisher.errors import NotFound
from publisher.mail_links import LinkPurpose, MailLinks
from publisher.recipients import Consent, Frequency, Recipients, RecipientStatus
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import BACKENDS, Api, publish
from tests.engine.helpers import api_on, eventually, running, wait_channel_settled
from tests.mail.conftest import SmtpSink
from tests.mail.test_channel import email_item
from tests.web import assert_problem

ADDRESS = "Zhang.San@Example.ORG"
STORED = "Zhang.San@example.org"
MASKED = "Z***@example.org"


async def subscribe_request(api: Api, **fields: Any) -> tuple[int, Any, Any]:
    payload = {"channel": "email", "address": ADDRESS, "categories": ["nync"]} | fields
    return await api.call("POST", "/api/v1/subscribers", who=None, json=payload)


def link_in(text: str, path: str) -> str:
    """The path (and token) of the first link under `path` in a mail's text."""
    found = re.search(r"https://gk\.shangyu\.example\.gov\.cn(" + path + r"[\w.-]+)", text)
    assert found, f"no {path} link in the mail"
    return found.group(1)


async def consents(store: SqlStore, recipient_id: int) -> list[Any]:
    async with store.read() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(t.consents).where(t.consents.c.recipient_id == recipient_id)
                )
            ).all()
        )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_double_opt_in_then_items_then_one_click_unsubscribe(
    mail_store_factory: Any, smtp_sink: tuple[SmtpSink, int], backend: str
) -> None:
    sink, port = smtp_sink
    async with (
        mail_store_factory(port, backend) as store,
        running(store) as worker,
        api_on(store, worker) as api,
    ):
        status, body, _ = await subscribe_request(api, frequency="immediate")
        assert status == 202, body
        assert body == {
            "status": "confirmation_sent",
            "channel": "email",
            "address": MASKED,
            "expires_in": 48 * 3600,
        }
        await eventually(lambda: _arrived(sink, STORED, 1), what="the confirmation mail")
        confirm_mail = sink.to(STORED)[0].parsed()
        # transactional: no list headers, and the link is only in the mail
        assert confirm_mail["List-Unsubscribe"] is None
        assert confirm_mail["Subject"] == f"请确认订阅{store.config.site.name}的邮件"
        text = confirm_mail.get_body(("plain",)).get_content()
        assert "农业农村" in text and "每条信息发布时" in text
        confirm = link_in(text, "/subscribe/confirm/")
        assert STORED not in confirm and STORED.lower() not in confirm.lower()
        # nothing is stored about the resident before the click
        with pytest.raises(NotFound):
            await Recipients(store).get("email", STORED)

        resp = await api.client.get(confirm)
        page = await resp.text()
        assert resp.status == 200 and MASKED in page and STORED not in page
        consent_text = store.config.site.name
        assert consent_text in page and "一键退订" in page
        # the GET (a link scanner) subscribed nobody; the button's POST does
        with pytest.raises(NotFound):
            await Recipients(store).get("email", STORED)
        resp = await api.client.post(confirm)
        assert resp.status == 200, await resp.text()
        sub = await Recipients(store).get("email", STORED)
        assert sub.status is RecipientStatus.ACTIVE
        assert sub.categories == ("nync",) and sub.frequency is Frequency.IMMEDIATE
        [consent] = await consents(store, sub.id)
        assert consent.method == "email_confirmed"
        assert consent.text == (
            f"我同意接收{store.config.site.name}通过电子邮件发送的政府信息公开信息，"
            "每封邮件均可一键退订。"
        )
        assert consent.source == "web 127.0.0.0/24" and consent.given_at is not None

        # only confirmed addresses get items; another category is not sent
        other = await publish(store, await email_item(store, title="财政信息", category="czys"))
        item = await publish(store, await email_item(store, title="农业通知"))
        worker.wake()
        await wait_channel_settled(store, item.id, "email")
        await wait_channel_settled(store, other.id, "email")
        mails = sink.to(STORED)
        assert [m.parsed()["Subject"] for m in mails[1:]] == ["农业通知"]
        item_mail = mails[1].parsed()
        unsubscribe_url = item_mail["List-Unsubscribe"].strip("<>")
        manage = link_in(item_mail.get_body(("plain",)).get_content(), "/subscribe/manage/")

        # RFC 8058: a POST with the one-click body, no cookie, no page in between
        api.client.session.cookie_jar.clear()
        resp = await api.client.post(
            urlsplit(unsubscribe_url).path, data={"List-Unsubscribe": "One-Click"}
        )
        assert resp.status == 200
        assert (await Recipients(store).get("email", STORED)).status is (
            RecipientStatus.UNSUBSCRIBED
        )
        [consent] = await consents(store, sub.id)
        assert consent.ended_how == "email_one_click" and consent.ended_at is not None
        # a repeat changes nothing and still answers 200
        resp = await api.client.post(
            urlsplit(unsubscribe_url).path, data={"List-Unsubscribe": "One-Click"}
        )
        assert resp.status == 200
        # the manage link of a resident who left says so instead of offering the form
        resp = await api.client.get(manage)
        assert resp.status == 200 and "您已退订" in await resp.text()

        later = await publish(store, await email_item(store, title="退订之后"))
        worker.wake()
        await wait_channel_settled(store, later.id, "email")
        assert len(sink.to(STORED)) == 2


async def _arrived(sink: SmtpSink, address: str, n: int) -> bool:
    return len(sink.to(address)) >= n


@pytest.fixture
def web_store(mail_store_factory: Any) -> Any:
    """A store for the web-only checks (no SMTP server is reached: port 9)."""
    return mail_store_factory(9)


async def test_the_answer_is_the_same_for_known_and_unknown_addresses(web_store: Any) -> None:
    async with web_store as store, api_on(store) as api:
        _, unknown, _ = await subscribe_request(api)
        await Recipients(store).subscribe(
            "email", ADDRESS, Consent(method="email_confirmed", text="同意"), categories=["nync"]
        )
        status, known, _ = await subscribe_request(api)
        assert status == 202 and known == unknown


async def test_subscription_requests_are_limited_per_address_and_per_ip(web_store: Any) -> None:
    async with web_store as store, api_on(store) as api:
        for _ in range(3):
            status, _, _ = await subscribe_request(api)
            assert status == 202
        status, body, headers = await subscribe_request(api)
        assert_problem(status, body, headers, 429, "too many")
        assert int(headers["Retry-After"]) > 0
        assert STORED not in str(body)
        for i in range(16):  # 20 per IP and hour: 4 used above
            status, _, _ = await subscribe_request(api, address=f"r{i}@example.org")
            assert status == 202
        status, body, headers = await subscribe_request(api, address="new@example.org")
        assert_problem(status, body, headers, 429)
        async with store.read() as conn:
            sent = await conn.scalar(sa.select(sa.func.count()).select_from(t.messages))
        assert sent == 3 + 16  # refused requests send nothing


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"address": "zhang.example.org"}, "must have an @-sign"),
        ({"address": "zhang@example"}, "should have a period"),
        ({"address": "zhang@mail.test"}, "special-use or reserved"),
        ({"address": "张三@example.org"}, "internationalized characters"),
        ({"address": "zhang san@example.org"}, "invalid characters"),
        ({"categories": ["nope"]}, "unknown category"),
        ({"frequency": "weekly"}, "frequency"),
        ({"address": "x" * 400 + "@example.org"}, "address"),
    ],
)
async def test_bad_requests_are_problems_saying_why(
    web_store: Any, fields: dict[str, Any], words: str
) -> None:
    async with web_store as store, api_on(store) as api:
        status, body, headers = await subscribe_request(api, **fields)
        assert_problem(status, body, headers, 422, words)
        assert "张三" not in body["detail"] and "zhang" not in body["detail"]
        async with store.read() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(t.messages)) == 0


async def test_expired_and_tampered_confirmation_links_subscribe_nobody(web_store: Any) -> None:
    async with web_store as store, api_on(store) as api:
        links = MailLinks(store.config)
        expired = links.confirm_token(
            STORED, ["nync"], "daily", 48 * 3600, now=time.time() - 48 * 3600 - 1
        )
        good = links.confirm_token(STORED, ["nync"], "daily", 48 * 3600)
        flipped = good[:30] + ("A" if good[30] != "A" else "B") + good[31:]
        for token, status in (
            (expired, 410),
            (flipped, 404),
            (good[:-4], 404),
            (good + "AAAA", 404),
            ("x" * 30, 404),
            ("not a token", 404),
        ):
            for method in ("GET", "POST"):
                resp = await api.client.request(method, f"/subscribe/confirm/{token}")
                assert resp.status == status, (token, method)
                assert resp.content_type == "text/html"
        with pytest.raises(NotFound):
            await Recipients(store).get("email", STORED)
        # the good one still works, with its frequency
        resp = await api.client.post(f"/subscribe/confirm/{good}")
        assert resp.status == 200
        assert (await Recipients(store).get("email", STORED)).frequency is Frequency.DAILY


async def test_manage_and_unsubscribe_links_are_signed_per_purpose(web_store: Any) -> None:
    async with web_store as store, api_on(store) as api:
        sub = await Recipients(store).subscribe(
            "email", STORED, Consent(method="email_confirmed", text="同意"), categories=["nync"]
        )
        links = MailLinks(store.config)
        manage = links.token(LinkPurpose.MANAGE, sub.id, sub.link_nonce)
        unsubscribe = links.token(LinkPurpose.UNSUBSCRIBE, sub.id, sub.link_nonce)
        other_id = links.token(LinkPurpose.UNSUBSCRIBE, sub.id + 1, sub.link_nonce).split(".")[1]
        for bad in (
            manage,  # a manage token does not unsubscribe
            f"{sub.id}.{other_id}",  # another subscriber's signature
            f"{sub.id + 1}.{unsubscribe.split('.')[1]}",  # this signature on another id
            unsubscribe[:-1],
            links.token(LinkPurpose.UNSUBSCRIBE, sub.id, "another nonce"),
        ):
            resp = await api.client.post(f"/unsubscribe/{bad}")
            assert resp.status == 404, bad
        assert (await Recipients(store).get("email", STORED)).status is RecipientStatus.ACTIVE

        resp = await api.client.get(f"/subscribe/manage/{manage}")
        page = await resp.text()
        assert resp.status == 200 and MASKED in page and STORED not in page
        resp = await api.client.post(
            f"/subscribe/manage/{manage}",
            data=[("action", "save"), ("categories", "czys"), ("categories", "shjz"),
                  ("frequency", "daily")],
        )  # fmt: skip
        assert resp.status == 200 and "已保存" in await resp.text()
        now = await Recipients(store).get("email", STORED)
        assert now.categories == ("czys", "shjz") and now.frequency is Frequency.DAILY
        resp = await api.client.post(
            f"/subscribe/manage/{manage}",
            data=[("action", "save"), ("categories", "nope"), ("frequency", "daily")],
        )
        assert resp.status == 422 and "没有 nope 这个分类" in await resp.text()

        # the page's button (GET asks, POST leaves)
        resp = await api.client.get(f"/unsubscribe/{unsubscribe}")
        assert resp.status == 200 and "确认退订" in await resp.text()
        assert (await Recipients(store).get("email", STORED)).status is RecipientStatus.ACTIVE
        resp = await api.client.post(f"/unsubscribe/{unsubscribe}")
        assert resp.status == 200
        left = await Recipients(store).get("email", STORED)
        assert left.status is RecipientStatus.UNSUBSCRIBED
        assert await Recipients(store).is_suppressed("email", STORED)
