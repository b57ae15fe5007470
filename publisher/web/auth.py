"""Staff authentication: every route is staff-only unless it is on the public allowlist."""

from __future__ import annotations

from aiohttp import web

from publisher.errors import Forbidden, Unauthorized
from publisher.policy import Do, may, public_routes, route_action
from publisher.web.keys import STORE, USER_KEY
from publisher.web.problems import Handler
from publisher.web.ui.session import SESSION_KEY, is_staff_route, staff_gate

#: (method, route path) anyone may call: the routes publisher.policy.ROUTES marks public
#: (residents' pages and subscription endpoints, callbacks that check their own tokens,
#: the public catalogue, the login form). Anything else needs a staff bearer token
#: (/api/v1 …) or, for the staff pages under /staff, a staff session; then
#: `policy_middleware` checks the user's role against the route's action.
PUBLIC_ROUTES: frozenset[tuple[str, str]] = public_routes()


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


@web.middleware
async def policy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The role check of every route, from publisher.policy (innermost: on staff pages a
    refusal is an HTML page in Chinese, publisher.web.ui.wording). A route missing from the
    table is refused to everyone."""
    resource = request.match_info.route.resource
    if resource is None:  # no route matched: the 404/405 handlers answer
        return await handler(request)
    action = route_action(request.method, resource.canonical)
    if action is Do.PUBLIC:
        return await handler(request)
    if action is Do.SESSION and request.get(SESSION_KEY) is not None:
        return await handler(request)  # the staff gate let this session's step through
    user = request.get(USER_KEY)
    role = getattr(user, "role", None)
    if action is not None and may(role, action):
        return await handler(request)
    if action is None:
        raise Forbidden(f"{request.method} {resource.canonical}: not in the role policy")
    who = f"role {role.value}" if role is not None else "nobody signed in"
    raise Forbidden(f"{who} may not do {action.value} (publisher.policy)")
