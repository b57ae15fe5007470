"""Stable identities on SMS (issue 14): a code asked for before the number left (TD,
the leave page) cannot bring it back; the number returns only with a code asked for
afterwards. SMS sends no personal links, so codes are all there is to check."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from publisher.config import Config
from publisher.recipients import Consent, Recipients, RecipientStatus
from tests.conftest import BACKENDS
from tests.sms.conftest import ENGINE, open_store
from tests.sms.test_web import NUMBER, app_on, sent_code, web_config
from tests.web import assert_problem

KEYWORD = Consent(method="sms_keyword", text="回复订阅", source="sms")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_code_asked_for_before_leaving_does_not_subscribe_again(
    config_factory: Callable[..., Config], backend: str
) -> None:
    async with (
        open_store(web_config(config_factory(**ENGINE)), backend) as store,
        app_on(store) as api,
    ):
        recipients = Recipients(store)
        await recipients.subscribe("sms", NUMBER, KEYWORD, categories=["nync"])
        ask = {"channel": "sms", "address": NUMBER, "categories": ["czys"]}
        assert (await api.call("POST", "/api/v1/subscribers", who=None, json=ask))[0] == 202
        code = await sent_code(store)
        await recipients.unsubscribe("sms", NUMBER, how="sms_keyword TD")

        verify = {"channel": "sms", "address": NUMBER, "code": code}
        status, body, headers = await api.call(
            "POST", "/api/v1/subscribers/verify", who=None, json=verify
        )
        assert_problem(status, body, headers, 422, "wrong or expired")
        assert (await recipients.get("sms", NUMBER)).status is RecipientStatus.UNSUBSCRIBED
        assert await recipients.is_suppressed("sms", NUMBER)

        # a code asked for now does
        assert (await api.call("POST", "/api/v1/subscribers", who=None, json=ask))[0] == 202
        status, body, _ = await api.call(
            "POST",
            "/api/v1/subscribers/verify",
            who=None,
            json=verify | {"code": await sent_code(store)},
        )
        assert status == 200, body
        sub = await recipients.get("sms", NUMBER)
        assert sub.status is RecipientStatus.ACTIVE and sub.categories == ("czys",)
        assert not await recipients.is_suppressed("sms", NUMBER)
