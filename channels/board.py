"""Notice boards (村务 / 政务公开栏): printable layouts as PDF, in print packs per board.

- **Layouts.** Jinja2 templates in templates/board/ with print CSS (`@page` A4 or A3,
  portrait or landscape), rendered to PDF with WeasyPrint and Debian's Noto CJK fonts
  (with libharfbuzz-subset0 a Chinese page takes a fraction of a second; without it,
  seconds). Each item is a poster of its own: large type (title ≥ 28 pt, body ≥ 14 pt),
  the site and agency, the catalogue header, posting and take-down dates, a QR code to
  the item's short link, "第 x 页 / 共 y 页" on every page, and for urgent items a black
  band and a boxed 紧急 on every page (they survive black-and-white printing). Titles
  and every other field are escaped: markup in a title prints as text. WeasyPrint never
  fetches anything: images in a body are left out.
- **Packs.** The ledger subject of this channel is a print pack ("pack:<id>"), one per
  board per item event (publish, correct, withdraw, expire; planned by publisher.packs).
  Its PDF is a cover sheet listing what to post and what to take down (索引号 and the
  reason), then one poster per item to post; the posters are separate documents whose
  pages are joined, so each counts its own pages.
- **Outcomes.** `render` is pure and cheap (the HTML); `deliver` makes the PDF in a
  thread, keeps it under `packs_dir`, tells the board's operator through the SMS and/or
  email channel (a transactional message with signed links to the PDF and to the
  confirmation page; queued once per pack, in the transaction that stamps the pack) and
  answers `sent`. The operator's confirmation (or staff recording the posting) is the
  receipt that makes the row `delivered`. A repeated attempt finds the PDF made and the
  operator told, and changes nothing: attempts are repeatable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from markupsafe import Markup
from pydantic import ConfigDict, Field

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
    validated_settings,
)
from publisher.config import Config

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
#: image tags in a sanitized body (nh3 quotes and escapes every attribute)
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
PACK_KIND = "pack"
PAPERS = ("A4", "A3")
ORIENTATIONS = ("portrait", "landscape")
#: shown as the take-down date of an item without an expiry date
UNTIL_NOTICE = "另行通知"
#: type sizes per paper (points): readable at a distance, A3 about √2 larger
TYPE_SIZES: dict[str, dict[str, float]] = {
    "A4": {"title": 30, "body": 16, "meta": 14, "qr_mm": 38},
    "A3": {"title": 44, "body": 22, "meta": 18, "qr_mm": 55},
}


class BoardSettings(ChannelSettings):
    """`channels.board.settings`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: where the packs' PDFs are kept (relative to the config file's folder); they are
    #: made again from the store when missing
    packs_dir: str = "data/packs"
    #: this service as operators reach it (links in their SMS / email); default site.base_url
    link_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    #: how long an operator's links work
    link_ttl_days: int = Field(default=60, ge=1, le=3650)
    #: a pack not confirmed this long after it was ready is flagged overdue
    confirm_within_hours: float = Field(default=72.0, gt=0)


def board_settings(config: Config) -> BoardSettings:
    """The validated `channels.board.settings`; ConfigError naming the key otherwise."""
    return validated_settings(
        BoardSettings, "channels.board.settings", config.channels.board.settings
    )


def packs_path(config: Config) -> Path:
    return config.resolve_path(board_settings(config).packs_dir)


# -- layouts ----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    if not (TEMPLATES_DIR / "board").is_dir():
        raise RuntimeError(f"the board templates are missing: no folder {TEMPLATES_DIR}/board")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=4096)
def qr_svg(url: str) -> str:
    """The QR code of `url` as inline SVG (a path: crisp at any print size)."""
    import qrcode
    from qrcode.image.svg import SvgPathImage

    image = qrcode.make(url, image_factory=SvgPathImage, border=2)
    svg: str = image.to_string(encoding="unicode")
    return svg


@dataclass(frozen=True, slots=True)
class Poster:
    """What one item's layout shows."""

    title: str
    body_html: str  #: sanitized (publisher.text.render_body)
    index_no: str | None
    category_name: str
    agency: str
    written_at: str
    doc_no: str | None
    urgent: bool
    posted_on: str
    take_down_on: str
    short_url: str
    correction_note: str | None = None


def layout_of(target: Target | None) -> tuple[str, str]:
    """(paper, orientation) of a board target; A4 portrait when it says nothing usable."""
    settings = target.settings if target is not None else {}
    paper = settings.get("paper", "A4")
    orientation = settings.get("orientation", "portrait")
    return (
        paper if paper in PAPERS else "A4",
        orientation if orientation in ORIENTATIONS else "portrait",
    )


def local_day(value: datetime | None, tz: Any) -> str:
    return value.astimezone(tz).date().isoformat() if value is not None else ""


@lru_cache(maxsize=1)
def board_css() -> str:
    return (TEMPLATES_DIR / "board" / "board.css").read_text(encoding="utf-8")


def poster_html(
    poster: Poster, *, site_name: str, site_agency: str, paper: str, orientation: str
) -> str:
    sizes = TYPE_SIZES[paper]
    return (
        environment()
        .get_template("board/poster.html")
        .render(
            p=poster,
            site_name=site_name,
            site_agency=site_agency,
            paper=paper,
            orientation=orientation,
            sizes=sizes,
            css=Markup(board_css()),
            qr=Markup(qr_svg(poster.short_url)),
            # a poster carries no pictures (they would be fetched): the sanitized body without <img>
            body_html=Markup(_IMG.sub("", poster.body_html)),
        )
    )


def cover_html(subject: Subject, target: Target, *, site_agency: str, tz: Any) -> str:
    paper, orientation = layout_of(target)
    lines = subject.items
    return (
        environment()
        .get_template("board/cover.html")
        .render(
            pack_no=subject.key.partition(":")[2],
            site_name=subject.site_name,
            site_agency=site_agency,
            board_name=target.name,
            location=str(target.settings.get("location", "")),
            made_on=local_day(subject.event_at, tz),
            to_post=[line for line in lines if line["action"] == "post"],
            to_take_down=[line for line in lines if line["action"] == "takedown"],
            paper=paper,
            orientation=orientation,
            sizes=TYPE_SIZES[paper],
            css=Markup(board_css()),
        )
    )


def poster_from_line(line: dict[str, Any]) -> Poster:
    return Poster(
        title=line["title"],
        body_html=line["body_html"],
        index_no=line.get("index_no"),
        category_name=line["category_name"],
        agency=line["agency"],
        written_at=line["written_at"],
        doc_no=line.get("doc_no"),
        urgent=bool(line.get("urgent")),
        posted_on=line["posted_on"],
        take_down_on=line["take_down_on"],
        short_url=line["short_url"],
        correction_note=line.get("correction_note"),
    )


def pack_pages(subject: Subject, target: Target, *, site_agency: str, tz: Any) -> list[str]:
    """The documents of a pack: its cover sheet, then a poster per item to post."""
    paper, orientation = layout_of(target)
    pages = [cover_html(subject, target, site_agency=site_agency, tz=tz)]
    for line in subject.items:
        if line["action"] == "post":
            pages.append(
                poster_html(
                    poster_from_line(line),
                    site_name=subject.site_name,
                    site_agency=site_agency,
                    paper=paper,
                    orientation=orientation,
                )
            )
    return pages


def subject_poster(
    subject: Subject, short_url: str, tz: Any, *, posted: date | None = None
) -> Poster:
    """The poster of an item subject (a preview, or the public layout of an item)."""
    when = posted.isoformat() if posted is not None else local_day(subject.published_at, tz)
    return Poster(
        title=subject.title,
        body_html=subject.body_html,
        index_no=subject.index_no,
        category_name=subject.category_name,
        agency=subject.agency,
        written_at=local_day(subject.written_at, tz),
        doc_no=subject.doc_no,
        urgent=subject.urgent,
        posted_on=when,
        take_down_on=local_day(subject.expires_at, tz) or UNTIL_NOTICE,
        short_url=short_url,
        correction_note=subject.correction_note,
    )


# -- PDF ----------------------------------------------------------------------------------------

#: WeasyPrint (Pango, fontconfig) renders one document at a time per process
_PDF_LOCK = threading.Lock()


def _no_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Layouts are self-contained (inline CSS and SVG): nothing is fetched, ever."""
    raise ValueError(f"board layouts fetch nothing ({url[:40]!r})")


def pdf_of(documents: list[str]) -> bytes:
    """One PDF of several HTML documents, each paginated (and counted) on its own."""
    import weasyprint  # imported here: a second of start-up only PDFs need

    with _PDF_LOCK:
        rendered = [
            weasyprint.HTML(string=html, url_fetcher=_no_fetch).render() for html in documents
        ]
        pages = [page for doc in rendered for page in doc.pages]
        pdf: bytes = rendered[0].copy(pages).write_pdf()
    return pdf


async def pdf_async(documents: list[str]) -> bytes:
    return await asyncio.to_thread(pdf_of, documents)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pack-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the adapter --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardRendered(Rendered):
    """The HTML documents of a pack (cover, posters); the PDF is made in `deliver`."""

    documents: tuple[str, ...] = field(default=())
    subject: Subject | None = None


class BoardChannel(ChannelAdapter):
    name: ClassVar[str] = "board"
    # PDF rendering is CPU work: two packs at a time. The operator's confirmation is the
    # receipt; a repeated attempt is harmless; withdrawals and expiries become take-downs
    limits: ClassVar[Limits] = Limits(concurrency=2, receipts=True, repeatable=True, retracts=True)
    Settings: ClassVar[type[ChannelSettings]] = BoardSettings

    @property
    def board(self) -> BoardSettings:
        assert isinstance(self.settings, BoardSettings)
        return self.settings

    def render(self, subject: Subject, target: Target) -> Rendered:
        tz = self.site.tz
        if subject.kind == PACK_KIND:
            documents = pack_pages(subject, target, site_agency=self.site.agency, tz=tz)
        elif subject.item_id is not None and subject.kind in ("published", "corrected"):
            # an item as a board would get it (the staff previews)
            from publisher.shortlinks import ShortLinks

            short = (
                ShortLinks(self.context.config).url(subject.item_id)
                if self.context is not None
                else subject.public_url
            )
            paper, orientation = layout_of(target)
            documents = [
                poster_html(
                    subject_poster(subject, short, tz),
                    site_name=self.site.name,
                    site_agency=self.site.agency,
                    paper=paper,
                    orientation=orientation,
                )
            ]
        else:
            raise PermanentDeliveryError(
                f"board takes print packs, not {subject.kind!r}", reason="unknown_subject"
            )
        html = documents[-1] if subject.kind != PACK_KIND else documents[0]
        return BoardRendered(
            body=html.encode(),
            content_type="text/html; charset=utf-8",
            preview=html,
            documents=tuple(documents),
            subject=subject,
        )

    async def deliver(self, rendered: Rendered, target: Target, *, delivery_id: str) -> Receipt:
        assert isinstance(rendered, BoardRendered) and rendered.subject is not None
        subject = rendered.subject
        if subject.kind != PACK_KIND or self.context is None:
            raise PermanentDeliveryError(
                "board deliveries are print packs", reason="unknown_subject"
            )
        from publisher import packs

        store = self.context.store
        pack_id = int(subject.key.partition(":")[2])
        folder = packs_path(self.context.config)
        documents = list(rendered.documents)
        gone = packs.subject_gone(subject)
        if gone is None and subject.item_id is not None:
            # the engine keeps the subjects it read: one read before the item was withdrawn
            # or expired is read again, and the pack goes out as things stand (no poster)
            gone = await packs.gone_status(store, subject.item_id)
            if gone is not None:
                subject = await packs.load_subject(store, subject.key)
                documents = pack_pages(
                    subject, target, site_agency=self.site.agency, tz=self.site.tz
                )
        if gone is not None:
            # the PDF that posted the item, if an attempt made one, goes with it (or, if it
            # cannot be deleted now, when the pack is next served: packs.pack_pdf)
            with contextlib.suppress(OSError):
                (folder / packs.pdf_name(pack_id)).unlink(missing_ok=True)
        # a pack whose item was withdrawn or expired before it was made has its own name:
        # the PDF that posts the item is never served once it is gone (packs.pack_pdf)
        path = folder / packs.pdf_name(pack_id, gone)
        if not path.exists():
            try:
                pdf = await pdf_async(documents)
            except Exception as exc:  # a layout that cannot be made will not be made later
                raise PermanentDeliveryError(
                    f"the pack's PDF could not be made: {exc!r:.200}", reason="render_failed"
                ) from None
            try:
                write_atomically(path, pdf)
            except OSError as exc:
                raise TransientDeliveryError(f"cannot keep the pack's PDF: {exc}") from None
        await packs.notify_operator(store, pack_id)
        return Receipt(ReceiptState.SENT, provider_id=f"pack:{pack_id}")


def due_date(posted: datetime, days: int, tz: Any) -> str:
    """The first day an item posted at `posted` may come down after `days` days."""
    return (posted.astimezone(tz).date() + timedelta(days=days)).isoformat()
