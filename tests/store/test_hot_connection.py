"""The delivery workers' turns on PostgreSQL keep their connection between turns; one the
server dropped (a restart, an administrator's pg_terminate_backend) must not stay kept."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from publisher.config import Config
from tests.conftest import BACKENDS, store_on

POSTGRES = [p for p in BACKENDS if not isinstance(p, str)]


def backend_pid(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


@pytest.mark.parametrize("backend", POSTGRES)
async def test_a_turn_after_the_server_dropped_the_connection_gets_a_fresh_one(
    config: Config, backend: str
) -> None:
    async with store_on(config, backend) as store:
        first = await store.run(backend_pid)
        assert await store.run(backend_pid) == first  # kept between turns
        async with store.engine.connect() as admin:
            await admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            await admin.commit()
        with pytest.raises(sa.exc.DBAPIError):  # that turn fails, and the loop retries
            await store.run(backend_pid)
        again = await store.run(backend_pid)
        assert again != first
        assert await store.run(backend_pid) == again
