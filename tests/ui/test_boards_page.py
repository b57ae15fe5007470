"""The notice-board pages in Chromium: an admin adds a board through the form, finds it
listed with the operator's contact masked, records a pack's posting; axe-core on the
list and the form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from publisher.models import Role
from tests.board.test_packs import _item
from tests.conftest import publish
from tests.ui.conftest import PASSWORD, LiveServer, axe_violations, login, screenshot


def test_admin_adds_a_board_and_records_a_posting(
    new_page: Callable[[], Any], live: LiveServer, axe_source: str
) -> None:
    live.call(live.store.add_user("root", Role.ADMIN, PASSWORD))
    page = new_page()
    login(page, "root")
    page.get_by_role("link", name="公开栏", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("信息公告栏")
    page.get_by_role("link", name="添加公开栏").click()
    assert axe_violations(page, axe_source) == []

    # a bad number re-shows the form with the reason, and nothing is added
    page.get_by_label("公开栏名称").fill("北村")
    page.get_by_label("位置").fill("村委会门口")
    page.get_by_label("纸张").select_option("A3")
    page.get_by_label("管理员手机号").fill("12")
    page.get_by_role("button", name="添加", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("管理员手机号")
    assert axe_violations(page, axe_source) == []
    page.get_by_label("管理员手机号").fill("13800138000")
    page.get_by_role("button", name="添加", exact=True).click()

    expect(page.get_by_role("status")).to_have_text("已添加公开栏。")
    board = page.locator("section.board", has_text="北村")
    expect(board).to_contain_text("138****8000")
    expect(board).to_contain_text("村委会门口")
    expect(page.locator("main")).not_to_contain_text("13800138000")

    # a published item gets the board a print pack; staff record its posting
    live.call(_publish(live))
    row = board.locator("tr[data-pack]")
    for _ in range(120):  # the page does not poll: reload until the worker has sent the pack
        if row.count() and row.locator(".state").inner_text().strip() == "已发送":
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(row.locator(".state")).to_have_text("已发送")
    assert axe_violations(page, axe_source) == []
    screenshot(page, "boards")
    row.get_by_role("button", name="记为已张贴").click()
    expect(page.get_by_role("status")).to_have_text("已登记张贴，张贴单已送达。")
    expect(row.locator(".state")).to_have_text("已送达")
    expect(row).to_contain_text("(root)")


async def _publish(live: LiveServer) -> None:
    await publish(live.store, await _item(live.store))
