"""Residents as targets: who gets what, consent, opting out, and erasure that leaves only a
keyed hash behind — and that hash keeps the number from ever being messaged again."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from publisher.errors import ValidationFailed
from publisher.recipients import (
    Consent,
    Recipients,
    RecipientStatus,
    import_subscribers,
)
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.engine.conftest import CONSENT, phone, states, wait_settled
from tests.engine.helpers import (
    ledger_rows,
    new_sms_item,
    published_item,
    rows_by_address,
    run_cli,
    running,
    sqlite_file_bytes,
)

RESIDENT = phone(1)  # +8613800000001
NATIONAL = RESIDENT[3:]  # 13800000001, as a resident would type it
WEB = Consent(
    method="web_verified",
    text="我同意接收上余镇政府信息公开短信，回复TD退订",
    source="203.0.113.* / 138****0001",
)
STAFF = Consent(method="staff", text="居民在村委会登记", source="村委会")


async def _recipient_rows(store: SqlStore) -> list[Any]:
    async with store.read() as conn:
        return list((await conn.execute(sa.select(t.recipients))).all())


async def _consent_rows(store: SqlStore) -> list[Any]:
    async with store.read() as conn:
        return list((await conn.execute(sa.select(t.consents))).all())


async def _suppressions(store: SqlStore) -> list[Any]:
    async with store.read() as conn:
        return list((await conn.execute(sa.select(t.suppressions))).all())


# -- erased, then never messaged again ---------------------------------------------------------------


async def test_erased_number_that_opted_out_is_never_messaged_again(
    engine_store: SqlStore, gateway: Any
) -> None:
    rec, _ = gateway
    recipients = Recipients(engine_store)
    neighbour = phone(2)
    await recipients.subscribe("sms", neighbour, STAFF)
    me = await recipients.subscribe("sms", NATIONAL, WEB)
    assert me.address == RESIDENT and me.status is RecipientStatus.ACTIVE

    await recipients.unsubscribe("sms", RESIDENT, "sms_keyword")  # replied TD
    assert (await recipients.get("sms", RESIDENT)).status is RecipientStatus.UNSUBSCRIBED
    assert await recipients.erase(NATIONAL) == 1

    # only the keyed-hash suppression is left: no subscriber row, no consent, no address
    rows = await _recipient_rows(engine_store)
    assert [r.id for r in rows] != [] and me.id not in [r.id for r in rows]
    assert all(c.recipient_id != me.id for c in await _consent_rows(engine_store))
    [entry] = await _suppressions(engine_store)
    assert entry.channel == "sms" and entry.reason == "opted_out"
    assert RESIDENT not in entry.address_hash and NATIONAL not in entry.address_hash
    assert await recipients.export(RESIDENT) == {"subscriptions": []}

    # staff sign the number up again: it stays suppressed
    again = await recipients.subscribe("sms", RESIDENT, STAFF)
    assert again.status is RecipientStatus.SUPPRESSED
    assert await recipients.is_suppressed("sms", RESIDENT)
    # and a list import does not add it either (nor the neighbour twice)
    assert await import_subscribers(recipients, "sms", [RESIDENT, neighbour], CONSENT) == 0

    async with running(engine_store):
        first = await published_item(engine_store, title="关于冬季农田水利建设的通知")
        await wait_settled(engine_store, first.id)
        assert RESIDENT not in rec.per_target
        assert rec.per_target[neighbour] == 1
        assert set(await rows_by_address(engine_store, first.id)) == {neighbour}

        # the resident signs up again from the phone itself: that lifts the suppression
        back = await recipients.subscribe("sms", RESIDENT, WEB)
        assert back.status is RecipientStatus.ACTIVE
        assert not await recipients.is_suppressed("sms", RESIDENT)
        second = await published_item(engine_store, title="关于春耕备耕工作的通知")
        await wait_settled(engine_store, second.id)
    assert rec.per_target[RESIDENT] == 1
    assert rec.per_target[neighbour] == 2
    assert await states(engine_store, second.id) == {"sent": 2}


async def test_a_suppressed_number_is_not_brought_back_by_staff(engine_store: SqlStore) -> None:
    recipients = Recipients(engine_store)
    await recipients.subscribe("sms", RESIDENT, STAFF)
    await recipients.suppress("sms", RESIDENT, "complaint")
    for method in ("staff", "import", "web"):  # none given from the phone itself
        r = await recipients.subscribe("sms", RESIDENT, Consent(method=method, text="同意"))
        assert r.status is RecipientStatus.SUPPRESSED, method
    assert await import_subscribers(recipients, "sms", [RESIDENT], CONSENT) == 0
    # a verified consent does
    r = await recipients.subscribe("sms", RESIDENT, Consent(method="sms_keyword", text="DY"))
    assert r.status is RecipientStatus.ACTIVE
    # every consent is on record, the refused ones too
    assert len(await _consent_rows(engine_store)) == 5


# -- export and erasure (PIPL) ------------------------------------------------------------------------


async def test_export_shows_consents_and_deliveries(engine_store: SqlStore, gateway: Any) -> None:
    recipients = Recipients(engine_store)
    await recipients.subscribe("sms", RESIDENT, WEB, categories=["nync", "tdzs"])
    item = await new_sms_item(engine_store)
    async with running(engine_store):
        from tests.conftest import publish

        await publish(engine_store, item)
        await wait_settled(engine_store, item.id)
    await recipients.unsubscribe("sms", RESIDENT, "web")

    data = await recipients.export(NATIONAL)
    [sub] = data["subscriptions"]
    assert sub["channel"] == "sms" and sub["address"] == RESIDENT
    assert sub["categories"] == ["nync", "tdzs"]
    assert sub["status"] == "unsubscribed"
    [consent] = sub["consents"]
    assert consent["method"] == "web_verified"
    assert consent["text"] == WEB.text
    assert consent["source"] == WEB.source
    assert consent["given_at"] and consent["ended_at"] and consent["ended_how"] == "web"
    [delivery] = sub["deliveries"]
    assert delivery["item_id"] == item.id
    assert delivery["state"] == "sent" and delivery["sent_at"]
    json.dumps(data)  # printable as it is


async def test_erasure_leaves_no_address_in_the_database(
    engine_store: SqlStore, gateway: Any
) -> None:
    rec, _ = gateway
    recipients = Recipients(engine_store)
    await recipients.subscribe("sms", RESIDENT, WEB)
    await recipients.subscribe("sms", phone(2), WEB)
    item = await published_item(engine_store)
    async with running(engine_store):
        await wait_settled(engine_store, item.id)
    assert rec.per_target[RESIDENT] == 1

    def plain_in_file() -> bool:
        data = sqlite_file_bytes(engine_store)
        return any(
            form in data
            for form in (RESIDENT.encode(), NATIONAL.encode(), NATIONAL.encode("utf-16-le"))
        )

    # encrypted at rest from the start…
    assert not plain_in_file()
    sealed = next(
        r.address_enc
        for r in await _recipient_rows(engine_store)
        if recipients.box.open(r.address_enc) == RESIDENT
    )
    assert sealed.encode() in sqlite_file_bytes(engine_store)
    assert await recipients.erase(RESIDENT) == 1
    # …and erasure overwrites even the ciphertext (secure_delete, WAL checkpoint): a
    # stolen key plus the file must not bring the number back
    assert sealed.encode() not in sqlite_file_bytes(engine_store)
    # …and after erasure the subscriber and consent rows are gone too
    recipients_left = await _recipient_rows(engine_store)
    assert len(recipients_left) == 1
    assert recipients.box.open(recipients_left[0].address_enc) == phone(2)
    assert len(await _consent_rows(engine_store)) == 1
    assert not plain_in_file()
    # the ledger row stays, so counts remain right, but shows no one
    rows = await ledger_rows(engine_store, item.id)
    assert len(rows) == 2 and {r.state for r in rows} == {"sent"}
    assert set(await rows_by_address(engine_store, item.id)) == {phone(2)}
    assert await recipients.erase(RESIDENT) == 0  # nothing left to erase


async def test_unknown_category_is_refused(engine_store: SqlStore) -> None:
    with pytest.raises(ValidationFailed, match="火星"):
        await Recipients(engine_store).subscribe("sms", RESIDENT, WEB, categories=["火星"])
    assert await _recipient_rows(engine_store) == []


# -- who gets what --------------------------------------------------------------------------------------


async def test_category_filters(engine_store: SqlStore, gateway: Any) -> None:
    rec, _ = gateway
    recipients = Recipients(engine_store)
    land, everything, farming = phone(10), phone(11), phone(12)
    await recipients.subscribe("sms", land, WEB, categories=["tdzs"])
    await recipients.subscribe("sms", everything, WEB)  # no categories: all of them
    await recipients.subscribe("sms", farming, WEB, categories=["nync", "shjz"])
    async with running(engine_store):
        expropriation = await published_item(engine_store, category="tdzs", title="征地公告")
        await wait_settled(engine_store, expropriation.id)
        irrigation = await published_item(engine_store, category="nync", title="水利通知")
        await wait_settled(engine_store, irrigation.id)
    assert set(await rows_by_address(engine_store, expropriation.id)) == {land, everything}
    assert set(await rows_by_address(engine_store, irrigation.id)) == {everything, farming}
    got = {(r["to"], r["title"]) for r in rec.requests}
    assert got == {
        (land, "征地公告"),
        (everything, "征地公告"),
        (everything, "水利通知"),
        (farming, "水利通知"),
    }
    assert len(rec.requests) == 4


async def test_pending_and_daily_subscribers_get_no_immediate_message(
    engine_store: SqlStore, gateway: Any
) -> None:
    from publisher.recipients import Frequency

    rec, _ = gateway
    recipients = Recipients(engine_store)
    await recipients.subscribe("sms", phone(20), WEB, status=RecipientStatus.PENDING)
    await recipients.subscribe("sms", phone(21), WEB, frequency=Frequency.DAILY)
    await recipients.subscribe("sms", phone(22), WEB)
    async with running(engine_store):
        item = await published_item(engine_store)
        await wait_settled(engine_store, item.id)
    assert list(rec.per_target) == [phone(22)]


# -- the CLI for access and erasure requests ----------------------------------------------------------


async def test_subscribers_export_and_erase_commands(engine_store: SqlStore) -> None:
    recipients = Recipients(engine_store)
    await recipients.subscribe("sms", RESIDENT, WEB)
    exported = run_cli(engine_store, "subscribers", "export", NATIONAL)
    assert exported.returncode == 0, exported.stderr
    [sub] = json.loads(exported.stdout)["subscriptions"]
    assert sub["address"] == RESIDENT and sub["consents"][0]["method"] == "web_verified"

    erased = run_cli(engine_store, "subscribers", "erase", RESIDENT)
    assert erased.returncode == 0, erased.stderr
    assert "138****0001" in erased.stdout and RESIDENT not in erased.stdout
    assert await _recipient_rows(engine_store) == []
    assert await recipients.is_suppressed("sms", RESIDENT)

    again = run_cli(engine_store, "subscribers", "erase", RESIDENT)
    assert again.returncode == 2
    assert "no subscriber" in again.stderr and "Traceback" not in again.stderr
