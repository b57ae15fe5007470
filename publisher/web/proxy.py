"""Believe X-Forwarded-For / -Proto only from the reverse proxies named in server.trusted_proxies."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from publisher.config import Config
from publisher.web.problems import Handler

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(config: Config) -> list[Network]:
    return [ipaddress.ip_network(p, strict=False) for p in config.server.trusted_proxies]


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: list[Network]
) -> str | None:
    """Walk X-Forwarded-For from the right, skipping trusted proxies: the first other hop is the client."""

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if peer is None or not is_trusted(peer) or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def forwarded_middleware(config: Config) -> web.middleware:  # type: ignore[valid-type]
    trusted = _networks(config)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not trusted:
            return await handler(request)
        peer = request.remote
        client = client_address(peer, request.headers.get("X-Forwarded-For"), trusted)
        changes: dict[str, str] = {}
        if client and client != peer:
            changes["remote"] = client
        proto = request.headers.get("X-Forwarded-Proto")
        if proto in ("http", "https") and client != peer:
            changes["scheme"] = proto
        if changes:
            request = request.clone(**changes)  # type: ignore[arg-type]
        return await handler(request)

    return middleware
