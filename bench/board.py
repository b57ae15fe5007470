"""Notice-board layout benchmark: seconds per page of a board layout against WeasyPrint
rendering a bare page of the same text, in the same run.

- **layout**: what the board channel prints for an item (channels.board: the Jinja2
  template with print CSS, site and agency, catalogue header, posting and take-down
  dates, a QR code as SVG, "第 x 页 / 共 y 页" in every page's margin), A4 portrait.
- **bare**: WeasyPrint alone, the same paragraphs in the same font and size on the same
  paper, with nothing else on the page.

Two texts: one that fits one page, and the sample report repeated until the layout runs
to ten pages. Each is rendered `--runs` times after a warm-up; the median is reported.

    .venv/bin/python bench/board.py                       # 5 runs each
    .venv/bin/python bench/board.py --examples docs/board  # also write example pages as PNG

Needs fonts-noto-cjk and libharfbuzz-subset0 (without the latter a Chinese page takes
seconds), and poppler-utils (pdfinfo; pdftoppm for --examples).
"""

from __future__ import annotations

import argparse
import html
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SAMPLE = REPO.parent / "shared" / "samples" / "shangyu-2013-disclosure-report.txt"
SITE, AGENCY = "上余镇政府信息公开", "上余镇人民政府"
SHORT = "http://127.0.0.1:8080/s/Ab3dE5gH"


def paragraphs() -> list[str]:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and "|" not in line]


def layout_html(paras: list[str], *, urgent: bool = False, paper: str = "A4") -> str:
    from channels.board import Poster, poster_html

    body = "".join(f"<p>{html.escape(p)}</p>" for p in paras)
    poster = Poster(
        title="上余镇2013年政府信息公开工作年度报告",
        body_html=body,
        index_no="113308810026305088/2014-128123",
        category_name="政务公开",
        agency="上余镇",
        written_at="2014-01-27",
        doc_no=None,
        urgent=urgent,
        posted_on="2014-01-28",
        take_down_on="另行通知",
        short_url=SHORT,
    )
    return poster_html(
        poster, site_name=SITE, site_agency=AGENCY, paper=paper, orientation="portrait"
    )


def bare_html(paras: list[str]) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paras)
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><style>'
        "@page{size:A4 portrait;margin:16mm 16mm 20mm 16mm}"
        'html{font-family:"Noto Serif CJK SC",serif}body{font-size:16pt;line-height:1.6}'
        f"</style></head><body>{body}</body></html>"
    )


def render(document: str) -> tuple[float, int]:
    """Seconds to make the PDF, and its pages."""
    import weasyprint

    started = time.perf_counter()
    rendered = weasyprint.HTML(string=document).render()
    rendered.write_pdf()
    return time.perf_counter() - started, len(rendered.pages)


def median_run(document: str, runs: int) -> tuple[float, int]:
    render(document)  # warm-up: fonts, caches
    results = [render(document) for _ in range(runs)]
    return statistics.median(r[0] for r in results), results[0][1]


def ten_pages() -> list[str]:
    """The sample repeated until the layout runs to ten pages (not more)."""
    base = paragraphs()
    paras: list[str] = []
    while True:
        candidate = paras + base
        _, pages = render(layout_html(candidate))
        if pages > 10:
            break
        paras = candidate
        if pages == 10:
            return paras
    # top up paragraph by paragraph
    for p in base:
        _, pages = render(layout_html([*paras, p]))
        if pages > 10:
            break
        paras.append(p)
    return paras


def examples(out: Path) -> list[Path]:
    """Example pages as PNG: the sample on A4 (first page), urgent on A3, a pack cover."""
    from datetime import UTC, datetime

    from channels.base import Subject, Target
    from channels.board import cover_html, pdf_of

    out.mkdir(parents=True, exist_ok=True)
    paras = paragraphs()
    line = {
        "action": "post", "title": "上余镇2013年政府信息公开工作年度报告",
        "index_no": "113308810026305088/2014-128123", "urgent": False, "reason": "新发布",
        "take_down_on": "另行通知", "warning": None,
    }  # fmt: skip
    down = {**line, "action": "takedown", "title": "关于秋季征兵工作的通告",
            "index_no": "113308810026305088/2013-00412", "reason": "已到期",
            "warning": "注意：仅张贴 6 天，未满本栏最短张贴期（10 天）"}  # fmt: skip
    subject = Subject(
        key="pack:17", kind="pack", item_id=None, revision=None, title="", summary="", body="",
        body_html="", category="", category_name="", agency=AGENCY, index_no=None, doc_no=None,
        written_at=None, published_at=None, urgent=False, public_url="", site_name=SITE,
        event_at=datetime(2014, 1, 28, 2, 0, tzinfo=UTC), items=(line, down),
    )  # fmt: skip
    target = Target("e:1", "board", "", "下余村", {"location": "村委会门口", "paper": "A4"})
    from zoneinfo import ZoneInfo

    jobs = {
        "poster-a4": layout_html(paras),
        "urgent-a3": layout_html(paras[:3], urgent=True, paper="A3"),
        "cover-a4": cover_html(subject, target, site_agency=AGENCY, tz=ZoneInfo("Asia/Shanghai")),
    }
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, document in jobs.items():
            pdf = Path(tmp) / f"{name}.pdf"
            pdf.write_bytes(pdf_of([document]))
            subprocess.run(
                [
                    "pdftoppm",
                    "-r",
                    "60",
                    "-f",
                    "1",
                    "-l",
                    "1",
                    "-png",
                    "-singlefile",
                    pdf,
                    out / name,
                ],
                check=True,
            )
            written.append(out / f"{name}.png")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--examples", type=Path, help="write example pages (PNG) here")
    args = parser.parse_args()

    paras = paragraphs()
    one = paras[:2]
    _, pages = render(layout_html(one))
    assert pages == 1, f"the one-page text runs to {pages} pages"
    ten = ten_pages()

    print(f"{'text':<10} {'what':<8} {'pages':>5} {'seconds':>8} {'s/page':>7} {'x bare':>7}")
    for label, text in (("one page", one), ("ten pages", ten)):
        layout_s, layout_pages = median_run(layout_html(text), args.runs)
        bare_s, bare_pages = median_run(bare_html(text), args.runs)
        for what, seconds, pages in (
            ("layout", layout_s, layout_pages),
            ("bare", bare_s, bare_pages),
        ):
            ratio = (seconds / pages) / (bare_s / bare_pages)
            print(
                f"{label:<10} {what:<8} {pages:>5} {seconds:>8.3f} {seconds / pages:>7.3f} {ratio:>7.2f}"
            )
    if args.examples:
        for path in examples(args.examples):
            print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


if __name__ == "__main__":
    main()
