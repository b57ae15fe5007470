"""`publisher boards …`: add, list, edit; a bad value is one line on stderr and exit 2; the
operator's contact is shown masked."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import cli, make_site, ok, one_line_error, parallel


def test_boards_cli(tmp_path: Path) -> None:
    cfg = make_site(tmp_path)
    ok(cli(cfg, "db", "upgrade"))
    added = ok(
        cli(
            cfg,
            "boards",
            "add",
            "下余村",
            "--location",
            "村委会门口",
            "--paper",
            "A3",
            "--categories",
            "nync,tdzs",
            "--min-days",
            "10",
            "--phone",
            "13800138000",
        )
    ).stdout
    assert "board 1: 下余村" in added and "138****8000" in added
    assert "13800138000" not in added
    cases = [
        (("boards", "add", "x", "--paper", "A5"), "paper"),
        (("boards", "add", "x", "--min-days", "ten"), "min_days"),
        (("boards", "add", "x", "--categories", "nope"), "nope"),
        (("boards", "add", "x", "--email", "not-an-address"), "operator_email"),
        (("boards", "add", "下余村"), "exists already"),
        (("boards", "edit", "9", "--paper", "A4"), "no board 9"),
        (("boards", "edit", "x", "--paper", "A4"), "BOARD_ID"),
        (("boards", "edit", "1"), "nothing to change"),
        (("boards", "posted", "1", "5"), "no pack 5"),
    ]
    results = parallel(*(lambda args=args: cli(cfg, *args) for args, _ in cases))
    for (_, needle), result in zip(cases, results, strict=True):
        one_line_error(result, needle)
    ok(cli(cfg, "boards", "edit", "1", "--orientation", "landscape", "--phone", "", "--disable"))
    listed = json.loads(ok(cli(cfg, "boards", "list", "--json")).stdout)["boards"]
    assert [(b["name"], b["orientation"], b["operator_phone"], b["enabled"]) for b in listed] == [
        ("下余村", "landscape", None, False)
    ]


def test_boards_list_does_not_cut_long_names_at_80_columns(tmp_path: Path) -> None:
    cfg = make_site(tmp_path)
    ok(cli(cfg, "db", "upgrade"))
    name = "上余镇下余村村民委员会东侧公开栏（靠近文化礼堂）"
    location = "下余村文化礼堂东侧围墙，村民委员会办公楼南面"
    ok(
        cli(
            cfg,
            "boards",
            "add",
            name,
            "--location",
            location,
            "--email",
            "operator.of.the.board@shangyu.example.gov.cn",
        )
    )
    out = ok(cli(cfg, "boards", "list", env={"COLUMNS": "80"})).stdout
    assert "…" not in out, out
    assert name in out and location in out, out
