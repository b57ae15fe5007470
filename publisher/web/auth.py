"""Staff authentication: every route is staff-only unless it is on the public allowlist."""

from __future__ import annotations

from aiohttp import web

from publisher.errors import Unauthorized
from publisher.web.keys import STORE, USER_KEY
from publisher.web.problems import Handler
from publisher.web.ui.session import is_staff_route, staff_gate

#: (method, route path) anyone may call. Anything else needs a staff bearer token
#: (/api/v1 …) or, for the staff pages under /staff, a staff session.
#: Residents' subscription endpoints and callbacks join this list in later work.
PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/items/{item_id}/attachments/{attachment_id}/{filename}"),
        ("GET", "/"),  # the public pages: catalogue and items
        ("GET", "/items/{item_id}"),
        ("GET", "/feeds/{name}.{fmt}"),
        # guarded by its own check: loopback clients or metrics.token
        ("GET", "/metrics"),
        # SMS: Kannel's callbacks (each checks its own token / shared secret), residents
        # subscribing by code (rate-limited), short links in messages
        ("GET", "/sms/dlr"),
        ("GET", "/sms/inbound"),
        # Alibaba Cloud SMS's report pushes (the token in the path is checked first)
        ("POST", "/sms/aliyun/report/{token}"),
        ("POST", "/api/v1/subscribers"),
        ("POST", "/api/v1/subscribers/verify"),
        ("GET", "/s/{code}"),
        # email: the links in residents' mail (each checks its signed token); the POST of
        # /unsubscribe is RFC 8058 one-click, which must work without cookie or page
        ("GET", "/subscribe/confirm/{token}"),
        ("POST", "/subscribe/confirm/{token}"),
        ("GET", "/subscribe/manage/{token}"),
        ("POST", "/subscribe/manage/{token}"),
        ("GET", "/unsubscribe/{token}"),
        ("POST", "/unsubscribe/{token}"),
        # staff web UI: the login form (its POST checks its own CSRF token) and the
        # stylesheet and script of the pages; every other /staff page needs a session
        ("GET", "/staff/login"),
        ("POST", "/staff/login"),
        ("GET", "/static/ui/{name}"),
        # notice boards: a published item's layout (public information), and the links in
        # a board operator's SMS / email (each checks its signed token)
        ("GET", "/items/{item_id}/board.pdf"),
        ("GET", "/boards/{board_id}/packs/{pack_id}"),
        ("GET", "/boards/{board_id}/packs/{pack_id}/confirm"),
        ("POST", "/boards/{board_id}/packs/{pack_id}/confirm"),
        # residents' pages (publisher.web.resident): display modes, subscribing and leaving
        # by HTML form; each POST checks its double-submit CSRF token, the core's limits apply
        ("GET", "/display"),
        ("GET", "/subscribe"),
        ("POST", "/subscribe/sms"),
        ("GET", "/subscribe/sms/code"),
        ("POST", "/subscribe/sms/verify"),
        ("POST", "/subscribe/email"),
        ("GET", "/subscribe/leave"),
        ("POST", "/subscribe/leave"),
        ("GET", "/subscribe/leave/code"),
        ("POST", "/subscribe/leave/verify"),
    }
)


def is_public(request: web.Request) -> bool:
    route = request.match_info.route
    resource = route.resource
    if resource is None:  # no route matched: the 404/405 handlers answer
        return True
    method = "GET" if request.method == "HEAD" else request.method
    return (method, resource.canonical) in PUBLIC_ROUTES


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_public(request):
        return await handler(request)
    if is_staff_route(request):  # staff pages: the session cookie, never a bearer token
        return await staff_gate(request, handler)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("this route needs a staff bearer token (Authorization: Bearer …)")
    request[USER_KEY] = await request.app[STORE].authenticate_token(token.strip())
    return await handler(request)
