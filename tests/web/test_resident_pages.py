"""The residents' subscribe pages over HTTP (no browser, no script): SMS by code, email by
confirmation mail, leaving SMS by code, the anonymous forms' CSRF check, the core's limits
and non-enumerating answers, masked numbers, and the large-type / high-contrast modes.
tests/ui drives the same pages in Chromium with axe-core."""

from __future__ import annotations

import json
import re
from typing import Any

import lxml.html
import pytest
import sqlalchemy as sa

from publisher.addresses import AddressBox
from publisher.config import Config
from publisher.recipients import Consent, Recipients, RecipientStatus
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from publisher.web.resident import FORM_COOKIE, Tickets
from tests.conftest import Api, dry_run_channels
from tests.web import create, submit_and_approve

NUMBER = "13800138000"
MASKED = "138****8000"
EMAIL = "Zhang.San@Example.ORG"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TICKET = re.compile(r'name="ticket" value="([^"]+)"')


@pytest.fixture
def config(config_factory: Any, tmp_path: Any) -> Config:
    """SMS and email that can send (to dry-run outboxes): the forms are offered."""
    return dry_run_channels(config_factory(), tmp_path / "outbox")


class Resident:
    """A browser without script: follows no redirects by itself, keeps its cookies."""

    def __init__(self, api: Api) -> None:
        self.client = api.client
        self.csrf = ""

    async def get(self, path: str) -> tuple[int, str, Any]:
        resp = await self.client.get(path, allow_redirects=False)
        html = await resp.text()
        token = CSRF.search(html)
        if token:
            self.csrf = token[1]
        return resp.status, html, resp.headers

    async def post(
        self, path: str, data: dict[str, Any] | list[tuple[str, str]], *, csrf: bool = True
    ) -> tuple[int, str, Any]:
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf:
            fields.append(("csrf_token", self.csrf))
        resp = await self.client.post(path, data=fields, allow_redirects=False)
        return resp.status, await resp.text(), resp.headers


def assert_page(html: str, status: int, expected: int) -> lxml.html.HtmlElement:
    """An HTML page with the status expected, no script, and a label for every field."""
    assert status == expected, (status, html[:800])
    tree = lxml.html.fromstring(html)
    assert tree.xpath("//script") == []
    labelled = {label.get("for") for label in tree.xpath("//label[@for]")}
    for field in tree.xpath("//input[not(@type='hidden')] | //select | //textarea"):
        inside_label = field.getparent().tag == "label"
        assert inside_label or field.get("id") in labelled, lxml.html.tostring(field)
    return tree


async def sent_text(store: SqlStore) -> str:
    """The newest transactional message as the resident gets it (decrypted)."""
    box = AddressBox(store.config.data_key())
    async with store.read() as conn:
        body = await conn.scalar(
            sa.select(t.messages.c.body_enc).order_by(t.messages.c.id.desc()).limit(1)
        )
    assert body is not None, "no message was queued"
    return box.open(body)


async def sent_code(store: SqlStore) -> str:
    found = re.search(r"\d{6}", await sent_text(store))
    assert found
    return found.group(0)


async def message_count(store: SqlStore) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(t.messages)) or 0)


async def ask_for_code(
    resident: Resident, number: str = NUMBER, categories: tuple[str, ...] = ("nync",)
) -> str:
    """The subscribe form's SMS part; returns the code page's path."""
    status, _, _ = await resident.get("/subscribe")
    assert status == 200
    fields = [("number", number), *(("categories", c) for c in categories)]
    status, html, headers = await resident.post("/subscribe/sms", fields)
    assert status == 303, html
    location: str = headers["Location"]
    assert location.startswith("/subscribe/sms/code?ticket=")
    return location


# -- SMS -----------------------------------------------------------------------------------


async def test_subscribing_by_sms_through_the_forms(api: Api, sqlite_store: SqlStore) -> None:
    resident = Resident(api)
    status, html, headers = await resident.get("/subscribe?category=nync")
    tree = assert_page(html, status, 200)
    assert headers["Cache-Control"] == "no-store"
    assert "script-src" not in headers["Content-Security-Policy"]
    ticked = tree.xpath("//form[@action='/subscribe/sms']//input[@name='categories'][@checked]")
    assert [box.get("value") for box in ticked] == ["nync"]
    cookie = headers.getall("Set-Cookie")
    assert any(c.startswith(f"{FORM_COOKIE}=") and "HttpOnly" in c for c in cookie), cookie

    code_page = await ask_for_code(resident, "138 0013 8000")
    assert NUMBER not in code_page and "8000" not in code_page  # the number is sealed
    status, html, _ = await resident.get(code_page)
    assert_page(html, status, 200)
    assert MASKED in html and NUMBER not in html
    ticket = TICKET.search(html)
    assert ticket and NUMBER not in ticket[1]
    code = await sent_code(sqlite_store)

    wrong = "000000" if code != "000000" else "111111"
    status, html, _ = await resident.post(
        "/subscribe/sms/verify", {"ticket": ticket[1], "code": wrong}
    )
    assert_page(html, status, 422)
    assert "验证码错误或已过期" in html and MASKED in html
    status, html, _ = await resident.post(
        "/subscribe/sms/verify", {"ticket": ticket[1], "code": code}
    )
    assert_page(html, status, 200)
    assert "订阅成功" in html and f"{MASKED} 已订阅农业农村的短信" in html
    assert NUMBER not in html

    sub = await Recipients(sqlite_store).get("sms", NUMBER)
    assert sub.status is RecipientStatus.ACTIVE and sub.categories == ("nync",)
    async with sqlite_store.read() as conn:
        [consent] = (
            await conn.execute(sa.select(t.consents).where(t.consents.c.recipient_id == sub.id))
        ).all()
    assert consent.method == "web_verified" and consent.source == "web 127.0.0.0/24"
    # the code is spent
    status, html, _ = await resident.post(
        "/subscribe/sms/verify", {"ticket": ticket[1], "code": code}
    )
    assert status == 422


async def test_a_subscribed_number_gets_the_same_pages_as_a_new_one(
    api: Api, sqlite_store: SqlStore
) -> None:
    await Recipients(sqlite_store).subscribe(
        "sms", NUMBER, Consent(method="staff", text="同意", source="test")
    )
    pages = []
    for number, masked in ((NUMBER, MASKED), ("13900139000", "139****9000")):
        resident = Resident(api)
        status, html, _ = await resident.get(await ask_for_code(resident, number))
        assert status == 200 and masked in html
        ticket = TICKET.search(html)
        assert ticket
        # what differs: the masked number, the sealed ticket (also in the display links' back
        # URL) and the form token
        html = html.replace(masked, "N").replace(ticket[1], "T").replace(resident.csrf, "C")
        pages.append(re.sub(r"ticket%3D[\w-]+", "ticket%3DT", html))
    known, fresh = pages
    assert known == fresh


async def test_forms_without_their_token_do_nothing(api: Api, sqlite_store: SqlStore) -> None:
    resident = Resident(api)
    await resident.get("/subscribe")
    for path, fields in (
        ("/subscribe/sms", {"number": NUMBER}),
        ("/subscribe/email", {"email": EMAIL}),
        ("/subscribe/leave", {"number": NUMBER}),
    ):
        status, html, _ = await resident.post(path, fields, csrf=False)
        assert_page(html, status, 403)
        assert "表单已失效" in html
        # a token that is not the cookie's (a forged form from another site) is refused too
        status, html, _ = await resident.post(path, {**fields, "csrf_token": "x" * 43}, csrf=False)
        assert status == 403
    # and a browser that never got the cookie cannot submit the form it copied
    resident.client.session.cookie_jar.clear()
    status, _, _ = await resident.post("/subscribe/sms", {"number": NUMBER})
    assert status == 403
    assert await message_count(sqlite_store) == 0


async def test_bad_numbers_and_categories_are_422_pages_that_do_not_echo_them(
    api: Api, sqlite_store: SqlStore
) -> None:
    resident = Resident(api)
    await resident.get("/subscribe")
    for number in ("12345", "not a number", "１３８００１３８０００x" * 3):
        status, html, _ = await resident.post("/subscribe/sms", {"number": number})
        tree = assert_page(html, status, 422)
        assert "手机号码格式不正确" in html and number not in html
        [field] = tree.xpath("//input[@id='sms-number']")
        assert field.get("aria-invalid") == "true" and field.get("value") is None
    status, html, _ = await resident.post("/subscribe/sms", {"number": ""})
    assert_page(html, status, 422)
    assert "请输入手机号码" in html
    status, html, _ = await resident.post(
        "/subscribe/sms", [("number", NUMBER), ("categories", "no-such-thing")]
    )
    assert_page(html, status, 422)
    assert "所选栏目中有不存在的栏目" in html and NUMBER not in html
    assert await message_count(sqlite_store) == 0
    status, html, _ = await resident.get("/subscribe?category=no-such-thing")
    assert_page(html, status, 400)


async def test_the_core_limits_apply_to_the_forms(api: Api, sqlite_store: SqlStore) -> None:
    resident = Resident(api)
    for _ in range(3):  # codes_per_number_hour
        await ask_for_code(resident)
    status, html, headers = await resident.post("/subscribe/sms", {"number": NUMBER})
    assert_page(html, status, 429)
    assert int(headers["Retry-After"]) > 0 and "请约" in html and NUMBER not in html
    assert await message_count(sqlite_store) == 3


async def test_expired_tampered_or_foreign_tickets_are_refused(
    api: Api, sqlite_store: SqlStore
) -> None:
    tickets = Tickets(sqlite_store.config)
    expired = tickets.seal("sms/subscribe", "+8613800138000", -1)
    leave = tickets.seal("sms/leave", "+8613800138000", 600)
    good = tickets.seal("sms/subscribe", "+8613800138000", 600)
    assert tickets.open("sms/subscribe", good) == "+8613800138000"
    resident = Resident(api)
    for ticket in (expired, leave, good[:-2] + "AA", "", "x" * 5000, "%%%"):
        status, html, _ = await resident.get(f"/subscribe/sms/code?ticket={ticket}")
        assert_page(html, status, 410)
        assert "重新获取验证码" in html
    await resident.get("/subscribe")
    status, html, _ = await resident.post(
        "/subscribe/sms/verify", {"ticket": expired, "code": "123456"}
    )
    assert_page(html, status, 410)


async def test_malformed_bodies_are_refused_without_a_500(api: Api) -> None:
    resident = Resident(api)
    await resident.get("/subscribe")
    cookie = f"{FORM_COOKIE}={resident.csrf}"
    for path in ("/subscribe/sms", "/subscribe/email", "/subscribe/sms/verify"):
        for body, ctype in (
            (b"\xff\xfe=%%%", "application/x-www-form-urlencoded"),
            (b"--b\r\nbroken", "multipart/form-data; boundary=b"),
            (json.dumps({"number": NUMBER}).encode(), "application/json"),
        ):
            resp = await api.client.post(
                path, data=body, headers={"Content-Type": ctype, "Cookie": cookie}
            )
            assert 400 <= resp.status < 500, (path, ctype, resp.status)
            assert resp.headers["Content-Type"].startswith("text/html")


# -- leaving SMS -----------------------------------------------------------------------------


async def test_leaving_sms_by_code(api: Api, sqlite_store: SqlStore) -> None:
    recipients = Recipients(sqlite_store)
    await recipients.subscribe("sms", NUMBER, Consent(method="staff", text="同意", source="t"))
    resident = Resident(api)
    status, html, _ = await resident.get("/subscribe/leave")
    assert_page(html, status, 200)
    status, html, headers = await resident.post("/subscribe/leave", {"number": NUMBER})
    assert status == 303, html
    status, html, _ = await resident.get(headers["Location"])
    assert_page(html, status, 200)
    ticket = TICKET.search(html)
    assert ticket and MASKED in html
    text = await sent_text(sqlite_store)
    assert "退订" in text
    code = await sent_code(sqlite_store)
    # a code for leaving does not subscribe, even with a subscribe ticket for the number
    sub_ticket = Tickets(sqlite_store.config).seal("sms/subscribe", "+8613800138000", 600)
    status, _, _ = await resident.post(
        "/subscribe/sms/verify", {"ticket": sub_ticket, "code": code}
    )
    assert status == 422
    status, html, _ = await resident.post(
        "/subscribe/leave/verify", {"ticket": ticket[1], "code": code}
    )
    # (that was one failed try of the code's five)
    assert_page(html, status, 200)
    assert "已退订" in html and f"{MASKED} 将不再收到" in html
    sub = await recipients.get("sms", NUMBER)
    assert sub.status is RecipientStatus.UNSUBSCRIBED
    assert await recipients.is_suppressed("sms", NUMBER)


# -- email ----------------------------------------------------------------------------------


async def test_subscribing_by_email_through_the_form(api: Api, sqlite_store: SqlStore) -> None:
    resident = Resident(api)
    await resident.get("/subscribe")
    status, html, _ = await resident.post(
        "/subscribe/email",
        [("email", EMAIL), ("categories", "nync"), ("categories", "czys"), ("frequency", "daily")],
    )
    assert_page(html, status, 202)
    assert "请查收邮件" in html and "Z***@example.org" in html and "Zhang" not in html
    mail = json.loads(await sent_text(sqlite_store))
    found = re.search(r"http://127\.0\.0\.1:8080(/subscribe/confirm/[\w.-]+)", mail["text"])
    assert found, mail["text"]
    status, html, _ = await resident.get(found[1])
    assert status == 200 and "每日摘要" in html
    resp = await api.client.post(found[1])
    assert resp.status == 200
    sub = await Recipients(sqlite_store).get("email", EMAIL)
    assert sub.status is RecipientStatus.ACTIVE and set(sub.categories) == {"nync", "czys"}


async def test_bad_email_input_is_a_422_page(api: Api, sqlite_store: SqlStore) -> None:
    resident = Resident(api)
    await resident.get("/subscribe")
    for address in ("zhang@", "not an address", "a@b@c.org"):
        status, html, _ = await resident.post("/subscribe/email", {"email": address})
        assert_page(html, status, 422)
        assert "电子邮箱格式不正确" in html and address not in html
    status, html, _ = await resident.post(
        "/subscribe/email", {"email": EMAIL, "frequency": "hourly"}
    )
    assert_page(html, status, 422)
    assert "请选择接收邮件的频率" in html
    assert await message_count(sqlite_store) == 0


# -- links and display modes -------------------------------------------------------------------


async def test_catalogue_and_item_pages_link_to_subscribing_to_their_category(api: Api) -> None:
    item = await create(api)
    await submit_and_approve(api, item["id"])
    status, html, _ = await Resident(api).get(f"/items/{item['id']}")
    tree = assert_page(html, status, 200)
    links = {a.text_content().strip(): a.get("href") for a in tree.xpath("//section//a")}
    assert links["短信订阅"] == "/subscribe?category=nync#sms"
    assert links["邮件订阅"] == "/subscribe?category=nync#email"
    assert links["RSS 订阅源"] == "/feeds/nync.rss"
    assert links["Atom 订阅源"] == "/feeds/nync.atom"
    assert "订阅“农业农村”栏目" in html
    status, html, _ = await Resident(api).get("/?category=czys")
    tree = assert_page(html, status, 200)
    assert "/subscribe?category=czys#sms" in html and "/feeds/czys.atom" in html
    status, html, _ = await Resident(api).get("/")
    assert "订阅全部栏目" in html and "/feeds/all.rss" in html


async def test_large_type_and_high_contrast_hold_across_pages(api: Api) -> None:
    resident = Resident(api)
    status, html, _ = await resident.get("/subscribe")
    tree = lxml.html.fromstring(html)
    assert tree.get("class") is None
    [large] = tree.xpath("//header//a[text()='大字版']")
    status, _, headers = await resident.get(large.get("href"))
    assert status == 303 and headers["Location"] == "/subscribe"
    status, html, _ = await resident.get("/")
    tree = lxml.html.fromstring(html)
    assert tree.get("class") == "large"
    [contrast] = tree.xpath("//header//a[text()='高对比度']")
    await resident.get(contrast.get("href"))
    status, html, _ = await resident.get("/subscribe")
    tree = lxml.html.fromstring(html)
    assert tree.get("class") == "large contrast"
    assert tree.xpath("//header//a[text()='标准字号']") and tree.xpath(
        "//header//a[text()='标准配色']"
    )
    # both off again: the cookie goes
    for flag in ("large", "contrast"):
        status, _, headers = await resident.get(f"/display?{flag}=0&back=/")
        assert status == 303
    status, html, _ = await resident.get("/")
    assert lxml.html.fromstring(html).get("class") is None


@pytest.mark.parametrize(
    "back", ["//evil.example/", "https://evil.example/", "/\\evil.example", "", "x", "/a\r\nb"]
)
async def test_display_links_never_send_elsewhere(api: Api, back: str) -> None:
    resp = await api.client.get(
        "/display", params={"large": "1", "back": back}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_a_bad_display_value_is_a_400_page(api: Api) -> None:
    resp = await api.client.get("/display?large=yes", allow_redirects=False)
    assert resp.status == 400 and resp.headers["Content-Type"].startswith("text/html")


async def test_the_item_page_is_not_answered_304_across_display_modes(api: Api) -> None:
    item = await create(api)
    await submit_and_approve(api, item["id"])
    path = f"/items/{item['id']}"
    first = await api.client.get(path)
    etag = first.headers["ETag"]
    assert first.headers["Vary"] == "Cookie"
    same = await api.client.get(path, headers={"If-None-Match": etag})
    assert same.status == 304
    large = await api.client.get(
        path, headers={"If-None-Match": etag, "Cookie": "gk_display=large"}
    )
    assert large.status == 200 and 'class="large"' in await large.text()
