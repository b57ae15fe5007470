"""Two-step verification in Chromium, under the staff pages' CSP: the QR code on the
两步验证 page is read back from a screenshot (zbar), the code it yields turns TOTP on,
the recovery codes are shown, and the next login asks for a code before the staff
pages open. axe-core on the set-up and code pages."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
from playwright.sync_api import expect

from publisher.totp import time_step
from tests.board.conftest import need_zbar
from tests.ui.conftest import PASSWORD, LiveServer, axe_violations, login, screenshot


def test_enrol_from_the_qr_code_then_log_in_with_a_code(
    new_page: Callable[[], Any], live: LiveServer, axe_source: str
) -> None:
    pyzbar = need_zbar()
    from PIL import Image

    page = new_page()
    login(page, "alice")
    page.get_by_role("link", name="两步验证").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("两步验证")
    qr = page.locator("figure.qr svg")
    expect(qr).to_be_visible()
    assert axe_violations(page, axe_source) == []
    screenshot(page, "totp-setup")
    decoded = pyzbar.decode(Image.open(io.BytesIO(qr.screenshot())))
    assert len(decoded) == 1
    uri = decoded[0].data.decode()
    assert uri.startswith("otpauth://totp/") and "alice" in uri
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    # the key shown as text is the same
    assert page.locator("code.secret").inner_text().replace(" ", "") == secret
    otp = pyotp.TOTP(secret)
    page.get_by_label("验证码").fill(otp.generate_otp(time_step(datetime.now(UTC))))
    page.get_by_role("button", name="启用").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("恢复码")
    expect(page.locator("ul.recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="继续").click()
    page.wait_for_url("**/staff/")
    page.get_by_role("button", name="退出").click()

    page.goto("/staff/login")
    page.get_by_label("用户名").fill("alice")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"/staff/login/code"))
    # nothing opens before the code
    page.goto("/staff/")
    page.wait_for_url(re.compile(r"/staff/login/code$"))
    expect(page.get_by_role("navigation")).to_have_count(0)
    assert axe_violations(page, axe_source) == []
    # the enrolment used the current step: the next one is within the window
    page.get_by_label("验证码").fill(otp.generate_otp(time_step(datetime.now(UTC)) + 1))
    page.get_by_role("button", name="验证").click()
    page.wait_for_url("**/staff/")
    expect(page.get_by_role("link", name="两步验证")).to_be_visible()
