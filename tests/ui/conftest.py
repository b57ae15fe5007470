"""One Chromium per test session (Debian's /usr/bin/chromium, headless; no browser is ever
downloaded), the app served on a loopback port from a thread with a real SQLite store,
the scheduler and a delivery worker, and axe-core from the npm registry.

Without Chromium (or without axe-core and no network) these tests are skipped with the
reason, except in CI (CI=true), where that fails the run instead.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import tarfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from publisher.config import Config, load_config
from publisher.delivery import DeliveryWorker
from publisher.models import Role
from publisher.scheduler import PublicationScheduler
from publisher.store import upgrade
from publisher.store.sql import SqlStore
from publisher.web import make_app
from tests.conftest import IN_CI, REPO, dry_run_channels

CHROMIUM = Path(os.environ.get("PUBLISHER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_VERSION = "4.10.2"
AXE_META = f"https://registry.npmjs.org/axe-core/{AXE_VERSION}"
CACHE = Path(os.environ.get("PUBLISHER_TEST_CACHE", Path.home() / ".cache" / "gongkai-publisher"))
PASSWORD = "a long password"
USERS = {"alice": Role.EDITOR, "carol": Role.EDITOR, "bob": Role.REVIEWER}
#: where the flow test saves screenshots of the main pages (`make screenshots`)
SCREENSHOTS = os.environ.get("PUBLISHER_SCREENSHOTS")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


# package scope: sync Playwright runs its own event loop in this thread while it is open,
# which must be gone before the asyncio tests of other packages start theirs
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium; `make system-deps`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


class LiveServer:
    """`publisher serve` in a thread: app, scheduler and worker on a loopback port."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)

    async def _start(self) -> None:
        from aiohttp import web

        self.store = SqlStore(self.config)
        await upgrade(self.store)
        for name, role in USERS.items():
            await self.store.add_user(name, role, PASSWORD)
        self.scheduler = PublicationScheduler(self.store, self.config.scheduler.sweep_seconds)
        self.worker = DeliveryWorker(self.store)
        app = make_app(self.config, self.store, scheduler=self.scheduler, worker=self.worker)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        await self.scheduler.start()
        await self.worker.start()

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop (to read or change the store)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def _stop() -> None:
            await self.scheduler.stop()
            await self.worker.stop()
            await self.runner.cleanup()
            await self.store.close()

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    environ = {
        "PUBLISHER__STORAGE__URL": f"sqlite:///{tmp_path}/publisher.db",
        "PUBLISHER__STORAGE__ATTACHMENTS_DIR": str(tmp_path / "attachments"),
        "PUBLISHER__STORAGE__FEEDS_DIR": str(tmp_path / "feeds"),
        "PUBLISHER__SECURITY__DATA_KEY": "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0uLi4uLi4uLi4=",
        "PUBLISHER__SECURITY__DATA_KEY_FILE": "",
        "PUBLISHER__DELIVERY__POLL_SECONDS": "0.1",
        "PUBLISHER__SCHEDULER__SWEEP_SECONDS": "1",
    }
    # SMS and email send to dry-run outboxes: the subscribe forms are offered and work
    server = LiveServer(
        dry_run_channels(load_config(REPO / "config.yaml", environ), tmp_path / "outbox")
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_page(browser: Any, live: LiveServer) -> Iterator[Callable[[], Any]]:
    """Pages in fresh browser contexts (each its own cookie jar), closed after the test."""
    contexts: list[Any] = []

    def make() -> Any:
        context = browser.new_context(base_url=live.url, locale="zh-CN")
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def login(page: Any, name: str, password: str = PASSWORD) -> None:
    page.goto("/staff/login")
    page.get_by_label("用户名").fill(name)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/staff/")


# -- axe-core -----------------------------------------------------------------------------


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        data: bytes = resp.read()
    return data


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js from the npm registry's tarball, checked against the registry's sha512
    integrity, cached after the first download."""
    cached = CACHE / f"axe-core-{AXE_VERSION}.min.js"
    if cached.exists():
        return cached.read_text(encoding="utf-8")
    try:
        meta = json.loads(_fetch(AXE_META))
        integrity = meta["dist"]["integrity"]
        tarball = _fetch(meta["dist"]["tarball"])
    except (OSError, ValueError, KeyError) as exc:
        _unavailable(f"axe-core {AXE_VERSION} could not be fetched from the npm registry: {exc}")
    algo, _, expected = integrity.partition("-")
    assert algo == "sha512", integrity
    actual = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    assert actual == expected, "axe-core tarball does not match the registry's integrity"
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile("package/axe.min.js")
        assert member is not None
        source = member.read().decode("utf-8")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(source, encoding="utf-8")
    tmp.replace(cached)
    return source


def axe_violations(page: Any, source: str) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(source)  # through the DevTools protocol: the page's CSP does not apply
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
