"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from publisher.config import Config
from publisher.delivery import DeliveryWorker
from publisher.models import User
from publisher.scheduler import PublicationScheduler
from publisher.store.sql import SqlStore

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", SqlStore)
SCHEDULER = web.AppKey("scheduler", PublicationScheduler)
WORKER = web.AppKey("worker", DeliveryWorker)
#: set by the auth middleware on staff routes (a RequestKey where aiohttp has them: a str key
#: warns NotAppKeyWarning on first use, which a warnings-as-errors run turns into a 500)
USER_KEY: Any = web.RequestKey("user", User) if hasattr(web, "RequestKey") else "publisher.user"


def current_user(request: web.Request) -> User:
    user = request.get(USER_KEY)
    assert isinstance(user, User), "staff route reached without authentication"
    return user
