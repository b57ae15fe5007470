"""The gate in front of every staff page: a live session, and its CSRF token on every POST.

The API (/api/v1) keeps its bearer tokens (publisher.web.auth); pages under /staff use
the session cookie instead, and never accept a bearer token. A page asked for without
a live session redirects to the login form (303); a POST whose `csrf_token` field (or
X-CSRF-Token header, for the preview script) is not the session's is refused with 403.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from publisher.sessions import Sessions, StaffSession
from publisher.web.keys import CONFIG, USER_KEY
from publisher.web.problems import Handler
from publisher.web.public import url_prefix

STAFF_PREFIX = "/staff"
COOKIE = "gk_session"
#: the login form's CSRF token before there is a session (double submit)
LOGIN_COOKIE = "gk_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SESSION_KEY: Any = (
    web.RequestKey("staff_session", StaffSession)
    if hasattr(web, "RequestKey")
    else "publisher.staff_session"
)
SESSIONS = web.AppKey("sessions", Sessions)


def see_other(location: str) -> web.Response:
    """A 303 to `location` that may carry cookies (a raised HTTPSeeOther may not be returned)."""
    return web.Response(status=303, headers={"Location": location})


def is_staff_route(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    if resource is None:
        return False
    canonical = resource.canonical
    return canonical == STAFF_PREFIX or canonical.startswith(STAFF_PREFIX + "/")


def cookie_path(request: web.Request) -> str:
    return url_prefix(request.app[CONFIG]) + STAFF_PREFIX


def secure_cookie(request: web.Request) -> bool:
    mode = request.app[CONFIG].ui.secure_cookie
    return mode == "always" or (mode == "auto" and request.secure)


def set_cookie(resp: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    resp.set_cookie(
        name,
        value,
        path=cookie_path(request),
        httponly=True,
        samesite="Lax",
        secure=secure_cookie(request),
    )


def clear_cookie(resp: web.StreamResponse, request: web.Request, name: str) -> None:
    resp.del_cookie(name, path=cookie_path(request))


def login_url(request: web.Request, *, next_url: str | None = None) -> str:
    url = url_prefix(request.app[CONFIG]) + STAFF_PREFIX + "/login"
    return url + (f"?next={quote(next_url, safe='/')}" if next_url else "")


#: the page of each log-in step that may be left pending (publisher.sessions)
STEP_PAGES = {"password_change": "/password"}


def pending_url(request: web.Request, step: str) -> str:
    """The page where a pending log-in step is done."""
    return url_prefix(request.app[CONFIG]) + STAFF_PREFIX + STEP_PAGES[step]


def safe_next(request: web.Request, value: str | None) -> str:
    """Where to go after login: a path under /staff on this site, never elsewhere."""
    home = url_prefix(request.app[CONFIG]) + STAFF_PREFIX + "/"
    if not value:
        return home
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith(home) or "\\" in value:
        return home
    return value


async def submitted_token(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except (ValueError, HttpProcessingError):  # a malformed body: carries no token
            return ""
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def tokens_match(given: str, expected: str) -> bool:
    return bool(given) and bool(expected) and secrets.compare_digest(given, expected)


async def csrf_refused(request: web.Request) -> web.Response:
    from publisher.web.ui.render import error_page, gettext_for

    _ = gettext_for(request).gettext
    return error_page(
        request,
        403,
        _("The form has expired"),
        _(
            "This form was sent without a valid security token (it may be old or come from "
            "another site), so nothing was done. Go back, reload the page and try again."
        ),
    )


async def staff_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let a staff page through only with a live session (and, for POST, its CSRF token)."""
    session = None
    cookie = request.cookies.get(COOKIE)
    if cookie:
        session = await request.app[SESSIONS].lookup(cookie)
    if session is None:
        next_url = request.path_qs if request.method in SAFE_METHODS else None
        resp = see_other(login_url(request, next_url=next_url))
        if cookie:  # a dead cookie is cleared
            clear_cookie(resp, request, COOKIE)
        return resp
    if request.method not in SAFE_METHODS and not tokens_match(
        await submitted_token(request), session.csrf_token
    ):
        request[SESSION_KEY] = session
        return await csrf_refused(request)
    if session.pending:
        # a log-in step is still to do: only its page (and logging out) opens
        step_page = pending_url(request, session.pending[0])
        if request.path != step_page and request.path != cookie_path(request) + "/logout":
            return see_other(step_page)
    request[SESSION_KEY] = session
    request[USER_KEY] = session.user
    return await handler(request)


def current_session(request: web.Request) -> StaffSession:
    session = request.get(SESSION_KEY)
    assert isinstance(session, StaffSession), "staff page reached without a session"
    return session
