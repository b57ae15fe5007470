"""A bounded schemathesis run against the app served on loopback: every check
(`--checks all`, with the repository's schemathesis.toml), a fixed seed and a few
hundred requests, so a route that answers 500 or outside its documented responses is
caught here. The long run (≥ 10,000 requests) and its figures are in docs/security.md."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from publisher.config import Config
from publisher.models import Role
from publisher.store import upgrade
from publisher.store.sql import SqlStore
from publisher.web import make_app
from tests.conftest import REPO, dry_run_channels

pytest.importorskip("schemathesis")


def _cli() -> list[str]:
    here = Path(sys.executable).with_name("schemathesis")
    if here.exists():
        return [str(here)]
    found = shutil.which("schemathesis")
    assert found, "schemathesis is in the test extras"
    return [found]


async def test_schemathesis_finds_nothing(config: Config, tmp_path: Path) -> None:
    # SMS and email to dry-run outboxes: an unconfigured channel answers 503 by design
    store = SqlStore(dry_run_channels(config, tmp_path / "outbox"))
    await upgrade(store)
    await store.add_user("fuzz-admin", Role.ADMIN)
    token = await store.create_token("fuzz-admin")
    server = TestServer(make_app(store.config, store), host="127.0.0.1")
    await server.start_server()
    try:
        report = tmp_path / "schemathesis.ndjson"
        proc = await asyncio.create_subprocess_exec(
            *_cli(),
            "--no-color",
            "--config-file",
            str(REPO / "schemathesis.toml"),
            "run",
            str(server.make_url("/api/v1/openapi.json")),
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "5",
            "--seed",
            "16",
            "--phases",
            "fuzzing",
            "--max-time",
            "60",
            "--workers",
            "1",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,  # its caches (.schemathesis, .hypothesis) land there
            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    finally:
        await server.close()
        await store.close()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    generated = re.search(r"(\d+) generated", text)
    assert generated and int(generated[1]) >= 250, text[-2000:]  # it did exercise the API
