"""The admin-only pages in Chromium: an admin disables an account and sets a password
through the users page's forms (with their CSRF tokens), looks a resident up on the
residents' data page (masked address, consent history), exports and erases the data;
axe-core on every state of both pages. The staff pages have no large-type or
high-contrast mode (those are the residents' pages'), so there is one display mode."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from publisher.models import Role
from publisher.recipients import Consent, Recipients
from tests.ui.conftest import PASSWORD, LiveServer, axe_violations, login, screenshot

PHONE = "13812345678"
MASKED = "138****5678"
NEW_PASSWORD = "a brand new secret"


def _row(page: Any, name: str) -> Any:
    return page.locator("table.list tbody tr").filter(
        has=page.get_by_role("cell", name=re.compile(rf"^{name}\b"))
    )


def _admin(new_page: Callable[[], Any], live: LiveServer) -> Any:
    live.call(live.store.add_user("root", Role.ADMIN, PASSWORD))
    page = new_page()
    login(page, "root")
    return page


def test_admin_disables_a_user_and_sets_a_password(
    new_page: Callable[[], Any], live: LiveServer, axe_source: str
) -> None:
    page = _admin(new_page, live)
    page.get_by_role("link", name="用户", exact=True).click()
    expect(page).to_have_url(re.compile(r"/staff/admin/users$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("用户")
    for name in ("alice", "bob", "carol", "root"):
        expect(_row(page, name)).to_have_count(1)
    # one's own account cannot be disabled: no button for it
    expect(_row(page, "root").get_by_role("button", name="停用")).to_have_count(0)
    assert axe_violations(page, axe_source) == []
    screenshot(page, "admin-users")

    # a form whose CSRF token is gone is refused, and nothing changes
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    _row(page, "carol").get_by_role("button", name="停用").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("表单已失效")
    assert not live.call(live.store.get_user("carol")).disabled

    page.goto("/staff/admin/users")
    _row(page, "carol").get_by_role("button", name="停用").click()
    expect(page.get_by_role("status")).to_have_text("账号已停用，其会话和 API 令牌均已终止。")
    expect(_row(page, "carol")).to_contain_text("已停用")
    expect(_row(page, "carol").get_by_role("button", name="停用")).to_have_count(0)
    assert live.call(live.store.get_user("carol")).disabled
    assert axe_violations(page, axe_source) == []

    alice = _row(page, "alice")
    alice.get_by_label("新密码").fill(NEW_PASSWORD)
    alice.get_by_role("button", name="设置密码").click()
    expect(page.get_by_role("status")).to_have_text("密码已设置，该账号的会话已终止。")
    assert axe_violations(page, axe_source) == []

    # the new password works, the old one and the disabled account do not
    other = new_page()
    login(other, "alice", NEW_PASSWORD)
    for name, password in (("alice", PASSWORD), ("carol", PASSWORD)):
        refused = new_page()
        refused.goto("/staff/login")
        refused.get_by_label("用户名").fill(name)
        refused.get_by_label("密码").fill(password)
        refused.get_by_role("button", name="登录").click()
        expect(refused.get_by_role("alert")).to_be_visible()
        expect(refused).to_have_url(re.compile(r"/staff/login"))


def test_admin_looks_up_exports_and_erases_a_subscriber(
    new_page: Callable[[], Any], live: LiveServer, axe_source: str, tmp_path: Path
) -> None:
    live.call(
        Recipients(live.store).subscribe(
            "sms", PHONE, Consent("web_verified", "I agree", source="web 203.0.113.x")
        )
    )
    page = _admin(new_page, live)
    page.get_by_role("link", name="订阅者", exact=True).click()
    expect(page).to_have_url(re.compile(r"/staff/admin/subscribers$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("订阅者")
    assert axe_violations(page, axe_source) == []

    # not found: the page again with the reason
    page.get_by_label("渠道").select_option("sms")
    page.get_by_label("手机号码或电子邮件地址").fill("13900000000")
    page.get_by_role("button", name="查询").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert axe_violations(page, axe_source) == []

    page.get_by_label("渠道").select_option("sms")
    page.get_by_label("手机号码或电子邮件地址").fill(PHONE)
    page.get_by_role("button", name="查询").click()
    found = page.locator("section", has=page.locator("#found-heading"))
    expect(found.get_by_role("heading", level=2)).to_contain_text(MASKED)
    expect(found.get_by_role("heading", name="同意记录")).to_be_visible()
    expect(found.locator("table.list tbody tr")).to_have_count(1)
    expect(found.locator("table.list tbody tr")).to_contain_text("web_verified")
    expect(found.locator("table.list tbody tr")).to_contain_text("web 203.0.113.x")
    # the typed address is never shown again (the field is empty, the page shows it masked)
    assert PHONE not in page.content()
    assert page.get_by_label("手机号码或电子邮件地址").input_value() == ""
    assert axe_violations(page, axe_source) == []
    screenshot(page, "admin-subscribers")

    with page.expect_download() as info:
        found.get_by_role("button", name="导出数据（JSON）").click()
    download = info.value
    assert download.suggested_filename == "subscriber-export.json"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert data == live.call(Recipients(live.store).export(PHONE))
    assert [s["channel"] for s in data["subscriptions"]] == ["sms"]

    # erasing needs the box ticked (the browser insists), then the data goes
    found.get_by_role("checkbox").check()
    found.get_by_role("button", name="删除").click()
    expect(page).to_have_url(re.compile(r"/staff/admin/subscribers\?erased=1$"))
    expect(page.get_by_role("status")).to_be_visible()
    assert live.call(Recipients(live.store).is_suppressed("sms", PHONE))
    assert axe_violations(page, axe_source) == []
