"""Withdrawal and expiry are final on every public surface (issue 14): once an item is
withdrawn or expired, its page, its short link, its attachments, its notice-board layout
and the catalogue refuse it, the way they refuse an item never published (a Chinese 404
page for the pages, an RFC 9457 problem for the file routes), even to a client that
revalidates what it fetched before; none serves the body or the file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from publisher.shortlinks import ShortLinks
from publisher.store.sql import SqlStore
from tests.conftest import Api
from tests.web import assert_problem, create, submit_and_approve
from tests.web.test_attachments import PDF, public_url, uploaded

#: in the body only: its absence proves the body was not served
SECRET = "撤回或到期后公众不得再看到的正文段落"
TITLE = "关于冬季农田水利建设的通知（测试撤回）"


async def _retract(api: Api, store: SqlStore, item: dict[str, object], how: str) -> None:
    if how == "withdrawn":
        status, body, _ = await api.call(
            "POST", f"/api/v1/items/{item['id']}/withdraw", who="bob", json={"reason": "内容有误"}
        )
        assert status == 200, body
    else:
        later = datetime.now(UTC) + timedelta(days=10)
        assert await store.expire_due(later) == [item["id"]]
    status, body, _ = await api.call("GET", f"/api/v1/items/{item['id']}")
    assert status == 200 and body["status"] == how


@pytest.mark.parametrize("how", ["withdrawn", "expired"])
async def test_every_public_surface_refuses_the_item(
    api: Api, sqlite_store: SqlStore, how: str
) -> None:
    store = sqlite_store
    expires = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    item = await create(
        api, title=TITLE, body=f"各村：\n\n{SECRET}。", expires_at=expires, channels=["portal"]
    )
    att = await uploaded(api, item["id"])
    await submit_and_approve(api, item["id"])
    page_url = f"/items/{item['id']}"
    file_url = public_url(item["id"], att)
    layout_url = f"/items/{item['id']}/board.pdf"
    code = ShortLinks(store.config).code(item["id"])

    # while published, every surface serves it (and the clients keep the validators)
    page = await api.client.get(page_url)
    assert page.status == 200 and SECRET in await page.text()
    page_etag = page.headers["ETag"]
    short = await api.client.get(f"/s/{code}", allow_redirects=False)
    assert short.status == 302 and short.headers["Location"] == page_url
    got = await api.client.get(file_url)
    assert got.status == 200 and await got.read() == PDF
    file_etag = got.headers["ETag"]
    layout = await api.client.get(layout_url)
    assert layout.status == 200 and (await layout.read()).startswith(b"%PDF")
    layout_etag = layout.headers["ETag"]
    assert TITLE in await (await api.client.get("/")).text()

    await _retract(api, store, item, how)

    # the item page: the Chinese 404 page, alike for a revalidation; HEAD too
    for headers in ({}, {"If-None-Match": page_etag}):
        page = await api.client.get(page_url, headers=headers)
        text = await page.text()
        assert page.status == 404 and page.content_type == "text/html", headers
        assert "未找到该信息" in text and SECRET not in text and TITLE not in text
    assert (await api.client.head(page_url)).status == 404
    # the catalogue no longer lists it
    assert TITLE not in await (await api.client.get("/")).text()
    # the short link leads nowhere
    status, body, headers = await api.call("GET", f"/s/{code}", who=None)
    assert_problem(status, body, headers, 404)
    # the attachment: a problem, not the file, even to a revalidation
    for extra in ({}, {"If-None-Match": file_etag}):
        status, body, headers = await api.call("GET", file_url, who=None, headers=extra)
        assert_problem(status, body, headers, 404)
    # the public notice-board layout: a problem, even to a revalidation (no 304)
    for query in ("", "?size=A3&orientation=landscape"):
        for extra in ({}, {"If-None-Match": layout_etag}, {"If-None-Match": "*"}):
            status, body, headers = await api.call(
                "GET", f"{layout_url}{query}", who=None, headers=extra
            )
            assert_problem(status, body, headers, 404)

    # staff still see it (the record stays), through their own routes only
    status, body, _ = await api.call("GET", f"/api/v1/items/{item['id']}/attachments/{att['id']}")
    assert status == 200 and body == PDF
