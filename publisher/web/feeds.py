"""Serving the feed files the rss channel writes, with conditional GET.

The files are the source (nginx or a CDN may serve the same directory); the app
keeps each file's bytes in memory until its mtime, size or inode changes, so a
poll costs one stat(), and answers If-None-Match / If-Modified-Since with 304.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from aiohttp import web

from publisher.config import ALL_FEED
from publisher.errors import NotFound
from publisher.web.keys import STORE

routes = web.RouteTableDef()

CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class CachedFeed:
    stamp: tuple[int, int, int]  #: (mtime_ns, size, inode) of the file read
    body: bytes
    etag: str
    last_modified: datetime


class FeedFiles:
    """The feed directory, with each file's bytes kept until the file changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[str, CachedFeed] = {}

    def get(self, filename: str) -> CachedFeed:
        path = self.directory / filename
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFound("this feed has not been generated yet") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._cache.get(filename)
        if cached is not None and cached.stamp == stamp:
            return cached
        body = path.read_bytes()
        # a strong validator from the bytes: regenerating an unchanged feed keeps it
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        modified = datetime.fromtimestamp(st.st_mtime, UTC).replace(microsecond=0)
        cached = CachedFeed(stamp, body, etag, modified)
        self._cache[filename] = cached
        return cached


FEED_FILES = web.AppKey("feed_files", FeedFiles)


def _not_modified(request: web.Request, feed: CachedFeed) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or feed.etag in tags
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False  # an unreadable date is ignored, as the RFC says
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return feed.last_modified <= since
    return False


@routes.get("/feeds/{name}.{fmt}")
async def get_feed(request: web.Request) -> web.StreamResponse:
    name, fmt = request.match_info["name"], request.match_info["fmt"]
    config = request.app[STORE].config
    if fmt not in CONTENT_TYPES or (name != ALL_FEED and config.category(name) is None):
        raise NotFound(f"no feed {name}.{fmt}: feeds are all.rss, all.atom and <category>.rss|atom")
    feed = request.app[FEED_FILES].get(f"{name}.{fmt}")
    headers = {
        "ETag": feed.etag,
        "Last-Modified": format_datetime(feed.last_modified, usegmt=True),
        # readers may keep it a minute, then must ask again (cheaply, with the validators)
        "Cache-Control": "public, max-age=60",
    }
    if _not_modified(request, feed):
        return web.Response(status=304, headers=headers)
    return web.Response(body=feed.body, headers=headers | {"Content-Type": CONTENT_TYPES[fmt]})
