"""The public pages as a resident sees them: the catalogue at / and each item's page.

Every test runs on SQLite and PostgreSQL. Items are written, reviewed and published
through the staff API (four-eyes: alice writes, bob or dave approves); the pages are
read without a token and parsed with lxml.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import lxml.html
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from publisher.content import ItemCreate, content_from
from publisher.store.sql import SqlStore
from publisher.web import make_app, public
from publisher.web.keys import CONFIG
from tests.conftest import ADMIN, EDITOR, EDITOR2, REVIEWER, REVIEWER2, Api, item_fields
from tests.web import assert_problem, create, submit_and_approve

#: what a hostile or merely unusual title brings: markup, a script, entities, emoji, a CJK
#: character outside the BMP (𠮷, U+20BB7)
TRICKY = '<script>alert(1)</script> & "引号" <b>粗</b> 😀 𠮷'


@pytest.fixture
async def site(store: SqlStore) -> AsyncIterator[Api]:
    """The app on the store under test (SQLite and PostgreSQL), with the staff tokens."""
    tokens = {}
    for actor in (EDITOR, EDITOR2, REVIEWER, REVIEWER2, ADMIN):
        await store.add_user(actor.name, actor.role)
        tokens[actor.name] = await store.create_token(actor.name)
    async with TestClient(TestServer(make_app(store.config, store))) as client:
        yield Api(client, tokens)


class Page:
    """A fetched public page: status, headers, raw HTML and its parsed tree."""

    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        self.tree = lxml.html.fromstring(raw.decode("utf-8")) if raw else None

    def text(self, xpath: str) -> list[str]:
        assert self.tree is not None
        return [e.text_content().strip() for e in self.tree.xpath(xpath)]

    def one(self, xpath: str) -> str:
        found = self.text(xpath)
        assert len(found) == 1, (xpath, found)
        return found[0]

    @property
    def header_table(self) -> dict[str, str]:
        assert self.tree is not None
        return {
            row.xpath("string(th)").strip(): row.xpath("string(td)").strip()
            for row in self.tree.xpath("//table[@class='meta']//tr")
        }

    @property
    def links(self) -> dict[str, str]:
        """Link text -> href."""
        assert self.tree is not None
        return {a.text_content().strip(): a.get("href") for a in self.tree.xpath("//a[@href]")}

    @property
    def catalogue_titles(self) -> list[str]:
        return self.text("//table[@class='list']/tbody/tr/td[2]/a")


async def fetch(site: Api, path: str, method: str = "GET", **headers: str) -> Page:
    resp = await site.client.request(method, path, headers=headers)
    return Page(resp.status, resp.headers, await resp.read())


async def published(site: Api, reviewer: str = "bob", **fields: Any) -> dict[str, Any]:
    item = await create(site, **fields)
    body = await submit_and_approve(site, item["id"], reviewer=reviewer)
    assert body["status"] == "published", body
    return body


def assert_html(page: Page, status: int) -> None:
    assert page.status == status, (page.status, page.raw[:500])
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.tree is not None
    assert page.tree.xpath("//script") == []
    on_attrs = [
        (el.tag, name) for el in page.tree.iter() for name in el.attrib if name.startswith("on")
    ]
    assert on_attrs == []


# -- the item page ----------------------------------------------------------------------


async def test_item_page_shows_title_catalogue_header_and_body(site: Api) -> None:
    item = await published(
        site,
        doc_no="上政发〔2026〕12号",
        body="各村：\n\n为做好**冬季农田水利**建设工作，现将有关事项通知如下。",
        format="markdown",
    )
    page = await fetch(site, f"/items/{item['id']}")
    assert_html(page, 200)
    assert page.one("//h1") == item["title"]
    assert page.one("//title").startswith(item["title"])
    assert page.header_table == {
        "索引号": item["index_no"],
        "主题分类": "农业农村",
        "发文机关": "上余镇人民政府",
        "成文日期": "2026-11-20",
        "文号": "上政发〔2026〕12号",
        "发布日期": item["published_at"][:10],  # the API's time is in the site's zone
    }
    assert page.text("//div[@class='body']//strong") == ["冬季农田水利"]
    assert "为做好冬季农田水利建设工作" in page.one("//div[@class='body']")
    assert page.links["农业农村"] == "/?category=nync"
    assert "上余镇政府信息公开" in page.one("//header")  # site.name

    # HEAD answers like GET, without the body
    resp = await site.client.head(f"/items/{item['id']}")
    assert resp.status == 200 and await resp.read() == b""
    assert resp.headers["ETag"] == page.headers["ETag"]


async def test_item_page_answers_304_until_the_item_changes(site: Api) -> None:
    item = await published(site)
    first = await fetch(site, f"/items/{item['id']}")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"

    again = await fetch(site, f"/items/{item['id']}", **{"If-None-Match": etag})
    assert again.status == 304 and again.raw == b""
    assert again.headers["ETag"] == etag
    weak = await fetch(site, f"/items/{item['id']}", **{"If-None-Match": f'"x", W/{etag}'})
    assert weak.status == 304
    other = await fetch(site, f"/items/{item['id']}", **{"If-None-Match": '"other"'})
    assert other.status == 200

    # a correction changes the page and its ETag
    await _correct(site, item["id"], {"title": "更正后的标题"}, note="更正标题")
    changed = await fetch(site, f"/items/{item['id']}", **{"If-None-Match": etag})
    assert_html(changed, 200)
    assert changed.one("//h1") == "更正后的标题"
    assert changed.headers["ETag"] != etag


async def test_hidden_items_answer_404_as_an_html_page(site: Api, store: SqlStore) -> None:
    draft = await create(site, title="草稿标题不可见")
    in_review = await create(site, title="审查中标题不可见")
    status, _, _ = await site.call("POST", f"/api/v1/items/{in_review['id']}/submit")
    assert status == 200
    withdrawn = await published(site, title="已撤回标题不可见")
    status, _, _ = await site.call(
        "POST", f"/api/v1/items/{withdrawn['id']}/withdraw", who="bob", json={"reason": "撤回"}
    )
    assert status == 200
    expiring = await published(
        site,
        title="已过期标题不可见",
        expires_at=(datetime.now(UTC) + timedelta(days=3)).isoformat(),
    )
    assert await store.expire_due(datetime.now(UTC) + timedelta(days=10)) == [expiring["id"]]
    on_request = await published(
        site, title="依申请公开标题不可见", disclosure="on_request", disclosure_reason="依申请"
    )
    withheld = await published(
        site, title="不予公开标题不可见", disclosure="withheld", disclosure_reason="涉及第三方"
    )

    hidden = [draft, in_review, withdrawn, expiring, on_request, withheld]
    unknown = "00000000-0000-4000-8000-000000000000"
    garbage = [
        "not-an-id",
        quote(draft["id"].upper()),
        "%00",
        "%ED%A0%80",  # a lone surrogate, percent-encoded
        "%FF%FE",
        "x" * 5000,
        quote("𠮷"),
        quote("' OR 1=1 --"),
        draft["id"] + "%20",
    ]
    for path in [f"/items/{i['id']}" for i in hidden] + [
        f"/items/{x}" for x in [unknown, *garbage]
    ]:
        page = await fetch(site, path)
        assert_html(page, 404)
        assert page.one("//h1") == "未找到该信息", path
        assert "不可见" not in page.raw.decode(), path  # no title leaks
        head = await site.client.head(path)
        assert head.status == 404

    # the JSON API keeps its problem documents
    status, body, headers = await site.call("GET", f"/api/v1/items/{unknown}", who="bob")
    assert_problem(status, body, headers, 404)


async def test_corrections_show_their_notes(site: Api) -> None:
    item = await published(site)
    page = await fetch(site, f"/items/{item['id']}")
    assert page.tree is not None and page.tree.xpath("//*[@id='corrections']") == []

    await _correct(site, item["id"], {"doc_no": "上政发〔2026〕13号"}, note="更正文号")
    await _correct(site, item["id"], {"body": "各村：更正后的正文。"}, note=None)
    page = await fetch(site, f"/items/{item['id']}")
    assert_html(page, 200)
    notes = page.text("//section[contains(@class, 'corrections')]//li")
    today = datetime.now(UTC).astimezone(site_tz(site)).date().isoformat()
    assert notes == [f"{today}：更正文号", f"{today}：本信息已更正。"]
    assert page.header_table["文号"] == "上政发〔2026〕13号"
    assert page.header_table["索引号"] == item["index_no"]  # a correction keeps it
    assert page.one("//div[@class='body']") == "各村：更正后的正文。"


async def test_related_items_link_only_to_visible_ones(site: Api) -> None:
    policy = await published(site, title="上余镇秸秆禁烧管理办法")
    draft = await create(site, title="尚未公开的草稿")
    withheld = await published(
        site, title="不予公开的文件", disclosure="withheld", disclosure_reason="涉及第三方"
    )
    reading = await published(
        site,
        title="《上余镇秸秆禁烧管理办法》政策解读",
        related=[
            {"item_id": policy["id"], "kind": "interprets"},
            {"item_id": draft["id"], "kind": "see-also"},
            {"item_id": withheld["id"], "kind": "see-also"},
        ],
    )
    page = await fetch(site, f"/items/{reading['id']}")
    assert_html(page, 200)
    related = page.text("//section[@class='related']//li")
    assert related == [f"本文解读：上余镇秸秆禁烧管理办法（{policy['index_no']}）"]
    assert page.links["上余镇秸秆禁烧管理办法"] == f"/items/{policy['id']}"
    assert "尚未公开的草稿" not in page.raw.decode()
    assert "不予公开的文件" not in page.raw.decode()

    # withdrawing the policy takes it off the reading's page, and the ETag moves
    status, _, _ = await site.call(
        "POST", f"/api/v1/items/{policy['id']}/withdraw", who="bob", json={"reason": "废止"}
    )
    assert status == 200
    after = await fetch(site, f"/items/{reading['id']}", **{"If-None-Match": page.headers["ETag"]})
    assert_html(after, 200)
    assert after.tree is not None and after.tree.xpath("//section[@class='related']") == []


async def test_attachments_are_listed_with_size_and_download(site: Api) -> None:
    item = await create(site)
    data = FormData()
    data.add_field(
        "file",
        b"%PDF-1.4\n" + b"x" * 2048,
        filename="补助名单 2026.pdf",
        content_type="application/pdf",
    )
    status, att, _ = await site.call("POST", f"/api/v1/items/{item['id']}/attachments", data=data)
    assert status == 201, att
    await submit_and_approve(site, item["id"])

    page = await fetch(site, f"/items/{item['id']}")
    assert_html(page, 200)
    assert page.text("//section[@class='attachments']//li") == ["补助名单 2026.pdf（2.0 KB）"]
    href = page.links["补助名单 2026.pdf"]
    assert href == f"/items/{item['id']}/attachments/{att['id']}/{quote('补助名单 2026.pdf')}"
    resp = await site.client.get(href)
    assert resp.status == 200 and (await resp.read()).startswith(b"%PDF")


# -- escaping -----------------------------------------------------------------------------


async def test_markup_scripts_entities_emoji_and_rare_cjk_come_through_escaped(
    site: Api,
) -> None:
    body = f'{TRICKY}\n\n<img src="x" onerror="alert(2)"> [点我](javascript:alert(3)) 𠮷😀'
    item = await published(site, title=TRICKY, body=body, doc_no='文号 <i>&"')

    page = await fetch(site, f"/items/{item['id']}")
    assert_html(page, 200)
    # markup arrives as text: no tag of it survives in the raw page (attributes: assert_html)
    assert b"<script" not in page.raw.lower() and b"<img" not in page.raw.lower()
    assert page.one("//h1") == TRICKY
    assert page.one("//title").startswith(TRICKY)
    assert page.header_table["文号"] == '文号 <i>&"'
    paragraphs = page.text("//div[@class='body']/p")
    assert paragraphs[0] == TRICKY
    assert paragraphs[1] == '<img src="x" onerror="alert(2)"> [点我](javascript:alert(3)) 𠮷😀'
    assert page.tree is not None
    assert page.tree.xpath("//div[@class='body']//img | //div[@class='body']//b") == []
    hrefs = [a.get("href") for a in page.tree.xpath("//a[@href]")]
    assert not [h for h in hrefs if h.lower().startswith("javascript")]

    # the catalogue shows it intact too, and finds it by the rare character
    listing = await fetch(site, "/?q=" + quote("𠮷"))
    assert_html(listing, 200)
    assert listing.catalogue_titles == [TRICKY]
    assert b"<script" not in listing.raw.lower()
    # a query that is itself markup is echoed back as text in the search box
    echoed = await fetch(site, "/?q=" + quote('"><script>alert(4)</script>'))
    assert_html(echoed, 200)
    assert echoed.tree is not None
    assert echoed.tree.xpath("//input[@name='q']/@value") == ['"><script>alert(4)</script>']


# -- the catalogue ------------------------------------------------------------------------


async def test_catalogue_lists_published_proactive_items_only(site: Api) -> None:
    live = await published(site, title="上余镇应急预案", category="yjgl")
    await create(site, title="草稿不列出")
    await published(site, title="依申请不列出", disclosure="on_request", disclosure_reason="依申请")
    page = await fetch(site, "/")
    assert_html(page, 200)
    assert page.one("//h1") == "信息公开目录"
    assert page.catalogue_titles == ["上余镇应急预案"]
    row = page.text("//table[@class='list']/tbody/tr/td")
    assert row == [live["index_no"], "上余镇应急预案", "应急管理", live["published_at"][:10]]
    assert page.links["上余镇应急预案"] == f"/items/{live['id']}"
    # every category of the taxonomy is a link to its filter
    assert page.links["社会救助"] == "/?category=shjz"
    assert "共 1 条" in page.one("//main/p[@class='muted']")

    head = await site.client.head("/")
    assert head.status == 200 and head.headers["Content-Security-Policy"]


async def test_catalogue_filters_by_category_and_year(site: Api, store: SqlStore) -> None:
    await published(site, title="关于秸秆禁烧工作的通知", category="nync")
    await published(site, title="社会救助资金发放情况", category="shjz")
    await store.import_item(
        content_from(
            ItemCreate.model_validate(
                item_fields(title="上余镇2013年政府信息公开年度报告", written_at="2014-01-10")
            ),
            store.config,
        ),
        index_no="113308810026305088/2014-00007",
        published_at=datetime(2014, 1, 15, 2, 0, tzinfo=UTC),
        actor="import",
    )
    this_year = datetime.now(site_tz(site)).year

    async def titles(query: str) -> set[str]:
        page = await fetch(site, "/" + query)
        assert_html(page, 200)
        return set(page.catalogue_titles)

    assert await titles("?category=shjz") == {"社会救助资金发放情况"}
    assert await titles("?category=nync") == {
        "关于秸秆禁烧工作的通知",
        "上余镇2013年政府信息公开年度报告",
    }
    assert await titles("?year=2014") == {"上余镇2013年政府信息公开年度报告"}
    assert await titles(f"?year={this_year}&category=nync") == {"关于秸秆禁烧工作的通知"}
    assert await titles("?year=1999") == set()
    # empty fields, as the search form sends them, mean no filter
    assert len(await titles("?q=&category=&year=&page=")) == 3

    # the form keeps the chosen filters selected
    page = await fetch(site, "/?category=shjz&year=2014")
    assert page.tree is not None
    assert page.tree.xpath("//select[@name='category']/option[@selected]/@value") == ["shjz"]
    assert page.tree.xpath("//select[@name='year']/option[@selected]/@value") == ["2014"]
    assert page.one("//nav[@class='categories']//a[@aria-current]") == "社会救助"


async def test_catalogue_finds_by_title_index_no_and_body_text(site: Api) -> None:
    await published(site, title="关于秸秆禁烧工作的通知")
    relief = await published(
        site, title="社会救助资金发放情况", body="本季度城乡低保金已按时足额发放到户。"
    )

    async def found(q: str) -> list[str]:
        page = await fetch(site, "/?q=" + quote(q))
        assert_html(page, 200)
        return page.catalogue_titles

    assert await found("秸秆禁烧") == ["关于秸秆禁烧工作的通知"]
    assert await found("低保金") == ["社会救助资金发放情况"]
    assert await found(relief["index_no"]) == ["社会救助资金发放情况"]
    assert await found("没有这样的词") == []
    assert await found("%") == []  # LIKE wildcards are taken literally
    page = await fetch(site, "/?q=" + quote("没有这样的词"))
    assert "没有找到" in page.raw.decode()


async def test_catalogue_pages_newest_first(site: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(public, "PER_PAGE", 2)
    titles = [f"第{n}号通知" for n in range(1, 6)]
    for title in titles:
        await published(site, title=title)
    newest_first = titles[::-1]

    first = await fetch(site, "/")
    assert first.catalogue_titles == newest_first[:2]
    assert "下一页" in first.links and "上一页" not in first.links
    second = await fetch(site, first.links["下一页"])
    assert second.catalogue_titles == newest_first[2:4]
    assert second.links["上一页"] == "/" and second.links["下一页"] == "/?page=3"
    third = await fetch(site, "/?page=3")
    assert third.catalogue_titles == newest_first[4:]
    assert "下一页" not in third.links
    assert "第 3 / 3 页" in third.one("//main/p[@class='muted']")

    # paging keeps the filters
    filtered = await fetch(site, "/?q=" + quote("通知") + "&category=nync")
    assert filtered.links["下一页"] == "/?q=" + quote("通知") + "&category=nync&page=2"

    beyond = await fetch(site, "/?page=9")
    assert_html(beyond, 200)
    assert beyond.catalogue_titles == [] and beyond.links["回到第一页"] == "/"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("year=abc", ["year", "abc"]),
        ("year=-1", ["year"]),
        ("year=99999", ["year"]),
        ("year=2024.5", ["year"]),
        ("page=-1", ["page", "-1"]),
        ("page=0", ["page"]),
        ("page=abc", ["page"]),
        ("page=1e3", ["page"]),
        ("page=99999999999", ["page"]),
        ("category=nope", ["category", "nope"]),
        ("category=" + quote("<script>"), ["category", "<script>"]),
        ("q=%00", ["q"]),
        ("q=" + "长" * 201, ["q", "200"]),
    ],
)
async def test_bad_catalogue_params_answer_400_saying_what_is_wrong(
    site: Api, query: str, words: list[str]
) -> None:
    page = await fetch(site, "/?" + query)
    assert_html(page, 400)
    assert page.one("//h1") == "查询条件有误"
    message = page.one("//main/p[1]")
    for word in words:
        assert word in message, (word, message)


async def test_the_public_pages_need_no_token_and_ignore_a_bad_one(site: Api) -> None:
    item = await published(site)
    for path in ("/", f"/items/{item['id']}"):
        page = await fetch(site, path, Authorization="Bearer gk_garbage")
        assert_html(page, 200)


# -- helpers -------------------------------------------------------------------------------


def site_tz(site: Api) -> Any:
    app = site.client.app
    assert app is not None
    return app[CONFIG].site.tz


async def _correct(site: Api, item_id: str, changes: dict[str, Any], note: str | None) -> None:
    """Edit a published item and have the edit reviewed: a correction (更正)."""
    status, body, headers = await site.call("GET", f"/api/v1/items/{item_id}")
    assert status == 200
    patch = dict(changes) | ({"correction_note": note} if note is not None else {})
    status, body, _ = await site.call(
        "PATCH", f"/api/v1/items/{item_id}", json=patch, headers={"If-Match": headers["ETag"]}
    )
    assert status == 200, body
    body = await submit_and_approve(site, item_id, reviewer="dave")
    assert body["status"] == "published" and body["pending"] is None, body
