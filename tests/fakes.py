"""Test doubles at the channel seam: a channel that speaks plain HTTP to a loopback server,
and that server, which records every raw request (no de-duplication)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from channels.base import (
    ChannelAdapter,
    ChannelSettings,
    Limits,
    PermanentDeliveryError,
    Receipt,
    ReceiptState,
    Rendered,
    Subject,
    Target,
    TransientDeliveryError,
)


class LoopbackSettings(ChannelSettings):
    url: str
    timeout: float = 10.0


class LoopbackHttpChannel(ChannelAdapter):
    """One POST per delivery. 2xx sent; 408/429/5xx transient; other 4xx permanent."""

    name: ClassVar[str] = "loopback"
    limits: ClassVar[Limits] = Limits(concurrency=20, repeatable=False, subscribers=True)
    Settings: ClassVar[type[ChannelSettings]] = LoopbackSettings

    async def start(self, stack: AsyncExitStack) -> None:
        assert isinstance(self.settings, LoopbackSettings)
        self.url = self.settings.url
        self.session = await stack.enter_async_context(
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                connector=aiohttp.TCPConnector(limit=0),
            )
        )

    def render(self, subject: Subject, target: Target) -> Rendered:
        body = json.dumps(
            {
                "to": target.address,
                "subject": subject.key,
                "kind": subject.kind,
                "title": subject.title,
                "url": subject.public_url,
            },
            ensure_ascii=False,
        ).encode()
        return Rendered(body=body, content_type="application/json")

    async def deliver(self, rendered: Rendered, target: Target, *, delivery_id: str) -> Receipt:
        try:
            async with self.session.post(
                self.url,
                data=rendered.body,
                headers={"Content-Type": rendered.content_type, "X-Delivery-Id": delivery_id},
            ) as resp:
                text = await resp.text()
                if 200 <= resp.status < 300:
                    return Receipt(ReceiptState.SENT, provider_id=text[:64] or None)
                if resp.status in (408, 429) or resp.status >= 500:
                    retry = resp.headers.get("Retry-After")
                    raise TransientDeliveryError(
                        f"HTTP {resp.status}", retry_after=float(retry) if retry else None
                    )
                raise PermanentDeliveryError(f"HTTP {resp.status}: {text[:200]}", reason="rejected")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientDeliveryError(f"connection: {exc!r}") from None


class RecordingServer:
    """Counts every request per `to`; can fail a target's first N requests or reject some."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.per_target: Counter[str] = Counter()
        self.fail_first: dict[str, int] = {}
        self.fail_status = 503
        self.reject: set[str] = set()
        self.delay = 0.0
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        data = json.loads(raw)
        to = data["to"]
        self.per_target[to] += 1
        self.requests.append(data | {"delivery_id": request.headers.get("X-Delivery-Id")})
        self.arrived.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if to in self.reject:
            return web.Response(status=400, text="no such subscriber at the gateway")
        if self.per_target[to] <= self.fail_first.get(to, 0):
            return web.Response(status=self.fail_status, text="try later")
        return web.Response(text=f"msg-{len(self.requests)}")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/send", self.handle)
        return app
