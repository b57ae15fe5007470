"""Errors on staff pages are HTML pages in the UI's language, not problem documents."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from publisher.errors import PublisherError
from publisher.textclean import ForbiddenCharacters
from publisher.web.keys import CONFIG
from publisher.web.problems import Handler
from publisher.web.ui import wording
from publisher.web.ui.session import STAFF_PREFIX

log = logging.getLogger("publisher.web.ui")


def _is_staff_path(request: web.Request) -> bool:
    return request.path == STAFF_PREFIX or request.path.startswith(STAFF_PREFIX + "/")


@web.middleware
async def ui_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_staff_path(request):
        return await handler(request)
    from publisher.web.ui.render import error_page, gettext_for

    _ = gettext_for(request).gettext
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            return error_page(request, 404, _("Page not found"), _("There is nothing here."))
        if exc.status == 405:
            return error_page(
                request, 405, _("Not allowed"), _("This page cannot be used that way.")
            )
        if exc.status == 413:
            limit = request.app[CONFIG].storage.max_upload_bytes
            return error_page(
                request,
                413,
                _("Too large"),
                _("What you sent is larger than allowed: a file may be at most %(size)s.")
                % {"size": wording.size_text(limit)},
            )
        return error_page(request, exc.status, exc.reason, _("The request could not be handled."))
    except ForbiddenCharacters as exc:
        from publisher.web.ui.views import forbidden_characters

        detail = forbidden_characters(request, exc.characters, exc.field)
        return error_page(request, exc.status, _("Cannot do that"), detail)
    except PublisherError as exc:
        heading = {
            401: _("Please log in"),
            403: _("Not allowed"),
            404: _("Not found"),
            409: _("Not possible now"),
        }.get(exc.status, _("Cannot do that"))
        return error_page(request, exc.status, heading, wording.core_message(_, exc.detail))
    except ValidationError as exc:
        errors = exc.errors()
        if not errors:
            return error_page(request, 422, _("Invalid input"), _("This cannot be done."))
        first = errors[0]
        field = wording.field_label(_, str(first["loc"][0])) if first["loc"] else ""
        message = wording.pydantic_message(_, first)
        return error_page(request, 422, _("Invalid input"), f"{field}: {message}")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(
            request,
            500,
            _("Something went wrong"),
            _("An unexpected error occurred; it has been logged."),
        )
