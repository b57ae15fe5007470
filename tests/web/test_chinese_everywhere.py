"""Issue 18: every word a person reads on the staff and resident pages is Chinese.

Renders every page in every state the web tests reach (logged out, each role, empty and
invalid forms, an item in each status, boards, the admin pages, the subscribe pages and
the pages behind residents' mail links), takes the text a person sees (lxml: not <code>,
<pre>, <script>, <style>, attribute values, the 原始数据 disclosure or the user content
the test typed) and fails on an English word outside an allowlist of identifiers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from aiohttp.test_utils import TestClient

from publisher.config import Config
from publisher.mail_links import LinkPurpose, MailLinks
from publisher.models import Role
from publisher.recipients import Consent, Recipients
from publisher.store.sql import ItemQuery, SqlStore
from tests.web.test_staff_ui import PASSWORD, Browser, _open, form, new_browser

#: identifiers and names a Chinese page writes in Latin letters
ALLOWED = {
    "RSS", "Atom", "PDF", "URL", "SMS", "API", "CSV", "Markdown", "HTML", "JSON", "XML",
    "MB", "KB", "GB", "ID", "QR", "PIPL", "TD", "A3", "A4",
    # the user names of the test (people's names are their own)
    "alice", "bob", "carol", "root",
    # a category the test typed, which the error names
    "nope",
}  # fmt: skip
#: what is not a word but an identifier: addresses, links, codes with digits, masks
NOT_WORDS = re.compile(
    r"[\w.+*-]+@[\w.-]+|https?://\S+|\b[\w-]*\d[\w-]*\b|[\w*]*\*{2,}[\w*]*|U\+[0-9A-F]{4,}"
)
WORD = re.compile(r"[A-Za-z]{2,}")


@pytest.fixture
def config(config_factory: Callable[..., Config], tmp_path: Path) -> Config:
    return config_factory(CHANNELS__BOARD__SETTINGS__PACKS_DIR=str(tmp_path / "packs"))


@pytest.fixture
async def site(config: Config) -> AsyncIterator[tuple[TestClient[Any, Any], SqlStore]]:
    async for client, store in _open(config):
        await store.add_user("root", Role.ADMIN, PASSWORD)
        yield client, store


def english_words(html: str) -> list[str]:
    tree = lxml.html.fromstring(html)
    for bad in tree.xpath(
        "//code | //pre | //script | //style | //details[contains(@class, 'raw')]"
        " | //*[contains(@class, 'user-content')] | //iframe | //textarea | //option"
        "[not(@selected)]"
    ):
        bad.drop_tree()
    words = []
    for text in tree.xpath("//text()"):
        for word in WORD.findall(NOT_WORDS.sub(" ", str(text))):
            if word not in ALLOWED:
                words.append(word)
    return words


class Pages:
    """Collects the pages' English words, by page."""

    def __init__(self) -> None:
        self.found: dict[str, list[str]] = {}
        self.seen = 0

    async def visit(
        self, b: Browser, path: str, data: dict[str, Any] | None = None, *, label: str = ""
    ) -> str:
        if data is None:
            status, html, headers = await b.get(path)
        else:
            status, html, headers = await b.post(path, data)
        if status in (301, 302, 303):
            return await self.visit(b, headers["Location"], label=label)
        assert status < 500, (path, status, html[-2000:])
        if "text/html" in headers.get("Content-Type", ""):
            self.seen += 1
            words = english_words(html)
            if words:
                self.found[
                    f"{label or ''} {'POST' if data is not None else 'GET'} {path} {status}"
                ] = words
        return html


async def test_every_page_reads_in_chinese(site: Any) -> None:
    client, store = site
    pages = Pages()
    anonymous = Browser(client)
    for path in ("/staff/login", "/staff/nowhere", "/", "/subscribe", "/nowhere",
                 "/subscribe/leave", "/items/00000000-0000-0000-0000-000000000000"):  # fmt: skip
        await pages.visit(anonymous, path, label="anonymous")
    await pages.visit(
        anonymous, "/staff/login", {"username": "alice", "password": "wrong"}, label="bad login"
    )
    for path, data in (
        ("/subscribe/sms", {"number": ""}),
        ("/subscribe/sms", {"number": "12"}),
        ("/subscribe/email", {"email": ""}),
        ("/subscribe/email", {"email": "not an address"}),
    ):
        _status, html, _ = await anonymous.get("/subscribe")
        token = re.search(r'name="csrf_token" value="([^"]+)"', html)
        await pages.visit(
            anonymous, path, {**data, "csrf_token": token[1] if token else ""}, label="resident"
        )

    # the pages behind the links in residents' mail
    sub = await Recipients(store).subscribe(
        "email", "li.si@example.org", Consent(method="email_confirmed", text="同意")
    )
    links = MailLinks(store.config)
    manage = "/subscribe/manage/" + links.token(LinkPurpose.MANAGE, sub.id, sub.link_nonce)
    for path in (
        "/subscribe/confirm/" + links.confirm_token("wang@example.org", ["nync"], "daily", 600),
        "/subscribe/confirm/not-a-token",
        manage,
        "/unsubscribe/" + links.token(LinkPurpose.UNSUBSCRIBE, sub.id, sub.link_nonce),
    ):
        await pages.visit(anonymous, path, label="mail link")
    await pages.visit(
        anonymous, manage, {"action": "save", "categories": "nope"}, label="mail manage"
    )
    await pages.visit(anonymous, manage, {"action": "save", "frequency": "daily"}, label="saved")
    await pages.visit(anonymous, manage, {"action": "leave"}, label="mail leave")

    alice = await new_browser(client)
    bob = await new_browser(client)
    root = await new_browser(client)
    async with alice.client, bob.client, root.client:
        for b, name in ((alice, "alice"), (bob, "bob"), (root, "root")):
            assert (await b.login(name))[0] == 303
            for path in ("/staff/", "/staff/review", "/staff/boards", "/staff/items/new",
                         "/staff/boards/new", "/staff/admin/users", "/staff/admin/subscribers",
                         "/staff/nowhere", "/staff/?status=draft"):  # fmt: skip
                await pages.visit(b, path, label=name)
        # empty and invalid forms
        for data in (
            {"title": "", "body": "", "written_at": "", "action": "save"},
            {**form(written_at="soon", disclosure="withheld", publish_at="x"), "action": "save"},
            {**form(expires_at="2020-01-01T00:00", publish_at="2021-01-01T00:00"), "action": "s"},
            {**form(), "action": "preview"},
        ):
            await pages.visit(alice, "/staff/items/new", data, label="compose")
        await pages.visit(root, "/staff/boards/new", {"name": ""}, label="board form")
        await pages.visit(root, "/staff/admin/users/add", {"name": "a b", "role": "x"})
        await pages.visit(root, "/staff/admin/users/password", {"name": "bob", "password": "1"})
        await pages.visit(root, "/staff/admin/subscribers", {"channel": "sms", "address": "1"})

        # an item through every status: draft, in review, rejected, published, a correction,
        # withdrawn
        await alice.post("/staff/items/new", {**form(body="请联系13800138000。"), "action": "save"})
        items, _ = await store.list_items(ItemQuery())
        item = items[0]
        staff = f"/staff/items/{item.id}"

        async def every_view(label: str) -> None:
            for b, name in ((alice, "alice"), (bob, "bob"), (root, "root")):
                for path in (staff, staff + "/edit", staff + "/review", f"/items/{item.id}"):
                    await pages.visit(b, path, label=f"{label} {name}")

        await every_view("draft")
        await pages.visit(alice, staff + "/submit", {}, label="submit")
        await every_view("in review")
        await pages.visit(alice, staff + "/approve", {}, label="own approval")
        await pages.visit(bob, staff + "/approve", {}, label="unacknowledged")
        await pages.visit(bob, staff + "/reject", {"reason": ""}, label="no reason")
        await pages.visit(bob, staff + "/reject", {"reason": "请补充"}, label="reject")
        await every_view("rejected")
        version = (await store.get_item(item.id)).version
        await pages.visit(
            alice,
            staff + "/edit",
            {**form(body="请联系13800138000。"), "version": str(version), "action": "submit"},
            label="resubmit",
        )
        await pages.visit(bob, staff + "/approve", {"acknowledge": "on"}, label="approve")
        await every_view("published")
        await pages.visit(alice, staff + "/submit", {}, label="submit again")
        version = (await store.get_item(item.id)).version
        await pages.visit(
            alice,
            staff + "/edit",
            {**form(body="更正后的正文。"), "version": str(version), "action": "submit"},
            label="correction",
        )
        await every_view("correction in review")
        await pages.visit(bob, staff + "/withdraw", {"reason": ""}, label="withdraw, no reason")
        await pages.visit(bob, staff + "/withdraw", {"reason": "已过时"}, label="withdraw")
        await every_view("withdrawn")
        await pages.visit(alice, staff + "/edit", {**form(), "action": "save"}, label="late")

    assert pages.seen > 60
    report = "\n".join(f"{page}: {sorted(set(words))}" for page, words in pages.found.items())
    assert not pages.found, "English on the pages:\n" + report
