"""The public pages (catalogue, item, error) take their UI strings from the gettext
catalogue: in zh_CN they read exactly as before, and no English source string leaks."""

from __future__ import annotations

import re
import uuid
from types import SimpleNamespace

import lxml.html
from babel.messages.extract import extract_from_file

from publisher.web.public import environment
from tests.conftest import REPO, Api
from tests.web import create, submit_and_approve

#: the templates whose hard-coded Chinese became msgids
TEMPLATES = ["base.html", "catalogue.html", "item.html", "error.html", "_subscribe.html"]
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def _msgids() -> set[str]:
    """Every msgid (singular and plural) the public page templates use."""
    out: set[str] = set()
    for name in TEMPLATES:
        for _line, message, _comments, _context in extract_from_file(
            "jinja2",
            str(REPO / "templates" / "public" / name),
            options={"extensions": "jinja2.ext.i18n", "trimmed": "true"},
        ):
            out.update([message] if isinstance(message, str) else message)
    return out


def _leaks(html: str) -> list[str]:
    """The English msgids (or, for those with placeholders, their literal parts) found in
    the page's text or in its labelling attributes."""
    tree = lxml.html.fromstring(html)
    for style in tree.xpath("//style"):
        style.drop_tree()
    shown = [tree.text_content()]
    for attr in ("aria-label", "placeholder", "title", "alt"):
        shown += tree.xpath(f"//@{attr}")
    text = "\n".join(shown)
    leaks = []
    for msgid in _msgids():
        parts = [p.strip() for p in PLACEHOLDER.split(msgid)]
        if any(len(p) > 3 and p in text for p in parts):
            leaks.append(msgid)
    return leaks


async def _get(api: Api, path: str, expected: int) -> str:
    resp = await api.client.get(path)
    html = await resp.text()
    assert resp.status == expected, (resp.status, html[:500])
    return html


def test_the_templates_are_marked_for_translation() -> None:
    msgids = _msgids()
    assert {"Public catalogue", "Search", "Date published", "Back to the catalogue"} <= msgids
    # without a catalogue the same templates fall back to the English source strings
    html = (
        environment("xx")
        .get_template("public/error.html")
        .render(
            site_name="S",
            home_url="/",
            subscribe_url="/subscribe",
            lang="xx",
            display=SimpleNamespace(classes="", large=False, contrast=False),
            large_url="/l",
            contrast_url="/c",
            heading="H",
            message="M",
        )
    )
    assert "Back to the catalogue" in html and "返回信息公开目录" not in html


async def test_catalogue_item_and_error_pages_are_translated(api: Api) -> None:
    item = await create(api, doc_no="上政发〔2026〕12号")
    await submit_and_approve(api, item["id"])

    catalogue = await _get(api, "/", 200)
    for chinese in (
        "<h1>信息公开目录</h1>",
        '<label for="q">检索</label>',
        'placeholder="标题、索引号或正文"',
        '<th scope="col">发布日期</th>',
        "共 1 条，第 1 / 1 页",
        ">查询</button>",
    ):
        assert chinese in catalogue, chinese
    assert _leaks(catalogue) == []

    page = await _get(api, f"/items/{item['id']}", 200)
    for label in ("索引号", "主题分类", "发文机关", "成文日期", "文号", "发布日期"):
        assert f'<th scope="row">{label}</th>' in page, label
    assert '<a href="/">信息公开目录</a>' in page
    assert _leaks(page) == []

    missing = await _get(api, f"/items/{uuid.uuid4()}", 404)
    assert "<h1>未找到该信息</h1>" in missing
    assert '<a href="/">返回信息公开目录</a>' in missing
    assert _leaks(missing) == []

    empty = await _get(api, "/?q=nothing-matches-this", 200)
    assert "共 0 条" in empty and "没有找到符合条件的信息。" in empty
    assert _leaks(empty) == []
