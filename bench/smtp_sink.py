"""A loopback SMTP server (aiosmtpd) that only counts messages (the far end for
`bench/fanout.py --channel email`), with the count on a small HTTP port beside it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP


class Counter:
    """Accepts every recipient and every message; keeps only how many messages came."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 2.0.0 OK"


async def serve(smtp_port: int, http_port: int) -> None:
    counter = Counter()
    loop = asyncio.get_running_loop()
    # a fixed hostname: aiosmtpd would otherwise look up the FQDN for every connection
    server = await loop.create_server(
        lambda: SMTP(counter, hostname="sink.bench", ident="bench sink"),
        host="127.0.0.1",
        port=smtp_port,
    )

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(counter.messages))

    app = web.Application()
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    try:
        await server.serve_forever()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="SMTP")
    parser.add_argument("--http-port", type=int, required=True, help="GET /count")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.http_port))


if __name__ == "__main__":
    main()
