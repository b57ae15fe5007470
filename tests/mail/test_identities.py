"""Stable identities (issue 14): a subscriber id is never given twice, the links in a mail
act on the person it was sent to or on no one, and a confirmation link works once, only
for an address that has not left or been erased since it was issued."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from alembic import command

from publisher.backup import backup, restore
from publisher.errors import NotFound
from publisher.mail_links import LinkPurpose, MailLinks
from publisher.recipients import Consent, Recipients, RecipientStatus, import_subscribers
from publisher.store import schema as t
from publisher.store import upgrade
from publisher.store.sql import SqlStore
from tests.conftest import BACKENDS, Api, publish
from tests.engine.helpers import api_on, eventually, running, wait_channel_settled
from tests.mail.conftest import SmtpSink
from tests.mail.test_channel import email_item
from tests.mail.test_subscribe import consents
from tests.store.test_backup import fresh_store
from tests.store.test_migrations import _alembic

FIRST = "first@example.org"
SECOND = "second@example.org"
THIRD = "third@example.org"
CONFIRMED = Consent(method="email_confirmed", text="同意")


async def _status(store: SqlStore, address: str) -> RecipientStatus:
    return (await Recipients(store).get("email", address)).status


async def _one_click(api: Api, path: str) -> Any:
    api.client.session.cookie_jar.clear()
    return await api.client.post(path, data={"List-Unsubscribe": "One-Click"})


async def _refused_link(api: Any, path: str) -> None:
    """GET and POST of a dead unsubscribe / manage link: the Chinese "no longer valid" page."""
    for method in ("GET", "POST"):
        resp = await api.client.request(method, path)
        page = await resp.text()
        assert resp.status == 404, (method, path)
        assert resp.content_type == "text/html" and "已失效" in page, page


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_erased_subscribers_id_and_links_never_reach_the_next_subscriber(
    mail_store_factory: Any, smtp_sink: tuple[SmtpSink, int], backend: str
) -> None:
    sink, port = smtp_sink
    async with (
        mail_store_factory(port, backend) as store,
        running(store) as worker,
        api_on(store, worker) as api,
    ):
        recipients = Recipients(store)
        first = await recipients.subscribe("email", FIRST, CONFIRMED)
        second = await recipients.subscribe("email", SECOND, CONFIRMED)
        item = await publish(store, await email_item(store, title="第一条"))
        worker.wake()
        await wait_channel_settled(store, item.id, "email")
        [to_first] = [m.parsed() for m in sink.to(FIRST)]
        [to_second] = [m.parsed() for m in sink.to(SECOND)]
        first_leave = urlsplit(to_first["List-Unsubscribe"].strip("<>")).path
        second_leave = urlsplit(to_second["List-Unsubscribe"].strip("<>")).path
        token = MailLinks(store.config).token(LinkPurpose.MANAGE, second.id, second.link_nonce)
        second_manage = f"/subscribe/manage/{token}"

        # the subscriber with the highest id is erased; someone new subscribes
        assert await recipients.erase(SECOND) == 1
        third = await recipients.subscribe("email", THIRD, CONFIRMED)
        assert third.id != second.id and third.id > second.id
        assert third.link_nonce != second.link_nonce

        # the erased resident's links show a Chinese page and touch no one
        await _refused_link(api, second_leave)
        await _refused_link(api, second_manage)
        resp = await _one_click(api, second_leave)
        assert resp.status == 404
        assert await _status(store, THIRD) is RecipientStatus.ACTIVE
        # nor does a link signed over the id alone (as before 0010) work for the new row
        legacy = MailLinks(store.config)._mac(LinkPurpose.UNSUBSCRIBE, third.id, None)
        await _refused_link(api, f"/unsubscribe/{third.id}.{legacy}")

        # the first resident's old link still lets them leave (RFC 8058 one-click)
        resp = await _one_click(api, first_leave)
        assert resp.status == 200 and "您已退订" in await resp.text()
        assert await _status(store, FIRST) is RecipientStatus.UNSUBSCRIBED
        assert await _status(store, THIRD) is RecipientStatus.ACTIVE

        # the new subscriber gets the next item, with links of their own
        later = await publish(store, await email_item(store, title="第二条"))
        worker.wake()
        await wait_channel_settled(store, later.id, "email")
        await eventually(lambda: _has(sink, THIRD), what="the item to the new subscriber")
        [to_third] = [m.parsed() for m in sink.to(THIRD)]
        third_leave = urlsplit(to_third["List-Unsubscribe"].strip("<>")).path
        assert third_leave != second_leave
        resp = await _one_click(api, third_leave)
        assert resp.status == 200
        assert await _status(store, THIRD) is RecipientStatus.UNSUBSCRIBED
        assert first.id < second.id < third.id


async def _has(sink: SmtpSink, address: str) -> bool:
    return bool(sink.to(address))


# -- confirmation links ------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def web_store(mail_store_factory: Any, request: pytest.FixtureRequest) -> Any:
    """A store for the web-only checks (no SMTP server is reached: port 9)."""
    return mail_store_factory(9, request.param)


def _confirm_token(store: SqlStore, address: str = FIRST, **kw: Any) -> str:
    return MailLinks(store.config).confirm_token(address, ["nync"], "daily", 48 * 3600, **kw)


async def _confirm(api: Api, token: str) -> tuple[int, str]:
    resp = await api.client.post(f"/subscribe/confirm/{token}")
    return resp.status, await resp.text()


async def _assert_refused(api: Api, token: str) -> None:
    """The confirmation page and its button both refuse, on the "no longer valid" page that
    offers a fresh subscription."""
    for method in ("GET", "POST"):
        resp = await api.client.request(method, f"/subscribe/confirm/{token}")
        page = await resp.text()
        assert resp.status == 410, (method, page)
        assert "链接已失效" in page and "/subscribe#email" in page and "重新订阅" in page


async def _unsubscribe_link(store: SqlStore, address: str) -> str:
    sub = await Recipients(store).get("email", address)
    return "/unsubscribe/" + MailLinks(store.config).token(
        LinkPurpose.UNSUBSCRIBE, sub.id, sub.link_nonce
    )


async def test_a_confirmation_link_from_before_a_one_click_unsubscribe_is_refused(
    web_store: Any,
) -> None:
    async with web_store as store, api_on(store) as api:
        used, spare = _confirm_token(store), _confirm_token(store)  # asked twice
        assert (await _confirm(api, used))[0] == 200
        resp = await _one_click(api, await _unsubscribe_link(store, FIRST))
        assert resp.status == 200
        await _assert_refused(api, spare)
        assert await _status(store, FIRST) is RecipientStatus.UNSUBSCRIBED
        assert await Recipients(store).is_suppressed("email", FIRST)
        sub = await Recipients(store).get("email", FIRST)
        assert len(await consents(store, sub.id)) == 1


async def test_a_confirmation_link_from_before_an_erasure_is_refused(web_store: Any) -> None:
    async with web_store as store, api_on(store) as api:
        used, spare = _confirm_token(store), _confirm_token(store)
        assert (await _confirm(api, used))[0] == 200
        assert await Recipients(store).erase(FIRST) == 1
        await _assert_refused(api, spare)
        await _assert_refused(api, used)
        with pytest.raises(NotFound):
            await Recipients(store).get("email", FIRST)
        assert await Recipients(store).is_suppressed("email", FIRST)
        async with store.read() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(t.consents)) == 0

        # only a fresh confirmation by the address itself brings it back
        status, page = await _confirm(api, _confirm_token(store))
        assert status == 200, page
        assert await _status(store, FIRST) is RecipientStatus.ACTIVE
        assert not await Recipients(store).is_suppressed("email", FIRST)


async def test_a_confirmation_link_works_once(web_store: Any) -> None:
    async with web_store as store, api_on(store) as api:
        token = _confirm_token(store)
        assert (await _confirm(api, token))[0] == 200
        await _assert_refused(api, token)
        sub = await Recipients(store).get("email", FIRST)
        assert len(await consents(store, sub.id)) == 1
        async with store.read() as conn:
            [kept] = (await conn.execute(sa.select(t.used_confirmations))).all()
        assert token not in kept.token_hash  # a hash, kept until the link would expire
        assert kept.expires_at > datetime.now(UTC) + timedelta(hours=47)


async def test_a_fresh_confirmation_after_unsubscribing_subscribes_again(web_store: Any) -> None:
    async with web_store as store, api_on(store) as api:
        assert (await _confirm(api, _confirm_token(store)))[0] == 200
        leave = await _unsubscribe_link(store, FIRST)
        assert (await _one_click(api, leave)).status == 200
        assert await _status(store, FIRST) is RecipientStatus.UNSUBSCRIBED

        fresh = _confirm_token(store)
        resp = await api.client.get(f"/subscribe/confirm/{fresh}")
        assert resp.status == 200 and "确认订阅" in await resp.text()
        status, page = await _confirm(api, fresh)
        assert status == 200 and "订阅成功" in page
        assert await _status(store, FIRST) is RecipientStatus.ACTIVE
        assert not await Recipients(store).is_suppressed("email", FIRST)
        # the same subscriber (same id, same links): the old unsubscribe link still works
        assert leave == await _unsubscribe_link(store, FIRST)
        assert (await _one_click(api, leave)).status == 200
        assert await _status(store, FIRST) is RecipientStatus.UNSUBSCRIBED


async def test_an_expired_used_link_is_forgotten_when_the_next_one_is_used(
    web_store: Any,
) -> None:
    async with web_store as store, api_on(store) as api:
        old = _confirm_token(store, THIRD, now=time.time() - 48 * 3600 + 2)
        assert (await _confirm(api, old))[0] == 200
        async with store.write() as conn:  # as if its time were up
            await conn.execute(t.used_confirmations.update().values(expires_at=datetime.now(UTC)))
        assert (await _confirm(api, _confirm_token(store)))[0] == 200
        async with store.read() as conn:
            assert (
                await conn.scalar(sa.select(sa.func.count()).select_from(t.used_confirmations)) == 1
            )


# -- the migration ----------------------------------------------------------------------------


def _downgrade(connection: sa.Connection, revision: str) -> None:
    command.downgrade(_alembic(connection), revision)


def _seed_0009(connection: sa.Connection) -> None:
    """Subscribers as the 0009 schema held them: 1 and 2 with their ids from the start, 3 a
    reused id (the ledger names r:3 before the row was made), 5 erased (ledger only)."""
    day = datetime(2026, 1, 1)
    old = sa.MetaData()
    recipients, consents, deliveries = (
        sa.Table(name, old, autoload_with=connection)
        for name in ("recipients", "consents", "deliveries")
    )
    for rid, n in ((1, 1), (2, 2), (3, 10)):
        at = day + timedelta(days=n)
        connection.execute(
            recipients.insert().values(
                id=rid, channel="email", address_hash=f"{rid:064d}", address_enc="sealed",
                categories=[], status="active", frequency="immediate", created_at=at,
                updated_at=at, bounces=0,
            )
        )  # fmt: skip
        connection.execute(
            consents.insert().values(
                recipient_id=rid, given_at=at, method="email_confirmed", text="同意"
            )
        )
    suppressions = sa.Table("suppressions", old, autoload_with=connection)
    connection.execute(  # an erased address
        suppressions.insert().values(
            channel="email", address_hash="e" * 64, reason="erased", created_at=day
        )
    )
    for subject, target, n in (("event:1", "r:3", 3), ("event:1", "r:5", 3), ("event:2", "r:1", 4)):
        at = day + timedelta(days=n)
        connection.execute(
            deliveries.insert().values(
                subject=subject, channel="email", target=target, state="sent", priority=0,
                bypass_quiet=False, attempts=1, due_at=at, created_at=at, updated_at=at,
            )
        )  # fmt: skip


def _after(connection: sa.Connection) -> dict[str, Any]:
    rows = connection.execute(sa.select(t.recipients).order_by(t.recipients.c.id)).all()
    indexes = {i["name"] for i in sa.inspect(connection).get_indexes("recipients")}
    kept = connection.execute(sa.select(t.consents.c.recipient_id)).scalars().all()
    floors = connection.execute(sa.select(t.confirm_floors.c.address_hash)).scalars().all()
    return {"rows": rows, "indexes": indexes, "consents": sorted(kept), "floors": sorted(floors)}


async def test_the_migration_keeps_subscribers_and_never_reuses_an_id(store: SqlStore) -> None:
    async with store.engine.begin() as conn:
        await conn.run_sync(_downgrade, "0009")
    async with store.engine.begin() as conn:
        await conn.run_sync(_seed_0009)
    await upgrade(store)
    async with store.engine.connect() as conn:
        after = await conn.run_sync(_after)
    rows = after["rows"]
    assert [r.id for r in rows] == [1, 2, 3]
    assert after["consents"] == [1, 2, 3]
    assert "ix_recipients_channel_status" in after["indexes"]
    # confirmation links issued before the upgrade no longer bring back a known address
    assert after["floors"] == sorted([f"{rid:064d}" for rid in (1, 2, 3)] + ["e" * 64])
    assert len({r.link_nonce for r in rows}) == 3 and all(len(r.link_nonce) == 22 for r in rows)
    # old links (over the id alone) stay good where the id never named anyone else
    assert [bool(r.legacy_links) for r in rows] == [True, True, False]
    links = MailLinks(store.config)
    old = {r.id: f"{r.id}.{links._mac(LinkPurpose.UNSUBSCRIBE, r.id, None)}" for r in rows}
    assert [
        links.matches(LinkPurpose.UNSUBSCRIBE, old[r.id], r.link_nonce, legacy=r.legacy_links)
        for r in rows
    ] == [True, True, False]

    # the next subscriber gets an id past every one ever used (5, erased, is in the ledger)
    new = await Recipients(store).subscribe("email", FIRST, CONFIRMED)
    assert new.id == 6
    await Recipients(store).erase(FIRST)
    again = await Recipients(store).subscribe("email", SECOND, CONFIRMED)
    assert again.id == 7


# -- a restore ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", BACKENDS)
async def test_a_restored_store_never_gives_an_erased_subscribers_id_again(
    store: SqlStore, tmp_path: Path, target: str
) -> None:
    recipients = Recipients(store)
    await recipients.subscribe("email", FIRST, CONFIRMED)
    second = await recipients.subscribe("email", SECOND, CONFIRMED)
    now = datetime.now(UTC)
    async with store.write() as conn:  # the ledger remembers a mail to the second
        await conn.execute(
            t.deliveries.insert().values(
                subject="event:1", channel="email", target=f"r:{second.id}", state="sent",
                priority=0, bypass_quiet=False, attempts=1, due_at=now, created_at=now,
                updated_at=now,
            )
        )  # fmt: skip
    await recipients.erase(SECOND)
    archive = tmp_path / "backup.tar.gz"
    await backup(store, archive)
    async with fresh_store(target, tmp_path / "restored") as fresh:
        await restore(fresh, archive)
        third = await Recipients(fresh).subscribe("email", THIRD, CONFIRMED)
        assert third.id > second.id


async def test_every_subscriber_gets_a_link_nonce_of_its_own(store: SqlStore) -> None:
    """Imports (many rows in one statement) too."""
    recipients = Recipients(store)
    addresses = [f"r{i}@example.org" for i in range(5)]
    assert await import_subscribers(recipients, "email", addresses, CONFIRMED) == 5
    await recipients.subscribe("email", FIRST, CONFIRMED)
    async with store.read() as conn:
        nonces = (await conn.execute(sa.select(t.recipients.c.link_nonce))).scalars().all()
    assert len(nonces) == len(set(nonces)) == 6 and all(len(n) == 22 for n in nonces)
