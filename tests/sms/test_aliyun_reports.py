"""Alibaba Cloud SMS delivery reports: items go out through the loopback SendSms server
with the engine, then the platform's HTTP batch push of SmsReport (a JSON array, as the
documentation gives it) settles the rows — or, forged, malformed or about another number,
changes nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from channels.sms import dlr_key, dlr_token, sms_settings
from channels.sms_aliyun import (
    main,
    parse_reports,
    report_key,
    report_number_matches,
    report_path,
    report_reason,
    report_token,
)
from publisher.config import Config
from publisher.recipients import Recipients, import_subscribers
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from publisher.web import sms_aliyun_reports
from tests.conftest import BACKENDS, REPO, Api, store_on
from tests.engine.conftest import CONSENT, phone
from tests.engine.helpers import api_on, eventually, ledger_rows, published_item, running
from tests.sms import fake_gateways as fg
from tests.sms.conftest import ENGINE
from tests.web import assert_problem

NUMBERS = [phone(i) for i in range(4)]  # +8613800000000 …


def aliyun_config(config: Config, url: str) -> Config:
    tree = config.model_dump()
    tree["channels"]["sms"]["settings"] = {
        "gateways": [fg.aliyun_gateway(url)],
        "callback_base_url": "http://127.0.0.1:9",
    }
    return Config.model_validate(tree)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def sent_through_aliyun(
    config_factory: Callable[..., Config], backend: str
) -> AsyncIterator[tuple[SqlStore, fg.FakeAliyun, str]]:
    """A store whose item went to NUMBERS through the loopback SendSms (every row `sent`),
    with the item's id."""
    fake = fg.FakeAliyun()
    async with fg.serve(fake) as url:
        config = aliyun_config(config_factory(**ENGINE), url)
        async with store_on(config, backend) as store:
            await import_subscribers(Recipients(store), "sms", NUMBERS, CONSENT)
            async with running(store) as worker:
                item = await published_item(store)
                worker.wake()

                async def all_sent() -> bool:
                    rows = await ledger_rows(store, item.id, "sms")
                    return len(rows) == len(NUMBERS) and all(r.state == "sent" for r in rows)

                await eventually(all_sent, 30, "every row sent through aliyun")
            assert fake.refused == [] and len(fake.accepted) == len(NUMBERS)
            yield store, fake, item.id


def url_of(config: Config, gateway: str = "aliyun") -> str:
    return report_path(report_token(report_key(config), gateway))


async def reports_for(store: SqlStore, fake: fg.FakeAliyun, item_id: str) -> list[dict[str, Any]]:
    """One report per message, as the platform pushes it: its number as we sent it
    (PhoneNumbers), our OutId back, the BizId SendSms answered; delivered by default."""
    provider = {r.id: r.provider_id for r in await ledger_rows(store, item_id, "sms")}
    out = []
    for params in fake.accepted:
        biz = provider[int(params["OutId"])].split(":", 1)[1]
        out.append(
            {
                "phone_number": params["PhoneNumbers"],
                "send_time": "2026-11-20 10:00:00",
                "report_time": "2026-11-20 10:00:05",
                "success": True,
                "err_code": "DELIVERED",
                "err_msg": "用户接收成功",
                "sms_size": "1",
                "biz_id": biz,
                "out_id": params["OutId"],
            }
        )
    return sorted(out, key=lambda r: int(r["out_id"]))


async def states(store: SqlStore, item_id: str) -> dict[int, tuple[str, str | None, bool]]:
    """Each row: state, reason, whether delivered_at is set."""
    return {
        r.id: (r.state, r.reason, r.delivered_at is not None)
        for r in await ledger_rows(store, item_id, "sms")
    }


async def event_count(store: SqlStore) -> int:
    async with store.read() as conn:
        return int(
            await conn.scalar(sa.select(sa.func.count()).select_from(t.delivery_events)) or 0
        )


async def last_detail(store: SqlStore, delivery_id: int) -> str:
    async with store.read() as conn:
        detail = await conn.scalar(
            sa.select(t.delivery_events.c.detail)
            .where(t.delivery_events.c.delivery_id == delivery_id)
            .order_by(t.delivery_events.c.id.desc())
            .limit(1)
        )
    return str(detail)


async def push(api: Api, path: str, body: Any) -> tuple[int, Any, Any]:
    return await api.call("POST", path, who=None, json=body)


# -- through the engine, on every backend ----------------------------------------------------------


async def test_reports_settle_the_rows_and_repeats_change_nothing(
    config_factory: Callable[..., Config], backend: str
) -> None:
    async with (
        sent_through_aliyun(config_factory, backend) as (store, fake, item_id),
        api_on(store) as api,
    ):
        path = url_of(store.config)
        delivered, failed, blocked, untouched = await reports_for(store, fake, item_id)
        failed |= {"success": False, "err_code": "MOBILE_NOT_ON_SERVICE", "err_msg": "停机"}
        blocked |= {"success": False, "err_code": "SOME_NEW_CODE", "err_msg": "失败"}
        status, body, _ = await push(api, path, [delivered, failed, blocked])
        assert status == 200, body
        assert body["code"] == 0 and body["msg"] == "成功"
        assert body["counts"] == {"applied": 3}

        rows = await states(store, item_id)
        ids = [int(r["out_id"]) for r in (delivered, failed, blocked, untouched)]
        assert rows[ids[0]] == ("delivered", None, True)
        assert rows[ids[1]] == ("failed", "unreachable", False)
        assert rows[ids[2]] == ("failed", "undelivered", False)
        assert rows[ids[3]] == ("sent", None, False)  # no report yet
        # the event keeps what the platform said
        detail = await last_detail(store, ids[1])
        assert "MOBILE_NOT_ON_SERVICE" in detail and "停机" in detail
        assert delivered["biz_id"] in await last_detail(store, ids[0])

        # the platform pushes again (and again, with a contradicting report): no change
        events = await event_count(store)
        for again in ([delivered, failed, blocked], [failed | {"success": True}]):
            status, body, _ = await push(api, path, again)
            assert status == 200 and body["code"] == 0
            assert set(body["counts"]) == {"duplicate"}
        assert await states(store, item_id) == rows
        assert await event_count(store) == events

        # the last one comes later
        status, body, _ = await push(api, path, [untouched])
        assert status == 200 and body["counts"] == {"applied": 1}
        assert (await states(store, item_id))[ids[3]] == ("delivered", None, True)


async def test_a_wrong_token_is_refused_and_changes_nothing(
    config_factory: Callable[..., Config], backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        sent_through_aliyun(config_factory, backend) as (store, fake, item_id),
        api_on(store) as api,
    ):
        reports = await reports_for(store, fake, item_id)
        before, events = await states(store, item_id), await event_count(store)
        config = store.config
        genuine = url_of(config)
        kannel_key = dlr_key(config, sms_settings(config))
        for path in (
            genuine[:-1] + ("A" if genuine[-1] != "A" else "B"),  # one character off
            url_of(config, "town"),  # the token of a gateway that is not there
            report_path(dlr_token(kannel_key, reports[0]["out_id"])),  # a Kannel report token
            report_path("x"),
        ):
            status, body, headers = await push(api, path, reports)
            assert_problem(status, body, headers, 403, "token")
        assert await states(store, item_id) == before
        assert await event_count(store) == events
        assert genuine.rsplit("/", 1)[1] not in caplog.text


@pytest.mark.parametrize(
    ("body", "ctype", "words"),
    [
        (b"", "application/json", "not JSON"),
        (b"[{not json", "application/json", "not JSON"),
        (b"\xff\xfe[]", "application/json", "not UTF-8"),
        (b'{"phone_number": "13800000000"}', "application/json", "JSON array"),
        (b'"DELIVERED"', "application/json", "JSON array"),
        (b"[1, 2, null]", "application/json", "not a JSON object"),
        (b'[{"success": true}]', "application/json", "phone_number: missing"),
        (b"[[]]", "application/json", "no entry is a report"),
    ],
)
async def test_malformed_bodies_are_400_and_write_nothing(
    config_factory: Callable[..., Config], body: bytes, ctype: str, words: str
) -> None:
    """(On SQLite only: the body is refused before the store is used.)"""
    async with (
        sent_through_aliyun(config_factory, "sqlite") as (store, _fake, item_id),
        api_on(store) as api,
    ):
        before, events = await states(store, item_id), await event_count(store)
        status, answer, headers = await api.call(
            "POST", url_of(store.config), who=None, data=body, headers={"Content-Type": ctype}
        )
        assert_problem(status, answer, headers, 400, words)
        assert await states(store, item_id) == before
        assert await event_count(store) == events


async def test_bad_entries_are_skipped_and_counted_and_the_rest_recorded(
    config_factory: Callable[..., Config], backend: str
) -> None:
    async with (
        sent_through_aliyun(config_factory, backend) as (store, fake, item_id),
        api_on(store) as api,
    ):
        good, typed, missing, other = await reports_for(store, fake, item_id)
        before = await states(store, item_id)
        batch = [
            good,
            typed | {"success": "true"},  # a string, not a boolean
            {k: v for k, v in missing.items() if k != "out_id"},
            other | {"out_id": 12345},  # a number, not a string
            other | {"sms_size": ["1"]},
            "DELIVERED",
            # well formed, but not ours: another system's OutId, a row that does not exist
            other | {"out_id": "order-2026-0001"},
            other | {"out_id": "999999"},
        ]
        status, body, _ = await push(api, url_of(store.config), batch)
        assert status == 200 and body["code"] == 0, body
        assert body["counts"] == {"applied": 1, "malformed": 5, "unknown": 2}
        after = await states(store, item_id)
        changed = {k for k in after if after[k] != before[k]}
        assert changed == {int(good["out_id"])}


async def test_a_report_for_another_number_or_attempt_is_ignored(
    config_factory: Callable[..., Config], backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="publisher.sms")
    async with (
        sent_through_aliyun(config_factory, backend) as (store, fake, item_id),
        api_on(store) as api,
    ):
        first, second, masked, _ = await reports_for(store, fake, item_id)
        before = await states(store, item_id)
        stranger = "13999998888"
        batch = [
            first | {"phone_number": stranger},  # someone else's number
            second | {"phone_number": first["phone_number"]},  # another row's number
            first | {"biz_id": "424242^0"},  # the number is right, the send is not
        ]
        status, body, _ = await push(api, url_of(store.config), batch)
        assert status == 200 and body == {"code": 0, "msg": "成功", "counts": {"mismatch": 3}}
        assert await states(store, item_id) == before
        assert "139****8888" in caplog.text and stranger not in caplog.text
        assert first["phone_number"] not in caplog.text

        # numbers as the platform may write them: masked, with the country code
        number = masked["phone_number"]
        for variant in (number[:7] + "****", "+86" + number):
            status, body, _ = await push(
                api, url_of(store.config), [masked | {"phone_number": variant}]
            )
            assert status == 200
        assert (await states(store, item_id))[int(masked["out_id"])][0] == "delivered"


async def test_a_report_that_overtakes_the_attempt_asks_for_a_second_push(
    config_factory: Callable[..., Config], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform pushes again after anything but a 200 (the documentation recommends a
    5xx for this): the row still `sending` answers 503, and the next push records it."""
    monkeypatch.setattr(sms_aliyun_reports, "IN_FLIGHT_BUDGET", 0.1)
    async with (
        sent_through_aliyun(config_factory, backend) as (store, fake, item_id),
        api_on(store) as api,
    ):
        early, on_time, _, _ = await reports_for(store, fake, item_id)
        d = t.deliveries
        async with store.write() as conn:
            await conn.execute(
                d.update().where(d.c.id == int(early["out_id"])).values(state="sending")
            )
        status, body, headers = await push(api, url_of(store.config), [on_time, early])
        assert_problem(status, body, headers, 503, "push again")
        assert body["counts"] == {"applied": 1, "in_flight": 1}
        async with store.write() as conn:
            await conn.execute(
                d.update().where(d.c.id == int(early["out_id"])).values(state="sent")
            )
        status, body, _ = await push(api, url_of(store.config), [on_time, early])
        assert status == 200 and body["counts"] == {"applied": 1, "duplicate": 1}
        rows = await states(store, item_id)
        assert rows[int(early["out_id"])][0] == rows[int(on_time["out_id"])][0] == "delivered"


# -- the URL staff put in the console -------------------------------------------------------------


def test_the_printed_url_is_the_route(
    config_factory: Callable[..., Config],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = aliyun_config(config_factory(), "http://127.0.0.1:9/")
    tree = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    tree["channels"]["sms"]["settings"] = {
        "gateways": [fg.aliyun_gateway("http://127.0.0.1:9/")],
        "callback_base_url": "https://gk.example.gov.cn/",
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("PUBLISHER__SECURITY__DATA_KEY", config.data_key().decode())
    monkeypatch.setenv("PUBLISHER__SECURITY__DATA_KEY_FILE", "")
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out == f"aliyun: https://gk.example.gov.cn{url_of(config)}\n"
    assert fg.ACCESS_KEY_SECRET not in out
    # without an aliyun gateway: one line naming the key, exit 2
    tree["channels"]["sms"]["settings"] = {}
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    assert main([str(path)]) == 2
    assert "no gateway of type aliyun" in capsys.readouterr().err


def test_each_gateway_has_its_own_token_and_the_key_its_own_purpose(config: Config) -> None:
    key = report_key(config)
    assert report_token(key, "aliyun") != report_token(key, "aliyun2")
    assert key != dlr_key(config, sms_settings(config))
    assert report_key(config, "a-dlr-secret-of-16+") != report_key(config, "another-secret-16+")


# -- the pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "e164", "matches"),
    [
        ("13800138000", "+8613800138000", True),
        ("8613800138000", "+8613800138000", True),
        ("+8613800138000", "+8613800138000", True),
        ("1380013****", "+8613800138000", True),  # the documentation's masked example
        ("138****8000", "+8613800138000", True),
        ("13800138001", "+8613800138000", False),
        ("1380013800", "+8613800138000", False),
        ("***********", "+8613800138000", False),  # nothing to compare
        ("", "+8613800138000", False),
        ("85251234567", "+85251234567", True),
        ("0085251234567", "+85251234567", True),
        ("13800138000", "not a number", False),
    ],
)
def test_report_numbers(reported: str, e164: str, matches: bool) -> None:
    assert report_number_matches(reported, e164) is matches


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("MOBILE_NOT_ON_SERVICE", "unreachable"),
        ("USER_REJECT", "blocked"),
        ("MOBILE_IN_BLACK", "blocked"),
        ("CONTENT_KEYWORD", "content_rejected"),
        ("EXPIRED", "expired"),
        ("MK:0001", "undelivered"),
        ("", "undelivered"),
    ],
)
def test_failure_codes(code: str, reason: str) -> None:
    assert report_reason(code) == reason


def test_parsing_the_documented_example() -> None:
    # help.aliyun.com/document_detail/101867 (SmsReport, HTTP 批量推送), as given there
    example = [
        {
            "phone_number": "1381111****",
            "send_time": "2017-01-01 00:00:00",
            "report_time": "2017-01-01 00:00:00",
            "success": True,
            "err_code": "DELIVERED",
            "err_msg": "用户接收成功",
            "sms_size": "1",
            "biz_id": "12345",
            "out_id": "67890",
        }
    ]
    [report], bad = parse_reports(example)
    assert bad == [] and report.delivery_id == 67890 and report.success
    assert parse_reports([]) == ([], [])
    for not_ours in ("", "abc", "１２３", "1" * 19):  # another system's OutId: not a row of ours
        [report], _ = parse_reports([example[0] | {"out_id": not_ours}])
        assert report.delivery_id is None
    with pytest.raises(ValueError, match="JSON array"):
        parse_reports({"reports": example})
