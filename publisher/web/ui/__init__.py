"""The staff web interface (/staff): server-rendered pages in the site's language.

Login with a server-side session (publisher.sessions), compose once with a preview
per channel, the confidentiality review queue, and a delivery dashboard per item.
Every page works without script; /static/ui/ui.js only refreshes previews and
progress in place.
"""

from __future__ import annotations

from aiohttp import web

from publisher.sessions import Sessions
from publisher.store.sql import SqlStore
from publisher.totp import Totp
from publisher.web.ui import admin, boards_pages, compose, dashboard, pages, review, totp_pages
from publisher.web.ui.errors import ui_error_middleware
from publisher.web.ui.session import SESSIONS, TOTP

__all__ = ["setup", "ui_error_middleware"]


def setup(app: web.Application, store: SqlStore) -> None:
    app[SESSIONS] = Sessions(store)
    app[TOTP] = Totp(store)
    for module in (pages, compose, review, dashboard, admin, boards_pages, totp_pages):
        app.add_routes(module.routes)
