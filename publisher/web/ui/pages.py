"""Login, logout, the staff home page and the UI's static files."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from publisher.models import ItemStatus
from publisher.policy import Do, may
from publisher.sessions import LockedOut, LoginFailed
from publisher.store.sql import ItemQuery
from publisher.subscriptions import code_ceiling
from publisher.web.keys import CONFIG, STORE
from publisher.web.ui import views
from publisher.web.ui.render import STATIC_DIR, gettext_for, new_token, render
from publisher.web.ui.session import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSIONS,
    clear_cookie,
    current_session,
    login_url,
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
    try:
        session_id, session = await request.app[SESSIONS].login(name, password)
    except LockedOut as exc:
        until = exc.until.astimezone(request.app[CONFIG].site.tz).strftime("%H:%M")
        return _login_form(
            request,
            error=_("Too many failed logins: this account is locked until %(time)s.")
            % {"time": until},
            status=429,
            name=name,
        )
    except LoginFailed:
        return _login_form(request, error=_("Wrong user name or password."), status=401, name=name)
    # the rest (a TOTP code or enrolment still owed?) is publisher.web.ui.totp_pages
    return await after_password(request, session_id, session, field.get("next"))


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
