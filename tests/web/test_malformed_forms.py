"""Every route that takes a POST answers a broken body with a 4xx, never a 500: the JSON
API, the resident forms, the email links and the staff pages (logged in, with the
session's CSRF cookie), enumerated from the app so a new route is covered at once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from publisher.config import Config
from tests.web.test_staff_ui import _open, new_browser

PARAMS = re.compile(r"\{([^}:]+)(:[^}]*)?\}")
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
BROKEN_BODIES = [
    (b"--b\r\nbroken", "multipart/form-data; boundary=b"),
    (b"--b\r\nContent-Disposition: form-data\r\n\r\nx", "multipart/form-data; boundary=b"),
    (b"no boundary at all", "multipart/form-data"),
    (b"\xff\xfe=%%%&=&&", "application/x-www-form-urlencoded"),
    (b"{not json", "application/json"),
    (b"\x00\x01\x02", "application/octet-stream"),
]


def post_paths(app: Any) -> list[str]:
    paths = []
    for route in app.router.routes():
        if route.method != "POST" or route.resource is None:
            continue
        canonical = route.resource.canonical
        paths.append(PARAMS.sub(lambda m: "1" if "id" in m[1] else "x", canonical))
    return sorted(set(paths))


@pytest.fixture
async def app_client(config: Config) -> AsyncIterator[Any]:
    """The whole app on a SQLite store with staff alice, bob and carol."""
    async for client, _store in _open(config):
        yield client


async def test_broken_bodies_never_get_a_500(app_client: Any) -> None:
    client = app_client
    paths = post_paths(client.app)
    assert any(p.startswith("/staff/") for p in paths) and any(
        p.startswith("/api/v1/") for p in paths
    )
    staff = await new_browser(client)  # a client of its own: its cookies stay its own
    async with staff.client:
        status, _, _ = await staff.login("alice")
        assert status in (200, 303)
        for path in paths:
            for body, ctype in BROKEN_BODIES:
                anonymous = await client.post(
                    path, data=body, headers={"Content-Type": ctype}, allow_redirects=False
                )
                assert anonymous.status < 500, (path, ctype, anonymous.status)
                logged_in = await staff.client.post(
                    path,
                    data=body,
                    headers={"Content-Type": ctype, "X-CSRF-Token": staff.csrf},
                    allow_redirects=False,
                )
                assert logged_in.status < 500, (path, ctype, logged_in.status)
