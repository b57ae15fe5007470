"""Official text as written, on every channel (issue 15): the sample disclosure report, a
plain-text item with its own numbering (一、 1、 1. 2.培训 (二)改进情况:), published to all
five channels — a loopback portal, a resident through the real Kannel, a resident through
aiosmtpd, a notice board, the feeds — reads the same everywhere: nothing is renumbered,
no heading is folded into a list. A Markdown item still renders Markdown."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import lxml.etree as ET
import lxml.html
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.sms import gateway_number
from publisher.boards import BoardCreate, Boards
from publisher.config import Config
from publisher.content import ItemCreate, content_from
from publisher.models import Item
from publisher.recipients import Recipients, import_subscribers
from publisher.store.sql import SqlStore
from publisher.text import derive_summary
from tests.board.conftest import need_tools, page_text
from tests.conftest import EDITOR, SAMPLE, item_fields, publish
from tests.conftest import store_on as open_store
from tests.engine.conftest import CONSENT, wait_settled
from tests.engine.helpers import running
from tests.mail.conftest import SmtpSink, mail_config, smtp_sink
from tests.sms import kannel as kn
from tests.sms.conftest import served, sms_config

__all__ = ["smtp_sink"]  # the fixture, used below

ATOM = "{http://www.w3.org/2005/Atom}"
PORTAL_SECRET = "whsec_" + "dmVyYmF0aW0tcG9ydGFsLXNlY3JldC0xMjM0NTY3OA=="
RESIDENT_PHONE = "+8613900139000"
RESIDENT_MAIL = "resident@example.org"
#: the number as the fake SMSC sees it (Kannel is handed the national form)
NATIONAL = gateway_number(RESIDENT_PHONE, "national")

ENGINE = {
    "CHANNELS__SMS__QUIET_HOURS": "null",
    "CHANNELS__EMAIL__QUIET_HOURS": "null",
    "DELIVERY__POLL_SECONDS": "0.05",
    "DELIVERY__HEARTBEAT_SECONDS": "1",
}


def squeeze(text: str) -> str:
    """Text without any whitespace: layout line breaks differ per channel, words do not."""
    return re.sub(r"\s+", "", text)


def sample_body() -> str:
    """The sample's body as the importer takes it: each line of the page a paragraph."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    body = [ln.rstrip() for ln in lines if ln.strip() and not re.match(r"^\S+?[:：]\s*\|", ln)]
    return "\n\n".join(body)


def html_text(fragment: str) -> str:
    return str(lxml.html.fragment_fromstring(fragment, create_parent="div").text_content())


class Portal:
    """The city portal on loopback: records every pushed event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(json.loads(await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def portal() -> AsyncIterator[tuple[Portal, str]]:
    server = Portal()
    app = web.Application()
    app.router.add_post("/city", server.handle)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    try:
        yield server, str(test_server.make_url("/city"))
    finally:
        await test_server.close()


def five_channels(
    config: Config, k: kn.Kannel, smtp_port: int, portal_url: str, tmp: Path
) -> Config:
    config = mail_config(sms_config(config, k), smtp_port)
    tree = config.model_dump()
    tree["channels"]["portal"]["endpoints"] = [
        {"name": "city", "address": portal_url, "settings": {"secret": PORTAL_SECRET}}
    ]
    tree["channels"]["board"]["settings"]["packs_dir"] = str(tmp / "packs")
    return Config.model_validate(tree)


async def _item(store: SqlStore, **fields: Any) -> Item:
    content = content_from(ItemCreate.model_validate(item_fields(**fields)), store.config)
    return await store.create_item(content, actor=EDITOR)


async def test_the_sample_reads_as_written_on_every_channel(
    kannel: kn.Kannel,
    smtp_sink: tuple[SmtpSink, int],
    portal: tuple[Portal, str],
    config_factory: Callable[..., Config],
    tmp_path: Path,
) -> None:
    need_tools()
    sink, smtp_port = smtp_sink
    city, portal_url = portal
    config = five_channels(config_factory(**ENGINE), kannel, smtp_port, portal_url, tmp_path)
    body = sample_body()
    # the numbering the renderer must keep, in the source's own order
    assert "(二)改进情况:\n\n1. 强化制度" in body and "2.培训提升" in body
    async with open_store(config, "sqlite") as store:
        await import_subscribers(Recipients(store), "sms", [RESIDENT_PHONE], CONSENT)
        await import_subscribers(Recipients(store), "email", [RESIDENT_MAIL], CONSENT)
        await Boards(store).add(BoardCreate(name="镇政府"))
        mark = kannel.mark()
        item = await _item(
            store,
            title="上余镇2013年政府信息公开工作年度报告",
            body=body,
            category="nync",
            channels=["portal", "rss", "sms", "email", "board"],
        )
        assert item.content.body_format.value == "text"  # the default
        async with running(store) as worker, served(store, kannel.app_port, worker) as api:
            await publish(store, item)
            await wait_settled(store, item.id, within=90)
            page = await api.client.get(f"/items/{item.id}")
            page_html = await page.text()
            for _ in range(100):  # the gateway hands the message to the fake SMSC
                if any(m.to == NATIONAL for m in kannel.received(mark)):
                    break
                await asyncio.sleep(0.1)

        expected = squeeze(body)

        # the item page: the body div's text is the source's text, numbering included
        doc = lxml.html.fromstring(page_html)
        [div] = doc.xpath("//div[@class='body']")
        assert squeeze(div.text_content()) == expected
        assert not div.xpath(".//ol|.//ul|.//li|.//h1|.//h2|.//em|.//strong")

        # the Atom entry's content
        atom = ET.parse(str(config.feeds_path / "all.atom")).getroot()
        [entry] = atom.findall(f"{ATOM}entry")
        content = entry.find(f"{ATOM}content")
        assert content is not None and content.text
        assert squeeze(html_text(content.text)) == expected

        # the portal's body_html, with the format it was rendered from
        [pushed] = [e["data"] for e in city.events if e["type"] == "item.published"]
        assert pushed["format"] == "text"
        assert squeeze(html_text(pushed["body_html"])) == expected

        # the email's HTML part and its text part agree with the source
        [mail] = sink.to(RESIDENT_MAIL)
        message = mail.parsed()
        html_part = message.get_body(preferencelist=("html",))
        text_part = message.get_body(preferencelist=("plain",))
        assert html_part is not None and text_part is not None
        mail_doc = lxml.html.fromstring(html_part.get_content())
        [mail_body] = mail_doc.xpath("//div[@class='body']")
        assert squeeze(mail_body.text_content()) == expected
        assert not mail_body.xpath(".//ol|.//ul|.//li")
        assert expected in squeeze(text_part.get_content())

        # the SMS: its summary is the start of the source, as written
        texts = [m.text for m in kannel.received(mark) if m.to == NATIONAL]
        assert texts, "the resident got no SMS"
        sms = "".join(texts)
        summary = derive_summary(body, config.items.summary_chars)
        assert summary.startswith("根据《中华人民共和国政府信息公开条例》规定,")
        said = sms.partition("：")[2]  # after 【signature】title：
        shown = squeeze(said.split("http")[0]).rstrip("…")
        assert len(shown) > 20 and expected.startswith(shown)

        # the board's print pack: pdftotext of the poster, ignoring layout line breaks
        [pack_pdf] = sorted((tmp_path / "packs").glob("pack-*.pdf"))
        printed = squeeze(re.sub(r"第\d+页/共\d+页", "", page_text(pack_pdf)))
        assert expected in printed or _in_order(expected, printed)


def _in_order(expected: str, printed: str) -> bool:
    """Every paragraph of the source appears in the PDF, in order (headers and footers of
    the pages may come between them)."""
    at = 0
    for para in re.split(r"(?=[一二三四五六七八九十]、)", expected):
        found = printed.find(para, at)
        if found < 0:
            return False
        at = found + len(para)
    return True


@pytest.mark.parametrize(
    ("source", "kept"),
    [
        ("一、总体情况\n二、主要做法", ["一、总体情况", "二、主要做法"]),
        ("（一）问题\n（二）改进：", ["（一）问题", "（二）改进："]),
        ("(一)问题\n(二)改进:", ["(一)问题", "(二)改进:"]),
        ("1、组织领导\n2、公开载体", ["1、组织领导", "2、公开载体"]),
        ("1. 强化制度\n3. 务实信息", ["1. 强化制度", "3. 务实信息"]),
        ("2.培训提升\n1.强化制度", ["2.培训提升", "1.强化制度"]),
        ("（1）第一项\n（3）第三项", ["（1）第一项", "（3）第三项"]),
        ("①第一项\n③第三项", ["①第一项", "③第三项"]),
        (
            "（一）问题\n1. 甲\n3. 丁\n（二）改进：\n1. 丙",
            ["（一）问题", "1. 甲", "3. 丁", "（二）改进：", "1. 丙"],
        ),
        ("# 不是标题\n- 不是列表\n**不加粗**", ["# 不是标题", "- 不是列表", "**不加粗**"]),
        ("　　第一段首行缩进。\n\n　　第二段。", ["　　第一段首行缩进。", "　　第二段。"]),
    ],
)
def test_each_numbering_style_renders_line_for_line(source: str, kept: list[str]) -> None:
    """Each style of Chinese official numbering, as a `text` body: every line comes out as
    its own line with its number as typed, and no list, heading or emphasis appears."""
    from publisher.text import render_body

    html = render_body(source, "text")
    assert not re.search(r"<(ol|ul|li|h\d|em|strong)\b", html)
    lines = [
        html_text(part)
        for para in re.findall(r"<p>(.*?)</p>", html, re.S)
        for part in para.split("<br>")
    ]
    assert [ln.strip("\n") for ln in lines] == kept


def test_markdown_is_still_markdown_when_chosen() -> None:
    from publisher.text import render_body

    html = render_body("# 标题\n\n1. 甲\n2. 乙\n\n**重点**", "markdown")
    assert "<h1>标题</h1>" in html and "<ol>" in html and "<strong>重点</strong>" in html
