"""Alibaba Cloud SMS delivery reports: the platform's HTTP batch push of SmsReport.

- `POST /sms/aliyun/report/{token}` — a JSON array of reports (format: channels.sms_aliyun).
  The platform cannot sign its pushes, so the token in the URL (one per aliyun gateway,
  `python -m channels.sms_aliyun` prints the URL) is checked before anything else.

Each report names its ledger row by `out_id` (the OutId we sent, the row's id). It
counts only when the row is an SMS row sent through that gateway (its provider id is
`<gateway>:<biz_id>`) and the reported number is the row's own; anything else is left
alone and logged with the number masked. Then the core records the receipt, as for
Kannel's reports: idempotent, so the platform's repeated pushes change nothing.

The answer is `{"code": 0, "msg": "成功"}` for every well-formed batch, unknown rows
included (the platform checks only that `code` is a number in a 200, and pushes again
after anything else); a body that is no batch of reports is a 400 problem and writes
nothing; a report that overtakes the worker's own record of its attempt makes the answer
a 503 so the platform pushes the batch again later (the rest of it is recorded already,
and recording it again changes nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from channels.sms import SmsSettings, sms_settings
from channels.sms_aliyun import (
    SmsReport,
    parse_reports,
    report_key,
    report_number_matches,
    report_reason,
    report_token,
)
from publisher.addresses import AddressBox, mask
from publisher.config import Config
from publisher.errors import ConfigError, Forbidden, PublisherError
from publisher.ledger import DeliveryState, Ledger, ReceiptResult
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from publisher.tokens import same_token
from publisher.web.api import decode_json, json_response, read_body
from publisher.web.keys import STORE
from publisher.web.problems import MalformedBody

log = logging.getLogger("publisher.sms")
routes = web.RouteTableDef()

#: the answer the platform takes as "received" (it checks only that code is a number)
RECEIVED = {"code": 0, "msg": "成功"}
#: how long one push may wait, in all, for rows whose attempt is still being recorded
IN_FLIGHT_BUDGET = 5.0  # seconds


class ReportsInFlight(PublisherError):
    status = 503
    kind = "unavailable"
    title = "Service unavailable"


@dataclass
class AliyunReports:
    """The tokens of the aliyun gateways and the address box, made on first use."""

    config: Config
    _settings: SmsSettings | None = None
    _tokens: dict[str, str] | None = None  # token -> gateway name
    _box: AddressBox | None = None

    @property
    def tokens(self) -> dict[str, str]:
        if self._tokens is None:
            self._settings = self._settings or sms_settings(self.config)
            names = [g.name for g in self._settings.gateways if g.type == "aliyun"]
            key = report_key(self.config, self._settings.dlr_secret) if names else b""
            self._tokens = {report_token(key, name): name for name in names}
        return self._tokens

    def gateway_for(self, token: str) -> str | None:
        """The gateway whose token this is, compared in constant time against every one."""
        found = None
        for known, name in self.tokens.items():
            if same_token(known, token):
                found = name
        return found

    @property
    def box(self) -> AddressBox:
        if self._box is None:
            self._box = AddressBox(self.config.data_key())
        return self._box


REPORTS = web.AppKey("aliyun_reports", AliyunReports)


def setup(app: web.Application, config: Config) -> None:
    app[REPORTS] = AliyunReports(config)
    app.add_routes(routes)


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, what: str) -> None:
        self.counts[what] += 1


async def _read_body(request: web.Request, limit: int) -> Any:
    return decode_json(await read_body(request, limit), MalformedBody)


async def _row(store: SqlStore, box: AddressBox, delivery_id: int) -> tuple[Any, str | None] | None:
    """The SMS ledger row (provider_id) and the number it went to (None: erased or
    unreadable), or None when there is no such row."""
    d = t.deliveries
    async with store.read() as conn:
        row = (
            await conn.execute(
                sa.select(d.c.target, d.c.provider_id).where(
                    d.c.id == delivery_id, d.c.channel == "sms"
                )
            )
        ).first()
        if row is None:
            return None
        kind, _, ident = row.target.partition(":")
        if not ident.isdigit():
            return row, None
        if kind == "e":
            address = await conn.scalar(
                sa.select(t.endpoints.c.address).where(t.endpoints.c.id == int(ident))
            )
            return row, address
        table = {"r": t.recipients, "m": t.messages}.get(kind)
        if table is None:
            return row, None
        sealed = await conn.scalar(sa.select(table.c.address_enc).where(table.c.id == int(ident)))
    if sealed is None:
        return row, None
    try:
        return row, box.open(sealed)
    except ConfigError:
        return row, None


def _clean(text: str, limit: int) -> str:
    """Text from the platform as an event's detail may hold it (no NUL: PostgreSQL)."""
    return " ".join(text.replace("\x00", "").split())[:limit]


async def _record(
    store: SqlStore, box: AddressBox, gateway: str, report: SmsReport, deadline: float
) -> str:
    """What one report did: a ReceiptResult's value, or why it was left alone."""
    delivery_id = report.delivery_id
    if delivery_id is None:
        return "unknown"
    found = await _row(store, box, delivery_id)
    if found is None:
        return "unknown"
    row, number = found
    provider = row.provider_id or ""
    if provider and provider not in (f"{gateway}:{report.biz_id}", f"{gateway}:{delivery_id}"):
        # sent through another gateway, or another attempt of this one
        log.warning(
            "aliyun report (gateway %r) for delivery %s: not the attempt on record; ignored",
            gateway,
            delivery_id,
        )
        return "mismatch"
    if number is None or not report_number_matches(report.phone_number, number):
        log.warning(
            "aliyun report for delivery %s: number %s is not the row's (%s); ignored",
            delivery_id,
            mask(_clean(report.phone_number, 20)),
            mask(number) if number else "unreadable",
        )
        return "mismatch"
    code = _clean(report.err_code, 64)
    detail = (
        f"aliyun report {code or '-'}: {_clean(report.err_msg, 200) or '-'} "
        f"(biz_id {_clean(report.biz_id, 64)}, reported {_clean(report.report_time, 32) or '-'})"
    )
    loop = asyncio.get_running_loop()
    result = await Ledger(store).record_receipt(
        delivery_id,
        "sms",
        DeliveryState.DELIVERED if report.success else DeliveryState.FAILED,
        reason=None if report.success else report_reason(code),
        detail=detail,
        wait_seconds=max(0.0, deadline - loop.time()),
    )
    if result is ReceiptResult.NOT_FOUND:
        return "unknown"
    return result.value


@routes.post("/sms/aliyun/report/{token}")
async def aliyun_report(request: web.Request) -> web.Response:
    """A push of SmsReport messages (a JSON array) from Alibaba Cloud SMS."""
    reports_web = request.app[REPORTS]
    gateway = reports_web.gateway_for(request.match_info["token"])
    if gateway is None:
        log.warning("refused an aliyun report push with a wrong token")
        raise Forbidden("aliyun delivery report: the token does not match a gateway")
    config = reports_web.config
    try:
        reports, bad = parse_reports(await _read_body(request, config.server.max_body_bytes))
    except ValueError as exc:
        raise MalformedBody(str(exc)) from None
    tally = Tally()
    for problem in bad:
        log.warning("aliyun report push (gateway %r): entry %s; skipped", gateway, problem)
        tally.add("malformed")
    store = request.app[STORE]
    deadline = asyncio.get_running_loop().time() + IN_FLIGHT_BUDGET
    for report in reports:
        tally.add(await _record(store, reports_web.box, gateway, report, deadline))
    counts = dict(sorted(tally.counts.items()))
    log.info("aliyun report push (gateway %r): %s", gateway, counts)
    if tally.counts[ReceiptResult.IN_FLIGHT.value]:
        raise ReportsInFlight(
            "some reports are about attempts still being recorded: push again later",
            counts=counts,
        )
    return json_response({**RECEIVED, "counts": counts})


OPENAPI_PATHS: dict[str, Any] = {
    "/sms/aliyun/report/{token}": {
        "post": {
            "summary": "Alibaba Cloud SMS delivery reports (SmsReport, HTTP batch push); the "
            "URL carries the gateway's token (python -m channels.sms_aliyun prints it)",
            "parameters": [
                {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "phone_number": {"type": "string"},
                                    "send_time": {"type": "string"},
                                    "report_time": {"type": "string"},
                                    "success": {"type": "boolean"},
                                    "err_code": {"type": "string"},
                                    "err_msg": {"type": "string"},
                                    "sms_size": {"type": "string"},
                                    "biz_id": {"type": "string"},
                                    "out_id": {"type": "string"},
                                },
                                "required": [
                                    "phone_number",
                                    "success",
                                    "err_code",
                                    "biz_id",
                                    "out_id",
                                ],
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": '{"code": 0, "msg": "成功", "counts": {…}}'},
                "400": {"description": "not a batch of reports (problem document)"},
                "403": {"description": "wrong token (problem document)"},
                "413": {"description": "body too large (problem document)"},
                "503": {"description": "a reported attempt is still being recorded: push again"},
            },
        }
    }
}
