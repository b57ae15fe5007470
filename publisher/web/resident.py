"""Residents subscribing on the web: plain HTML forms that work without script.

- `GET /subscribe` — the subscribe page: an SMS form (number and categories) and an
  email form (address, categories, frequency); `?category=<slug>` ticks one category
  (the "subscribe to this category" links of the catalogue and item pages).
- `POST /subscribe/sms` — sends a code (the same core call as `POST /api/v1/subscribers`:
  same limits, same answer whether or not the number is subscribed) and redirects to
  `GET /subscribe/sms/code?ticket=…`, the second form, where `POST /subscribe/sms/verify`
  subscribes. The ticket carries the number sealed (AES-GCM, a key of its own, with an
  expiry), so the number is never written into a page or readable in a URL, and a
  reload or a change of display mode keeps the form.
- `POST /subscribe/email` — queues the confirmation mail (double opt-in, as the API);
  the page only says to check the mailbox.
- `GET /subscribe/leave` — leaving SMS the same way: number, code, done.
- `GET /display?large=1|0&contrast=1|0&back=…` — large type and high contrast (适老化).

The forms are anonymous, so their CSRF protection is a double-submit token: a random
value in an HttpOnly, SameSite=Lax cookie (path /subscribe) that each form repeats in a
hidden field; a POST whose two values differ does nothing and gets a 403 page. Errors
are HTML pages in the site's language with a 4xx status, never a problem document;
numbers and addresses are shown masked only, and a refused address is not shown again.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from multidict import MultiDict

from publisher.addresses import RegionNotAllowed, mask, normalize
from publisher.config import Config
from publisher.derived import derived_key
from publisher.errors import ChannelUnavailable, ConfigError, ValidationFailed
from publisher.readiness import can_send
from publisher.recipients import Frequency
from publisher.subscriptions import CodeCeilingReached, CodeSubscriptions, TooManyRequests
from publisher.web.display import COOKIE as DISPLAY_COOKIE
from publisher.web.display import COOKIE_MAX_AGE, Display, display_of, safe_back
from publisher.web.i18n import translations
from publisher.web.keys import CONFIG, STORE, WORKER
from publisher.web.mail import MAIL
from publisher.web.public import category_name, render_page, url_prefix
from publisher.web.sms import SMS
from publisher.web.ui.render import new_token
from publisher.web.ui.session import secure_cookie, see_other, tokens_match
from publisher.web.ui.wording import N_

log = logging.getLogger("publisher.web.resident")
routes = web.RouteTableDef()
_T = TypeVar("_T")

#: the anonymous forms' CSRF token (double submit), valid under /subscribe
FORM_COOKIE = "gk_form"
CSRF_FIELD = "csrf_token"
MAX_NUMBER = 32
MAX_EMAIL = 320
MAX_CODE = 12
MAX_TICKET = 600
MAX_CATEGORIES = 50
#: a channel's required field on its forms, and that field's length limit
ADDRESS_FIELD = {"sms": ("number", MAX_NUMBER), "email": ("email", MAX_EMAIL)}


# -- helpers -------------------------------------------------------------------------------


class Tickets:
    """The number between the two SMS forms, sealed with its purpose and an expiry."""

    def __init__(self, config: Config) -> None:
        self._aead = AESGCM(derived_key(config, "subscribe/web-ticket"))

    def seal(self, purpose: str, address: str, ttl_seconds: int) -> str:
        payload = json.dumps({"a": address, "e": int(time.time()) + ttl_seconds}).encode()
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, payload, purpose.encode())
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, purpose: str, ticket: str) -> str | None:
        """The address, or None when the ticket is not ours, for another purpose or expired."""
        if not ticket or len(ticket) > MAX_TICKET:
            return None
        try:
            raw = base64.urlsafe_b64decode(ticket + "=" * (-len(ticket) % 4))
            payload = json.loads(self._aead.decrypt(raw[:12], raw[12:], purpose.encode()))
        except (InvalidTag, ValueError, binascii.Error):
            return None
        if not isinstance(payload, dict) or payload.get("e", 0) < time.time():
            return None
        address = payload.get("a")
        return address if isinstance(address, str) else None


def _gettext(request: web.Request) -> Callable[[str], str]:
    return translations(request.app[CONFIG].ui.language).gettext


def _prefix(request: web.Request) -> str:
    return url_prefix(request.app[CONFIG])


def _form_token(request: web.Request) -> str:
    token = request.cookies.get(FORM_COOKIE, "")
    if not 32 <= len(token) <= 100:
        token = new_token()
    return token


def _page(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    back: str | None = None,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> web.Response:
    """A resident page carrying the form token (and its cookie); never cached: it may
    show a masked number, and its token is per browser."""
    token = _form_token(request)
    prefix = _prefix(request)
    resp = render_page(
        request,
        f"public/{template}",
        status=status,
        back=back if back is not None else prefix + "/subscribe",
        headers={"Cache-Control": "no-store", **(headers or {})},
        csrf_token=token,
        **context,
    )
    resp.set_cookie(
        FORM_COOKIE,
        token,
        path=prefix + "/subscribe",
        httponly=True,
        samesite="Lax",
        secure=secure_cookie(request),
    )
    return resp


def _notice(
    request: web.Request,
    status: int,
    heading: str,
    *paragraphs: str,
    links: list[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    back: str | None = None,
) -> web.Response:
    return _page(
        request,
        "notice.html",
        status=status,
        heading=heading,
        paragraphs=list(paragraphs),
        links=links or [],
        headers=headers,
        back=back,
    )


def _back_to_form(request: web.Request, anchor: str) -> list[tuple[str, str]]:
    _ = _gettext(request)
    return [(_prefix(request) + "/subscribe#" + anchor, _("Back to the subscribe page"))]


def _csrf_refused(request: web.Request) -> web.Response:
    _ = _gettext(request)
    return _notice(
        request,
        403,
        _("The form has expired"),
        _(
            "This form was sent without a valid security token (it may be old or come from "
            "another site), so nothing was done. Go back, reload the page and try again."
        ),
        links=_back_to_form(request, "sms"),
    )


def _unavailable(request: web.Request, exc: ConfigError) -> web.Response:
    _ = _gettext(request)
    log.error("resident subscriptions unavailable: %s", exc.detail)
    return _notice(
        request,
        503,
        _("Subscribing is not available"),
        _("Subscriptions cannot be taken at the moment. Please try again later."),
        headers={"Retry-After": "600"},
    )


def _channel_unavailable(request: web.Request, exc: ChannelUnavailable) -> web.Response:
    _ = _gettext(request)
    log.warning("resident subscription refused: %s", exc.detail)
    if exc.channel == "sms":
        heading = _("SMS subscriptions are not open yet.")
    else:
        heading = _("Email subscriptions are not open yet.")
    return _notice(
        request,
        503,
        heading,
        _("Nothing was sent. You can follow new items in a feed reader meanwhile."),
        links=_back_to_form(request, "feeds"),
    )


def _too_many(request: web.Request, exc: TooManyRequests, anchor: str) -> web.Response:
    _ = _gettext(request)
    return _notice(
        request,
        429,
        _("Please wait a little"),
        _(
            "There have been too many requests from this address or this network. Please try "
            "again in about %(minutes)d minutes."
        )
        % {"minutes": max(1, math.ceil(exc.retry_after / 60))},
        links=_back_to_form(request, anchor),
        headers={"Retry-After": str(exc.retry_after)},
    )


def _not_offered(request: web.Request) -> web.Response:
    _ = _gettext(request)
    return _notice(
        request,
        404,
        _("Not offered"),
        _("This kind of subscription is not offered by this site."),
        links=_back_to_form(request, "top"),
    )


async def _read_form(request: web.Request) -> MultiDict[str] | None:
    """The posted fields (text only), or None when the body is not a form or the CSRF
    token does not match the cookie's."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    try:
        form = await request.post()
    except (ValueError, HttpProcessingError):  # a malformed body (bad multipart headers …)
        return None
    token = form.get(CSRF_FIELD)
    if not isinstance(token, str) or not tokens_match(token, request.cookies.get(FORM_COOKIE, "")):
        return None
    # files are dropped: nothing here takes one
    return MultiDict((k, v) for k, v in form.items() if isinstance(v, str))


def _field(form: MultiDict[str], name: str, limit: int) -> str:
    return form.get(name, "").strip()[:limit]


def _categories(form: MultiDict[str]) -> list[str]:
    return [c.strip()[:64] for c in form.getall("categories", [])][:MAX_CATEGORIES]


def _frequency_names(request: web.Request) -> dict[Frequency, str]:
    _ = _gettext(request)
    return {
        Frequency.IMMEDIATE: _("Each item as it is published"),
        Frequency.DAILY: _("A daily digest"),
    }


def _chosen_names(request: web.Request, slugs: list[str] | tuple[str, ...]) -> str:
    _ = _gettext(request)
    config = request.app[CONFIG]
    if not slugs:
        return _("every category")
    return _(", ").join(category_name(config, s) for s in slugs)


def _wake(request: web.Request) -> None:
    worker = request.app.get(WORKER)
    if worker is not None:
        worker.wake()


def _known(request: web.Request, slugs: list[str]) -> list[str]:
    """The slugs that name a category (the ones a form can show ticked)."""
    config = request.app[CONFIG]
    return [c for c in slugs if config.category(c) is not None]


#: names of the regions residents are most likely to meet in allowed_regions
REGION_NAMES = {
    "CN": N_("mainland China"),
    "HK": N_("Hong Kong"),
    "MO": N_("Macao"),
    "TW": N_("Taiwan"),
}


def _region_names(request: web.Request) -> str:
    _ = _gettext(request)
    regions = sorted(request.app[SMS].settings.regions)
    return "、".join(_(REGION_NAMES[r]) if r in REGION_NAMES else r for r in regions)


def _ceiling_reached(request: web.Request, exc: CodeCeilingReached, anchor: str) -> web.Response:
    _ = _gettext(request)
    log.warning("resident code refused: %s", exc.detail)
    return _notice(
        request,
        503,
        _("Verification codes are paused"),
        _(
            "Too many codes have been requested on this site in the last hour, so no code was "
            "sent. Please try again in about %(minutes)d minutes."
        )
        % {"minutes": max(1, math.ceil(exc.retry_after / 60))},
        links=_back_to_form(request, anchor),
        headers={"Retry-After": str(exc.retry_after)},
    )


def _field_error(request: web.Request, exc: ValidationFailed, channel: str) -> tuple[str, str]:
    """(field, message) for a refusal of the core, in the resident's language; the core's
    own words (English, for the API) are not shown."""
    _ = _gettext(request)
    detail = exc.detail
    if detail.startswith("categor"):
        return "categories", _("One of the chosen categories does not exist.")
    if detail.startswith("frequency"):
        return "frequency", _("Choose how often you want to receive mail.")
    if isinstance(exc, RegionNotAllowed):
        return "address", _(
            "This number cannot subscribe: this site sends text messages only to mobile "
            "numbers of %(regions)s."
        ) % {"regions": _region_names(request)}
    if channel == "sms":
        return "address", _(
            "This is not a valid mobile number. Enter the 11 digits, e.g. 13800138000."
        )
    return "address", _("This is not a valid email address, e.g. name@example.com.")


async def _form_post(
    request: web.Request,
    channel: str,
    again: Callable[[MultiDict[str], tuple[str, str]], web.Response],
    call: Callable[[MultiDict[str], str], Awaitable[_T]],
    done: Callable[[_T], web.Response],
) -> web.Response:
    """The steps the forms that ask the core for something share, in order: 404 when the
    channel (sms, email) is not offered, 403 when the body is not a form or its CSRF token
    does not match, the form again (`again`, with a (field, message) error) when the
    channel's address field is empty; then `call(form, address)`, whose refusals become
    pages: 503 (not configured), 429 (too many requests) and the form again (a value
    refused). On success the worker is woken and `done` answers with what `call` returned."""
    _ = _gettext(request)
    channels = request.app[CONFIG].channels
    if not (channels.sms if channel == "sms" else channels.email).enabled:
        return _not_offered(request)
    form = await _read_form(request)
    if form is None:
        return _csrf_refused(request)
    address = _field(form, *ADDRESS_FIELD[channel])
    if not address:
        if channel == "sms":
            return again(form, ("address", _("Enter your mobile number.")))
        return again(form, ("address", _("Enter your email address.")))
    try:
        result = await call(form, address)
    except ChannelUnavailable as exc:
        return _channel_unavailable(request, exc)
    except ConfigError as exc:
        return _unavailable(request, exc)
    except TooManyRequests as exc:
        return _too_many(request, exc, channel)
    except CodeCeilingReached as exc:
        return _ceiling_reached(request, exc, channel)
    except ValidationFailed as exc:
        return again(form, _field_error(request, exc, channel))
    _wake(request)
    return done(result)


# -- display mode ----------------------------------------------------------------------------


def _flag(value: str | None, current: bool) -> bool | None:
    if value is None:
        return current
    return {"1": True, "0": False}.get(value)


@routes.get("/display")
async def set_display(request: web.Request) -> web.StreamResponse:
    """Large type and/or high contrast on or off, then back to the page the link was on."""
    _ = _gettext(request)
    prefix = _prefix(request)
    current = display_of(request)
    large = _flag(request.query.get("large"), current.large)
    contrast = _flag(request.query.get("contrast"), current.contrast)
    if large is None or contrast is None:
        return _notice(
            request,
            400,
            _("Unknown display setting"),
            _("Use the links at the top of the page to change the display."),
            links=[(prefix + "/", _("Back to the catalogue"))],
        )
    chosen = Display(large=large, contrast=contrast)
    resp = see_other(safe_back(prefix, request.query.get("back")))
    if chosen.cookie_value:
        resp.set_cookie(
            DISPLAY_COOKIE,
            chosen.cookie_value,
            path=prefix + "/",
            max_age=COOKIE_MAX_AGE,
            httponly=True,
            samesite="Lax",
            secure=secure_cookie(request),
        )
    else:
        resp.del_cookie(DISPLAY_COOKIE, path=prefix + "/")
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- the subscribe page ------------------------------------------------------------------------


def _subscribe_form(
    request: web.Request,
    *,
    status: int = 200,
    sms_chosen: list[str] | None = None,
    email_chosen: list[str] | None = None,
    frequency: str = Frequency.IMMEDIATE.value,
    errors: Mapping[str, tuple[str, str]] | None = None,
) -> web.Response:
    """The page with both forms; `errors` maps a form (sms, email) to (field, message)."""
    config = request.app[CONFIG]
    prefix = _prefix(request)
    channels = config.channels
    return _page(
        request,
        "subscribe.html",
        status=status,
        taxonomy=config.taxonomy,
        sms_enabled=channels.sms.enabled,
        email_enabled=channels.email.enabled,
        # a form is offered only when what it promises (a code, a mail) would go out
        sms_ready=can_send(config, "sms"),
        email_ready=can_send(config, "email"),
        rss_enabled=channels.rss.enabled,
        sms_chosen=sms_chosen or [],
        email_chosen=email_chosen or [],
        frequency=frequency,
        frequencies=[(f.value, name) for f, name in _frequency_names(request).items()],
        errors=errors or {},
        sms_action=prefix + "/subscribe/sms",
        email_action=prefix + "/subscribe/email",
        leave_url=prefix + "/subscribe/leave",
        feeds=[
            {
                "name": c.name,
                "rss": f"{prefix}/feeds/{c.slug}.rss",
                "atom": f"{prefix}/feeds/{c.slug}.atom",
            }
            for c in config.taxonomy
        ],
        all_rss=f"{prefix}/feeds/all.rss",
        all_atom=f"{prefix}/feeds/all.atom",
    )


@routes.get("/subscribe")
async def subscribe_page(request: web.Request) -> web.Response:
    _ = _gettext(request)
    config = request.app[CONFIG]
    category = request.query.get("category", "").strip()
    if category and config.category(category) is None:
        return _notice(
            request,
            400,
            _("No such category"),
            _("The category in this link does not exist. Choose one below instead."),
            links=_back_to_form(request, "sms"),
        )
    chosen = [category] if category else []
    return _subscribe_form(request, sms_chosen=chosen, email_chosen=chosen)


# -- SMS: number, code, subscribed --------------------------------------------------------------


def _code_flow(request: web.Request) -> CodeSubscriptions:
    return CodeSubscriptions(request.app[STORE], request.app[SMS].policy())


def _code_url(request: web.Request, path: str, ticket: str) -> str:
    return f"{_prefix(request)}{path}?{urlencode({'ticket': ticket})}"


async def _code_request(
    request: web.Request,
    purpose: Literal["subscribe", "leave"],
    again: Callable[[MultiDict[str], tuple[str, str]], web.Response],
    categories: Callable[[MultiDict[str]], list[str]],
) -> web.Response:
    """A number form's POST (as `_form_post`): a code sent for `purpose`, then a redirect to
    the code form, the number sealed in its ticket."""
    path = "/subscribe/leave/code" if purpose == "leave" else "/subscribe/sms/code"

    async def send_code(form: MultiDict[str], number: str) -> str:
        flow = _code_flow(request)
        await flow.request_code("sms", number, categories(form), request.remote, purpose=purpose)
        return Tickets(request.app[CONFIG]).seal(
            f"sms/{purpose}", normalize("sms", number), flow.policy.ttl_seconds
        )

    def to_code_form(ticket: str) -> web.Response:
        return see_other(_code_url(request, path, ticket))

    return await _form_post(request, "sms", again, send_code, to_code_form)


@routes.post("/subscribe/sms")
async def sms_request(request: web.Request) -> web.Response:
    def again(form: MultiDict[str], error: tuple[str, str]) -> web.Response:
        chosen = _known(request, _categories(form))
        return _subscribe_form(request, status=422, sms_chosen=chosen, errors={"sms": error})

    return await _code_request(request, "subscribe", again, _categories)


def _code_form(
    request: web.Request,
    *,
    purpose: str,
    number: str,
    ticket: str,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    prefix = _prefix(request)
    sms = request.app[SMS]
    leaving = purpose == "sms/leave"
    path = "/subscribe/leave/code" if leaving else "/subscribe/sms/code"
    consent = (
        "" if leaving else sms.policy().consent_text.format(site=request.app[CONFIG].site.name)
    )
    return _page(
        request,
        "sms_code.html",
        status=status,
        back=_code_url(request, path, ticket),
        leaving=leaving,
        masked=mask(number),
        minutes=sms.policy().ttl_seconds // 60,
        ticket=ticket,
        error=error,
        consent_text=consent,
        action=prefix + ("/subscribe/leave/verify" if leaving else "/subscribe/sms/verify"),
        again_url=prefix + ("/subscribe/leave" if leaving else "/subscribe#sms"),
    )


def _ticket_expired(request: web.Request, *, leaving: bool) -> web.Response:
    _ = _gettext(request)
    prefix = _prefix(request)
    again = prefix + ("/subscribe/leave" if leaving else "/subscribe#sms")
    return _notice(
        request,
        410,
        _("This form has expired"),
        _("The code form is valid only as long as its code. Please request a new code."),
        links=[(again, _("Request a new code"))],
    )


@routes.get("/subscribe/sms/code")
async def sms_code_page(request: web.Request) -> web.Response:
    return await _code_page(request, "sms/subscribe")


async def _code_page(request: web.Request, purpose: str) -> web.Response:
    ticket = request.query.get("ticket", "")
    try:
        number = Tickets(request.app[CONFIG]).open(purpose, ticket)
    except ConfigError as exc:
        return _unavailable(request, exc)
    if number is None:
        return _ticket_expired(request, leaving=purpose == "sms/leave")
    return _code_form(request, purpose=purpose, number=number, ticket=ticket)


@routes.post("/subscribe/sms/verify")
async def sms_verify(request: web.Request) -> web.Response:
    return await _verify(request, "sms/subscribe")


async def _verify(request: web.Request, purpose: str) -> web.Response:
    """The code form's POST: subscribe (purpose sms/subscribe) or leave (sms/leave)."""
    _ = _gettext(request)
    leaving = purpose == "sms/leave"
    form = await _read_form(request)
    if form is None:
        return _csrf_refused(request)
    ticket = _field(form, "ticket", MAX_TICKET)
    code = _field(form, "code", MAX_CODE)
    try:
        number = Tickets(request.app[CONFIG]).open(purpose, ticket)
    except ConfigError as exc:
        return _unavailable(request, exc)
    if number is None:
        return _ticket_expired(request, leaving=leaving)

    def again(error: str) -> web.Response:
        return _code_form(
            request, purpose=purpose, number=number, ticket=ticket, status=422, error=error
        )

    if not code:
        return again(_("Enter the code from the message."))
    try:
        flow = _code_flow(request)
        if leaving:
            await flow.verify_leave("sms", number, code, request.remote)
        else:
            recipient, _answer = await flow.verify("sms", number, code, request.remote)
    except ConfigError as exc:
        return _unavailable(request, exc)
    except TooManyRequests as exc:
        return _too_many(request, exc, "sms")
    except ValidationFailed:
        return again(
            _("The code is wrong or has expired. Check the message, or request a new code.")
        )
    prefix = _prefix(request)
    if leaving:
        log.info("sms subscriber %s left by web", mask(number))
        return _notice(
            request,
            200,
            _("Unsubscribed"),
            _("%(number)s will receive no more messages from this site.")
            % {"number": mask(number)},
            links=[(prefix + "/", _("Back to the catalogue"))],
        )
    log.info("sms subscription by web for %s", recipient.masked)
    return _notice(
        request,
        200,
        _("Subscribed"),
        _("%(number)s now receives %(categories)s by SMS.")
        % {"number": recipient.masked, "categories": _chosen_names(request, recipient.categories)},
        _("To stop, reply TD to any of our messages, or use the unsubscribe page."),
        links=[
            (prefix + "/", _("Back to the catalogue")),
            (prefix + "/subscribe/leave", _("Unsubscribe from SMS")),
        ],
    )


# -- SMS: leaving by code ----------------------------------------------------------------------


@routes.get("/subscribe/leave")
async def leave_page(request: web.Request) -> web.Response:
    if not request.app[CONFIG].channels.sms.enabled:
        return _not_offered(request)
    return _leave_form(request)


def _leave_form(
    request: web.Request, *, status: int = 200, error: str | None = None
) -> web.Response:
    prefix = _prefix(request)
    return _page(
        request,
        "sms_leave.html",
        status=status,
        back=prefix + "/subscribe/leave",
        error=error,
        action=prefix + "/subscribe/leave",
    )


@routes.post("/subscribe/leave")
async def leave_request(request: web.Request) -> web.Response:
    def again(form: MultiDict[str], error: tuple[str, str]) -> web.Response:
        return _leave_form(request, status=422, error=error[1])

    return await _code_request(request, "leave", again, lambda form: [])


@routes.get("/subscribe/leave/code")
async def leave_code_page(request: web.Request) -> web.Response:
    return await _code_page(request, "sms/leave")


@routes.post("/subscribe/leave/verify")
async def leave_verify(request: web.Request) -> web.Response:
    return await _verify(request, "sms/leave")


# -- email: address, categories, frequency -> check your mail -----------------------------------


def _frequency(form: MultiDict[str]) -> str:
    return _field(form, "frequency", 16) or Frequency.IMMEDIATE.value


@routes.post("/subscribe/email")
async def email_request(request: web.Request) -> web.Response:
    _ = _gettext(request)

    def again(form: MultiDict[str], error: tuple[str, str]) -> web.Response:
        return _subscribe_form(
            request,
            status=422,
            email_chosen=_known(request, _categories(form)),
            frequency=_frequency(form),
            errors={"email": error},
        )

    async def call(form: MultiDict[str], address: str) -> tuple[str, int]:
        flow = request.app[MAIL].flow(request.app[STORE])
        answer = await flow.request(address, _categories(form), _frequency(form), request.remote)
        return answer["address"], flow.settings.confirm_ttl_hours

    def done(sent: tuple[str, int]) -> web.Response:
        return _notice(
            request,
            202,
            _("Check your mail"),
            _(
                "We have sent a message to %(address)s. Open the link in it within %(hours)d "
                "hours to confirm: nothing is subscribed until you do."
            )
            % {"address": sent[0], "hours": sent[1]},
            _("No message? Look in the spam folder, or send the form again later."),
            links=[(_prefix(request) + "/", _("Back to the catalogue"))],
        )

    return await _form_post(request, "email", again, call, done)
