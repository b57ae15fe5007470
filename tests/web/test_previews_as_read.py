"""Issue 18.7: the compose page previews each channel as its reader sees it (the portal's
card, a feed reader's entry, the email's HTML part, the SMS bubble, the poster), following
the body's format, with the payload itself in a 原始数据 disclosure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import lxml.html
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from publisher.config import Config
from tests.web.test_staff_ui import Browser, _open, form

CHANNELS = ("portal", "rss", "sms", "email", "board")


@pytest.fixture
async def alice(config: Config) -> AsyncIterator[Browser]:
    client: TestClient[Any, Any]
    async for client, _ in _open(config):
        b = Browser(client)
        await b.login("alice")
        yield b


async def _preview(b: Browser, **fields: str) -> Any:
    data = FormData()
    for key, value in {**form(**fields), "action": "preview", "csrf_token": b.csrf}.items():
        if key != "channels":
            data.add_field(key, value)
    for channel in CHANNELS:
        data.add_field("channels", channel)
    resp = await b.client.post("/staff/items/new", data=data, allow_redirects=False)
    html = await resp.text()
    assert resp.status == 200, html
    return lxml.html.fromstring(html).get_element_by_id("previews")


def _section(previews: Any, channel: str) -> Any:
    found = previews.find_class(f"preview-{channel}")
    assert found, channel
    return found[0]


def _seen(section: Any) -> str:
    """The text a person sees without opening the raw data."""
    copy = lxml.html.fromstring(lxml.html.tostring(section))
    for details in copy.xpath(".//details"):
        details.drop_tree()
    return copy.text_content()


async def test_markdown_previews_read_as_the_readers_see_them(alice: Browser) -> None:
    previews = await _preview(alice, body="各村：\n\n- **第一**事项\n- 第二事项", format="markdown")
    for channel in ("portal", "rss"):
        section = _section(previews, channel)
        seen = _seen(section)
        assert "<p>" not in seen and "**" not in seen and '"type"' not in seen, seen
        assert section.xpath(".//article//ul/li/strong[text()='第一']"), channel
        raw = section.xpath(".//details[summary='原始数据']/pre")
        payload = raw[0].text_content() if raw else ""
        assert "<p>" in payload or "&lt;p&gt;" in payload, channel  # one click away
    assert "item.published" in _section(previews, "portal").xpath(".//details/pre")[0].text
    assert "<entry" in _section(previews, "rss").xpath(".//details/pre")[0].text
    mail = _section(previews, "email")
    seen = _seen(mail)
    assert "发件人" in seen and "关于冬季农田水利建设的通知" in seen
    frame = mail.xpath(".//iframe")[0].get("srcdoc")
    assert "<strong>第一</strong>" in frame and "**" not in frame
    raw = mail.xpath(".//details[summary='原始数据']/pre")[0].text_content()
    assert "Subject: 关于冬季农田水利建设的通知" in raw and "text/html" in raw
    assert _section(previews, "sms").find_class("sms-bubble")
    assert _section(previews, "board").xpath(".//iframe")


async def test_plain_text_previews_keep_the_text_as_written(alice: Browser) -> None:
    previews = await _preview(alice, body="一、总则\n1. **不是**粗体", format="text")
    for channel in ("portal", "rss"):
        section = _section(previews, channel)
        assert not section.xpath(".//article//strong | .//article//ol"), channel
        assert "1. **不是**粗体" in _seen(section), channel
    frame = _section(previews, "email").xpath(".//iframe")[0].get("srcdoc")
    assert "**不是**" in frame and "<strong>" not in frame
