"""The staff pages in Chromium: compose once with live previews, the four-eyes review,
the delivery dashboard, CSRF and logout; axe-core on the main pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from publisher.store.sql import ItemQuery
from tests.ui.conftest import LiveServer, axe_violations, login, screenshot

TITLE = "关于上余镇2026年冬季农田水利建设的通知"
BODY = "各村：\n\n为做好冬季农田水利建设工作，现将有关事项通知如下。"


def sms_segments(page: Any) -> int:
    text = page.locator(".preview-sms [data-sms-segments]").inner_text()
    found = re.search(r"\d+", text)
    assert found, text
    return int(found[0])


def compose(page: Any, *, summary: str = "短讯") -> None:
    page.goto("/staff/items/new")
    page.get_by_role("textbox", name="标题").fill(TITLE)
    page.get_by_label("内容概述").fill(summary)
    page.get_by_role("textbox", name="正文").fill(BODY)
    page.get_by_label("主题分类").select_option("nync")
    for channel in ("政府门户网站", "RSS / Atom 订阅源", "短信", "电子邮件", "信息公告栏"):
        page.get_by_label(channel).check()


def test_editor_composes_submits_and_a_reviewer_approves(
    new_page: Callable[[], Any], live: LiveServer, axe_source: str
) -> None:
    editor = new_page()
    login(editor, "alice")
    compose(editor)
    # the script refreshes the preview as the text is typed: the SMS segment count follows
    expect(editor.locator(".preview-sms .sms-bubble")).to_contain_text(TITLE)
    expect(editor.locator(".preview-sms .sms-bubble")).to_contain_text("短讯")
    before = sms_segments(editor)
    editor.get_by_label("内容概述").fill("为做好冬季农田水利建设工作，" * 8)
    expect(editor.locator(".preview-sms [data-sms-segments]")).not_to_have_text(f"计费 {before} 条")
    assert sms_segments(editor) > before
    expect(editor.locator(".preview-rss pre")).to_contain_text("<entry")
    # the email as it will arrive: the catalogue header and the way out
    expect(editor.locator(".preview-email")).to_contain_text("索引号")
    expect(editor.locator(".preview-email")).to_contain_text("退订")
    # the mail and the poster render in their frames, as a mail client and paper show them
    expect(editor.frame_locator(".preview-email iframe").locator("body")).to_contain_text("索引号")
    expect(editor.frame_locator(".preview-board iframe").locator("body")).to_contain_text(TITLE)
    assert axe_violations(editor, axe_source) == []
    screenshot(editor, "compose")

    editor.get_by_role("button", name="提交审查").click()
    expect(editor.get_by_role("status")).to_have_text("已提交保密审查。")
    item_id = re.search(r"/staff/items/([0-9a-f-]{36})", editor.url)
    assert item_id, editor.url

    # the author cannot approve, and the page says why
    editor.goto(f"/staff/items/{item_id[1]}/review")
    expect(editor.locator("#why-not")).to_contain_text("四眼原则")
    expect(editor.get_by_role("button", name="审查通过")).to_have_count(0)
    assert axe_violations(editor, axe_source) == []

    reviewer = new_page()
    login(reviewer, "bob")
    reviewer.get_by_role("link", name="保密审查").first.click()
    reviewer.get_by_role("link", name=TITLE).click()
    expect(reviewer.locator(".preview-sms .sms-bubble")).to_contain_text(TITLE)
    assert axe_violations(reviewer, axe_source) == []
    screenshot(reviewer, "review")
    reviewer.get_by_role("button", name="审查通过").click()
    expect(reviewer.get_by_role("status")).to_have_text("已审查通过。")
    expect(reviewer.locator(".status")).to_have_text("已发布")

    # the dashboard follows the fan-out: the feeds are written at once, the SMS wait for a
    # gateway (none is configured here), so the feeds' row reaches 100 %
    rss = reviewer.locator('tr[data-channel="rss"]')
    expect(rss.locator("[data-percent]")).to_have_text("100%", timeout=20_000)
    expect(rss.locator("[data-states]")).to_contain_text("已送达 2")
    expect(reviewer.locator('tr[data-channel="sms"]')).to_have_count(0)  # no subscribers
    expect(reviewer.locator("table.list").last).to_contain_text("bob")
    assert axe_violations(reviewer, axe_source) == []
    screenshot(reviewer, "dashboard")

    public = new_page()
    public.goto("/")
    expect(public.get_by_role("link", name=TITLE)).to_be_visible()
    assert axe_violations(public, axe_source) == []
    screenshot(public, "catalogue")


def test_login_page_is_accessible_and_says_what_is_wrong(
    new_page: Callable[[], Any], axe_source: str
) -> None:
    page = new_page()
    page.goto("/staff/")
    expect(page).to_have_url(re.compile(r"/staff/login\?next=/staff/"))
    assert axe_violations(page, axe_source) == []
    screenshot(page, "login")
    page.get_by_label("用户名").fill("alice")
    page.get_by_label("密码").fill("not the password")
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("alert")).to_have_text("用户名或密码错误。")


def test_a_form_posted_without_its_csrf_token_is_refused(
    new_page: Callable[[], Any], live: LiveServer
) -> None:
    page = new_page()
    login(page, "alice")
    compose(page)
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_role("button", name="保存草稿").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("表单已失效")
    items, total = live.call(live.store.list_items(ItemQuery()))
    assert total == 0, items


def test_a_logged_out_session_cookie_no_longer_works(
    new_page: Callable[[], Any], browser: Any, live: LiveServer
) -> None:
    page = new_page()
    login(page, "alice")
    cookies = [c for c in page.context.cookies() if c["name"] == "gk_session"]
    assert len(cookies) == 1 and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Lax"
    page.get_by_role("button", name="退出").click()
    expect(page).to_have_url(re.compile(r"/staff/login"))

    replay = new_page()
    replay.context.add_cookies(cookies)  # the old cookie, replayed
    replay.goto("/staff/")
    expect(replay).to_have_url(re.compile(r"/staff/login"))
    expect(replay.get_by_role("heading", level=1)).to_have_text("工作人员登录")


def test_the_accessibility_check_finds_real_violations(
    new_page: Callable[[], Any], axe_source: str
) -> None:
    """Guards the check itself: a page with an unlabelled field and no language fails it."""
    page = new_page()
    page.set_content("<html><body><form><input type='text'></form></body></html>")
    found = {v["id"] for v in axe_violations(page, axe_source)}
    assert {"label", "html-has-lang"} <= found, found
