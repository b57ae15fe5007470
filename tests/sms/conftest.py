"""Fixtures of the SMS tests: one real Kannel per session, a config that sends through it,
and the app served on the loopback port Kannel calls back (reports, keywords)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from publisher.config import Config
from publisher.delivery import DeliveryWorker
from publisher.store.sql import SqlStore
from publisher.web import make_app
from tests.conftest import ADMIN, EDITOR, EDITOR2, IN_CI, REVIEWER, REVIEWER2, Api
from tests.conftest import store_on as open_store
from tests.sms import kannel as kn

#: engine settings that keep the tests quick; SMS only, no quiet hours
ENGINE = {
    "CHANNELS__SMS__QUIET_HOURS": "null",
    "CHANNELS__SMS__RETRY_BASE_SECONDS": "0.05",
    "CHANNELS__SMS__RETRY_CAP_SECONDS": "0.2",
    "DELIVERY__POLL_SECONDS": "0.05",
    "DELIVERY__HEARTBEAT_SECONDS": "1",
    **{f"CHANNELS__{name}__ENABLED": "false" for name in ("PORTAL", "RSS", "EMAIL", "BOARD")},
}


@pytest.fixture(scope="session")
def kannel() -> Iterator[kn.Kannel]:
    """bearerbox + smsbox + fakesmsc, once per session. In CI a missing Kannel fails."""
    why = kn.missing()
    if why is not None:
        if IN_CI:
            pytest.fail(f"CI=true but Kannel cannot run: {why}")
        pytest.skip(f"Kannel cannot run: {why}")
    k = kn.start()
    try:
        yield k
    finally:
        kn.stop(k)


def sms_config(config: Config, k: kn.Kannel, **settings: Any) -> Config:
    """`config` sending SMS through Kannel `k`, with reports and keywords to k.app_port."""
    tree = config.model_dump()
    tree["channels"]["sms"]["settings"] = {
        "gateways": [k.gateway()],
        "callback_base_url": f"http://127.0.0.1:{k.app_port}",
        "inbound_secret": kn.INBOUND_SECRET,
        **settings,
    }
    return Config.model_validate(tree)


@asynccontextmanager
async def served(
    store: SqlStore, port: int, worker: DeliveryWorker | None = None
) -> AsyncIterator[Api]:
    """The app on 127.0.0.1:`port` (where Kannel calls back), with staff tokens."""
    tokens = {}
    for actor in (EDITOR, EDITOR2, REVIEWER, REVIEWER2, ADMIN):
        await store.add_user(actor.name, actor.role)
        tokens[actor.name] = await store.create_token(actor.name)
    app = make_app(store.config, store, worker=worker)
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        yield Api(client, tokens)


@pytest.fixture
def sms_store_factory(
    config_factory: Callable[..., Config],
) -> Callable[..., Any]:
    def make(
        k: kn.Kannel, backend: str = "sqlite", env: dict[str, str] | None = None, **settings: Any
    ) -> Any:
        config = config_factory(**(ENGINE | (env or {})))
        return open_store(sms_config(config, k, **settings), backend)

    return make
