"""The `publisher` command, run for real in a subprocess against a store under tmp_path.

What a user sees: exit codes, one-line errors without a traceback, JSON for scripts.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from publisher.config import load_config
from publisher.errors import Unauthorized
from publisher.store import schema as t
from publisher.store.sql import SqlStore
from tests.conftest import REPO, SAMPLE

KEY = "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0uLi4uLi4uLi4="
SAMPLE_INDEX_NO = "113308810026305088/2014-128123"


def base_env(key: bool = True, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER")}
    if key:
        env["PUBLISHER__SECURITY__DATA_KEY"] = KEY
    env.update(extra)
    return env


def cli(
    cfg: Path, *args: str, stdin: str = "", key: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--config", str(cfg), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cfg.parent,
        env=base_env(key, **(env or {})),
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 2, exactly one line on stderr, no traceback, naming what is wrong."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def make_site(folder: Path, change: Any = None) -> Path:
    """A copy of the repo's config.yaml in `folder`: its relative storage lands there."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "config.yaml"
    if change is None:
        shutil.copy(REPO / "config.yaml", cfg)
    else:
        tree = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
        change(tree)
        cfg.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return cfg


def items_json(cfg: Path, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(cli(cfg, "items", "list", "--json", *args)).stdout)
    return data


def open_store(cfg: Path) -> SqlStore:
    return SqlStore(load_config(cfg, {"PUBLISHER__SECURITY__DATA_KEY": KEY}))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store with the sample imported, shared by the tests that only add to it."""
    cfg = make_site(tmp_path_factory.mktemp("site"))
    ok(cli(cfg, "db", "upgrade"))
    result = ok(cli(cfg, "import", str(SAMPLE)))
    assert "1 imported, 0 skipped" in result.stdout
    return cfg


# -- db and import -------------------------------------------------------------------------------


def test_db_upgrade_creates_the_store_next_to_the_config(tmp_path: Path) -> None:
    cfg = make_site(tmp_path / "fresh")
    result = ok(cli(cfg, "db", "upgrade"))
    assert "store at schema" in result.stdout
    assert (tmp_path / "fresh" / "data" / "publisher.db").is_file()
    ok(cli(cfg, "db", "upgrade"))  # idempotent


def test_imported_sample_is_listed_with_its_catalogue_header(site: Path) -> None:
    data = items_json(site)
    assert data["total"] == 1
    [item] = data["items"]
    assert item["index_no"] == SAMPLE_INDEX_NO
    assert item["category"] == "zwgk"
    assert item["category_name"] == "政务公开"
    assert item["agency"] == "上余镇"
    assert item["written_at"].startswith("2014-01-27")
    assert item["written_at"] == "2014-01-27T10:56:08+08:00"
    assert item["status"] == "published"
    assert item["imported"] is True
    assert item["title"].startswith("根据《中华人民共和国政府信息公开条例》规定")
    assert "提高服务效率。" in item["body"]
    assert item["personal_data_warnings"] == []


def test_importing_again_is_reported_and_skipped(site: Path) -> None:
    result = ok(cli(site, "import", str(SAMPLE)))
    assert "0 imported, 1 skipped" in result.stdout
    assert "skipped" in result.stderr and SAMPLE_INDEX_NO in result.stderr
    assert items_json(site)["total"] == 1


def test_items_list_by_year(site: Path) -> None:
    assert [i["index_no"] for i in items_json(site, "--year", "2014")["items"]] == [SAMPLE_INDEX_NO]
    assert items_json(site, "--year", "2015") == {"items": [], "total": 0}


def test_items_list_table_and_filters(site: Path) -> None:
    table = ok(cli(site, "items", "list", "--category", "zwgk", "-q", "上余镇", "--status", "published"))
    assert "1 items" in table.stdout
    assert "2014-01-27" in table.stdout
    assert items_json(site, "--category", "nync")["total"] == 0
    one_line_error(cli(site, "items", "list", "--category", "mars"), "--category", "mars")


def test_items_show_by_id_prefix(site: Path) -> None:
    item_id = items_json(site)["items"][0]["id"]
    shown = json.loads(ok(cli(site, "items", "show", item_id[:8], "--json")).stdout)
    assert shown["id"] == item_id
    assert shown["index_no"] == SAMPLE_INDEX_NO
    assert shown["agency"] == "上余镇"
    human = ok(cli(site, "items", "show", item_id))
    assert SAMPLE_INDEX_NO in human.stdout


def test_items_show_unknown_id(site: Path) -> None:
    one_line_error(cli(site, "items", "show", "ffffffff-0000"), "ffffffff-0000")


def test_import_title_option_and_json(tmp_path: Path, site: Path) -> None:
    records = [
        {
            "index_no": "113308810026305088/2025-00001",
            "body": "经审核，现将社会救助资金发放情况公示如下。",
            "category": "社会救助",
            "written_at": "2025-12-01",
        }
    ]
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    result = ok(cli(site, "import", str(path), "--title", "2025年社会救助资金公示"))
    assert "1 imported" in result.stdout
    [item] = items_json(site, "--year", "2025")["items"]
    assert item["title"] == "2025年社会救助资金公示"
    assert item["category"] == "shjz"


def test_a_bad_file_stops_the_import_before_any_write(tmp_path: Path, site: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps({"title": "好", "body": "正文。", "category": "qt", "written_at": "2023-05-05"}),
        encoding="utf-8",
    )
    bad = tmp_path / "bad.txt"
    bad.write_text("索引号: | X/2023-1 | 主题分类: | 火星 |\n成文日期: | 2023-05-05 |\n正文。\n", "utf-8")
    one_line_error(cli(site, "import", str(good), str(bad)), str(bad), "火星")
    assert items_json(site, "--year", "2023")["total"] == 0


# -- users and tokens ------------------------------------------------------------------------------


async def test_user_add_with_password_from_stdin(site: Path) -> None:
    result = ok(cli(site, "user", "add", "wang", "--role", "editor", "--password-stdin", stdin="s3cret-pass\n"))
    assert "added wang (editor, password set)" in result.stdout
    store = open_store(site)
    try:
        user = await store.verify_password("wang", "s3cret-pass")
        assert user.role.value == "editor"
    finally:
        await store.close()


def test_user_add_errors(site: Path) -> None:
    ok(cli(site, "user", "add", "li", "--role", "reviewer"))
    listing = ok(cli(site, "user", "list"))
    assert "li" in listing.stdout and "reviewer" in listing.stdout
    with ThreadPoolExecutor(max_workers=2) as pool:
        dup = pool.submit(cli, site, "user", "add", "li", "--role", "editor")
        short = pool.submit(
            cli, site, "user", "add", "zhou", "--role", "editor", "--password-stdin", stdin="short\n"
        )
        dup_result, short_result = dup.result(), short.result()
    one_line_error(dup_result, "'li'", "already exists")
    one_line_error(short_result, "password", "8")


async def test_token_create_authenticates_and_revoke_ends_it(site: Path) -> None:
    ok(cli(site, "user", "add", "zhao", "--role", "reviewer"))
    token = ok(cli(site, "token", "create", "zhao")).stdout.strip()
    assert token.startswith("gk_") and len(token) > 30 and "\n" not in token
    expiring = ok(cli(site, "token", "create", "zhao", "--expires", "30")).stdout.strip()
    store = open_store(site)
    try:
        assert (await store.authenticate_token(token)).name == "zhao"
        assert (await store.authenticate_token(expiring)).role.value == "reviewer"
        async with store.read() as conn:
            expires_at = await conn.scalar(
                sa.select(t.api_tokens.c.expires_at).where(t.api_tokens.c.prefix == expiring[:10])
            )
        assert expires_at is not None

        assert "revoked 1 token" in ok(cli(site, "token", "revoke", token)).stdout
        with pytest.raises(Unauthorized):
            await store.authenticate_token(token)
        assert (await store.authenticate_token(expiring)).name == "zhao"  # the other still works

        ok(cli(site, "token", "revoke", expiring[:10]))  # by the prefix
        with pytest.raises(Unauthorized):
            await store.authenticate_token(expiring)
    finally:
        await store.close()
    one_line_error(cli(site, "token", "revoke", token), "no active token")


def test_token_create_bad_input(site: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        zero = pool.submit(cli, site, "token", "create", "nobody-here", "--expires", "0")
        unknown = pool.submit(cli, site, "token", "create", "nobody-here")
        zero_result, unknown_result = zero.result(), unknown.result()
    assert zero_result.returncode == 2
    assert "--expires" in zero_result.stderr and "Traceback" not in zero_result.stderr
    one_line_error(unknown_result, "'nobody-here'")


async def test_user_disable_revokes_tokens(site: Path) -> None:
    ok(cli(site, "user", "add", "sun", "--role", "editor"))
    tokens = [ok(cli(site, "token", "create", "sun")).stdout.strip() for _ in range(2)]
    assert "revoked" in ok(cli(site, "user", "disable", "sun")).stdout
    store = open_store(site)
    try:
        async with store.read() as conn:
            revoked = (
                await conn.scalars(
                    sa.select(t.api_tokens.c.revoked_at)
                    .join(t.users, t.users.c.id == t.api_tokens.c.user_id)
                    .where(t.users.c.name == "sun")
                )
            ).all()
        assert len(revoked) == 2 and all(r is not None for r in revoked)
        for token in tokens:
            with pytest.raises(Unauthorized):
                await store.authenticate_token(token)
    finally:
        await store.close()
    one_line_error(cli(site, "token", "create", "sun"), "'sun'", "disabled")


def test_unknown_user(site: Path) -> None:
    one_line_error(cli(site, "user", "disable", "ghost"), "'ghost'")


# -- the data key ------------------------------------------------------------------------------------


def test_key_generate_writes_a_private_file_and_keeps_it(tmp_path: Path) -> None:
    cfg = make_site(tmp_path / "keyed")
    key_file = tmp_path / "keyed" / "data" / "data.key"
    result = ok(cli(cfg, "key", "generate", key=False))
    assert str(key_file) in result.stdout
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_text()
    assert len(first.strip()) == 44  # urlsafe base64 of 32 bytes
    again = ok(cli(cfg, "key", "generate", key=False))
    assert "kept" in again.stdout
    assert key_file.read_text() == first
    assert load_config(cfg, {}).data_key() == first.strip().encode()


def test_key_generate_with_a_key_set_writes_nothing(tmp_path: Path) -> None:
    cfg = make_site(tmp_path / "env-key")
    result = ok(cli(cfg, "key", "generate"))
    assert "nothing to generate" in result.stdout
    assert not (tmp_path / "env-key" / "data" / "data.key").exists()


# -- bad configuration and bad arguments: exit 2, one line ---------------------------------------------


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    unknown = make_site(tmp_path / "unknown", lambda tree: tree["site"].update(colour="red"))
    good = make_site(tmp_path / "good")
    missing = tmp_path / "missing" / "config.yaml"
    missing.parent.mkdir()
    runs = [
        (unknown, ("items", "list"), {}),
        (good, ("items", "list"), {"PUBLISHER__SITE__TIMEZONE": "Mars/Olympus"}),
        (good, ("db", "upgrade"), {"PUBLISHER__SERVER__PORT": "eighty"}),
        (missing, ("items", "list"), {}),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda r: cli(r[0], *r[1], env=r[2]), runs))
    one_line_error(results[0], "site.colour", "unknown key")
    one_line_error(results[1], "site.timezone", "Mars/Olympus")
    one_line_error(results[2], "server.port")
    one_line_error(results[3], "config file not found")
    assert not (tmp_path / "good" / "data").exists()  # nothing touched with a bad config


def test_import_of_a_missing_file(site: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.txt"
    one_line_error(cli(site, "import", str(missing)), str(missing), "no such file")


# -- backup and restore ------------------------------------------------------------------------------


def test_backup_then_restore_into_a_fresh_store(site: Path, tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar.gz"
    result = ok(cli(site, "backup", str(archive)))
    assert archive.is_file()
    assert "data key is not in the backup" in result.stderr

    fresh = make_site(tmp_path / "restored")
    restored = ok(cli(fresh, "restore", str(archive)))
    assert "restored" in restored.stdout

    def summary(cfg: Path) -> list[tuple[str, str, str, str]]:
        return [
            (i["id"], i["index_no"], i["category"], i["written_at"])
            for i in items_json(cfg, "--limit", "1000")["items"]
        ]

    before = summary(site)
    assert SAMPLE_INDEX_NO in [row[1] for row in before]
    assert summary(fresh) == before
    # a store that is not empty is not overwritten without --force
    one_line_error(cli(fresh, "restore", str(archive)), "--force")


def test_restore_of_garbage(tmp_path: Path) -> None:
    cfg = make_site(tmp_path / "target")
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"this is not a backup\n")
    missing = tmp_path / "missing.tar.gz"
    with ThreadPoolExecutor(max_workers=2) as pool:
        bad, absent = pool.map(lambda f: cli(cfg, "restore", str(f)), [garbage, missing])
    one_line_error(bad, str(garbage), "not a readable backup")
    one_line_error(absent, str(missing), "no such file")
