"""SMS on the web side: Kannel's callbacks, residents' subscriptions, short links.

- `GET /sms/dlr` — delivery reports (Kannel's dlr-url); the token in the URL is checked
  before anything else, then the core records the receipt.
- `POST /sms/aliyun/report/{token}` — Alibaba Cloud's reports (publisher.web.sms_aliyun_reports).
- `GET /sms/inbound` — keywords residents send (Kannel's sms-service get-url, with the
  shared secret from config); the answer's body is the reply Kannel sends back, as
  UCS-2 (`X-Kannel-Coding: 2`, the service needs `accept-x-kannel-headers = true`).
- `POST /api/v1/subscribers`, `POST /api/v1/subscribers/verify` — subscribing by code.
- `GET /s/{code}` — short links to the public item page.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from channels.sms import (
    SmsSettings,
    check_dlr_token,
    dlr_key,
    signature_text,
    sms_settings,
)
from channels.sms_text import Command, DlrVerdict, dlr_meaning, parse_keyword, signature
from publisher.addresses import mask, normalize, region_of
from publisher.config import Config
from publisher.errors import Forbidden, NotFound, PublisherError, ValidationFailed
from publisher.ledger import DeliveryState, Ledger, ReceiptResult
from publisher.recipients import Consent, Recipients, RecipientStatus
from publisher.shortlinks import ShortLinks
from publisher.subscriptions import (
    CodeCeilingReached,
    CodePolicy,
    CodeSubscriptions,
    TooManyRequests,
)
from publisher.tokens import same_token
from publisher.web import mail as mail_web
from publisher.web import sms_aliyun_reports
from publisher.web.api import json_response, read_json
from publisher.web.keys import CONFIG, STORE, WORKER
from publisher.web.problems import problem

log = logging.getLogger("publisher.sms")
routes = web.RouteTableDef()


class ServiceUnavailable(PublisherError):
    status = 503
    kind = "unavailable"
    title = "Service unavailable"


@dataclass
class SmsWeb:
    """What the SMS routes need, made on first use (a store without a data key can still
    serve everything else)."""

    config: Config
    _settings: SmsSettings | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> SmsSettings:
        if self._settings is None:
            self._settings = sms_settings(self.config)
        return self._settings

    @property
    def dlr_key(self) -> bytes:
        if "dlr" not in self._cache:
            self._cache["dlr"] = dlr_key(self.config, self.settings)
        key: bytes = self._cache["dlr"]
        return key

    @property
    def links(self) -> ShortLinks:
        if "links" not in self._cache:
            self._cache["links"] = ShortLinks(self.config)
        links: ShortLinks = self._cache["links"]
        return links

    def policy(self) -> CodePolicy:
        s = self.settings
        return CodePolicy(
            ttl_seconds=s.code_ttl_seconds,
            attempts=s.code_attempts,
            per_number_hour=s.codes_per_number_hour,
            per_number_day=s.codes_per_number_day,
            per_ip_hour=s.codes_per_ip_hour,
            verifies_per_ip_hour=s.verifies_per_ip_hour,
            consent_text=s.consent_text,
            regions=s.regions,
            max_codes_per_hour=s.max_codes_per_hour,
        )


SMS = web.AppKey("sms", SmsWeb)


def setup(app: web.Application, config: Config) -> None:
    app[SMS] = SmsWeb(config)
    app.add_routes(routes)
    sms_aliyun_reports.setup(app, config)


# -- delivery reports ---------------------------------------------------------------------


@routes.get("/sms/dlr")
async def sms_dlr(request: web.Request) -> web.Response:
    """A Kannel delivery report: ?id=<ledger row>&t=<token>&status=<%d>&ts=<%T>."""
    sms = request.app[SMS]
    q = request.query
    delivery_id, token = q.get("id", ""), q.get("t", "")
    if not (delivery_id.isdigit() and len(delivery_id) <= 18):
        raise ValidationFailed("id: must be the delivery's number")
    if not token or not check_dlr_token(sms.dlr_key, delivery_id, token):
        log.warning("refused a delivery report with a bad token (delivery %s)", delivery_id)
        raise Forbidden("delivery report: the token does not match this delivery")
    raw = q.get("status", "")
    try:
        meaning = dlr_meaning(int(raw))
    except ValueError:
        raise ValidationFailed(f"status: {raw[:20]!r} is not a Kannel report status") from None
    if meaning.verdict is DlrVerdict.PENDING:
        return json_response(
            {"delivery": int(delivery_id), "result": "noted", "report": meaning.reason}
        )
    state = (
        DeliveryState.DELIVERED if meaning.verdict is DlrVerdict.DELIVERED else DeliveryState.FAILED
    )
    result = await Ledger(request.app[STORE]).record_receipt(
        int(delivery_id),
        "sms",
        state,
        reason=meaning.reason,
        detail=f"report {raw}: {meaning.label}",
    )
    if result is ReceiptResult.NOT_FOUND:
        raise NotFound(f"no sms delivery {delivery_id}")
    if result is ReceiptResult.IN_FLIGHT:
        raise ServiceUnavailable(f"delivery {delivery_id}: the attempt is still being recorded")
    return json_response({"delivery": int(delivery_id), "result": result.value})


# -- keywords from residents ------------------------------------------------------------------


def _category_names(config: Config, slugs: list[str] | tuple[str, ...]) -> str:
    if not slugs:
        return "全部栏目"
    names = [c.name for c in config.taxonomy if c.slug in slugs]
    return "、".join(names)


def help_text(config: Config, unknown: tuple[str, ...] = ()) -> str:
    codes = "、".join(f"{c.keyword}{c.name}" for c in config.taxonomy)
    lead = f"未找到栏目代码{'、'.join(unknown)}。" if unknown else ""
    return f"{lead}回复DY订阅全部栏目，DY+代码订阅单个栏目（{codes}），CX查询，TD退订。"


async def answer_keyword(
    recipients: Recipients,
    config: Config,
    settings: SmsSettings,
    number: str,
    text: str,
    service_number: str,
) -> str:
    """What a resident's message does, and the reply (without signature)."""
    by_keyword = {c.keyword.upper(): c.slug for c in config.taxonomy}
    kw = parse_keyword(text, list(by_keyword))
    site = config.site.name
    if kw.command is Command.UNSUBSCRIBE:
        await recipients.unsubscribe("sms", number, how=f"sms_keyword:{text.strip()[:40]}")
        return f"您已退订{site}短信，将不再收到政务信息。回复DY可重新订阅。"
    current = None
    with contextlib.suppress(NotFound):
        current = await recipients.get("sms", number)
    active = current is not None and current.status is RecipientStatus.ACTIVE
    if kw.command is Command.QUERY:
        if not active or current is None:
            return f"您尚未订阅{site}短信。" + help_text(config)
        return f"您已订阅：{_category_names(config, current.categories)}。回复TD退订。"
    if kw.command is Command.HELP:
        return help_text(config, kw.unknown)
    wanted = [by_keyword[k] for k in kw.categories]
    if active and current is not None:
        # DY <code> adds to what is there; every category (an empty list) stays every category
        categories = [] if not wanted or not current.categories else [*current.categories, *wanted]
    else:
        categories = wanted
    consent = Consent(
        method="sms_keyword",
        text=settings.consent_text.format(site=site) + f"（短信“{text.strip()[:40]}”）",
        source=f"sms {mask(number)} to {service_number[:20]}",
    )
    sub = await recipients.subscribe("sms", number, consent, categories=categories)
    return f"您已订阅{site}{_category_names(config, sub.categories)}的政务信息短信。回复CX查询，TD退订。"


@routes.get("/sms/inbound")
async def sms_inbound(request: web.Request) -> web.Response:
    """Kannel's sms-service get-url: ?secret=&from=%p&to=%P&text=%a."""
    sms = request.app[SMS]
    config = request.app[CONFIG]
    settings = sms.settings
    secret = request.query.get("secret", "")
    if not settings.inbound_secret or not same_token(secret, settings.inbound_secret):
        raise Forbidden("inbound sms: wrong or missing secret")
    raw_from = request.query.get("from", "")
    try:
        number = normalize("sms", raw_from)
    except ValidationFailed:
        raise ValidationFailed("from: not a valid phone number") from None
    text = request.query.get("text", "")
    if "\x00" in text:
        raise ValidationFailed("text: must not contain the NUL character")
    region = region_of(number)
    if region is None or region not in settings.regions:
        # no subscription, and no reply: the reply would be an SMS to that number, billed.
        # An empty body (with the sms-service's `omit-empty = true`) makes Kannel send nothing.
        log.warning("keyword from a number of %s refused: region not allowed", region or "?")
        return web.Response(
            text="", charset="utf-8", headers={"X-Publisher-Refused": "region_not_allowed"}
        )
    reply = await answer_keyword(
        Recipients(request.app[STORE]),
        config,
        settings,
        number,
        text,
        request.query.get("to", ""),
    )
    # the reply goes back through Kannel (the body of this answer): its gateway's signature rule
    gateway = next((g for g in settings.gateways if g.type == "kannel"), None)
    sig = (
        ""
        if gateway is not None and gateway.adds_signature
        else signature(signature_text(config, settings))
    )
    log.info("keyword from %s answered", mask(number))
    return web.Response(text=sig + reply, charset="utf-8", headers={"X-Kannel-Coding": "2"})


# -- subscribing from the web -----------------------------------------------------------------


class SubscribeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str = Field(min_length=1, max_length=16, description="sms or email")
    address: str = Field(
        min_length=1, max_length=320, description="the mobile number or the email address"
    )
    categories: list[str] = Field(
        default_factory=list, max_length=50, description="category slugs; empty: every category"
    )
    frequency: Literal["immediate", "daily"] | None = Field(
        default=None, description="email only: each item as it is published, or a daily digest"
    )


class VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str = Field(min_length=1, max_length=16)
    address: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=12, description="the 6-digit code")


def _too_many(exc: TooManyRequests | CodeCeilingReached, request: web.Request) -> web.Response:
    resp = problem(
        exc.status, exc.kind, exc.title, exc.detail, request.path, retry_after=exc.retry_after
    )
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


@routes.post("/api/v1/subscribers")
async def request_code(request: web.Request) -> web.Response:
    """Send a code to the number (same answer whether or not it is subscribed already);
    email: a confirmation link instead (publisher.web.mail)."""
    body = await read_json(request, SubscribeBody)
    if body.channel == "email":
        return await mail_web.request_subscription(
            request, body.address, body.categories, body.frequency
        )
    if body.channel != "sms":
        raise ValidationFailed(
            f"channel: {body.channel[:16]!r} cannot be subscribed to (sms or email)"
        )
    if body.frequency == "daily":
        raise ValidationFailed("frequency: daily digests are sent by email only")
    sms = request.app[SMS]
    flow = CodeSubscriptions(request.app[STORE], sms.policy())
    try:
        answer = await flow.request_code(
            body.channel, body.address, body.categories, request.remote
        )
    except (TooManyRequests, CodeCeilingReached) as exc:
        return _too_many(exc, request)
    worker = request.app.get(WORKER)
    if worker is not None:
        worker.wake()
    return json_response(answer, status=202)


@routes.post("/api/v1/subscribers/verify")
async def verify_code(request: web.Request) -> web.Response:
    body = await read_json(request, VerifyBody)
    sms = request.app[SMS]
    flow = CodeSubscriptions(request.app[STORE], sms.policy())
    try:
        _, answer = await flow.verify(body.channel, body.address, body.code.strip(), request.remote)
    except TooManyRequests as exc:
        return _too_many(exc, request)
    return json_response(answer)


# -- short links ----------------------------------------------------------------------------------


@routes.get("/s/{code}")
async def short_link(request: web.Request) -> web.Response:
    """302 to the public page of a published proactive item; 404 for anything else."""
    item_id = await request.app[SMS].links.resolve(request.app[STORE], request.match_info["code"])
    if item_id is None:
        raise NotFound(f"nothing at {request.path}")
    # under the site's own path, when it is served below one (https://host/gongkai/…)
    prefix = urlsplit(request.app[CONFIG].site.public_base).path
    raise web.HTTPFound(f"{prefix}/items/{item_id}")
