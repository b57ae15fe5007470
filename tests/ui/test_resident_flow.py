"""The residents' pages in Chromium: subscribing by web (SMS with its code, email with its
confirmation link) with script turned off, the keyboard alone, and axe-core on the
catalogue, an item and the subscribe page in normal, large-type and high-contrast modes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from publisher.content import ItemCreate, content_from
from publisher.models import Item
from publisher.recipients import Recipients, RecipientStatus
from tests.conftest import EDITOR, item_fields, publish
from tests.ui.conftest import LiveServer, axe_violations, screenshot
from tests.web.test_resident_pages import sent_text

NUMBER = "13800138000"
MASKED = "138****8000"
EMAIL = "wang.wu@example.org"
TITLE = "上余镇2026年农村危房改造补助对象公示"
MODES = {
    "normal": (),
    "large": ("大字版",),
    "contrast": ("高对比度",),
    "both": ("大字版", "高对比度"),
}


@pytest.fixture
def no_script_page(browser: Any, live: LiveServer) -> Iterator[Callable[[], Any]]:
    """Pages in a context where JavaScript is off: what the resident pages must work with."""
    contexts: list[Any] = []

    def make() -> Any:
        context = browser.new_context(base_url=live.url, locale="zh-CN", java_script_enabled=False)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def published_item(live: LiveServer) -> Item:
    async def make() -> Item:
        content = content_from(
            ItemCreate.model_validate(item_fields(title=TITLE, category="nync")), live.config
        )
        item = await live.store.create_item(content, actor=EDITOR)
        return await publish(live.store, item)

    item: Item = live.call(make())
    return item


def code_from_store(live: LiveServer) -> str:
    found = re.search(r"\d{6}", live.call(sent_text(live.store)))
    assert found
    return found.group(0)


def test_a_resident_subscribes_by_sms_and_by_email_without_script(
    no_script_page: Callable[[], Any], live: LiveServer
) -> None:
    page = no_script_page()
    page.goto("/")
    page.get_by_role("link", name="短信订阅").click()
    expect(page).to_have_url(re.compile(r"/subscribe#sms$"))
    sms = page.locator("form[action='/subscribe/sms']")
    sms.get_by_label("手机号码（必填）").fill(NUMBER)
    sms.get_by_label("农业农村").check()
    sms.get_by_role("button", name="发送验证码").click()
    expect(page).to_have_url(re.compile(r"/subscribe/sms/code\?ticket="))
    expect(page.locator("main")).to_contain_text(MASKED)
    assert NUMBER not in page.content() and NUMBER not in page.url
    page.get_by_label("短信中的验证码（6 位数字）").fill(code_from_store(live))
    page.get_by_role("button", name="同意并订阅").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("订阅成功")
    expect(page.locator("main")).to_contain_text(f"{MASKED} 已订阅农业农村的短信")
    sub = live.call(Recipients(live.store).get("sms", NUMBER))
    assert sub.status is RecipientStatus.ACTIVE and sub.categories == ("nync",)

    # email: the form, then the link in the confirmation mail the store holds for sending
    page.goto("/subscribe#email")
    mail = page.locator("form[action='/subscribe/email']")
    mail.get_by_label("电子邮箱（必填）").fill(EMAIL)
    mail.get_by_label("每日摘要").check()
    mail.get_by_role("button", name="发送确认邮件").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("请查收邮件")
    expect(page.locator("main")).to_contain_text("w***@example.org")
    text = json.loads(live.call(sent_text(live.store)))["text"]
    link = re.search(r"https?://[^/\s]+(/subscribe/confirm/[\w.-]+)", text)
    assert link, text
    page.goto(link[1])
    # the page behind the link is a resident page: large type holds here too (适老化)
    page.get_by_role("link", name="大字版").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("确认订阅")
    assert page.evaluate("document.documentElement.className") == "large"
    button = page.get_by_role("button", name="确认订阅")
    assert button.bounding_box()["height"] >= 44  # not the browser's default button
    screenshot(page, "mail-confirm-large")
    button.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("订阅成功")
    sub = live.call(Recipients(live.store).get("email", EMAIL))
    assert sub.status is RecipientStatus.ACTIVE and sub.frequency.value == "daily"
    manage = page.get_by_role("link", name="更改订阅的栏目或频率")
    manage.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("管理邮件订阅")
    assert page.evaluate("document.documentElement.className") == "large"
    screenshot(page, "mail-manage-large")


def test_the_subscribe_form_works_with_the_keyboard_alone(
    new_page: Callable[[], Any], live: LiveServer
) -> None:
    page = new_page()
    page.goto("/subscribe")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "跳到正文"  # the first stop: skip the header
    _assert_focus_visible(page)
    page.keyboard.press("Enter")
    for _ in range(40):  # to the number field, as a keyboard user would get there
        page.keyboard.press("Tab")
        _assert_focus_visible(page)
        if page.evaluate("document.activeElement.id") == "sms-number":
            break
    else:
        pytest.fail("the number field cannot be reached with Tab")
    page.keyboard.type(NUMBER)
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # the first category's box
    page.keyboard.press("Enter")  # submits the form from the checkbox
    expect(page).to_have_url(re.compile(r"/subscribe/sms/code\?ticket="))
    page.keyboard.press("Tab")
    for _ in range(20):
        if page.evaluate("document.activeElement.id") == "code":
            break
        page.keyboard.press("Tab")
    page.keyboard.type(code_from_store(live))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("订阅成功")
    sub = live.call(Recipients(live.store).get("sms", NUMBER))
    assert sub.categories == (live.config.taxonomy[0].slug,)


def _assert_focus_visible(page: Any) -> None:
    style = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert style[0] != "none" and style[1] >= 2, style


@pytest.mark.parametrize("mode", list(MODES))
def test_resident_pages_pass_axe_in_every_display_mode(
    new_page: Callable[[], Any], live: LiveServer, axe_source: str, mode: str
) -> None:
    item = published_item(live)
    page = new_page()
    page.goto("/")
    for toggle in MODES[mode]:  # the header's links, as a resident would switch
        page.get_by_role("link", name=toggle).click()
    classes = page.evaluate("document.documentElement.className")
    assert set(classes.split()) == {
        {"大字版": "large", "高对比度": "contrast"}[t] for t in MODES[mode]
    }
    for path in ("/", f"/items/{item.id}", "/subscribe", "/subscribe/leave"):
        page.goto(path)
        assert page.evaluate("document.documentElement.className") == classes, path
        assert axe_violations(page, axe_source) == [], (mode, path)
        spacing = page.evaluate(
            "(() => { const s = getComputedStyle(document.querySelector('main p'));"
            " return parseFloat(s.lineHeight) / parseFloat(s.fontSize); })()"
        )
        assert spacing >= 1.3, (mode, path, spacing)
    if mode == "normal":
        page.goto("/subscribe")
        screenshot(page, "subscribe")
    elif mode == "large":
        page.goto("/subscribe")
        screenshot(page, "subscribe-large")
    # a form answered with an error is checked too (the alert and the invalid field)
    page.goto("/subscribe")
    page.locator("form[action='/subscribe/sms']").get_by_label("手机号码（必填）").fill("12345")
    page.get_by_role("button", name="发送验证码").click()
    expect(page.get_by_role("alert")).to_contain_text("手机号码格式不正确")
    assert axe_violations(page, axe_source) == [], (mode, "error")


def test_large_type_makes_the_text_larger(new_page: Callable[[], Any]) -> None:
    page = new_page()
    page.goto("/subscribe")
    size = "parseFloat(getComputedStyle(document.querySelector('main p')).fontSize)"
    normal = page.evaluate(size)
    page.get_by_role("link", name="大字版").click()
    assert page.evaluate(size) >= normal * 1.4
    page.get_by_role("link", name="高对比度").click()
    colours = page.evaluate(
        "[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
    )
    assert colours == ["rgb(0, 0, 0)", "rgb(255, 255, 255)"]
