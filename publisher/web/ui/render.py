"""Rendering of the staff pages: Jinja2 with the i18n extension and Babel catalogues.

Plain Jinja2, as the public pages (publisher.web.public) use, rather than
aiohttp-jinja2: one way of rendering for the whole site, the environment is an
ordinary cached object the tests can use directly, and aiohttp-jinja2 would add only
a decorator around the same two calls (and an untyped dependency).

Every string the UI shows goes through gettext. The source strings are English; the
catalogue `locale/<language>/LC_MESSAGES/messages.mo` (default zh_CN) translates them.
The .po and the compiled .mo are both checked in (`make messages` extracts, updates and
compiles them; a test fails when the .mo or the .pot lags behind), so running the
service needs no Babel and no build step.
"""

from __future__ import annotations

import gettext as gettext_module
import secrets
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from aiohttp import web

from publisher.web.i18n import DOMAIN, LOCALE_DIR, html_lang, translations
from publisher.web.keys import CONFIG
from publisher.web.public import TEMPLATES_DIR, url_prefix

__all__ = ["DOMAIN", "LOCALE_DIR", "environment", "html_lang", "render", "translations"]

STATIC_DIR = TEMPLATES_DIR / "static"

#: staff pages may run the one script file served from /static/ui/ and nothing inline
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


@lru_cache(maxsize=8)
def environment(language: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    return env


def gettext_for(request: web.Request) -> gettext_module.NullTranslations:
    return translations(request.app[CONFIG].ui.language)


def render(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> web.Response:
    """A staff page from templates/staff/<template>, with the site and session in context."""
    from publisher.web.ui.session import SESSION_KEY, owes_second_factor

    config = request.app[CONFIG]
    session = request.get(SESSION_KEY)
    prefix = url_prefix(config)
    html = (
        environment(config.ui.language)
        .get_template(f"staff/{template}")
        .render(
            site_name=config.site.name,
            lang=html_lang(config.ui.language),
            prefix=prefix,
            staff=prefix + "/staff",
            # a half-logged-in session shows no menu (its pages would not open)
            user=session.user if session is not None and not owes_second_factor(session) else None,
            csrf_token=session.csrf_token if session is not None else "",
            path=request.path,
            **context,
        )
    )
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def error_page(request: web.Request, status: int, heading: str, message: str) -> web.Response:
    return render(request, "error.html", status=status, heading=heading, message=message)


def new_token() -> str:
    return secrets.token_urlsafe(32)
