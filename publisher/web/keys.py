"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from aiohttp import web

from publisher.config import Config
from publisher.models import User
from publisher.scheduler import PublicationScheduler
from publisher.store.sql import SqlStore

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", SqlStore)
SCHEDULER = web.AppKey("scheduler", PublicationScheduler)
#: set by the auth middleware on staff routes
USER_KEY = "publisher.user"


def current_user(request: web.Request) -> User:
    user = request.get(USER_KEY)
    assert isinstance(user, User), "staff route reached without authentication"
    return user
