"""Login, logout, the staff home page and the UI's static files."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from publisher.errors import Busy, ValidationFailed
from publisher.models import ItemStatus
from publisher.policy import Do, may
from publisher.sessions import PASSWORD_CHANGE, LockedOut, LoginFailed, client_network
from publisher.store.sql import ItemQuery
from publisher.subscriptions import code_ceiling
from publisher.web.keys import CONFIG, STORE
from publisher.web.public import url_prefix
from publisher.web.ui import views, wording
from publisher.web.ui.render import STATIC_DIR, gettext_for, new_token, render
from publisher.web.ui.session import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSIONS,
    clear_cookie,
    current_session,
    login_url,
    pending_url,
    safe_next,
    see_other,
    set_cookie,
    tokens_match,
)
from publisher.web.ui.totp_pages import after_password

routes = web.RouteTableDef()

#: the only files /static/ui/ serves, with their types
STATIC_FILES = {"ui.css": "text/css", "ui.js": "text/javascript"}
MAX_FIELD = 1024


def _login_form(
    request: web.Request, *, error: str | None = None, status: int = 200, name: str = ""
) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or new_token()
    if len(token) > 100:
        token = new_token()
    resp = render(
        request,
        "login.html",
        status=status,
        error=error,
        name=name,
        login_token=token,
        next_url=safe_next(request, request.query.get("next")),
    )
    set_cookie(resp, request, LOGIN_COOKIE, token)
    return resp


@routes.get("/staff/login")
async def login_page(request: web.Request) -> web.Response:
    return _login_form(request)


@routes.post("/staff/login")
async def login(request: web.Request) -> web.StreamResponse:
    _ = gettext_for(request).gettext
    try:
        form = await request.post()
    except (ValueError, HttpProcessingError):  # a malformed body: carries no token
        form = None
    field = {k: v for k, v in (form or {}).items() if isinstance(v, str)}
    if not tokens_match(field.get(CSRF_FIELD, ""), request.cookies.get(LOGIN_COOKIE, "")):
        from publisher.web.ui.session import csrf_refused

        return await csrf_refused(request)
    name = field.get("username", "").strip()[:64]
    password = field.get("password", "")[:MAX_FIELD]
    if not name or not password:
        return _login_form(
            request, error=_("Enter your user name and password."), status=400, name=name
        )
    sessions = request.app[SESSIONS]
    try:
        # the password step; the further steps (a second factor, a password change) are
        # kept on the session as pending, and the staff gate leads there first
        step = await sessions.check_password(name, password, network=client_network(request.remote))
    except LockedOut as exc:
        until = exc.until.astimezone(request.app[CONFIG].site.tz).strftime("%H:%M:%S")
        if exc.scope == "account":
            error = _("Too many failed logins for this account: it can be tried again at %(time)s.")
        elif exc.scope == "network":
            error = _("Too many failed logins from your network: try again after %(time)s.")
        else:
            error = _("Too many failed logins: this account is locked until %(time)s.")
        return _login_form(request, error=error % {"time": until}, status=429, name=name)
    except LoginFailed:
        return _login_form(request, error=_("Wrong user name or password."), status=401, name=name)
    except Busy:
        return _login_form(
            request,
            error=_("The server is busy: please try again in a moment."),
            status=503,
            name=name,
        )
    # the rest (a TOTP code or enrolment still owed? a password change?) is
    # publisher.web.ui.totp_pages.after_password
    return await after_password(request, step, field.get("next"))


def password_problem_text(request: web.Request, code: str) -> str:
    """A password policy complaint (publisher.passwords) in the UI's language."""
    return wording.password_problem(
        gettext_for(request).gettext, code, request.app[CONFIG].security.login.min_password_length
    )


def _password_form(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    session = current_session(request, step=PASSWORD_CHANGE)
    return render(
        request,
        "password.html",
        status=status,
        error=error,
        forced=PASSWORD_CHANGE in session.pending,
        min_length=request.app[CONFIG].security.login.min_password_length,
    )


@routes.get("/staff/password")
async def password_page(request: web.Request) -> web.Response:
    """Set a new password: asked for by the log-in when the password is weak or too old,
    or chosen by the user."""
    return _password_form(request)


@routes.post("/staff/password")
async def change_password(request: web.Request) -> web.StreamResponse:
    _ = gettext_for(request).gettext
    session = current_session(request, step=PASSWORD_CHANGE)
    store = request.app[STORE]
    form = await request.post()
    field = {k: v[:MAX_FIELD] for k, v in form.items() if isinstance(v, str)}
    current, new = field.get("current", ""), field.get("password", "")
    if new != field.get("repeat", ""):
        return _password_form(request, error=_("The two new passwords differ."), status=422)
    if new == current:
        return _password_form(
            request, error=_("The new password must differ from the current one."), status=422
        )
    try:
        # the current password is asked again, so an unattended session cannot change it;
        # the try is counted like a log-in (no guessing through this page)
        await request.app[SESSIONS].check_password(
            session.user.name, current, network=client_network(request.remote), action="reauth"
        )
    except Busy:
        return _password_form(
            request, error=_("The server is busy: please try again in a moment."), status=503
        )
    except LockedOut as exc:
        until = exc.until.astimezone(request.app[CONFIG].site.tz).strftime("%H:%M:%S")
        error = _("Too many failed logins: this account is locked until %(time)s.")
        return _password_form(request, error=error % {"time": until}, status=429)
    except LoginFailed:
        return _password_form(request, error=_("The current password is wrong."), status=422)
    found = await store.password_problems(session.user.name, new)
    if found:
        return _password_form(
            request, error=password_problem_text(request, found[0].code), status=422
        )
    try:
        await store.set_password(session.user.name, new)  # ends every session, this one too
    except ValidationFailed as exc:
        codes = exc.extra.get("codes") or ["weak"]
        return _password_form(request, error=password_problem_text(request, codes[0]), status=422)
    sessions = request.app[SESSIONS]
    user = await store.get_user(session.user.name)
    rest = tuple(p for p in session.pending if p != PASSWORD_CHANGE)
    session_id, fresh = await sessions.open(user, pending=rest)
    target = pending_url(request, fresh.pending[0]) if fresh.pending else None
    resp = see_other(target or (url_prefix(request.app[CONFIG]) + "/staff/?password=1"))
    set_cookie(resp, request, COOKIE, session_id)
    return resp


@routes.post("/staff/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    cookie = request.cookies.get(COOKIE, "")
    await request.app[SESSIONS].end(cookie)
    resp = see_other(login_url(request) + "?bye=1")
    clear_cookie(resp, request, COOKIE)
    return resp


@routes.get("/staff/")
async def home(request: web.Request) -> web.Response:
    """The staff home: what needs me, and the latest items by status."""
    store = request.app[STORE]
    user = current_session(request).user
    try:
        status = ItemStatus(request.query["status"]) if request.query.get("status") else None
    except ValueError:
        status = None
    items, total = await store.list_items(ItemQuery(status=status, limit=50))
    waiting = await views.review_queue(store)
    return render(
        request,
        "home.html",
        code_ceiling=await code_ceiling(store),
        items=[views.item_row(request, i) for i in items],
        total=total,
        current_status=status.value if status else "",
        statuses=[(s.value, views.status_label(request, s)) for s in ItemStatus],
        waiting=len(waiting),
        can_edit=may(user.role, Do.ITEM_EDIT),
        can_review=may(user.role, Do.ITEM_APPROVE),
        now=datetime.now(request.app[CONFIG].site.tz),
    )


@routes.get("/staff")
async def home_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(request.path + "/")


@routes.get("/static/ui/{name}")
async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    ctype = STATIC_FILES.get(name)
    if ctype is None:
        raise web.HTTPNotFound()
    resp = web.Response(body=(STATIC_DIR / name).read_bytes(), content_type=ctype, charset="utf-8")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
