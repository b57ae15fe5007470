"""The annual report as HTML (Jinja2, `templates/report/`), PDF (WeasyPrint), CSV and JSON.

Every format is rendered from one checked `AnnualReport`, and CSV and JSON from one
list of cells, so they cannot disagree.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from publisher.reports.annual import (
    LEGAL_COLUMNS,
    LEGAL_ROWS,
    SECTIONS,
    T3_COLUMNS,
    T3_LABEL_DEPTH,
    T3_ROWS,
    T4_COLUMNS,
    T4_GROUPS,
    AnnualReport,
    cells,
    check_report,
    label_cells,
    report_json,
)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "report"


class ReportFormat(StrEnum):
    HTML = "html"
    PDF = "pdf"
    CSV = "csv"
    JSON = "json"


MEDIA_TYPES = {
    ReportFormat.HTML: "text/html; charset=utf-8",
    ReportFormat.PDF: "application/pdf",
    ReportFormat.CSV: "text/csv; charset=utf-8",
    ReportFormat.JSON: "application/json; charset=utf-8",
}


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _paragraphs(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _month_chart(by_month: list[int]) -> dict[str, Any]:
    """Geometry of the bar chart of publications per month (inline SVG: no script, and
    WeasyPrint draws it in the PDF)."""
    width, height, left, top, bottom = 480, 170, 8, 16, 20
    base = height - bottom
    slot = (width - left - 4) / 12
    peak = max(by_month) or 1
    bars = []
    for month, value in enumerate(by_month, 1):
        h = round((base - top) * value / peak, 1)
        x = round(left + (month - 1) * slot + slot * 0.15, 1)
        w = round(slot * 0.7, 1)
        bars.append(
            {
                "x": x,
                "y": round(base - h, 1),
                "w": w,
                "h": h,
                "cx": round(x + w / 2, 1),
                "value": value,
                "label": f"{month}月",
                "key": f"{month:02d}",
            }
        )
    return {"width": width, "height": height, "left": left, "base": base, "bars": bars}


def render_html(report: AnnualReport) -> str:
    check_report(report)
    env = _environment()
    t4 = {group: getattr(report.entries.table4, group).model_dump() for group, _ in T4_GROUPS}
    tz_date = report.generated_at.date()
    return env.get_template("annual.html").render(
        report=report,
        css=(TEMPLATES_DIR / "annual.css").read_text(encoding="utf-8"),
        sections=SECTIONS,
        paragraphs=_paragraphs,
        chart=_month_chart(report.by_month),
        summary=[
            (c.row, c.row_label, c.column_label, c.value)
            for c in cells(report)
            if c.table == "summary"
        ],
        legal_rows=LEGAL_ROWS,
        legal_columns=LEGAL_COLUMNS,
        t2=report.entries.table2,
        t3_columns=T3_COLUMNS,
        t3_rows=list(zip(T3_ROWS, label_cells(T3_ROWS, T3_LABEL_DEPTH), strict=True)),
        t4_groups=T4_GROUPS,
        t4_columns=T4_COLUMNS,
        t4=t4,
        generated_on=f"{tz_date.year}年{tz_date.month}月{tz_date.day}日",
    )


def render_pdf(report: AnnualReport) -> bytes:
    import weasyprint  # imported here: 1 s of start-up that only the PDF needs

    pdf: bytes = weasyprint.HTML(string=render_html(report)).write_pdf()
    return pdf


def render_csv(report: AnnualReport) -> str:
    check_report(report)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "row", "row_label", "column", "column_label", "value"])
    for c in cells(report):
        value = "" if c.value is None else str(c.value)
        writer.writerow([c.table, c.row, c.row_label, c.column, c.column_label, value])
    return buf.getvalue()


def render_json(report: AnnualReport) -> str:
    check_report(report)
    return json.dumps(report_json(report), ensure_ascii=False, indent=2, default=_plain)


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def render(report: AnnualReport, fmt: ReportFormat) -> bytes:
    if fmt is ReportFormat.PDF:
        return render_pdf(report)
    text = {
        ReportFormat.HTML: render_html,
        ReportFormat.CSV: render_csv,
        ReportFormat.JSON: render_json,
    }[fmt](report)
    return text.encode("utf-8")
