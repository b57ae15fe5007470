"""RFC 9457 problem documents: one shape for every error the API returns."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from pydantic import ValidationError

from publisher.errors import PublisherError

log = logging.getLogger("publisher.web")

PROBLEM_TYPE_BASE = "urn:gongkai:problem:"
CONTENT_TYPE = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_KINDS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
}


def problem(
    status: int, kind: str, title: str, detail: str, instance: str | None = None, **extra: Any
) -> web.Response:
    # extension members first: they may never shadow the standard ones
    body: dict[str, Any] = dict(extra)
    body.update(
        {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    )
    if instance:
        body["instance"] = instance
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="publisher"'
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False, default=str).encode(),
        content_type=CONTENT_TYPE,
        charset="utf-8",
        headers=headers,
    )


def validation_problem(exc: ValidationError, instance: str) -> web.Response:
    errors = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        errors.append({"field": loc, "message": msg})
    first = errors[0] if errors else {"field": "", "message": "invalid"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    detail = f"{first['field'] or 'body'}: {first['message']}{more}"
    return problem(422, "validation", "Invalid input", detail, instance, errors=errors)


class MalformedBody(PublisherError):
    kind = "malformed-body"
    title = "Malformed request body"


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The posted form; a body aiohttp cannot parse (a broken multipart, bytes that are not
    form encoding) is the client's fault: MalformedBody (400), never a 500."""
    try:
        return await request.post()
    except (ValueError, HttpProcessingError) as exc:
        reason = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
        raise MalformedBody(f"the form could not be read: {reason}") from None


@web.middleware
async def allow_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every 405 names the methods the resource serves in Allow (RFC 9110 §15.5.6), whichever
    middleware turned the router's refusal into a page or a problem document (aiohttp's own
    HTTPMethodNotAllowed, if it gets this far, carries Allow already)."""
    response = await handler(request)
    if response.status == 405 and "Allow" not in response.headers:
        refusal = getattr(request.match_info, "http_exception", None)
        if isinstance(refusal, web.HTTPMethodNotAllowed):
            response.headers["Allow"] = refusal.headers["Allow"]
        else:
            methods: set[str] = set()
            for resource in request.app.router.resources():
                if (await resource.resolve(request))[1]:
                    methods.update(r.method for r in resource if r.method != "*")
            response.headers["Allow"] = ", ".join(sorted(methods))
    return response


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PublisherError as exc:
        return problem(exc.status, exc.kind, exc.title, exc.detail, request.path, **exc.extra)
    except ValidationError as exc:
        return validation_problem(exc, request.path)
    except HttpProcessingError as exc:  # a body aiohttp could not parse (multipart headers …)
        return problem(
            400,
            MalformedBody.kind,
            MalformedBody.title,
            f"the request body could not be read: {exc.message}",
            request.path,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = _HTTP_KINDS.get(exc.status, "http-error")
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            detail = f"nothing at {request.path}"
        elif exc.status == 405:
            detail = f"{request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            detail = "the request body is too large"
        resp = problem(exc.status, kind, exc.reason, detail, request.path)
        if "Allow" in exc.headers:  # a 405 must say what is allowed (RFC 9110)
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(
            500,
            "internal",
            "Internal error",
            "an unexpected error; it has been logged",
            request.path,
        )
