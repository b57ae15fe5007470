"""Public pages for residents, no login: the catalogue (信息公开目录) at ``/`` and each
item at ``/items/{item_id}``.

Server-rendered HTML in Simplified Chinese (Jinja2, autoescaped, no script at all),
shown in large type and/or high contrast when the resident chose so (publisher.web.display).
Only published proactive items are visible; anything else is a 404 that looks the
same as an unknown id, so a page never reveals that a draft or a withheld item exists.

These handlers answer their own errors as small HTML pages instead of raising: the
problems middleware turns raised errors into RFC 9457 JSON, which is right for the
API and wrong for a resident's browser.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from aiohttp import web
from markupsafe import Markup

from publisher import workflow
from publisher.config import Config
from publisher.errors import NotFound
from publisher.models import Disclosure, Item, ItemStatus, RelationKind
from publisher.store.sql import EventKind, ItemQuery, SqlStore
from publisher.text import render_body
from publisher.web.display import display_of, toggle_urls
from publisher.web.i18n import html_lang, translations
from publisher.web.keys import CONFIG, STORE

routes = web.RouteTableDef()

#: the top-level templates/ of the checkout (the project runs from it, installed editable)
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

#: no script may run on a public page: bodies are sanitized, and this is the second wall
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # withdrawn items must disappear at once: caches revalidate every time
    "Cache-Control": "no-cache",
    # large type and high contrast are a cookie (publisher.web.display)
    "Vary": "Cookie",
}

PER_PAGE = 20
MAX_QUERY_CHARS = 200
MAX_PAGE = 1_000_000
#: the year filter's range; the store's year arithmetic needs a real calendar year
YEARS = range(1900, 2201)
#: the 政府信息公开条例 took effect on 2008-05-01: no catalogue year before it
FIRST_CATALOGUE_YEAR = 2008

#: how the related list reads on the page of the item that names the relation
RELATION_LABELS: Mapping[RelationKind, str] = {
    RelationKind.INTERPRETS: "本文解读",
    RelationKind.AMENDS: "本文修改",
    RelationKind.REPEALS: "本文废止",
    RelationKind.SEE_ALSO: "参见",
}

#: item ids are UUIDs (str(uuid4())); anything else is answered without a query
_ITEM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class BadParameter(ValueError):
    """A catalogue query parameter the page cannot use; the message is shown to the reader."""


@dataclass(frozen=True, slots=True)
class CatalogueFilters:
    text: str | None
    category: str | None
    year: int | None
    page: int


# -- templates -----------------------------------------------------------------------


@lru_cache(maxsize=8)
def environment(language: str = "zh_CN") -> jinja2.Environment:
    """The public pages' templates, their strings translated into `language` (ui.language)."""
    if not (TEMPLATES_DIR / "public").is_dir():
        raise RuntimeError(f"the page templates are missing: no folder {TEMPLATES_DIR}/public")
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


def page_context(request: web.Request, *, back: str | None = None) -> dict[str, Any]:
    """What public/base.html needs: the site, the language, the display mode and its
    toggles (which return to `back`, by default this page when it was a GET)."""
    config = request.app[CONFIG]
    prefix = url_prefix(config)
    display = display_of(request)
    if back is None:
        back = prefix + (request.path_qs if request.method in ("GET", "HEAD") else "/")
    return {
        "site_name": config.site.name,
        "home_url": prefix + "/",
        "subscribe_url": prefix + "/subscribe",
        "lang": html_lang(config.ui.language),
        "display": display,
        **toggle_urls(prefix, display, back),
    }


def render_page(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    back: str | None = None,
    **context: Any,
) -> web.Response:
    """A public page from templates/<template> on public/base.html."""
    html = (
        environment(request.app[CONFIG].ui.language)
        .get_template(template)
        .render(**{**page_context(request, back=back), **context})
    )
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


@lru_cache(maxsize=1)
def _templates_fingerprint() -> str:
    # part of the item page's ETag, so a deploy with new templates is not answered 304
    digest = hashlib.sha256()
    for path in sorted((TEMPLATES_DIR / "public").glob("*.html")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    return render_page(request, f"public/{template}", status=status, **context)


def _error_page(request: web.Request, status: int, heading: str, message: str) -> web.Response:
    return _render(request, "error.html", status=status, heading=heading, message=message)


def _not_found(request: web.Request) -> web.Response:
    return _error_page(
        request,
        404,
        "未找到该信息",
        "您访问的信息不存在，或已撤回、已过期、不属于主动公开范围。",
    )


# -- helpers ---------------------------------------------------------------------------


def url_prefix(config: Config) -> str:
    """The path of site.base_url: links stay right behind a proxy that serves us under it."""
    return urlsplit(config.site.base_url).path.rstrip("/")


def local_date(value: datetime | None, config: Config) -> str:
    return value.astimezone(config.site.tz).date().isoformat() if value else ""


def file_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def category_name(config: Config, slug: str) -> str:
    category = config.category(slug)
    return category.name if category else slug  # a slug since dropped from the taxonomy


def is_visible(item: Item) -> bool:
    return workflow.is_publicly_visible(item.status, item.content.disclosure)


async def visible_item(store: SqlStore, item_id: str) -> Item | None:
    """The item if the public may see it; None for every other case alike."""
    if not _ITEM_ID.fullmatch(item_id):
        return None
    try:
        item = await store.get_item(item_id)
    except NotFound:
        return None
    return item if is_visible(item) else None


def subscribe_links(config: Config, prefix: str, category: str | None) -> dict[str, Any]:
    """ "Subscribe to this category" (every category when None): the subscribe page's SMS
    and email forms with the category ticked, and the feeds; a channel turned off is left out."""
    query = f"?{urlencode({'category': category})}" if category else ""
    feed = category or "all"
    channels = config.channels
    return {
        "category": category_name(config, category) if category else None,
        "sms_url": f"{prefix}/subscribe{query}#sms" if channels.sms.enabled else None,
        "email_url": f"{prefix}/subscribe{query}#email" if channels.email.enabled else None,
        "rss_url": f"{prefix}/feeds/{feed}.rss" if channels.rss.enabled else None,
        "atom_url": f"{prefix}/feeds/{feed}.atom" if channels.rss.enabled else None,
    }


def _not_modified(request: web.Request, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110 §13.1.2)
    return any(tag.value in (etag, "*") for tag in request.if_none_match or ())


# -- item page --------------------------------------------------------------------------


@routes.get("/items/{item_id}")
async def item_page(request: web.Request) -> web.Response:
    """One published proactive item: catalogue header, body, attachments, relations."""
    config = request.app[CONFIG]
    store = request.app[STORE]
    item = await visible_item(store, request.match_info["item_id"])
    if item is None:
        return _not_found(request)

    related: list[tuple[RelationKind, Item]] = []
    for relation in item.content.related:
        other = await visible_item(store, relation.item_id)
        # a related item the public may not see is left out: even its title could disclose it
        if other is not None:
            related.append((relation.kind, other))

    # the page changes with the item, the related items it shows, the site and the templates
    etag_source = "\n".join(
        [
            _templates_fingerprint(),
            config.site.model_dump_json(),
            display_of(request).cookie_value,  # large type, high contrast
            category_name(config, item.content.category),
            item.etag,
            *(other.etag for _, other in related),
        ]
    )
    etag = hashlib.sha256(etag_source.encode()).hexdigest()[:32]
    if _not_modified(request, etag):
        resp = web.Response(status=304, headers=SECURITY_HEADERS)
        resp.etag = etag
        return resp

    prefix = url_prefix(config)
    content = item.content
    resp = _render(
        request,
        "item.html",
        title=content.title,
        # the catalogue header; item.html gives each key its (translated) label
        header=[
            ("index_no", item.index_no or ""),
            ("category", category_name(config, content.category)),
            ("agency", content.agency),
            ("written", local_date(content.written_at, config)),
            ("doc_no", content.doc_no or ""),
            ("published", local_date(item.published_at, config)),
        ],
        category_url=catalogue_url(prefix, CatalogueFilters(None, content.category, None, 1)),
        category_label=category_name(config, content.category),
        subscribe=subscribe_links(config, prefix, content.category),
        body_html=Markup(
            render_body(content.body, content.body_format)
        ),  # sanitized by nh3: safe to insert
        attachments=[
            {
                "name": a.filename,
                "url": f"{prefix}/items/{item.id}/attachments/{a.id}/{quote(a.filename, safe='')}",
                "size": file_size(a.size),
            }
            for a in item.attachments
            # files added to a revision still in review wait for it
            if a.revision <= item.revision.number
        ],
        related=[
            {
                "label": RELATION_LABELS[kind],
                "title": other.content.title,
                "url": f"{prefix}/items/{other.id}",
                "index_no": other.index_no or "",
            }
            for kind, other in related
        ],
        corrections=await _corrections(store, item, config),
    )
    resp.etag = etag
    return resp


async def _corrections(store: SqlStore, item: Item, config: Config) -> list[dict[str, str]]:
    """The 更正 of the item, oldest first: each approved correction and its note."""
    if item.revision.number == 1:
        return []
    out = []
    for event in await store.events(item.id):
        if event.kind != EventKind.CORRECTED:
            continue
        revision = await store.get_revision(item.id, event.revision)
        out.append(
            {
                "date": local_date(event.created_at, config),
                "note": revision.correction_note or "本信息已更正。",
            }
        )
    return out


# -- catalogue ---------------------------------------------------------------------------


def parse_filters(query: Mapping[str, str], config: Config) -> CatalogueFilters:
    """The catalogue's filters from the query string; an empty field means no filter."""
    text = query.get("q", "").strip()
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        raise BadParameter("检索词（q）含有不允许的字符。")
    if len(text) > MAX_QUERY_CHARS:
        raise BadParameter(f"检索词（q）过长：最多 {MAX_QUERY_CHARS} 个字符。")

    category = query.get("category", "").strip()
    if category and config.category(category) is None:
        raise BadParameter(f"主题分类（category）“{category}”不存在。")

    year_raw = query.get("year", "").strip()
    year = None
    if year_raw:
        if not year_raw.isdecimal() or int(year_raw) not in YEARS:
            raise BadParameter(
                f"年份（year）应为 {YEARS.start}–{YEARS.stop - 1} 之间的四位数字，"
                f"而不是“{year_raw}”。"
            )
        year = int(year_raw)

    page_raw = query.get("page", "").strip()
    page = 1
    if page_raw:
        if not page_raw.isdecimal() or not 1 <= int(page_raw) <= MAX_PAGE:
            raise BadParameter(f"页码（page）应为正整数，而不是“{page_raw}”。")
        page = int(page_raw)
    return CatalogueFilters(text or None, category or None, year, page)


def catalogue_url(prefix: str, filters: CatalogueFilters) -> str:
    params = {
        "q": filters.text or "",
        "category": filters.category or "",
        "year": str(filters.year) if filters.year else "",
        "page": str(filters.page) if filters.page > 1 else "",
    }
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{prefix}/" + (f"?{query}" if query else "")


@routes.get("/")
async def catalogue(request: web.Request) -> web.Response:
    """信息公开目录: published proactive items, newest first, by category, year and text."""
    config = request.app[CONFIG]
    try:
        filters = parse_filters(request.query, config)
    except BadParameter as exc:
        return _error_page(request, 400, "查询条件有误", str(exc))

    items, total = await request.app[STORE].list_items(
        ItemQuery(
            status=ItemStatus.PUBLISHED,
            disclosure=Disclosure.PROACTIVE,
            category=filters.category,
            year=filters.year,
            text=filters.text,
            limit=PER_PAGE,
            offset=(filters.page - 1) * PER_PAGE,
        )
    )
    prefix = url_prefix(config)
    pages = max(1, -(-total // PER_PAGE))

    def at_page(page: int) -> str:
        return catalogue_url(
            prefix, CatalogueFilters(filters.text, filters.category, filters.year, page)
        )

    this_year = datetime.now(config.site.tz).year
    years = list(range(this_year, FIRST_CATALOGUE_YEAR - 1, -1))
    if filters.year is not None and filters.year not in years:
        years.append(filters.year)
    return _render(
        request,
        "catalogue.html",
        filters=filters,
        query_text=filters.text or "",
        categories=[
            {
                "slug": c.slug,
                "name": c.name,
                "url": catalogue_url(
                    prefix, CatalogueFilters(filters.text, c.slug, filters.year, 1)
                ),
                "current": c.slug == filters.category,
            }
            for c in config.taxonomy
        ],
        all_categories_url=catalogue_url(
            prefix, CatalogueFilters(filters.text, None, filters.year, 1)
        ),
        years=years,
        subscribe=subscribe_links(config, prefix, filters.category),
        rows=[
            {
                "url": f"{prefix}/items/{i.id}",
                "title": i.content.title,
                "index_no": i.index_no or "",
                "doc_no": i.content.doc_no or "",
                "category": category_name(config, i.content.category),
                "published": local_date(i.published_at, config),
            }
            for i in items
        ],
        total=total,
        page=filters.page,
        pages=pages,
        previous_url=at_page(filters.page - 1) if filters.page > 1 else None,
        next_url=at_page(filters.page + 1) if filters.page < pages else None,
        first_url=at_page(1),
    )
