"""A loopback HTTP server that only counts requests (the far end for bench/fanout.py)."""

from __future__ import annotations

import argparse

from aiohttp import web

COUNT = web.AppKey("count", list)


async def receive(request: web.Request) -> web.Response:
    await request.read()
    request.app[COUNT][0] += 1
    return web.Response(text="ok")


async def count(request: web.Request) -> web.Response:
    return web.Response(text=str(request.app[COUNT][0]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app[COUNT] = [0]
    app.router.add_post("/send", receive)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
