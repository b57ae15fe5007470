"""The `publisher` command, run for real in a subprocess against a store under tmp_path.

What a user sees: exit codes, one-line errors without a traceback, JSON for scripts.
Each run costs a Python start-up with the whole app imported, so independent runs go
in parallel and state is checked in-process where the CLI output is not the point.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from publisher.config import LoginSecurityConfig, load_config
from publisher.errors import Unauthorized
from publisher.passwords import problems
from publisher.store import schema as t
from publisher.store.sql import ItemQuery, SqlStore
from tests.conftest import REPO, SAMPLE, unavailable

KEY = "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0uLi4uLi4uLi4="
SAMPLE_INDEX_NO = "113308810026305088/2014-128123"
Result = subprocess.CompletedProcess[str]


def cli(
    cfg: Path,
    *args: str,
    stdin: str = "",
    key: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Result:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER")}
    if key:
        environ["PUBLISHER__SECURITY__DATA_KEY"] = KEY
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--config", str(cfg), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or cfg.parent,
        env=environ,
        timeout=120,
        check=False,
    )


def parallel(*calls: Callable[[], Result]) -> list[Result]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def ok(result: Result) -> Result:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def one_line_error(result: Result, *needles: str) -> str:
    """Exit code 2, exactly one line on stderr, no traceback, naming what is wrong."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def make_site(folder: Path, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
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


def listed(result: Result) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(result).stdout)
    return data


def open_store(cfg: Path) -> SqlStore:
    return SqlStore(load_config(cfg, {"PUBLISHER__SECURITY__DATA_KEY": KEY}))


async def stored_items(cfg: Path) -> list[tuple[str, str | None, str, str]]:
    store = open_store(cfg)
    try:
        found, _ = await store.list_items(ItemQuery(limit=1000))
    finally:
        await store.close()
    return [(i.id, i.index_no, i.status.value, i.content.title) for i in found]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`db upgrade` and `import SAMPLE` on a fresh copy of config.yaml; shared by the
    tests below, which only add users, tokens and files to it."""
    cfg = make_site(tmp_path_factory.mktemp("site"))
    elsewhere = tmp_path_factory.mktemp("cwd")  # relative paths follow the config, not the cwd
    assert "store at schema" in ok(cli(cfg, "db", "upgrade", cwd=elsewhere)).stdout
    assert list(elsewhere.iterdir()) == []
    result = ok(cli(cfg, "import", str(SAMPLE)))
    assert "1 imported, 0 skipped" in result.stdout
    assert SAMPLE_INDEX_NO in result.stdout
    return cfg


# -- db upgrade and import ---------------------------------------------------------------------


def test_db_upgrade_puts_the_store_next_to_the_config(site: Path) -> None:
    assert (site.parent / "data" / "publisher.db").is_file()


async def test_importing_again_is_reported_and_skipped(site: Path) -> None:
    result = ok(cli(site, "import", str(SAMPLE)))
    assert "0 imported, 1 skipped" in result.stdout
    assert "skipped" in result.stderr and SAMPLE_INDEX_NO in result.stderr
    assert [row[1] for row in await stored_items(site)] == [SAMPLE_INDEX_NO]


def test_imported_sample_is_listed_by_year_with_its_catalogue_header(site: Path) -> None:
    y2014, y2015 = parallel(
        lambda: cli(site, "items", "list", "--year", "2014", "--json"),
        lambda: cli(site, "items", "list", "--year", "2015", "--json"),
    )
    assert listed(y2015) == {"items": [], "total": 0}
    data = listed(y2014)
    assert data["total"] == 1
    [item] = data["items"]
    assert item["index_no"] == SAMPLE_INDEX_NO
    assert item["category"] == "zwgk"
    assert item["category_name"] == "政务公开"
    assert item["agency"] == "上余镇"
    assert item["written_at"] == "2014-01-27T10:56:08+08:00"
    assert item["status"] == "published"
    assert item["imported"] is True
    assert item["title"].startswith("根据《中华人民共和国政府信息公开条例》规定")
    assert item["body"].endswith("提高服务效率。")
    assert item["personal_data_warnings"] == []


async def test_items_show_by_id_prefix(site: Path) -> None:
    [(item_id, *_)] = await stored_items(site)
    shown, unknown = parallel(
        lambda: cli(site, "items", "show", item_id[:8], "--json"),
        lambda: cli(site, "items", "show", "ffffffff-0000"),
    )
    data = json.loads(ok(shown).stdout)
    assert data["id"] == item_id
    assert data["index_no"] == SAMPLE_INDEX_NO
    assert data["agency"] == "上余镇"
    one_line_error(unknown, "ffffffff-0000")


async def test_bad_import_files_stop_before_any_write(site: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps({"title": "好", "body": "正文。", "category": "qt", "written_at": "2023-05-05"}),
        encoding="utf-8",
    )
    bad = tmp_path / "bad.txt"
    bad.write_text(
        "索引号: | X/2023-1 | 主题分类: | 火星 |\n成文日期: | 2023-05-05 |\n正文。\n", "utf-8"
    )
    missing = tmp_path / "nowhere.txt"
    with_bad, with_missing = parallel(
        lambda: cli(site, "import", str(good), str(bad)),
        lambda: cli(site, "import", str(missing)),
    )
    one_line_error(with_bad, str(bad), "火星")
    one_line_error(with_missing, str(missing), "no such file")
    assert [row[1] for row in await stored_items(site)] == [SAMPLE_INDEX_NO]


def _make_run_import() -> list[str]:
    """The arguments `make run` gives `publisher import` (make -n: printed, not run)."""
    if shutil.which("make") is None:
        unavailable("make is not installed (Debian: build-essential)")
    printed = subprocess.run(
        ["make", "-s", "-n", "run", "VENV=/nonexistent", "PUBLISHER=publisher"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [line] = [ln for ln in printed.splitlines() if " import " in ln]
    words = shlex.split(line.partition("then ")[2].rpartition(";")[0])
    assert words[:3] == ["publisher", "--config", "config.yaml"], line
    return words[3:]


async def test_make_run_imports_the_sample_with_its_title(tmp_path: Path) -> None:
    """The sample's page has no title line (its first line is a sentence): `make run`
    names the report, so the catalogue shows its real title, not the body's first
    sentence."""
    args = _make_run_import()
    assert args[0] == "import" and Path(args[1]) == SAMPLE.relative_to(REPO)
    cfg = make_site(tmp_path / "make-run")
    ok(cli(cfg, "db", "upgrade"))
    ok(cli(cfg, *args, cwd=REPO))
    data = listed(cli(cfg, "items", "list", "--json"))
    assert [i["title"] for i in data["items"]] == ["上余镇2013年政府信息公开工作年度报告"]
    assert data["items"][0]["body"].startswith("根据《中华人民共和国政府信息公开条例》规定")


async def test_readme_tour_staff_can_log_in(tmp_path: Path) -> None:
    """The README's tour on a fresh clone: the editor and the reviewer it creates both get
    a password the policy accepts (12 or more characters, not easily guessed), so the web
    review it describes can happen."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    top = readme.partition("## What is here")[0]
    adds = re.findall(r"^\s*\.venv/bin/publisher user add (\S+) --role (\S+)(.*)$", top, flags=re.M)
    assert {role for _, role, _ in adds} >= {"editor", "reviewer"}, adds
    users = []
    for name, role, rest in adds:
        given = re.fullmatch(r" --password-stdin <<< '([^']+)'\s*", rest)
        assert given, f"{name} gets no password: {rest!r}"
        assert len(given.group(1)) >= 12, given.group(1)
        assert problems(given.group(1), LoginSecurityConfig(), user_inputs=[name]) == []
        users.append((name, role, given.group(1)))
    cfg = make_site(tmp_path / "tour")
    ok(cli(cfg, "db", "upgrade"))
    for name, role, password in users:  # a here-string ends with a newline
        ok(cli(cfg, "user", "add", name, "--role", role, "--password-stdin", stdin=password + "\n"))
    store = open_store(cfg)
    try:
        for name, role, password in users:
            assert (await store.verify_password(name, password)).role.value == role
    finally:
        await store.close()


# -- users and tokens --------------------------------------------------------------------------------


async def test_users_and_tokens(site: Path) -> None:
    added = ok(
        cli(
            site,
            "user",
            "add",
            "wang",
            "--role",
            "editor",
            "--password-stdin",
            stdin="wang s3cret passphrase\n",
        )
    )
    assert "added wang (editor, password set)" in added.stdout

    duplicate, short, common, first, second, zero = parallel(
        lambda: cli(site, "user", "add", "wang", "--role", "reviewer"),
        lambda: cli(
            site, "user", "add", "zhou", "--role", "editor", "--password-stdin", stdin="short\n"
        ),
        lambda: cli(
            site,
            "user",
            "add",
            "zhou",
            "--role",
            "editor",
            "--password-stdin",
            stdin="woaini13145200\n",
        ),
        lambda: cli(site, "token", "create", "wang"),
        lambda: cli(site, "token", "create", "wang", "--expires", "30"),
        lambda: cli(site, "token", "create", "wang", "--expires", "0"),
    )
    one_line_error(duplicate, "'wang'", "already exists")
    one_line_error(short, "password", "at least 12 characters")
    one_line_error(common, "password", "too easy to guess")
    assert zero.returncode == 2
    assert "--expires" in zero.stderr and "Traceback" not in zero.stderr
    token, expiring = ok(first).stdout.strip(), ok(second).stdout.strip()
    for tok in (token, expiring):
        assert tok.startswith("gk_") and len(tok) > 30 and "\n" not in tok

    store = open_store(site)
    try:
        # the password came through stdin, and the tokens authenticate as wang
        assert (
            await store.verify_password("wang", "wang s3cret passphrase")
        ).role.value == "editor"
        assert (await store.authenticate_token(token)).name == "wang"
        assert (await store.authenticate_token(expiring)).name == "wang"
        async with store.read() as conn:
            expires_at = await conn.scalar(
                sa.select(t.api_tokens.c.expires_at).where(t.api_tokens.c.prefix == expiring[:10])
            )
        assert expires_at is not None

        assert "revoked 1 token" in ok(cli(site, "token", "revoke", token)).stdout
        with pytest.raises(Unauthorized):
            await store.authenticate_token(token)
        assert (await store.authenticate_token(expiring)).name == "wang"  # the other still works

        assert "now reviewer" in ok(cli(site, "user", "role", "wang", "reviewer")).stdout
        assert (await store.get_user("wang")).role.value == "reviewer"
        one_line_error(cli(site, "user", "role", "nobody", "editor"), "'nobody'")
        bad_role = cli(site, "user", "role", "wang", "emperor")
        assert bad_role.returncode == 2 and "Traceback" not in bad_role.stderr

        assert "revoked" in ok(cli(site, "user", "disable", "wang")).stdout
        async with store.read() as conn:
            revoked = (
                await conn.scalars(
                    sa.select(t.api_tokens.c.revoked_at)
                    .join(t.users, t.users.c.id == t.api_tokens.c.user_id)
                    .where(t.users.c.name == "wang")
                )
            ).all()
        assert len(revoked) == 2 and all(r is not None for r in revoked)
        with pytest.raises(Unauthorized):
            await store.authenticate_token(expiring)
    finally:
        await store.close()


# -- the data key ----------------------------------------------------------------------------------


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


# -- bad configuration: exit 2, one line naming the key ------------------------------------------------


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    unknown = make_site(tmp_path / "unknown", lambda tree: tree["site"].update(colour="red"))
    good = make_site(tmp_path / "good")
    runs: Sequence[Callable[[], Result]] = (
        lambda: cli(unknown, "items", "list"),
        lambda: cli(good, "db", "upgrade", env={"PUBLISHER__SITE__TIMEZONE": "Mars/Olympus"}),
    )
    bad_key, bad_zone = parallel(*runs)
    one_line_error(bad_key, "site.colour", "unknown key")
    one_line_error(bad_zone, "site.timezone", "Mars/Olympus")
    assert not (tmp_path / "good" / "data").exists()  # nothing touched with a bad config


def test_every_config_error_is_one_line_for_serve_worker_and_db_upgrade(tmp_path: Path) -> None:
    """The mistakes of issue 18, through the commands that start or prepare the service:
    exit 2, exactly one line (no pydantic block, no `Unclosed client session`), naming the
    key, what is wrong and where the value came from; nothing is created."""

    def short_secret(tree: dict[str, Any]) -> None:
        tree["channels"]["sms"]["settings"] = {"inbound_secret": "too-short"}

    def misspelt(tree: dict[str, Any]) -> None:
        tree["site"]["nmae"] = tree["site"].pop("name")

    secret_file = make_site(tmp_path / "secret", short_secret)
    typo = make_site(tmp_path / "typo", misspelt)
    good = make_site(tmp_path / "good")
    cases: list[tuple[Path, dict[str, str], tuple[str, ...]]] = [
        (
            secret_file,
            {},
            (str(secret_file), "channels.sms.settings.inbound_secret", "at least 16 characters"),
        ),
        (
            good,
            {"PUBLISHER__CHANNELS__SMS__SETTINGS__INBOUND_SECRET": "abc"},
            (
                "environment variable PUBLISHER__CHANNELS__SMS__SETTINGS__INBOUND_SECRET",
                "channels.sms.settings.inbound_secret",
                "at least 16 characters",
            ),
        ),
        (typo, {}, ("site.nmae", "unknown key `nmae` — did you mean `name`?")),
        (
            good,
            {"PUBLISHER__SERVER__PORT": "abc"},
            ("environment variable PUBLISHER__SERVER__PORT", "server.port", "integer"),
        ),
        (
            good,
            {"PUBLISHER__CHANNELS__SMS__QUIET_HOURS__START": "9pm"},
            ("channels.sms.quiet_hours.start", "HH:MM", "24-hour", "'9pm'"),
        ),
    ]
    serve, worker, upgrade = ("serve", "--port", "1"), ("worker",), ("db", "upgrade")
    # each start-up costs seconds: the channel settings on all three commands, the rest
    # spread over them
    commands = [(serve, worker, upgrade), (serve,), (worker,), (upgrade,), (serve,)]
    runs = [
        (cfg, env, needles, command)
        for (cfg, env, needles), some in zip(cases, commands, strict=True)
        for command in some
    ]
    results = parallel(
        *(
            (lambda cfg=cfg, env=env, command=command: cli(cfg, *command, env=env))
            for cfg, env, _, command in runs
        )
    )
    for (cfg, env, needles, command), result in zip(runs, results, strict=True):
        line = one_line_error(result, *needles)
        assert "validation error" not in line and "pydantic" not in line, (command, line)
        if env:
            assert str(cfg) not in line, (command, line)
    for folder in ("secret", "typo", "good"):
        assert not (tmp_path / folder / "data").exists()  # nothing touched with a bad config


# -- backup and restore ----------------------------------------------------------------------------------


async def test_backup_then_restore_into_a_fresh_store(site: Path, tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar.gz"
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"this is not a backup\n")
    fresh = make_site(tmp_path / "restored")

    backed_up, bad = parallel(
        lambda: cli(site, "backup", str(archive)),
        lambda: cli(fresh, "restore", str(garbage)),
    )
    ok(backed_up)
    assert archive.is_file()
    assert "data key is not in the backup" in backed_up.stderr
    one_line_error(bad, str(garbage), "not a readable backup")

    assert "restored" in ok(cli(fresh, "restore", str(archive))).stdout
    original = await stored_items(site)
    assert SAMPLE_INDEX_NO in [row[1] for row in original]
    assert await stored_items(fresh) == original
    # not over a store that has items
    one_line_error(cli(fresh, "restore", str(archive)), "--force")


# -- characters a text may not hold ----------------------------------------------------------


async def test_control_characters_are_removed_from_imports_and_refused_in_names(
    tmp_path: Path,
) -> None:
    cfg = make_site(tmp_path / "clean-site")
    ok(cli(cfg, "db", "upgrade"))
    old = tmp_path / "old.json"
    old.write_text(
        json.dumps(
            {
                "title": "旧\x0b通知",
                "body": "正文\x1b。",
                "category": "qt",
                "written_at": "2014-05-05",
            }
        ),
        encoding="utf-8",
    )
    imported, refused = parallel(
        lambda: cli(cfg, "import", str(old)),
        lambda: cli(cfg, "user", "add", "al\u200bice", "--role", "editor"),
    )
    assert "1 imported, 0 skipped" in ok(imported).stdout
    assert imported.stderr.splitlines() == [
        f"warning: {old} record 1: title: removed U+000B",
        f"warning: {old} record 1: body: removed U+001B",
    ]
    [(_, _, _, title)] = await stored_items(cfg)
    assert title == "旧通知"
    one_line_error(refused, "user name", "U+200B")


def test_backup_needs_the_data_key_to_restore(site: Path, tmp_path: Path) -> None:
    """Issue 16 (B): the backup is sealed with the data key, written 0600; restoring
    without the key or with another one is one line and exit 2."""
    archive = tmp_path / "sealed.tar.gz"
    ok(cli(site, "backup", str(archive)))
    assert archive.stat().st_mode & 0o777 == 0o600
    assert archive.read_bytes().startswith(b"GKSEALED")
    fresh = make_site(tmp_path / "restored-elsewhere")
    other = "b3RoZXIta2V5LTMyLWJ5dGVzLWxvbmctLi4uLi4uLi4="
    wrong = cli(fresh, "restore", str(archive), env={"PUBLISHER__SECURITY__DATA_KEY": other})
    one_line_error(wrong, str(archive), "data key")
    keyless = cli(
        fresh, "restore", str(archive), key=False, env={"PUBLISHER__SECURITY__DATA_KEY_FILE": ""}
    )
    one_line_error(keyless, "data_key")
