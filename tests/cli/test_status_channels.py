"""`publisher status` without an item: one line per channel saying whether it can deliver
(issue 18.3), exit 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cli.test_cli import cli, make_site, ok


def test_status_prints_one_line_per_channel(tmp_path: Path) -> None:
    def dry_run_sms(tree: dict[str, Any]) -> None:
        tree["channels"]["sms"]["settings"] = {"gateways": [{"type": "outbox"}]}

    cfg = make_site(tmp_path / "site", dry_run_sms)
    ok(cli(cfg, "db", "upgrade"))
    result = ok(cli(cfg, "status"))
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["portal", "rss", "sms", "email", "board"]
    by_channel = {line.split()[0]: line for line in lines}
    assert by_channel["portal"].split()[1] == "not_configured"
    assert "endpoint" in by_channel["portal"]
    assert by_channel["rss"].split()[1] == "active"
    # a dry-run gateway can send (to files), but nobody has subscribed yet
    assert by_channel["sms"].split()[1:3] == ["no_targets", "dry-run"]
    assert by_channel["email"].split()[1] == "not_configured" and "SMTP" in by_channel["email"]
    assert by_channel["board"].split()[1] == "no_targets"
