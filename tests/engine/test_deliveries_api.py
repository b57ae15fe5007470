"""Where each copy stands, as staff see it: GET …/deliveries, POST …/deliveries/retry,
/metrics for Prometheus, and `publisher status ITEM`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from publisher.delivery import DeliveryWorker
from publisher.store.sql import SqlStore
from tests.conftest import Api
from tests.engine.conftest import phone, states, subscribe, wait_settled
from tests.engine.helpers import (
    api_on,
    engine_store_with,
    ledger_rows,
    new_sms_item,
    published_item,
    run_cli,
    running,
    sqlite_file_bytes,
)
from tests.fakes import RecordingServer
from tests.web import assert_problem

REFUSED = "no such subscriber at the gateway"  # what RecordingServer answers with its 400


@pytest.fixture
async def staff(
    engine_store: SqlStore,
) -> AsyncIterator[tuple[Api, DeliveryWorker]]:
    """The API on the engine store, with a delivery worker running in-process (as `serve`)."""
    async with running(engine_store) as worker, api_on(engine_store, worker) as api:
        yield api, worker


async def _one_refused_of_five(store: SqlStore, rec: RecordingServer) -> tuple[str, list[str]]:
    numbers = await subscribe(store, 5)
    rec.reject = {numbers[3]}
    item = await published_item(store)
    await wait_settled(store, item.id)
    return item.id, numbers


async def test_counts_pages_and_filters(
    engine_store: SqlStore, gateway: Any, staff: tuple[Api, DeliveryWorker]
) -> None:
    rec, _ = gateway
    api, _ = staff
    item_id, numbers = await _one_refused_of_five(engine_store, rec)
    base = f"/api/v1/items/{item_id}/deliveries"

    status, body, _ = await api.call("GET", base)
    assert status == 200, body
    assert body["item_id"] == item_id
    assert body["counts"] == {"sms": {"sent": 4, "failed": 1}}
    assert body["total"] == 5 and body["page"] == 1 and len(body["deliveries"]) == 5
    first = body["deliveries"][0]
    assert first["channel"] == "sms" and first["event"] == "published"
    assert first["state"] == "sent" and first["attempts"] == 1
    assert first["provider_id"] and first["provider_id"].startswith("msg-")
    assert first["sent_at"] and first["sent_at"].endswith("+08:00")  # site time
    # addresses are masked, and the whole answer holds no full number
    assert sorted(d["target"] for d in body["deliveries"]) == sorted(
        f"138****{n[-4:]}" for n in numbers
    )
    text = json.dumps(body)
    assert not any(n[3:] in text for n in numbers)

    # paging keeps the order and the total
    status, page2, _ = await api.call("GET", f"{base}?per_page=2&page=2")
    assert status == 200
    assert page2["total"] == 5 and page2["page"] == 2 and page2["per_page"] == 2
    assert [d["id"] for d in page2["deliveries"]] == [d["id"] for d in body["deliveries"][2:4]]
    status, page3, _ = await api.call("GET", f"{base}?per_page=2&page=3")
    assert [d["id"] for d in page3["deliveries"]] == [body["deliveries"][4]["id"]]
    status, beyond, _ = await api.call("GET", f"{base}?per_page=2&page=9")
    assert status == 200 and beyond["deliveries"] == [] and beyond["total"] == 5

    # the refused one, with the reason and the gateway's words
    status, failed, _ = await api.call("GET", f"{base}?state=failed")
    assert status == 200 and failed["total"] == 1
    [row] = failed["deliveries"]
    assert row["target"] == f"138****{numbers[3][-4:]}"
    assert row["reason"] == "rejected"
    assert REFUSED in row["last_error"] and "400" in row["last_error"]
    assert row["sent_at"] is None
    # counts stay for the whole item whatever the filter
    assert failed["counts"] == body["counts"]

    status, sent, _ = await api.call("GET", f"{base}?state=sent&channel=sms")
    assert sent["total"] == 4 and {d["state"] for d in sent["deliveries"]} == {"sent"}
    status, email, _ = await api.call("GET", f"{base}?channel=email")
    assert status == 200 and email["total"] == 0 and email["deliveries"] == []


async def test_bad_queries(
    engine_store: SqlStore, gateway: Any, staff: tuple[Api, DeliveryWorker]
) -> None:
    api, _ = staff
    item = await published_item(engine_store)
    base = f"/api/v1/items/{item.id}/deliveries"
    assert_problem(*await api.call("GET", "/api/v1/items/no-such-item/deliveries"), 404, "no-such")
    assert_problem(
        *await api.call("POST", "/api/v1/items/no-such-item/deliveries/retry"), 404, "no-such"
    )
    assert_problem(*await api.call("GET", f"{base}?state=lost"), 422, "state", "lost")
    assert_problem(*await api.call("GET", f"{base}?channel=fax"), 422, "channel", "fax")
    assert_problem(*await api.call("GET", f"{base}?per_page=0"), 422, "per_page")
    assert_problem(*await api.call("GET", f"{base}?page=x"), 422, "page")
    # staff only
    assert_problem(*await api.call("GET", base, who=None), 401)
    assert_problem(*await api.call("POST", f"{base}/retry", who=None), 401)


async def test_retry_requeues_failed_rows_once_and_they_go_out(
    engine_store: SqlStore, gateway: Any, staff: tuple[Api, DeliveryWorker]
) -> None:
    rec, _ = gateway
    api, _ = staff
    numbers = await subscribe(engine_store, 6)
    rec.reject = set(numbers[:3])  # the gateway refuses three numbers for now
    item = await published_item(engine_store)
    await wait_settled(engine_store, item.id)
    assert await states(engine_store, item.id) == {"sent": 3, "failed": 3}

    rec.reject.clear()  # the gateway is fixed; staff press "retry" — twice, at once
    path = f"/api/v1/items/{item.id}/deliveries/retry"
    (s1, b1, _), (s2, b2, _) = await asyncio.gather(
        api.call("POST", path, who="bob"), api.call("POST", path, who="alice")
    )
    assert (s1, s2) == (200, 200)
    assert sorted([b1["requeued"], b2["requeued"]]) == [0, 3]
    await wait_settled(engine_store, item.id)
    assert await states(engine_store, item.id) == {"sent": 6}
    assert len(await ledger_rows(engine_store, item.id)) == 6
    # the three refused ones: one refused request and one good one each; the rest once
    assert {n: rec.per_target[n] for n in numbers} == {
        **dict.fromkeys(numbers[:3], 2),
        **dict.fromkeys(numbers[3:], 1),
    }
    status, body, _ = await api.call("POST", path)
    assert status == 200 and body["requeued"] == 0


async def test_masked_in_the_api_and_encrypted_in_the_file(
    engine_store: SqlStore, gateway: Any, staff: tuple[Api, DeliveryWorker]
) -> None:
    api, _ = staff
    await subscribe(engine_store, 3)
    item = await published_item(engine_store)
    await wait_settled(engine_store, item.id)
    status, body, _ = await api.call("GET", f"/api/v1/items/{item.id}/deliveries")
    assert status == 200
    assert [d["target"] for d in body["deliveries"]] == [
        "138****0000",
        "138****0001",
        "138****0002",
    ]
    data = sqlite_file_bytes(engine_store)
    for i in range(3):
        assert phone(i).encode() not in data and phone(i)[3:].encode() not in data


# -- /metrics -----------------------------------------------------------------------------------------


def _sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    assert m, f"{name}{{{want}}} not in:\n{text}"
    return float(m.group(1))


async def test_metrics_for_loopback_clients(
    engine_store: SqlStore, gateway: Any, staff: tuple[Api, DeliveryWorker]
) -> None:
    rec, _ = gateway
    api, _ = staff
    item_id, _ = await _one_refused_of_five(engine_store, rec)
    status, body, headers = await api.call("GET", "/metrics", who=None)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert _sample(text, "publisher_deliveries", channel="sms", state="sent") == 4
    assert _sample(text, "publisher_deliveries", channel="sms", state="failed") == 1
    assert "# TYPE publisher_send_latency_seconds histogram" in text
    assert _sample(text, "publisher_send_latency_seconds_count", channel="sms") >= 5
    assert _sample(text, "publisher_send_latency_seconds_bucket", channel="sms", le="+Inf") >= 5
    assert "publisher_publication_lateness_seconds" in text

    # the gauges follow the ledger: a retry shows up at the next scrape
    status, body, _ = await api.call("POST", f"/api/v1/items/{item_id}/deliveries/retry")
    assert body["requeued"] == 1
    await wait_settled(engine_store, item_id)
    text = (await api.call("GET", "/metrics", who=None))[1].decode()
    assert _sample(text, "publisher_deliveries", channel="sms", state="sent") == 4
    # the refused number was refused again
    assert _sample(text, "publisher_deliveries", channel="sms", state="failed") == 1
    assert rec.per_target[phone(3)] == 2


async def test_metrics_with_a_token_only(config_factory: Any, gateway: Any) -> None:
    _, url = gateway
    env = {"METRICS__ALLOW_LOOPBACK": "false", "METRICS__TOKEN": "scrape-s3cret"}
    async with engine_store_with(config_factory, url, **env) as store, api_on(store) as api:
        assert_problem(*await api.call("GET", "/metrics", who=None), 401, "metrics")
        # a staff token is not the metrics token
        assert_problem(*await api.call("GET", "/metrics", who="root-admin"), 401)
        wrong = {"Authorization": "Bearer scrape-s3cre"}
        assert_problem(*await api.call("GET", "/metrics", who=None, headers=wrong), 401)
        right = {"Authorization": "Bearer scrape-s3cret"}
        status, body, _ = await api.call("GET", "/metrics", who=None, headers=right)
        assert status == 200 and b"publisher_send_latency_seconds" in body


# -- publisher status ITEM ------------------------------------------------------------------------------


def _table(stdout: str) -> dict[str, dict[str, str]]:
    """Rich's table as {channel: {column: cell}}."""
    lines = [ln for ln in stdout.splitlines() if "│" in ln or "┃" in ln]
    cells = [[c.strip() for c in re.split(r"[│┃]", ln)[1:-1]] for ln in lines]
    header, *rows = cells
    return {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows}


async def test_status_command_prints_counts_per_channel(
    engine_store: SqlStore, gateway: Any
) -> None:
    rec, _ = gateway
    async with running(engine_store):
        item_id, _ = await _one_refused_of_five(engine_store, rec)
    quiet = await new_sms_item(engine_store, title="尚未发布的通知")
    shown, nothing, unknown = await asyncio.gather(
        asyncio.to_thread(run_cli, engine_store, "status", item_id[:8]),
        asyncio.to_thread(run_cli, engine_store, "status", quiet.id),
        asyncio.to_thread(run_cli, engine_store, "status", "ffffffff-0000"),
    )
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    assert _table(shown.stdout) == {"sms": {"failed": "1", "sent": "4", "total": "5"}}
    assert "published" in shown.stdout  # the item's status in the title
    assert nothing.returncode == 0 and "no deliveries" in nothing.stdout
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
