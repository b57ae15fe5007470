"""Email subscriptions on the web side: the residents' pages behind the links in their mail.

- `POST /api/v1/subscribers` with `"channel": "email"` is answered here (the route lives
  with the SMS one in publisher.web.sms, which hands email requests over).
- `GET /subscribe/confirm/{token}` shows what will be subscribed and the consent text;
  its `POST` subscribes (a link scanner that follows GETs never confirms anything).
- `GET /subscribe/manage/{token}` changes categories and frequency, or leaves.
- `GET /unsubscribe/{token}` asks; `POST /unsubscribe/{token}` leaves at once, with no
  cookie and no further page: RFC 8058 one-click (`List-Unsubscribe=One-Click`).

No login anywhere: the signed token is the key. Pages are plain server-rendered HTML on
templates/public/base.html and answer their own errors as pages, never as a 500.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from channels.mail import MailSettings, mail_settings
from publisher.addresses import mask
from publisher.config import Config
from publisher.errors import NotFound, ValidationFailed
from publisher.mail_links import BadToken, ExpiredToken, LinkPurpose, RevokedToken
from publisher.mail_subscriptions import FREQUENCY_NAMES, EmailSubscriptions, category_names
from publisher.recipients import Frequency, Recipient, RecipientStatus
from publisher.store.sql import SqlStore
from publisher.subscriptions import TooManyRequests
from publisher.web.api import json_response
from publisher.web.i18n import translations
from publisher.web.keys import CONFIG, STORE, WORKER
from publisher.web.problems import problem, read_form
from publisher.web.public import render_page, url_prefix
from publisher.web.ui import wording

log = logging.getLogger("publisher.mail")
routes = web.RouteTableDef()


@dataclass
class MailWeb:
    """Made on first use: a store without a data key can still serve everything else."""

    config: Config
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> MailSettings:
        if "settings" not in self._cache:
            self._cache["settings"] = mail_settings(self.config)
        settings: MailSettings = self._cache["settings"]
        return settings

    def flow(self, store: SqlStore) -> EmailSubscriptions:
        if "flow" not in self._cache:
            self._cache["flow"] = EmailSubscriptions(store, self.settings)
        flow: EmailSubscriptions = self._cache["flow"]
        return flow


MAIL = web.AppKey("mail", MailWeb)


def setup(app: web.Application, config: Config) -> None:
    app[MAIL] = MailWeb(config)
    app.add_routes(routes)


async def request_subscription(
    request: web.Request, address: str, categories: list[str], frequency: str | None
) -> web.Response:
    """`POST /api/v1/subscribers` for email: 202 and a confirmation mail, or 429."""
    flow = request.app[MAIL].flow(request.app[STORE])
    try:
        answer = await flow.request(address, categories, frequency, request.remote)
    except TooManyRequests as exc:
        resp = problem(
            exc.status, exc.kind, exc.title, exc.detail, request.path, retry_after=exc.retry_after
        )
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    worker = request.app.get(WORKER)
    if worker is not None:
        worker.wake()
    return json_response(answer, status=202)


# -- pages ----------------------------------------------------------------------------------


def _page(
    request: web.Request, heading: str, *, status: int = 200, message: str = "", **context: Any
) -> web.Response:
    context.setdefault("manage_url", None)
    context.setdefault("resubscribe_url", None)
    context.setdefault("error", False)
    # the display toggles come back here only on a GET: a POST's page cannot be fetched again
    return render_page(
        request,
        "public/subscription.html",
        status=status,
        heading=heading,
        message=message,
        mode=context.pop("mode", ""),
        **context,
    )


def _bad_link(request: web.Request) -> web.Response:
    return _page(
        request,
        "链接无效",
        status=404,
        message="此链接无效或已失效。请使用邮件中的完整链接，或重新订阅。",
    )


def _expired(request: web.Request) -> web.Response:
    return _page(
        request,
        "链接已过期",
        status=410,
        message="确认链接已过期，订阅未生效。请重新提交订阅申请。",
    )


def _revoked(request: web.Request) -> web.Response:
    return _page(
        request,
        "链接已失效",
        status=410,
        message=(
            "此确认链接已经使用过，或者在您退订、注销之后已不再有效，本次订阅未生效。"
            "如需订阅，请重新提交订阅申请，并使用新邮件中的链接确认。"
        ),
        resubscribe_url=url_prefix(request.app[CONFIG]) + "/subscribe#email",
    )


def _here(request: web.Request) -> str:
    return url_prefix(request.app[CONFIG]) + request.path


def _manage_url(request: web.Request, flow: EmailSubscriptions, recipient: Recipient) -> str:
    token = flow.links.token(LinkPurpose.MANAGE, recipient.id, recipient.link_nonce)
    return f"{url_prefix(request.app[CONFIG])}/subscribe/manage/{token}"


@routes.get("/subscribe/confirm/{token}")
async def confirm_page(request: web.Request) -> web.Response:
    flow = request.app[MAIL].flow(request.app[STORE])
    try:
        req = await flow.check(request.match_info["token"])
    except ExpiredToken:
        return _expired(request)
    except RevokedToken:
        return _revoked(request)
    except BadToken:
        return _bad_link(request)
    config = request.app[CONFIG]
    return _page(
        request,
        "确认订阅",
        mode="confirm",
        message="请核对以下订阅内容，点击“确认订阅”后生效。",
        address=mask(req.address),
        categories=category_names(config, req.categories),
        frequency=FREQUENCY_NAMES[Frequency(req.frequency)],
        consent_text=flow.consent_text(),
        action=_here(request),
    )


@routes.post("/subscribe/confirm/{token}")
async def confirm(request: web.Request) -> web.Response:
    flow = request.app[MAIL].flow(request.app[STORE])
    try:
        recipient = await flow.confirm(request.match_info["token"], request.remote)
    except ExpiredToken:
        return _expired(request)
    except RevokedToken:
        log.info("a used or revoked email confirmation link was refused")
        return _revoked(request)
    except BadToken:
        return _bad_link(request)
    log.info("email subscription confirmed for %s", recipient.masked)
    config = request.app[CONFIG]
    return _page(
        request,
        "订阅成功",
        message=(
            f"{recipient.masked} 已订阅{category_names(config, recipient.categories)}"
            f"（{FREQUENCY_NAMES[recipient.frequency]}）。每封邮件底部都有退订链接。"
        ),
        manage_url=_manage_url(request, flow, recipient),
    )


async def _subscriber(
    request: web.Request, purpose: LinkPurpose
) -> tuple[EmailSubscriptions, Recipient | None]:
    flow = request.app[MAIL].flow(request.app[STORE])
    try:
        return flow, await flow.by_token(purpose, request.match_info["token"])
    except (BadToken, NotFound):
        return flow, None


def _left(request: web.Request) -> web.Response:
    return _page(
        request,
        "您已退订",
        message="您将不再收到本站的订阅邮件。如需重新订阅，请再次提交订阅申请。",
    )


def _manage_form(
    request: web.Request,
    recipient: Recipient,
    *,
    status: int = 200,
    message: str = "",
    error: bool = False,
) -> web.Response:
    config = request.app[CONFIG]
    return _page(
        request,
        "管理邮件订阅",
        status=status,
        mode="manage",
        message=message,
        error=error,
        address=recipient.masked,
        taxonomy=config.taxonomy,
        chosen=list(recipient.categories),
        frequency=recipient.frequency.value,
        frequencies=[(f.value, FREQUENCY_NAMES[f]) for f in Frequency],
        action=_here(request),
    )


@routes.get("/subscribe/manage/{token}")
async def manage_page(request: web.Request) -> web.Response:
    _, recipient = await _subscriber(request, LinkPurpose.MANAGE)
    if recipient is None:
        return _bad_link(request)
    if recipient.status is not RecipientStatus.ACTIVE:
        return _left(request)
    return _manage_form(request, recipient)


@routes.post("/subscribe/manage/{token}")
async def manage(request: web.Request) -> web.Response:
    flow, recipient = await _subscriber(request, LinkPurpose.MANAGE)
    if recipient is None:
        return _bad_link(request)
    form = await read_form(request)
    if form.get("action") == "leave":
        await flow.leave(recipient, how="email_manage_page")
        log.info("email subscriber %s left from the manage page", recipient.masked)
        return _left(request)
    if recipient.status is not RecipientStatus.ACTIVE:
        return _left(request)
    categories = [str(c) for c in form.getall("categories", [])]
    try:
        updated = await flow.update(recipient, categories, str(form.get("frequency", "")))
    except ValidationFailed as exc:
        why = wording.core_message(
            translations(request.app[CONFIG].ui.language).gettext, exc.detail
        )
        return _manage_form(request, recipient, status=422, message=f"未保存：{why}", error=True)
    return _manage_form(request, updated, message="已保存。")


@routes.get("/unsubscribe/{token}")
async def unsubscribe_page(request: web.Request) -> web.Response:
    _, recipient = await _subscriber(request, LinkPurpose.UNSUBSCRIBE)
    if recipient is None:
        return _bad_link(request)
    if recipient.status is not RecipientStatus.ACTIVE:
        return _left(request)
    return _page(
        request,
        "退订邮件",
        mode="unsubscribe",
        message="确认后，您将不再收到本站的任何订阅邮件。",
        address=recipient.masked,
        action=_here(request),
    )


@routes.post("/unsubscribe/{token}")
async def unsubscribe(request: web.Request) -> web.Response:
    """The page's button and RFC 8058 one-click (body `List-Unsubscribe=One-Click`) alike:
    no cookie, no confirmation page, and a repeat changes nothing."""
    flow, recipient = await _subscriber(request, LinkPurpose.UNSUBSCRIBE)
    if recipient is None:
        return _bad_link(request)
    form = await read_form(request)
    one_click = form.get("List-Unsubscribe") == "One-Click"
    if recipient.status is not RecipientStatus.UNSUBSCRIBED:
        await flow.leave(recipient, how="email_one_click" if one_click else "email_link")
        log.info("email subscriber %s unsubscribed", recipient.masked)
    return _left(request)
