"""The layout of the sample item (a long text) on A4 and A3, checked with poppler-utils:
page size, page count, 第 x 页 / 共 y 页 on every page, the whole text in order, the QR
code (zbar) to the item's short link; markup and rare characters in titles as text; the
urgent marking; type sizes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from channels.board import TYPE_SIZES, Poster, pdf_of, poster_html
from publisher.config import Config
from publisher.shortlinks import ShortLinks
from publisher.text import render_body
from tests.board.conftest import (
    FOOTER,
    need_tools,
    page_text,
    pdf_info,
    qr_codes,
    run,
    sample_text,
    squeeze,
)

ITEM_ID = "3f2c9a4e-8b1d-4c6e-9f00-123456789abc"
#: pdfinfo's page sizes in points (portrait)
SIZES = {"A4": (595.28, 841.89), "A3": (841.89, 1190.55)}


def _poster(config: Config, **overrides: object) -> Poster:
    header, body = sample_text()
    fields: dict[str, object] = {
        "title": "上余镇2013年政府信息公开工作年度报告",
        "body_html": render_body("\n\n".join(body)),
        "index_no": header["索引号"],
        "category_name": header["主题分类"],
        "agency": header["发文机关"],
        "written_at": header["成文日期"][:10],
        "doc_no": None,
        "urgent": False,
        "posted_on": "2014-01-28",
        "take_down_on": "另行通知",
        "short_url": ShortLinks(config).url(ITEM_ID),
    }
    fields.update(overrides)
    return Poster(**fields)  # type: ignore[arg-type]


def _render(
    config: Config, poster: Poster, paper: str, path: Path, orientation: str = "portrait"
) -> Path:
    html = poster_html(
        poster,
        site_name=config.site.name,
        site_agency=config.site.agency,
        paper=paper,
        orientation=orientation,
    )
    path.write_bytes(pdf_of([html]))
    return path


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Config, Path]]:
    """The sample rendered once per paper size for the whole module."""
    need_tools()
    from publisher.config import load_config
    from tests.conftest import REPO

    tmp = tmp_path_factory.mktemp("layouts")
    config = load_config(
        REPO / "config.yaml",
        {
            "PUBLISHER__STORAGE__URL": f"sqlite:///{tmp}/p.db",
            "PUBLISHER__SECURITY__DATA_KEY": "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0uLi4uLi4uLi4=",
            "PUBLISHER__SECURITY__DATA_KEY_FILE": "",
        },
    )
    return {
        paper: (config, _render(config, _poster(config), paper, tmp / f"sample-{paper}.pdf"))
        for paper in ("A4", "A3")
    }


@pytest.mark.parametrize("paper", ["A4", "A3"])
def test_page_size_and_count(layouts: dict[str, tuple[Config, Path]], paper: str) -> None:
    _, path = layouts[paper]
    info = pdf_info(path)
    width, height = (float(x) for x in re.findall(r"[\d.]+", info["Page size"])[:2])
    assert (round(width, 1), round(height, 1)) == tuple(round(x, 1) for x in SIZES[paper])
    assert paper in info["Page size"]
    assert int(info["Pages"]) > 1


@pytest.mark.parametrize("paper", ["A4", "A3"])
def test_every_page_says_which_of_how_many(
    layouts: dict[str, tuple[Config, Path]], paper: str
) -> None:
    _, path = layouts[paper]
    pages = int(pdf_info(path)["Pages"])
    for page in range(1, pages + 1):
        found = FOOTER.findall(squeeze(page_text(path, page)))
        assert found == [f"第{page}页/共{pages}页"], (page, found)


@pytest.mark.parametrize("paper", ["A4", "A3"])
def test_the_whole_text_in_order(layouts: dict[str, tuple[Config, Path]], paper: str) -> None:
    _, path = layouts[paper]
    header, body = sample_text()
    text = FOOTER.sub("", squeeze(page_text(path)))
    # the catalogue header first, then every paragraph of the body, each after the last
    position = 0
    for label in ("索引号", "主题分类", "发文机关", "成文日期", "文号", "张贴日期", "撤下日期"):
        assert label in text
    assert header["索引号"] in text
    for paragraph in body:
        # "3. …" is a Markdown list item: its number is a list marker, which the sanitizer
        # renumbers from 1 (it drops <ol start>); the words are what must all be there
        paragraph = re.sub(r"^\d+\.\s+", "", paragraph)
        found = text.find(squeeze(paragraph), position)
        assert found >= position, f"not found in order: {paragraph[:30]}…"
        position = found + len(squeeze(paragraph))
    assert position > len(text) * 0.8  # the body is most of the text, and it all came out


@pytest.mark.parametrize("paper", ["A4", "A3"])
def test_qr_code_decodes_to_the_short_link(
    layouts: dict[str, tuple[Config, Path]], paper: str, tmp_path: Path
) -> None:
    config, path = layouts[paper]
    assert qr_codes(path, 1, tmp_path) == [ShortLinks(config).url(ITEM_ID)]


def _font_sizes(html: str, needle: str) -> list[float]:
    """Font sizes (pt) of the text boxes on the first page that hold `needle`, from
    WeasyPrint's own layout of the page (what it drew, not what the CSS asked for)."""
    import weasyprint

    page = weasyprint.HTML(string=html).render().pages[0]
    return [
        round(box.style["font_size"] * 0.75, 1)  # CSS px -> pt
        for box in page._page_box.descendants()
        if getattr(box, "text", None) and needle in box.text
    ]


@pytest.mark.parametrize("paper", ["A4", "A3"])
def test_type_is_large_enough(layouts: dict[str, tuple[Config, Path]], paper: str) -> None:
    """Readable at a distance: the title at least 28 pt, the body at least 14 pt."""
    config, _ = layouts[paper]
    html = poster_html(
        _poster(config),
        site_name=config.site.name,
        site_agency=config.site.agency,
        paper=paper,
        orientation="portrait",
    )
    title = _font_sizes(html, "上余镇2013年")
    body = _font_sizes(html, "政府信息公开条例")
    assert title and min(title) >= 28, title
    assert body and min(body) >= 14, body
    assert TYPE_SIZES[paper]["title"] >= 28 and TYPE_SIZES[paper]["body"] >= 14


def test_markup_and_rare_characters_in_titles_print_as_text(
    layouts: dict[str, tuple[Config, Path]], tmp_path: Path
) -> None:
    config, _ = layouts["A4"]
    title = '<b>吉𠮷</b> & <script>alert("x")</script> <img src=x onerror=1>'
    poster = _poster(config, title=title, body_html="<p>正文。</p>")
    path = _render(config, poster, "A4", tmp_path / "markup.pdf")
    text = page_text(path)
    assert squeeze(title) in squeeze(text)
    assert "𠮷" in text
    # a body's pictures are left out: rendering never fetches anything
    html = poster_html(
        _poster(config, body_html='<p>图<img src="http://192.0.2.1/x.png" alt="x">文</p>'),
        site_name=config.site.name,
        site_agency=config.site.agency,
        paper="A4",
        orientation="portrait",
    )
    assert "<img" not in html and "192.0.2.1" not in html


def test_urgent_marking_survives_black_and_white(
    layouts: dict[str, tuple[Config, Path]], tmp_path: Path
) -> None:
    """紧急 on every page in text, and a black band on the first: a grey-scale raster has a
    run of rows that are nearly all black across the page (not a colour)."""
    need_tools()
    from PIL import Image

    config, _ = layouts["A4"]
    path = _render(config, _poster(config, urgent=True), "A4", tmp_path / "urgent.pdf")
    pages = int(pdf_info(path)["Pages"])
    assert pages > 1
    for page in range(1, pages + 1):
        assert "紧急" in page_text(path, page), page
    run(
        "pdftoppm",
        "-r",
        "40",
        "-f",
        "1",
        "-l",
        "1",
        "-gray",
        "-png",
        "-singlefile",
        path,
        tmp_path / "g",
    )
    with Image.open(tmp_path / "g.png") as raw:
        image = raw.convert("L")
        width, height = image.size
        pixels = image.load()
        assert pixels is not None
        dark_rows = sum(
            1
            for y in range(height // 4)
            if sum(1 for x in range(width) if pixels[x, y] < 60) > width * 0.6
        )
    assert dark_rows >= 3
    # and not urgent: no band
    plain = _render(
        config, _poster(config, body_html="<p>正文。</p>"), "A4", tmp_path / "plain.pdf"
    )
    assert "紧急" not in page_text(plain)


def test_landscape(layouts: dict[str, tuple[Config, Path]], tmp_path: Path) -> None:
    config, _ = layouts["A3"]
    poster = _poster(config, body_html="<p>正文。</p>")
    path = _render(config, poster, "A3", tmp_path / "landscape.pdf", orientation="landscape")
    info = pdf_info(path)
    width, height = (float(x) for x in re.findall(r"[\d.]+", info["Page size"])[:2])
    assert width > height and abs(width - 1190.55) < 0.1


# -- the cover sheet of a pack ----------------------------------------------------------------------


@pytest.mark.parametrize(("paper", "orientation"), [("A4", "portrait"), ("A3", "landscape")])
def test_cover_never_breaks_inside_an_index_number(
    config: Config, tmp_path: Path, paper: str, orientation: str
) -> None:
    """The 索引号 on the cover is read out and searched for: `…305088/2` | `026-00001` on
    two lines is two wrong numbers. Each stays whole on one line, next to a long title."""
    from datetime import UTC, datetime

    from channels.base import Subject, Target
    from channels.board import cover_html

    need_tools()
    numbers = ["113308810026305088/2026-00001", "113308810026305088/2026-00002"]
    line = {
        "title": "上余镇关于2026年度农村宅基地审批及农房建设管理有关事项的通知（第二次更正）",
        "reason": "更正后的新版本",
        "take_down_on": "另行通知",
        "urgent": True,
        "warning": "注意：到期日早于本栏最短张贴期（30 天）",
    }
    lines = (
        {**line, "action": "post", "index_no": numbers[0]},
        {**line, "action": "takedown", "index_no": numbers[1], "reason": "已更正，撤下旧版本"},
    )
    subject = Subject(
        key="pack:7", kind="board_pack", item_id=ITEM_ID, revision=None, title="张贴单",
        summary="", body="", body_html="", category="", category_name="", agency="上余镇",
        index_no=None, doc_no=None, written_at=None, published_at=None, urgent=True,
        public_url="", site_name=config.site.name, event_at=datetime(2026, 1, 5, tzinfo=UTC),
        items=lines,
    )  # fmt: skip
    target = Target("e:1", "board", "board:1", "北村", {"paper": paper, "orientation": orientation})
    cover = cover_html(subject, target, site_agency=config.site.agency, tz=config.site.tz)
    pdf = tmp_path / "cover.pdf"
    pdf.write_bytes(pdf_of([cover]))
    for text in (page_text(pdf, 1), page_text(pdf, 1, raw=True)):
        for number in numbers:
            assert number in text, text


def test_serve_logging_keeps_weasyprint_progress_out_of_the_log(
    config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """WeasyPrint logs some seven INFO lines ("Step 1 - Fetching and parsing HTML" …) per
    render to `weasyprint.progress`: the logging `serve` and `worker` set up keeps them out,
    and keeps its warnings."""
    import logging

    from publisher.cli import _configure_logging

    html = poster_html(
        _poster(config, body_html="<p>正文。</p>"),
        site_name=config.site.name,
        site_agency=config.site.agency,
        paper="A4",
        orientation="portrait",
    )
    progress = logging.getLogger("weasyprint.progress")
    saved = {name: logging.getLogger(name).level for name in ("apscheduler", "alembic")}
    saved_progress = progress.level
    caplog.set_level(logging.INFO)
    try:
        pdf_of([html])
        assert [r for r in caplog.records if r.name == "weasyprint.progress"]  # it does talk
        caplog.clear()
        _configure_logging()
        pdf_of([html])
        quiet = [r for r in caplog.records if r.name.startswith("weasyprint")]
        assert [r.getMessage() for r in quiet if r.levelno < logging.WARNING] == []
        assert progress.getEffectiveLevel() == logging.WARNING
    finally:
        progress.setLevel(saved_progress)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
