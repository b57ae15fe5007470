"""`publisher calendar`, `items due`, `requests` and `report`, run for real in subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import cli, listed, make_site, ok, one_line_error, parallel
from tests.report import CALENDAR_2025


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = make_site(tmp_path_factory.mktemp("report-site"))
    ok(cli(cfg, "db", "upgrade"))
    return cfg


def test_calendar_set_and_show(site: Path) -> None:
    out = ok(cli(site, "calendar", "set", "2025", "--file", str(CALENDAR_2025))).stdout
    assert "28 holidays and 5 make-up working days" in out
    shown = listed(cli(site, "calendar", "show", "2025", "--json"))
    assert {"date": "2025-10-11", "name": "国庆节调休"} in shown["workdays"]
    text = ok(cli(site, "calendar", "show", "2025")).stdout
    assert "调休上班" in text and "2025-09-28" in text
    out = ok(cli(site, "calendar", "set", "2024", "--holiday", "2024-10-01..2024-10-07", "--workday", "2024-09-29", "--workday", "2024-10-12")).stdout  # fmt: skip
    assert "7 holidays and 2 make-up working days" in out
    assert "not entered" in ok(cli(site, "calendar", "show", "2023")).stdout


def test_bad_input_is_one_line_and_exit_2(site: Path, tmp_path: Path) -> None:
    bad_file = tmp_path / "cal.txt"
    bad_file.write_text("2025-10-01 holiday\n2025-10-09 workday\n", encoding="utf-8")
    results = parallel(
        lambda: cli(site, "calendar", "set", "2025", "--workday", "2025-10-09"),
        lambda: cli(site, "calendar", "set", "2025", "--file", str(bad_file)),
        lambda: cli(site, "calendar", "set", "2025", "--holiday", "2025-10-32"),
        lambda: cli(site, "calendar", "set", "2025"),
        lambda: cli(site, "requests", "add", "--received", "yesterday", "--applicant-type", "business", "--subject", "x"),
        lambda: cli(site, "requests", "close", "424242", "--outcome", "granted", "--on", "2025-01-02"),
        lambda: cli(site, "report", "annual", "1800"),
        lambda: cli(site, "report", "entries", "2025", "--set", "table2.nothing=3"),
        lambda: cli(site, "report", "entries", "2025", "--set", "table2.licensing=-2"),
        lambda: cli(site, "report", "annual", "2025", "--format", "json", "--out", str(tmp_path / "no" / "such" / "r.json")),
    )  # fmt: skip
    needles = [
        ("2025-10-09", "Saturday or Sunday"),
        ("2025-10-09", "make-up workday"),
        ("--holiday", "2025-10-32"),
        ("--holiday, --workday or --file",),
        ("--received", "yesterday"),
        ("424242",),
        ("1800",),
        ("table2.nothing", "no such entry"),
        ("table2.licensing",),
        ("--out",),
    ]
    for result, words in zip(results, needles, strict=True):
        one_line_error(result, *words)


def test_requests_and_the_report(site: Path, tmp_path: Path) -> None:
    out = ok(cli(site, "requests", "add", "--received", "2024-12-30", "--applicant-type", "natural_person", "--subject", "低保名单")).stdout  # fmt: skip
    carried = int(out.split()[1].rstrip(":"))
    out = ok(cli(site, "requests", "add", "--received", "2025-03-03", "--applicant-type", "research", "--subject", "预算")).stdout  # fmt: skip
    answered = int(out.split()[1].rstrip(":"))
    ok(cli(site, "requests", "pause", str(answered), "--kind", "correction", "--on", "2025-03-05"))
    ok(cli(site, "requests", "resume", str(answered), "--on", "2025-03-10"))
    ok(cli(site, "requests", "close", str(answered), "--outcome", "unable.not_held", "--on", "2025-03-20"))  # fmt: skip
    listing = listed(cli(site, "requests", "list", "--year", "2025", "--json"))
    assert {r["id"] for r in listing["requests"]} >= {carried, answered}
    ok(cli(site, "report", "entries", "2025", "--set", "table2.licensing=7", "--set", "problems=公开栏更新不及时。"))  # fmt: skip
    entries = listed(cli(site, "report", "entries", "2025"))
    assert entries["table2"]["licensing"] == 7 and entries["problems"] == "公开栏更新不及时。"

    out_json, out_csv, out_pdf = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.pdf"
    parallel(
        lambda: ok(cli(site, "report", "annual", "2025", "--format", "json", "--out", str(out_json))),
        lambda: ok(cli(site, "report", "annual", "2025", "--format", "csv", "--out", str(out_csv))),
        lambda: ok(cli(site, "report", "annual", "2025", "--format", "pdf", "--out", str(out_pdf))),
    )  # fmt: skip
    data = json.loads(out_json.read_text(encoding="utf-8"))
    t3 = data["tables"]["table3"]
    assert t3["carried_in"]["natural_person"] == 1 and t3["carried_out"]["natural_person"] == 1
    assert t3["unable.not_held"]["research"] == 1 and t3["new"]["total"] == 1
    assert data["tables"]["table2"]["licensing"]["decisions"] == 7
    assert "table3,unable.not_held,1.本机关不掌握相关政府信息,research,科研机构,1" in out_csv.read_text(encoding="utf-8")  # fmt: skip
    assert out_pdf.read_bytes().startswith(b"%PDF")
    html = ok(cli(site, "report", "annual", "2025")).stdout
    assert "三、收到和处理政府信息公开申请情况" in html

    ok(cli(site, "report", "entries", "2025", "--set", "table4.reconsideration.upheld=1"))
    one_line_error(cli(site, "report", "annual", "2025", "--format", "csv"), "表四 行政复议 总计")
    assert "no item within" in ok(cli(site, "items", "due")).stdout


def test_the_report_as_a_draft_item(site: Path, tmp_path: Path) -> None:
    ok(cli(site, "user", "add", "erin", "--role", "editor"))
    ok(cli(site, "user", "add", "rita", "--role", "reviewer"))
    ok(cli(site, "report", "entries", "2023", "--set", "table4.reconsideration.upheld=1"))
    results = parallel(
        lambda: cli(site, "report", "annual", "2024", "--as-item"),
        lambda: cli(site, "report", "annual", "2024", "--as-item", "--author", "rita"),
        lambda: cli(site, "report", "annual", "2024", "--as-item", "--author", "nobody"),
        lambda: cli(site, "report", "annual", "2024", "--as-item", "--author", "erin", "--out", str(tmp_path / "r.pdf")),
        lambda: cli(site, "report", "annual", "2024", "--author", "erin"),
        lambda: cli(site, "report", "annual", "2023", "--as-item", "--author", "erin"),
    )  # fmt: skip
    needles = [
        ("--as-item", "--author"),
        ("--author rita", "reviewer"),
        ("--author nobody", "no such user"),
        ("--as-item", "--out"),
        ("--author", "only with --as-item"),
        ("表四 行政复议 总计",),
    ]
    for result, words in zip(results, needles, strict=True):
        one_line_error(result, *words)

    out = ok(cli(site, "report", "annual", "2024", "--as-item", "--author", "erin")).stdout
    assert "上余镇人民政府2024年政府信息公开工作年度报告" in out
    item_id = out.split()[2].rstrip(":")
    shown = listed(cli(site, "items", "show", item_id, "--json"))
    assert shown["status"] == "draft" and shown["created_by"] == "erin"
    assert shown["category"] == "zwgk"
    assert [a["filename"] for a in shown["attachments"]] == ["2024年政府信息公开工作年度报告.pdf"]
