"""Issue 18.8: the confirm, manage and unsubscribe pages behind residents' mail links look
like the other resident pages: the same header and display toggles, large buttons in
`form.stack`, the large-type and high-contrast modes, and no English."""

from __future__ import annotations

from typing import Any

import lxml.html
import pytest

from publisher.mail_links import LinkPurpose, MailLinks
from publisher.recipients import Consent, Recipients
from tests.engine.helpers import api_on
from tests.mail.test_subscribe import STORED

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def web_store(mail_store_factory: Any) -> Any:
    return mail_store_factory(9)


async def _pages(api: Any, store: Any) -> dict[str, str]:
    sub = await Recipients(store).subscribe(
        "email", STORED, Consent(method="email_confirmed", text="同意"), categories=["nync"]
    )
    links = MailLinks(store.config)
    return {
        "confirm": "/subscribe/confirm/"
        + links.confirm_token("new.one@example.org", ["nync"], "daily", 3600),
        "manage": "/subscribe/manage/" + links.token(LinkPurpose.MANAGE, sub.id, sub.link_nonce),
        "unsubscribe": "/unsubscribe/"
        + links.token(LinkPurpose.UNSUBSCRIBE, sub.id, sub.link_nonce),
    }


async def test_mail_pages_have_the_resident_layout_and_display_modes(web_store: Any) -> None:
    async with web_store as store, api_on(store) as api:
        pages = await _pages(api, store)
        for name, path in pages.items():
            for cookie, classes in (
                ("", None),
                ("large", "large"),
                ("large.contrast", "large contrast"),
            ):
                resp = await api.client.get(path, headers={"Cookie": f"gk_display={cookie}"})
                assert resp.status == 200, (name, resp.status)
                tree = lxml.html.fromstring(await resp.text())
                assert tree.get("class") == classes, (name, cookie)
                # the header of every resident page, its links real (not "None")
                nav = tree.xpath("//header[@class='site']//nav//a/@href")
                assert len(nav) == 3 and "None" not in nav, nav
                assert "/subscribe" in nav[0]
                # the forms are the resident pages' large-button forms
                forms = tree.xpath("//main//form")
                assert forms and all("stack" in f.get("class", "") for f in forms), name
                assert tree.xpath("//main//form//button"), name
                for check in tree.xpath("//main//input[@type='checkbox' or @type='radio']"):
                    assert check.getparent().get("class") == "check", name
        # the stylesheet gives the mail pages' buttons a size and the contrast mode a colour
        resp = await api.client.get(pages["manage"])
        css = lxml.html.fromstring(await resp.text()).xpath("//style")[0].text
        assert ".mail-page form.stack button" in css and "min-height" in css
        assert "html.contrast form.stack button.secondary" in css


async def test_a_refused_change_says_why_in_chinese(web_store: Any) -> None:
    async with web_store as store, api_on(store) as api:
        pages = await _pages(api, store)
        resp = await api.client.post(
            pages["manage"],
            data=[("action", "save"), ("categories", "nope"), ("frequency", "daily")],
        )
        html = await resp.text()
        assert resp.status == 422 and "unknown category" not in html
        tree = lxml.html.fromstring(html)
        alert = tree.xpath("//main//*[@role='alert']")
        assert alert and "没有" in alert[0].text_content() and "nope" in alert[0].text_content()
