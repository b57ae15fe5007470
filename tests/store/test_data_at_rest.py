"""Issue 16 (B): the register's applicant names and the portal endpoints' inline webhook
secrets are stored sealed with the data key; reading code opens them, so the API is the
same; migration 0015 seals the rows written before it."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from alembic import command

from publisher.atrest import is_sealed
from publisher.config import Config
from publisher.delivery import DeliveryWorker
from publisher.fanout import FanOut
from publisher.ledger import Ledger
from publisher.register import ApplicantType, Register, RequestIn
from publisher.store import _alembic_config, current_revision
from publisher.store import schema as t
from publisher.store.sql import SqlStore

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg=="
NAME = "张三丰"


def _portal(config: Config) -> Config:
    tree = config.model_dump()
    tree["channels"]["portal"]["endpoints"] = [
        {"name": "city", "address": "http://127.0.0.1:9/city", "settings": {"secret": SECRET}}
    ]
    return Config.model_validate(tree)


async def _raw(store: SqlStore) -> tuple[list[str | None], list[dict[str, object]]]:
    async with store.read() as conn:
        names = list((await conn.execute(sa.select(t.disclosure_requests.c.applicant))).scalars())
        settings = list(
            (
                await conn.execute(
                    sa.select(t.endpoints.c.settings).where(t.endpoints.c.channel == "portal")
                )
            ).scalars()
        )
    return names, settings


async def _migrate(store: SqlStore, name: str, revision: str) -> None:
    def go(conn: sa.Connection) -> None:
        getattr(command, name)(_alembic_config(conn, store.config.data_key), revision)

    async with store.engine.begin() as conn:
        await conn.run_sync(go)


async def test_applicants_are_sealed_and_read_back(store: SqlStore) -> None:
    register = Register(store)
    made = await register.add(
        RequestIn(
            received_on=date(2026, 3, 2),
            applicant_type=ApplicantType("natural_person"),
            applicant=NAME,
            subject="征地补偿标准",
        ),
        actor="alice",
    )
    assert made.applicant == NAME
    assert (await register.get(made.id)).applicant == NAME
    names, _ = await _raw(store)
    assert names and all(is_sealed(n) and NAME not in str(n) for n in names)


async def test_inline_webhook_secrets_are_stored_sealed(sqlite_store: SqlStore) -> None:
    store = SqlStore(_portal(sqlite_store.config))
    try:
        await FanOut(store, Ledger(store)).ensure_endpoints()
        _, settings = await _raw(store)
        assert settings and "secret" not in settings[0]
        assert SECRET not in str(settings) and is_sealed(settings[0]["secret_sealed"])
        # the channel gets the secret back
        worker = DeliveryWorker(store)
        async with store.read() as conn:
            row = (
                await conn.execute(sa.select(t.endpoints).where(t.endpoints.c.channel == "portal"))
            ).first()
        assert row is not None
        from publisher.atrest import open_settings

        assert open_settings(worker.secrets, row.settings)["secret"] == SECRET
    finally:
        await store.close()


async def test_migration_0015_seals_existing_rows(sqlite_store: SqlStore) -> None:
    store = SqlStore(_portal(sqlite_store.config))
    try:
        await FanOut(store, Ledger(store)).ensure_endpoints()
        register = Register(store)
        made = await register.add(
            RequestIn(
                received_on=date(2026, 3, 2),
                applicant_type=ApplicantType("natural_person"),
                applicant=NAME,
                subject="x",
            ),
            actor="alice",
        )
        await _migrate(store, "downgrade", "0012")
        names, settings = await _raw(store)
        assert names == [NAME] and settings[0] == {"secret": SECRET}  # as before 0015
        await _migrate(store, "upgrade", "head")
        assert await current_revision(store) == "0015"
        names, settings = await _raw(store)
        assert is_sealed(names[0]) and is_sealed(settings[0]["secret_sealed"])
        assert (await Register(store).get(made.id)).applicant == NAME
    finally:
        await store.close()
