"""Issue 16 (A): inputs that used to answer 500 answer a 4xx, and every route answers a
method it does not serve with 405 and an Allow header."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp.test_utils import TestClient, TestServer

from publisher.config import Config
from publisher.models import Role
from publisher.store.sql import SqlStore
from publisher.tokens import same_token, token_present_and_same
from publisher.web import make_app
from publisher.web.keys import STORE
from tests.conftest import Api
from tests.web import create, open_api
from tests.web.test_staff_ui import PASSWORD, new_browser


def test_text_tokens_compare_without_raising() -> None:
    assert same_token("é", "é") and not same_token("é", "e")
    assert not same_token("\udcff", "x")  # a lone surrogate from a malformed query
    assert not token_present_and_same("", "")
    assert token_present_and_same("abc", b"abc")


async def test_non_ascii_dlr_token_is_refused_not_a_500(api: Api) -> None:
    status, _, _ = await api.call("GET", "/sms/dlr?id=1&t=%C3%A9&status=1", who=None)
    assert status == 403


async def test_non_ascii_csrf_tokens_are_refused_not_a_500(api: Api) -> None:
    browser = await new_browser(api.client)
    async with browser.client:
        # each form's page first, so the cookie the token is compared with is set
        for page, path in (("/staff/login", "/staff/login"), ("/subscribe", "/subscribe/sms")):
            status, _, _ = await browser.get(page)
            assert status == 200, page
            resp = await browser.client.post(
                path, data={"csrf_token": "é", "username": "x"}, allow_redirects=False
            )
            assert 400 <= resp.status < 500, (path, resp.status)
    await api.client.app[STORE].add_user("erin", Role.EDITOR, PASSWORD)  # type: ignore[index]
    browser = await new_browser(api.client)
    async with browser.client:
        status, _, _ = await browser.login("erin")
        assert status == 303
        resp = await browser.client.post(
            "/staff/logout", data={"csrf_token": "é"}, allow_redirects=False
        )
        assert 400 <= resp.status < 500, resp.status


async def test_non_ascii_metrics_bearer_is_refused_not_a_500(
    config_factory: Callable[..., Config],
) -> None:
    config = config_factory(METRICS__ALLOW_LOOPBACK="false", METRICS__TOKEN="scrape-s3cret")
    async with open_api(config) as (api, _store):
        headers = {"Authorization": "Bearer é".encode().decode("latin-1")}
        status, _, _ = await api.call("GET", "/metrics", who=None, headers=headers)
        assert status == 401


async def test_a_control_character_in_a_part_name_is_a_4xx(api: Api) -> None:
    item = await create(api)
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="\x05"; filename="a.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
        "%PDF-1.4\n%%EOF\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    status, _, _ = await api.call(
        "POST",
        f"/api/v1/items/{item['id']}/attachments",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert 400 <= status < 500, status


async def test_every_route_answers_an_unknown_method_with_405_and_allow(
    sqlite_store: SqlStore,
) -> None:
    app = make_app(sqlite_store.config, sqlite_store)
    async with TestClient(TestServer(app)) as client:
        for path in ("/staff/login", "/api/v1/items", "/api/v1/openapi.json", "/metrics"):
            for method in ("TRACE", "PATCH", "PUT"):
                resp = await client.request(method, path, allow_redirects=False)
                if resp.status == 405:
                    assert resp.headers.get("Allow"), (method, path)
                else:
                    assert resp.status < 500, (method, path, resp.status)
        resp = await client.request("TRACE", "/staff/login")
        assert resp.status == 405
        allowed = {m.strip() for m in resp.headers["Allow"].split(",")}
        assert {"GET", "POST"} <= allowed


async def test_a_board_is_not_enabled_by_a_number(api: Api) -> None:
    """schemathesis: `"enabled": 0` was taken as false."""
    status, body, _ = await api.call(
        "POST", "/api/v1/boards", who="root-admin", json={"name": "村口", "enabled": 0}
    )
    assert status == 422, body
    assert "enabled" in body["detail"]


async def test_documented_parameters_carry_the_ranges_routes_check(api: Api) -> None:
    status, doc, _ = await api.call("GET", "/api/v1/openapi.json", who=None)
    assert status == 200
    year = next(
        p
        for p in doc["paths"]["/api/v1/calendar/{year}"]["get"]["parameters"]
        if p["name"] == "year"
    )
    assert year["schema"] == {"type": "integer", "minimum": 1900, "maximum": 2200}
