"""Staff authentication: every route is staff-only unless it is on the public allowlist."""

from __future__ import annotations

from aiohttp import web

from publisher.errors import Unauthorized
from publisher.web.keys import STORE, USER_KEY
from publisher.web.problems import Handler

#: (method, route path) anyone may call. Anything else needs a staff bearer token.
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
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("this route needs a staff bearer token (Authorization: Bearer …)")
    request[USER_KEY] = await request.app[STORE].authenticate_token(token.strip())
    return await handler(request)
