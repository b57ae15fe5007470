"""The OpenAPI 3.1 document, built from the same pydantic models that validate requests."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from publisher import __version__
from publisher.content import ItemCreate, ItemPatch
from publisher.web.api import ApproveBody, ReasonRequired, TransitionBody, json_response
from publisher.web.auth import PUBLIC_ROUTES
from publisher.web.boards import OPENAPI_MODELS as BOARD_MODELS
from publisher.web.boards import OPENAPI_PATHS as BOARD_PATHS
from publisher.web.openapi_parts import json_body, problems
from publisher.web.reports import OPENAPI_MODELS as REPORT_MODELS
from publisher.web.reports import OPENAPI_PATHS as REPORT_PATHS
from publisher.web.sms import SubscribeBody, VerifyBody
from publisher.web.sms_aliyun_reports import OPENAPI_PATHS as ALIYUN_REPORT_PATHS

routes = web.RouteTableDef()

_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem document",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status", "detail"],
}


def _html(*codes: int) -> dict[str, Any]:
    """Errors of the residents' HTML pages: HTML pages, not problem documents."""
    return {str(c): {"description": "text/html"} for c in codes}


_ITEM = {"description": "the item", "content": {"application/json": {"schema": {"type": "object"}}}}
#: a channel's state in an item's deliveries (publisher.readiness)
CHANNEL_STATE: dict[str, Any] = {
    "type": "object",
    "required": ["state", "reason", "dry_run", "targets"],
    "properties": {
        "state": {"type": "string", "enum": ["active", "not_configured", "no_targets"]},
        "reason": {"type": ["string", "null"], "description": "why it cannot deliver"},
        "dry_run": {"type": "boolean"},
        "targets": {"type": ["integer", "null"], "description": "targets it would reach"},
    },
}

_ID = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _transition(summary: str, model: type[BaseModel], required: bool) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_ID],
            "requestBody": json_body(model, required),
            "responses": {"200": _ITEM, **problems(401, 403, 404, 409, 422)},
        }
    }


PATHS: dict[str, dict[str, Any]] = {
    "/healthz": {
        "get": {"summary": "Liveness and store check", "responses": {"200": {"description": "ok"}}}
    },
    "/api/v1/openapi.json": {
        "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}
    },
    "/api/v1/items": {
        "post": {
            "summary": "Create an item (draft)",
            "requestBody": json_body(ItemCreate),
            "responses": {"201": _ITEM, **problems(400, 401, 403, 413, 415, 422)},
        },
        "get": {
            "summary": "List items",
            "parameters": [
                {"name": n, "in": "query", "schema": {"type": t}}
                for n, t in (
                    ("status", "string"),
                    ("category", "string"),
                    ("year", "integer"),
                    ("q", "string"),
                    ("disclosure", "string"),
                    ("page", "integer"),
                    ("per_page", "integer"),
                )
            ],
            "responses": {"200": {"description": "a page of items"}, **problems(401, 422)},
        },
    },
    "/api/v1/items/{item_id}": {
        "get": {
            "summary": "One item, with its pending revision and personal-data warnings",
            "parameters": [_ID],
            "responses": {
                "200": _ITEM,
                "304": {"description": "not modified"},
                **problems(401, 404),
            },
        },
        "patch": {
            "summary": "Edit an item; a live item gets a revision that is reviewed again",
            "parameters": [
                _ID,
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "the ETag from GET; 428 without it, 412 when stale",
                },
            ],
            "requestBody": json_body(ItemPatch),
            "responses": {"200": _ITEM, **problems(401, 403, 404, 409, 412, 422, 428)},
        },
    },
    "/api/v1/items/{item_id}/submit": _transition("Submit for review", TransitionBody, False),
    "/api/v1/items/{item_id}/approve": _transition(
        "Approve (保密审查; not by the author). Answers with the new status: scheduled or published.",
        ApproveBody,
        False,
    ),
    "/api/v1/items/{item_id}/reject": _transition("Reject with a reason", ReasonRequired, True),
    "/api/v1/items/{item_id}/withdraw": _transition("Withdraw with a reason", ReasonRequired, True),
    "/api/v1/items/{item_id}/audit": {
        "get": {
            "summary": "The item's audit trail",
            "parameters": [_ID],
            "responses": {"200": {"description": "entries"}, **problems(401, 404)},
        }
    },
    "/api/v1/items/{item_id}/attachments": {
        "post": {
            "summary": "Upload an attachment (multipart/form-data, field 'file')",
            "parameters": [_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                        }
                    }
                },
            },
            "responses": {
                "201": {"description": "stored, with its SHA-256"},
                **problems(401, 404, 409, 413, 415, 422),
            },
        }
    },
    "/api/v1/items/{item_id}/attachments/{attachment_id}": {
        "get": {
            "summary": "Download an attachment (staff)",
            "parameters": [
                _ID,
                {
                    "name": "attachment_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {"200": {"description": "the file"}, **problems(401, 404)},
        }
    },
    "/api/v1/items/{item_id}/deliveries": {
        "get": {
            "summary": "Deliveries of an item: counts per channel and state, and a page of rows "
            "(addresses masked)",
            "parameters": [
                _ID,
                *(
                    {"name": n, "in": "query", "schema": {"type": t}}
                    for n, t in (
                        ("state", "string"),
                        ("channel", "string"),
                        ("page", "integer"),
                        ("per_page", "integer"),
                    )
                ),
            ],
            "description": "`channels` says, for each of the item's channels, whether it "
            "can deliver at all: `active`, `not_configured` (nothing to send through: no SMS "
            "gateway, no SMTP server, no portal endpoint, disabled; its rows stay `queued` "
            "until it is configured) or `no_targets` (nobody takes the item's category: no "
            "subscriber, no notice board). `dry_run` is true for a dry-run outbox (messages "
            "written to files, not sent).",
            "responses": {
                "200": {
                    "description": "counts, each channel's state, and rows",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["item_id", "counts", "channels", "deliveries"],
                                "properties": {
                                    "item_id": {"type": "string"},
                                    "counts": {
                                        "type": "object",
                                        "additionalProperties": {
                                            "type": "object",
                                            "additionalProperties": {"type": "integer"},
                                        },
                                    },
                                    "channels": {
                                        "type": "object",
                                        "additionalProperties": CHANNEL_STATE,
                                    },
                                    "deliveries": {"type": "array", "items": {"type": "object"}},
                                    "page": {"type": "integer"},
                                    "per_page": {"type": "integer"},
                                    "total": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                **problems(401, 404, 422),
            },
        }
    },
    "/api/v1/items/{item_id}/deliveries/retry": {
        "post": {
            "summary": "Requeue the item's failed and unknown deliveries",
            "parameters": [_ID],
            "description": "Rows that would publish an item since withdrawn or expired are never "
            "requeued (withdrawal is final): `left` counts them and `left_reason` says why "
            "(`withdrawn` / `expired`). Retractions may be retried.",
            "responses": {
                "200": {
                    "description": "how many were requeued, and how many were left and why",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["item_id", "requeued", "left", "left_reason"],
                                "properties": {
                                    "item_id": {"type": "string"},
                                    "requeued": {"type": "integer"},
                                    "left": {"type": "integer"},
                                    "left_reason": {
                                        "type": ["string", "null"],
                                        "enum": ["withdrawn", "expired", None],
                                    },
                                },
                            }
                        }
                    },
                },
                **problems(401, 404),
            },
        }
    },
    "/api/v1/items/{item_id}/preview": {
        "get": {
            "summary": "What each channel of the item would send: the SMS text, its segments and "
            "the estimated total for the current subscribers",
            "parameters": [_ID],
            "responses": {"200": {"description": "per channel"}, **problems(401, 404)},
        }
    },
    "/api/v1/subscribers": {
        "post": {
            "summary": "Subscribe (public): sms sends a 6-digit code to the number; email sends "
            "a confirmation link (double opt-in; frequency immediate or daily). The answer is the "
            "same whether or not the address is subscribed already.",
            "requestBody": json_body(SubscribeBody),
            "responses": {
                "202": {"description": "code sent (number masked)"},
                **problems(400, 413, 415, 422, 429),
                "503": {
                    "description": "the channel cannot send (no SMS gateway / no SMTP server): "
                    "nothing is sent or promised; the problem's type ends with "
                    "`channel-unavailable` and `channel` names it",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                },
            },
        }
    },
    "/api/v1/subscribers/verify": {
        "post": {
            "summary": "Complete a subscription with the code (public); consent is recorded",
            "requestBody": json_body(VerifyBody),
            "responses": {
                "200": {"description": "subscribed (number masked)"},
                **problems(400, 413, 415, 422, 429),
            },
        }
    },
    "/sms/dlr": {
        "get": {
            "summary": "Kannel delivery reports (dlr-url); each URL carries a per-message token",
            "parameters": [
                {"name": n, "in": "query", "schema": {"type": "string"}}
                for n in ("id", "t", "status", "ts")
            ],
            "responses": {"200": {"description": "recorded"}, **problems(403, 404, 422, 503)},
        }
    },
    "/sms/inbound": {
        "get": {
            "summary": "Kannel sms-service get-url: keywords DY, DY <code>, TD, CX; the body is "
            "the reply (X-Kannel-Coding: 2)",
            "parameters": [
                {"name": n, "in": "query", "schema": {"type": "string"}}
                for n in ("secret", "from", "to", "text")
            ],
            "responses": {"200": {"description": "text/plain reply"}, **problems(403, 422)},
        }
    },
    "/s/{code}": {
        "get": {
            "summary": "Short link (in SMS) to the public item page",
            "responses": {"302": {"description": "to /items/{id}"}, **problems(404)},
        }
    },
    # the residents' email pages (HTML, no login: the signed token is the key)
    "/subscribe/confirm/{token}": {
        "get": {
            "summary": "Email double opt-in: what will be subscribed, and the consent text",
            "responses": {
                "200": {"description": "HTML page with the confirm button"},
                "404": {"description": "tampered or unknown link (HTML page)"},
                "410": {"description": "the link has expired (HTML page)"},
            },
        },
        "post": {
            "summary": "Confirm the subscription; the consent is recorded",
            "responses": {
                "200": {"description": "subscribed (HTML page)"},
                "404": {"description": "tampered or unknown link (HTML page)"},
                "410": {"description": "the link has expired (HTML page)"},
            },
        },
    },
    "/subscribe/manage/{token}": {
        "get": {
            "summary": "A subscriber's categories and frequency (signed link in every mail)",
            "responses": {"200": {"description": "HTML form"}, "404": {"description": "bad link"}},
        },
        "post": {
            "summary": "Save categories and frequency (action=save) or leave (action=leave)",
            "responses": {
                "200": {"description": "HTML page"},
                "404": {"description": "bad link"},
                "422": {"description": "not saved (HTML form saying why)"},
            },
        },
    },
    "/unsubscribe/{token}": {
        "get": {
            "summary": "Asks to confirm leaving (List-Unsubscribe link of every mail)",
            "responses": {"200": {"description": "HTML page"}, "404": {"description": "bad link"}},
        },
        "post": {
            "summary": "Leave at once: RFC 8058 one-click (List-Unsubscribe=One-Click), no cookie",
            "responses": {
                "200": {"description": "unsubscribed"},
                "404": {"description": "bad link"},
            },
        },
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (loopback clients, or metrics.token as bearer)",
            "responses": {"200": {"description": "text exposition format"}, **problems(401)},
        }
    },
    "/items/{item_id}/attachments/{attachment_id}/{filename}": {
        "get": {
            "summary": "Download an attachment of a published proactive item (public)",
            "responses": {"200": {"description": "the file"}, **problems(404)},
        }
    },
    # the public HTML pages answer their errors as HTML pages, not problem documents
    "/": {
        "get": {
            "summary": "信息公开目录: the public catalogue page (HTML); q, category, year, page",
            "responses": {"200": {"description": "text/html"}, "400": {"description": "text/html"}},
        }
    },
    "/items/{item_id}": {
        "get": {
            "summary": "The public page of a published proactive item (HTML)",
            "responses": {
                "200": {"description": "text/html"},
                "304": {"description": "not modified"},
                "404": {"description": "text/html"},
            },
        }
    },
    # the staff web UI's public parts (the other /staff pages need a session, not a token)
    "/staff/login": {
        "get": {
            "summary": "The staff login form (HTML)",
            "responses": {"200": {"description": "text/html"}},
        },
        "post": {
            "summary": "Log in (form: username, password, csrf_token); sets the session "
            "cookie. A weak or expired password leads to /staff/password first",
            "responses": {
                "303": {
                    "description": "password right: to the staff pages, or (two-step "
                    "verification) to /staff/login/code or the enrolment page /staff/totp; "
                    "until then the session opens no other page"
                },
                "401": {"description": "text/html: wrong name or password"},
                "403": {"description": "text/html: no valid csrf_token"},
                "429": {
                    "description": "text/html: locked out after failed logins (for this "
                    "account from this network, this network, or the account throttled)"
                },
                "503": {"description": "text/html: too many log-ins at once (hashing busy)"},
            },
        },
    },
    # residents' HTML forms (publisher.web.resident); every POST needs the csrf_token field
    # matching the gk_form cookie (double submit), else 403; errors are HTML pages
    "/display": {
        "get": {
            "summary": "Large type / high contrast on or off (large, contrast: 1 or 0), "
            "then back to `back`",
            "responses": {"303": {"description": "sets gk_display"}, **_html(400)},
        }
    },
    "/subscribe": {
        "get": {
            "summary": "The subscribe page: SMS, email and feed forms; ?category= ticks one",
            "responses": {"200": {"description": "text/html"}, **_html(400)},
        }
    },
    "/subscribe/sms": {
        "post": {
            "summary": "Form: number, categories; sends a code as POST /api/v1/subscribers",
            "responses": {
                "303": {"description": "to the code form"},
                **_html(403, 404, 422, 429, 503),
            },
        }
    },
    "/subscribe/sms/code": {
        "get": {
            "summary": "The code form (ticket: the number, sealed)",
            "responses": {"200": {"description": "text/html"}, **_html(410, 503)},
        }
    },
    "/subscribe/sms/verify": {
        "post": {
            "summary": "Form: ticket, code; subscribes as POST /api/v1/subscribers/verify",
            "responses": {
                "200": {"description": "subscribed (HTML)"},
                **_html(403, 410, 422, 429, 503),
            },
        }
    },
    "/subscribe/email": {
        "post": {
            "summary": "Form: email, categories, frequency; queues the confirmation mail",
            "responses": {
                "202": {"description": "check your mail (HTML)"},
                **_html(403, 404, 422, 429, 503),
            },
        }
    },
    "/subscribe/leave": {
        "get": {
            "summary": "Leaving SMS: the number form",
            "responses": {"200": {"description": "text/html"}, **_html(404)},
        },
        "post": {
            "summary": "Form: number; sends a code for leaving",
            "responses": {
                "303": {"description": "to the code form"},
                **_html(403, 404, 422, 429, 503),
            },
        },
    },
    "/subscribe/leave/code": {
        "get": {
            "summary": "The code form for leaving (ticket: the number, sealed)",
            "responses": {"200": {"description": "text/html"}, **_html(410, 503)},
        }
    },
    "/subscribe/leave/verify": {
        "post": {
            "summary": "Form: ticket, code; unsubscribes and suppresses the number",
            "responses": {
                "200": {"description": "unsubscribed (HTML)"},
                **_html(403, 410, 422, 429, 503),
            },
        }
    },
    "/static/ui/{name}": {
        "get": {
            "summary": "The staff pages' stylesheet and script",
            "responses": {"200": {"description": "text/css or text/javascript"}, **problems(404)},
        }
    },
    "/feeds/{name}.{fmt}": {
        "get": {
            "summary": "A feed: name is `all` or a category slug, fmt is `rss` or `atom`",
            "description": "Static files the rss channel writes; conditional GET with "
            "If-None-Match / If-Modified-Since answers 304.",
            "responses": {
                "200": {"description": "application/rss+xml or application/atom+xml"},
                "304": {"description": "not modified"},
                **problems(404),
            },
        }
    },
    **REPORT_PATHS,  # clocks, request register and annual report (publisher.web.reports)
    **BOARD_PATHS,  # notice boards, print packs, operators' links (publisher.web.boards)
    **ALIYUN_REPORT_PATHS,  # Alibaba Cloud SMS's report pushes (publisher.web.sms_aliyun_reports)
}

MODELS: list[type[BaseModel]] = [
    ItemCreate,
    ItemPatch,
    TransitionBody,
    ApproveBody,
    ReasonRequired,
    SubscribeBody,
    VerifyBody,
]


MODELS.extend(REPORT_MODELS)
MODELS.extend(BOARD_MODELS)


#: path parameters of the public and residents' pages, which their entries above do not list
#: one by one; every `{name}` in a path is declared (schemathesis and clients rely on it)
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "item_id": {"type": "string"},
    "attachment_id": {"type": "string"},
    "filename": {"type": "string"},
    "code": {"type": "string"},
    "token": {"type": "string"},
    "name": {"type": "string"},
    "fmt": {"type": "string", "enum": ["rss", "atom"]},
    "board_id": {"type": "integer"},
    "pack_id": {"type": "integer"},
    "request_id": {"type": "integer"},
    "year": {"type": "integer"},
}
_TEMPLATE = re.compile(r"\{([^}:]+)\}")
#: the ranges the handlers check (web.api._int_param, web.reports._year / _request_id), so
#: a value the document allows is one the route takes (and schemathesis can tell them apart)
PARAMETER_BOUNDS: dict[str, dict[str, int]] = {
    "year": {"minimum": 1900, "maximum": 2200},
    "page": {"minimum": 1, "maximum": 1_000_000},
    "per_page": {"minimum": 1, "maximum": 200},
    "within": {"minimum": 0, "maximum": 20},
    "request_id": {"minimum": 0, "maximum": 999_999_999_999},
}


def _with_path_parameters(path: str, op: dict[str, Any]) -> dict[str, Any]:
    """`op` with a declaration for each parameter of `path` it does not declare itself."""
    declared = {(p.get("name"), p.get("in")) for p in op.get("parameters", [])}
    missing = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(PATH_PARAMETERS.get(name, {"type": "string"})),
        }
        for name in _TEMPLATE.findall(path)
        if (name, "path") not in declared
    ]
    if missing:
        op["parameters"] = [*op.get("parameters", []), *missing]
    if "parameters" in op:
        op["parameters"] = [_bounded(p) for p in op["parameters"]]
    return op


def _bounded(parameter: dict[str, Any]) -> dict[str, Any]:
    bounds = PARAMETER_BOUNDS.get(parameter.get("name", ""))
    schema = parameter.get("schema", {})
    if bounds is None or schema.get("type") != "integer" or "minimum" in schema:
        return parameter
    return {**parameter, "schema": {**schema, **bounds}}


def build_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Problem": _PROBLEM}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    paths: dict[str, Any] = {}
    for path, ops in PATHS.items():
        paths[path] = {}
        for method, op in ops.items():
            op = dict(op)
            if (method.upper(), path) not in PUBLIC_ROUTES:
                op["security"] = [{"bearer": []}]
            paths[path][method] = _with_path_parameters(path, op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gongkai Publisher API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_document())
