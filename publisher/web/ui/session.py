"""The gate in front of every staff page: a live session, and its CSRF token on every POST.

The API (/api/v1) keeps its bearer tokens (publisher.web.auth); pages under /staff use
the session cookie instead, and never accept a bearer token. A page asked for without
a live session redirects to the login form (303); a POST whose `csrf_token` field (or
X-CSRF-Token header, for the preview script) is not the session's is refused with 403.

A log-in is a chain of steps (publisher.sessions): a session with steps pending opens
only the page of its first step, and logout; every other staff page redirects there and
runs nothing. The steps come in this order: the second factor right after the password
("totp": a TOTP code, or "enrol": a TOTP enrolment the role requires; publisher.totp),
then "password_change" (a weak or expired password). A session that still owes its
second factor is half-logged-in: it lasts at most PENDING_MINUTES and never sets the
request's user. The API does not read the cookie at all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from publisher.sessions import PASSWORD_CHANGE, Sessions, StaffSession
from publisher.store.sql import utcnow
from publisher.tokens import token_present_and_same
from publisher.totp import PENDING_CODE, PENDING_ENROL, PENDING_MINUTES, Totp
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
TOTP = web.AppKey("totp", Totp)

#: the log-in steps that are the second factor: a session owing one is half-logged-in
SECOND_FACTOR_STEPS = frozenset({PENDING_CODE, PENDING_ENROL})
#: (method, route) a session with log-in steps pending may reach, by its first step
PENDING_ROUTES: dict[str, frozenset[tuple[str, str]]] = {
    PENDING_CODE: frozenset(
        {("GET", "/staff/login/code"), ("POST", "/staff/login/code"), ("POST", "/staff/logout")}
    ),
    PENDING_ENROL: frozenset(
        {("GET", "/staff/totp"), ("POST", "/staff/totp/confirm"), ("POST", "/staff/logout")}
    ),
    PASSWORD_CHANGE: frozenset(
        {("GET", "/staff/password"), ("POST", "/staff/password"), ("POST", "/staff/logout")}
    ),
}
#: the page of each log-in step that may be left pending (under /staff)
STEP_PAGES = {PENDING_CODE: "/login/code", PENDING_ENROL: "/totp", PASSWORD_CHANGE: "/password"}


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


def pending_url(request: web.Request, step: str) -> str:
    """The page where a pending log-in step is done."""
    return url_prefix(request.app[CONFIG]) + STAFF_PREFIX + STEP_PAGES[step]


def owes_second_factor(session: StaffSession) -> bool:
    """Whether the session still owes its second factor (is half-logged-in)."""
    return any(step in SECOND_FACTOR_STEPS for step in session.pending)


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
    return token_present_and_same(given, expected)


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
    if session.pending:
        return await pending_gate(request, handler, session, cookie or "")
    if request.method not in SAFE_METHODS and not tokens_match(
        await submitted_token(request), session.csrf_token
    ):
        request[SESSION_KEY] = session
        return await csrf_refused(request)
    request[SESSION_KEY] = session
    request[USER_KEY] = session.user
    return await handler(request)


async def pending_gate(
    request: web.Request, handler: Handler, session: StaffSession, cookie: str
) -> web.StreamResponse:
    """A session with log-in steps pending: only the page of its first step (with its
    CSRF token), and logout. One still owing its second factor expires after
    PENDING_MINUTES and never sets the request's user."""
    step = session.pending[0]
    allowed = PENDING_ROUTES.get(step, frozenset())
    half = owes_second_factor(session)
    # the second factor comes first: a session owing it behind another step is not one
    # this code made, and an unknown step cannot be settled
    if (
        not allowed
        or (half and step not in SECOND_FACTOR_STEPS)
        or (half and session.created_at <= utcnow() - timedelta(minutes=PENDING_MINUTES))
    ):
        await request.app[SESSIONS].end(cookie)
        resp = see_other(login_url(request))
        clear_cookie(resp, request, COOKIE)
        return resp
    resource = request.match_info.route.resource
    method = "GET" if request.method == "HEAD" else request.method
    if resource is None or (method, resource.canonical) not in allowed:
        return see_other(pending_url(request, step))
    request[SESSION_KEY] = session
    if request.method not in SAFE_METHODS and not tokens_match(
        await submitted_token(request), session.csrf_token
    ):
        return await csrf_refused(request)
    if not half:  # the password and the second factor are done: the user is known
        request[USER_KEY] = session.user
    return await handler(request)


def current_session(request: web.Request, *, step: str | None = None) -> StaffSession:
    """The full session of a staff page; with `step`, of the page of that log-in step,
    which a session whose first pending step it is may also reach."""
    session = request.get(SESSION_KEY)
    assert isinstance(session, StaffSession), "staff page reached without a session"
    # not an assert: this must hold under python -O too
    if session.pending and (step is None or session.pending[0] != step):
        raise RuntimeError("staff page reached by a session with log-in steps pending")
    return session


def any_session(request: web.Request) -> StaffSession:
    """The session of a page a session with log-in steps pending may reach (the TOTP
    pages; the staff gate lets it reach only the page of its first step)."""
    session = request.get(SESSION_KEY)
    assert isinstance(session, StaffSession), "staff page reached without a session"
    return session
