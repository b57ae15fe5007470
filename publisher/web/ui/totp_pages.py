"""Two-step verification (两步验证, issue 16): the code step of the login and the page
where a member of staff sets up TOTP (publisher.totp).

After a right password, `after_password` opens the session with the log-in steps still
to do (publisher.sessions), the second factor first, and sends the browser to the first
one's page: the code page (/staff/login/code) for a user with TOTP, the enrolment page
(/staff/totp) for a user whose role requires TOTP and who has none, the password page
for a forced password change, or else the staff pages. Until the second factor is done
the session is half-logged-in (publisher.web.ui.session.pending_gate); a right code (or
recovery code) or a finished enrolment settles that step and gives the session a new id
and CSRF token (Sessions.advance).
The QR code is inline SVG made on the server: no script, no external image.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from aiohttp import web
from markupsafe import Markup

from publisher.errors import Conflict, NotFound
from publisher.sessions import PasswordStep
from publisher.totp import PENDING_CODE, PENDING_ENROL, CodeLocked, CodeRefused, otpauth_uri, qr_svg
from publisher.web.keys import CONFIG
from publisher.web.problems import read_form
from publisher.web.public import url_prefix
from publisher.web.ui import views
from publisher.web.ui.render import gettext_for, render
from publisher.web.ui.session import (
    COOKIE,
    LOGIN_COOKIE,
    SECOND_FACTOR_STEPS,
    SESSIONS,
    STAFF_PREFIX,
    TOTP,
    any_session,
    clear_cookie,
    login_url,
    pending_url,
    safe_next,
    see_other,
    set_cookie,
)

routes = web.RouteTableDef()
log = logging.getLogger("publisher.web.ui.totp")

MAX_CODE = 64


def _staff(request: web.Request) -> str:
    return url_prefix(request.app[CONFIG]) + STAFF_PREFIX


def _field(form: Any, name: str, limit: int = MAX_CODE) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


async def after_password(
    request: web.Request, step: PasswordStep, next_value: str | None
) -> web.StreamResponse:
    """The answer to a right password: a new session whose pending steps are the second
    factor (if owed) and then what the password step left (a password change), written
    with the session, before its cookie leaves; and where to go first."""
    pending = await request.app[TOTP].steps_after_password(step.user) + step.pending
    session_id, session = await request.app[SESSIONS].open(step.user, pending=pending)
    target = safe_next(request, next_value)
    if not session.pending:
        location = target
    elif session.pending[0] in SECOND_FACTOR_STEPS:
        location = f"{pending_url(request, session.pending[0])}?next={quote(target, safe='/')}"
    else:
        location = pending_url(request, session.pending[0])
    resp = see_other(location)
    set_cookie(resp, request, COOKIE, session_id)
    clear_cookie(resp, request, LOGIN_COOKIE)
    return resp


# -- the second step of the login ----------------------------------------------------------


def _code_form(
    request: web.Request, *, error: str | None = None, status: int = 200, next_url: str = ""
) -> web.Response:
    return render(
        request,
        "login_code.html",
        status=status,
        error=error,
        next_url=next_url or safe_next(request, request.query.get("next")),
    )


@routes.get("/staff/login/code")
async def code_page(request: web.Request) -> web.StreamResponse:
    if any_session(request).pending[:1] != (PENDING_CODE,):
        return see_other(_staff(request) + "/")
    return _code_form(request)


@routes.post("/staff/login/code")
async def code_submit(request: web.Request) -> web.StreamResponse:
    _ = gettext_for(request).gettext
    session = any_session(request)
    if session.pending[:1] != (PENDING_CODE,):
        return see_other(_staff(request) + "/")
    form = await read_form(request)
    next_url = safe_next(request, _field(form, "next", 1024))
    code = _field(form, "code")
    if not code.strip():
        return _code_form(request, error=_("Enter the code."), status=400, next_url=next_url)
    totp = request.app[TOTP]
    try:
        kind = await totp.verify(session.user, code)
    except CodeLocked as exc:
        until = exc.until.astimezone(request.app[CONFIG].site.tz).strftime("%H:%M")
        return _code_form(
            request,
            error=_("Too many wrong codes: try again after %(time)s.") % {"time": until},
            status=429,
            next_url=next_url,
        )
    except CodeRefused:
        return _code_form(
            request,
            error=_(
                "Wrong or already used code. Check the time on your phone and enter the "
                "current code."
            ),
            status=401,
            next_url=next_url,
        )
    try:
        new_id = await request.app[SESSIONS].advance(session, PENDING_CODE)
    except NotFound:
        return see_other(login_url(request))
    if kind == "recovery":
        log.info("user %r logged in with a recovery code", session.user.name)
        next_url = _staff(request) + "/totp?recovered=1"
    rest = session.pending[1:]
    resp = see_other(pending_url(request, rest[0]) if rest else next_url)
    set_cookie(resp, request, COOKIE, new_id)
    return resp


# -- 两步验证: set up, status ----------------------------------------------------------------


async def _totp_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    _ = gettext_for(request).gettext
    session = any_session(request)
    totp = request.app[TOTP]
    state = await totp.status(session.user.id)
    context: dict[str, Any] = {
        "error": error,
        "notice": None,
        "enrolled": state.enrolled,
        "required": session.pending[:1] == (PENDING_ENROL,),
        "next_url": safe_next(request, request.query.get("next")),
    }
    if state.enrolled:
        context["since"] = views.local_time(request, state.confirmed_at)
        context["recovery_left"] = state.recovery_left
        if request.query.get("recovered"):
            context["notice"] = _("You logged in with a recovery code; it cannot be used again.")
        elif request.query.get("enrolled"):
            context["notice"] = _("Two-step verification is on.")
    else:
        secret = await totp.pending_secret(session.user.id)
        uri = otpauth_uri(secret, session.user.name, request.app[CONFIG].site.name)
        context["qr"] = Markup(qr_svg(uri))
        context["secret"] = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return render(request, "totp.html", status=status, **context)


@routes.get("/staff/totp")
async def totp_page(request: web.Request) -> web.StreamResponse:
    return await _totp_page(request)


@routes.post("/staff/totp/confirm")
async def confirm(request: web.Request) -> web.StreamResponse:
    """The first code from the app: TOTP is on, and the recovery codes are shown once."""
    _ = gettext_for(request).gettext
    session = any_session(request)
    form = await read_form(request)
    try:
        codes = await request.app[TOTP].confirm(session.user, _field(form, "code"))
    except CodeRefused:
        return await _totp_page(
            request,
            error=_(
                "Wrong code. Check the time on your phone and enter the code the app shows now."
            ),
            status=422,
        )
    except Conflict:
        return see_other(_staff(request) + "/totp")
    log.info("user %r turned on two-step verification", session.user.name)
    next_url = safe_next(request, _field(form, "next", 1024))
    new_id = None
    if session.pending[:1] == (PENDING_ENROL,):  # a required enrolment: that step is done
        try:
            new_id = await request.app[SESSIONS].advance(session, PENDING_ENROL)
        except NotFound:
            return see_other(login_url(request))
        if session.pending[1:]:  # then the next step (a password change)
            next_url = pending_url(request, session.pending[1])
    resp = render(request, "totp_codes.html", codes=codes, next_url=next_url)
    if new_id is not None:
        set_cookie(resp, request, COOKIE, new_id)
    return resp
