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
from markupsafe import Markup

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
    return env.get_template("annual.html").render(
        report=report,
        # our own stylesheet, not escaped: escaped quotes broke the PDF's fonts and counters
        css=Markup((TEMPLATES_DIR / "annual.css").read_text(encoding="utf-8")),
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
        generated_on=report.signed_on,
    )


def render_pdf(report: AnnualReport) -> bytes:
    import weasyprint  # imported here: 1 s of start-up that only the PDF needs

    pdf: bytes = weasyprint.HTML(string=render_html(report)).write_pdf()
    return pdf


def _md_cell(value: object) -> str:
    text = "—" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines.extend("| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows)
    return [*lines, ""]


def render_markdown(report: AnnualReport) -> str:
    """The report as Markdown (plain text that reads well as is): the body of the item it
    is published as, so every channel carries the same numbers as the PDF."""
    check_report(report)
    y = report.year
    out = [
        f"本报告根据《中华人民共和国政府信息公开条例》和《中华人民共和国政府信息公开工作年度"
        f"报告格式》（国办公开办函〔2021〕30号）编制。本报告中所列数据的统计期限自{y}年1月1日"
        f"起至{y}年12月31日止。",
        "",
        f"## {SECTIONS[0]}",
        "",
    ]
    for para in _paragraphs(report.entries.overview):
        out += [para, ""]
    out += [
        f"{y}年共主动公开政府信息{report.published}条，更正{report.corrected}次，"
        f"撤回{report.withdrawn}条，到期下架{report.expired}条；自形成或变更之日起超过20个"
        f"工作日公开的{report.late}条，超过20个工作日更正的{report.late_corrections}次；"
        f"本年办结的政府信息公开申请中超过法定期限答复的{report.late_answers}件。",
        "",
    ]
    out += _md_table(
        ["项目", "数量"],
        [
            [f"{c.row_label}（{c.column_label}）", c.value]
            for c in cells(report)
            if c.table == "summary"
        ],
    )
    out += _md_table(
        ["主题分类", "条数"],
        [[name, n] for _, name, n in report.by_category] + [["合计", report.published]],
    )
    out += _md_table(
        ["渠道", "发布条数", "送达", "失败", "待发送", "未发送", "送达率（%）"],
        [
            [s.label, s.items, s.delivered, s.failed, s.pending, s.skipped, s.success_rate]
            for s in report.by_channel
        ],
    )
    out += _md_table(["月份", *(f"{m}月" for m in range(1, 13))], [["条数", *report.by_month]])

    out += [f"## {SECTIONS[1]}", "", "第二十条第（一）项", ""]
    out += _md_table(
        ["信息内容", *(label for _, label in LEGAL_COLUMNS)],
        [
            [label, *(report.legal[kind.value][column] for column, _ in LEGAL_COLUMNS)]
            for kind, label in LEGAL_ROWS
        ],
    )
    t2 = report.entries.table2
    for block, column, rows in (
        ("第二十条第（五）项", "本年处理决定数量", [["行政许可", t2.licensing]]),
        (
            "第二十条第（六）项",
            "本年处理决定数量",
            [["行政处罚", t2.penalty], ["行政强制", t2.coercion]],
        ),
        ("第二十条第（八）项", "本年收费金额（单位：万元）", [["行政事业性收费", t2.fees]]),
    ):
        out += [block, ""]
        out += _md_table(["信息内容", column], rows)

    out += [f"## {SECTIONS[2]}", ""]
    out += _md_table(
        ["申请人情况", *(label for _, label in T3_COLUMNS)],
        [
            [" ".join(path), *(report.table3[key][column] for column, _ in T3_COLUMNS)]
            for key, path in T3_ROWS
        ],
    )

    out += [f"## {SECTIONS[3]}", ""]
    t4 = report.entries.table4
    out += _md_table(
        ["", *(label for _, label in T4_COLUMNS)],
        [
            [group_label, *(getattr(getattr(t4, group), column) for column, _ in T4_COLUMNS)]
            for group, group_label in T4_GROUPS
        ],
    )

    for section, text in (
        (SECTIONS[4], report.entries.problems),
        (SECTIONS[5], report.entries.other_matters),
    ):
        out += [f"## {section}", ""]
        for para in _paragraphs(text) or ["无。"]:
            out += [para, ""]
    out += [report.agency, "", report.signed_on, ""]
    return "\n".join(out)


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
