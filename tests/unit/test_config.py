"""config.yaml: the documented keys, environment overrides, and one clear message per mistake."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from publisher.config import Config, load_config
from publisher.errors import ConfigError
from tests.conftest import REPO

REPO_CONFIG = REPO / "config.yaml"


def repo_tree() -> dict[str, Any]:
    tree: dict[str, Any] = yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))
    return tree


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write the repo's config, changed by `change(tree)`, into tmp_path."""

    def write(
        change: Callable[[dict[str, Any]], None] | None = None, name: str = "config.yaml"
    ) -> Path:
        tree = repo_tree()
        if change is not None:
            change(tree)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
        return path

    return write


def config_error(path: Path | str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    message = info.value.detail
    assert "\n" not in message, "the CLI prints the message as one line"
    return message


# -- the repo's config.yaml ------------------------------------------------------------------


def test_repo_config_loads_with_every_documented_key() -> None:
    config = load_config(REPO_CONFIG, {})
    assert config.site.name == "上余镇政府信息公开"
    assert config.site.agency == "上余镇人民政府"
    # quoted in the file: an all-digit code must stay text (leading digits intact)
    assert config.site.agency_code == "113308810026305088"
    assert config.site.base_url == "http://127.0.0.1:8080"
    assert config.site.timezone == "Asia/Shanghai"
    assert config.storage.url == "sqlite:///data/publisher.db"
    assert config.server.trusted_proxies == []
    assert config.security.data_key is None
    assert config.security.data_key_file == "data/data.key"
    for name in ("portal", "rss", "sms", "email", "board"):
        assert getattr(config.channels, name).enabled is True


def test_repo_taxonomy_has_slug_name_and_keyword() -> None:
    config = load_config(REPO_CONFIG, {})
    zwgk = config.category("zwgk")
    assert zwgk is not None
    assert (zwgk.name, zwgk.keyword) == ("政务公开", "ZWGK")
    slugs = [c.slug for c in config.taxonomy]
    assert len(slugs) == len(set(slugs)) >= 2
    assert all(c.name and c.keyword for c in config.taxonomy)
    assert config.category("nope") is None


def test_timezone_defaults_to_asia_shanghai(write_config: Callable[..., Path]) -> None:
    path = write_config(lambda t: t["site"].pop("timezone"))
    assert load_config(path, {}).site.timezone == "Asia/Shanghai"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "site: {name: 镇, agency: 镇政府, agency_code: '123', base_url: 'https://x.example'}\n"
        "taxonomy: [{slug: qt, name: 其他, keyword: QT}]\n",
        encoding="utf-8",
    )
    config = load_config(path, {})
    assert config.site.timezone == "Asia/Shanghai"
    assert config.storage.url.startswith("sqlite:///")
    assert config.server.trusted_proxies == []
    assert all(
        getattr(config.channels, n).enabled for n in ("portal", "rss", "sms", "email", "board")
    )


# -- environment overrides --------------------------------------------------------------------


def test_env_overrides_storage_url() -> None:
    url = "postgresql://root@127.0.0.1/test"
    config = load_config(REPO_CONFIG, {"PUBLISHER__STORAGE__URL": url})
    assert config.storage.url == url
    assert config.database_url == "postgresql+asyncpg://root@127.0.0.1/test"


def test_env_false_disables_a_channel() -> None:
    config = load_config(REPO_CONFIG, {"PUBLISHER__CHANNELS__SMS__ENABLED": "false"})
    assert config.channels.sms.enabled is False
    assert config.channels.email.enabled is True


def test_env_number_becomes_an_int() -> None:
    config = load_config(REPO_CONFIG, {"PUBLISHER__SERVER__PORT": "10"})
    assert config.server.port == 10
    assert isinstance(config.server.port, int)


def test_env_all_digit_string_stays_text() -> None:
    """An agency code or key made of digits must not be refused as 'not a string'."""
    config = load_config(
        REPO_CONFIG,
        {
            "PUBLISHER__SITE__AGENCY_CODE": "0113308810026305088",
            "PUBLISHER__SECURITY__DATA_KEY": "12345",
        },
    )
    assert config.site.agency_code == "0113308810026305088"
    assert config.data_key() == b"12345"


def test_env_overrides_secret_data_key() -> None:
    config = load_config(REPO_CONFIG, {"PUBLISHER__SECURITY__DATA_KEY": "c2VjcmV0"})
    assert config.data_key() == b"c2VjcmV0"


def test_env_override_of_a_taxonomy_entry() -> None:
    config = load_config(REPO_CONFIG, {"PUBLISHER__TAXONOMY__0__NAME": "政务信息"})
    assert config.taxonomy[0].name == "政务信息"


def test_env_unrelated_variables_are_ignored() -> None:
    config = load_config(REPO_CONFIG, {"PUBLISHER_CONFIG": "x.yaml", "HOME": "/root"})
    assert config.server.port == 8080


def test_env_bad_value_names_the_key() -> None:
    message = config_error(REPO_CONFIG, {"PUBLISHER__SERVER__PORT": "eighty"})
    assert "server.port" in message
    assert "integer" in message


def test_env_unknown_key_is_refused() -> None:
    message = config_error(REPO_CONFIG, {"PUBLISHER__SITE__COLOUR": "red"})
    assert "site.colour" in message
    assert "unknown key" in message


def test_env_below_a_value_is_refused() -> None:
    message = config_error(REPO_CONFIG, {"PUBLISHER__SITE__NAME__ZH": "x"})
    assert "site.name" in message


def test_load_uses_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER__SERVER__PORT", "9090")
    assert load_config(REPO_CONFIG).server.port == 9090


# -- trusted proxies ---------------------------------------------------------------------------


def test_trusted_proxies_take_addresses_and_networks(write_config: Callable[..., Path]) -> None:
    path = write_config(
        lambda t: t["server"].update(
            trusted_proxies=["127.0.0.1", "10.0.0.0/8", "::1", "10.1.2.3/8"]
        )
    )
    assert load_config(path, {}).server.trusted_proxies[:3] == ["127.0.0.1", "10.0.0.0/8", "::1"]


def test_trusted_proxies_refuse_garbage(write_config: Callable[..., Path]) -> None:
    path = write_config(lambda t: t["server"].update(trusted_proxies=["127.0.0.1", "not-an-ip"]))
    message = config_error(path)
    assert "server.trusted_proxies" in message
    assert "not-an-ip" in message


def test_trusted_proxies_from_env_as_a_list() -> None:
    config = load_config(
        REPO_CONFIG, {"PUBLISHER__SERVER__TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16"}
    )
    assert config.server.trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]
    message = config_error(REPO_CONFIG, {"PUBLISHER__SERVER__TRUSTED_PROXIES": "not-an-ip"})
    assert "server.trusted_proxies" in message and "not-an-ip" in message


# -- bad files: one message naming the key and the problem ------------------------------------


def test_unknown_key(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["site"].update(colour="red")))
    assert "site.colour" in message
    assert "unknown key" in message


def test_unknown_top_level_key(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t.update(sitee={"name": "x"})))
    assert "sitee" in message and "unknown key" in message


def test_missing_required_key(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["site"].pop("agency")))
    assert "site.agency" in message
    assert "missing" in message


def test_missing_site_section(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t.pop("site")))
    assert "site" in message and "missing" in message


def test_wrong_type(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["server"].update(port="eighty")))
    assert "server.port" in message
    assert "integer" in message


def test_port_out_of_range(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["server"].update(port=70000)))
    assert "server.port" in message


def test_channel_enabled_must_be_a_bool(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["channels"]["rss"].update(enabled="sometimes")))
    assert "channels.rss.enabled" in message


def test_unknown_channel(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["channels"].update(fax={"enabled": True})))
    assert "channels.fax" in message and "unknown key" in message


def test_unknown_time_zone(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["site"].update(timezone="Asia/Beijing")))
    assert "site.timezone" in message
    assert "unknown time zone" in message
    assert "Asia/Beijing" in message


def test_unknown_time_zone_from_env() -> None:
    message = config_error(REPO_CONFIG, {"PUBLISHER__SITE__TIMEZONE": "Mars/Olympus"})
    assert "site.timezone" in message and "Mars/Olympus" in message


@pytest.mark.parametrize("url", ["mysql://root@localhost/db", "sqlite://relative.db", "data.db"])
def test_bad_storage_url_scheme(write_config: Callable[..., Path], url: str) -> None:
    message = config_error(write_config(lambda t: t["storage"].update(url=url)))
    assert "storage.url" in message
    assert "sqlite:///" in message and "postgresql://" in message


def test_duplicate_taxonomy_slug(write_config: Callable[..., Path]) -> None:
    def dup(tree: dict[str, Any]) -> None:
        tree["taxonomy"].append({"slug": "zwgk", "name": "重复", "keyword": "CF"})

    message = config_error(write_config(dup))
    assert "taxonomy" in message and "slug" in message
    assert "'zwgk'" in message and "twice" in message


def test_duplicate_taxonomy_keyword(write_config: Callable[..., Path]) -> None:
    def dup(tree: dict[str, Any]) -> None:
        tree["taxonomy"].append({"slug": "new", "name": "新", "keyword": "zwgk"})

    message = config_error(write_config(dup))
    assert "keyword" in message and "twice" in message


def test_bad_taxonomy_slug(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["taxonomy"][1].update(slug="Nong Ye")))
    assert "taxonomy.1.slug" in message


def test_empty_taxonomy(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t.update(taxonomy=[])))
    assert "taxonomy" in message


def test_bad_base_url(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["site"].update(base_url="127.0.0.1:8080")))
    assert "site.base_url" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("site:\n  name: a\n\tagency: b\n", 3),
        ("site:\n  name: a\n  agency: b\n bad: c\n", 4),
    ],
)
def test_invalid_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    message = config_error(path)
    assert "YAML" in message
    assert f"line {line}" in message
    assert str(path) in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    message = config_error(path)
    assert str(path) in message and "not found" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- site\n- storage\n", encoding="utf-8")
    message = config_error(path)
    assert "mapping" in message


def test_scalar_top_level(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("just words\n", encoding="utf-8")
    assert "mapping" in config_error(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("site:\n  name: 上余镇\n".encode("gbk"))
    assert "cannot read" in config_error(path)


def test_several_problems_report_the_first_and_count(write_config: Callable[..., Path]) -> None:
    def two(tree: dict[str, Any]) -> None:
        tree["site"]["colour"] = "red"
        tree["server"]["port"] = "x"

    message = config_error(write_config(two))
    assert "1 more problem" in message


# -- paths and the data key ---------------------------------------------------------------------


def test_relative_sqlite_path_resolves_against_the_config_folder(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config()
    monkeypatch.chdir(REPO)  # the working directory must not matter
    config = load_config(path, {})
    expected = (tmp_path / "data" / "publisher.db").resolve()
    assert config.database_url == f"sqlite+aiosqlite:///{expected}"
    assert config.attachments_path.resolve() == (tmp_path / "data" / "attachments").resolve()


def test_relative_config_path_still_resolves_absolutely(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config()
    monkeypatch.chdir(tmp_path)
    config = load_config("config.yaml", {})
    assert config.base_dir.is_absolute()
    monkeypatch.chdir(REPO)
    assert Path(config.database_url.split(":///", 1)[1]) == tmp_path.resolve() / "data/publisher.db"


def test_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "p.db"
    config = load_config(REPO_CONFIG, {"PUBLISHER__STORAGE__URL": f"sqlite:///{db}"})
    assert config.database_url == f"sqlite+aiosqlite:///{db}"


def test_data_key_from_file(write_config: Callable[..., Path], tmp_path: Path) -> None:
    path = write_config()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data.key").write_text("a2V5LWZyb20tZmlsZQ==\n")
    assert load_config(path, {}).data_key() == b"a2V5LWZyb20tZmlsZQ=="


def test_data_key_set_directly_wins_over_file(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(), {"PUBLISHER__SECURITY__DATA_KEY": "direct"})
    assert config.data_key() == b"direct"


def test_missing_key_file_says_how_to_make_one(write_config: Callable[..., Path]) -> None:
    config: Config = load_config(write_config(), {})  # loading does not need the key yet
    with pytest.raises(ConfigError) as info:
        config.data_key()
    assert "security.data_key_file" in info.value.detail
    assert "publisher key generate" in info.value.detail


def test_no_key_at_all(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(lambda t: t.pop("security")), {})
    with pytest.raises(ConfigError) as info:
        config.data_key()
    assert "security.data_key" in info.value.detail


def test_config_is_frozen() -> None:
    config = load_config(REPO_CONFIG, {})
    with pytest.raises(ValueError):
        config.site.name = "changed"  # type: ignore[misc]


# -- a mistake is named for what it is, where it came from ------------------------------------------


def test_misspelt_key_is_named_with_the_key_it_means(write_config: Callable[..., Path]) -> None:
    """`nmae:` for `name:` is one mistake, not "name is missing (and 1 more problem)"."""
    message = config_error(write_config(lambda t: t["site"].update(nmae=t["site"].pop("name"))))
    assert "site.nmae" in message
    assert "unknown key `nmae` — did you mean `name`?" in message
    assert "missing" not in message and "more problem" not in message


def test_misspelt_section_is_named_with_the_section_it_means(
    write_config: Callable[..., Path],
) -> None:
    message = config_error(write_config(lambda t: t.update(sever=t.pop("server"))))
    assert "unknown key `sever` — did you mean `server`?" in message
    assert "more problem" not in message


def test_unknown_key_like_nothing_has_no_suggestion(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda t: t["site"].update(colour="red")))
    assert message.endswith("site.colour: unknown key `colour`")


def test_a_real_second_problem_is_still_counted(write_config: Callable[..., Path]) -> None:
    def two(tree: dict[str, Any]) -> None:
        tree["site"]["nmae"] = tree["site"].pop("name")
        tree["server"]["port"] = "x"

    message = config_error(write_config(two))
    assert "did you mean `name`?" in message and "(and 1 more problem)" in message


def test_env_value_is_blamed_on_the_variable_not_the_file() -> None:
    message = config_error(REPO_CONFIG, {"PUBLISHER__SERVER__PORT": "abc"})
    assert message.startswith("environment variable PUBLISHER__SERVER__PORT: server.port: ")
    assert "integer" in message
    assert str(REPO_CONFIG) not in message and "config.yaml" not in message
    assert "abc" not in message  # values from the environment may be secrets


def test_env_unknown_key_is_blamed_on_the_variable() -> None:
    message = config_error(REPO_CONFIG, {"PUBLISHER__SITE__COLOUR": "red"})
    assert message.startswith("environment variable PUBLISHER__SITE__COLOUR: site.colour: ")


def test_file_value_is_still_blamed_on_the_file(write_config: Callable[..., Path]) -> None:
    path = write_config(lambda t: t["server"].update(port="abc"))
    message = config_error(path, {"PUBLISHER__SERVER__HOST": "0.0.0.0"})
    assert message.startswith(f"{path}: server.port: ")


@pytest.mark.parametrize("value", ["9pm", "24:00", "21.00", "7:30"])
def test_quiet_hours_say_hh_mm_in_words(write_config: Callable[..., Path], value: str) -> None:
    path = write_config(
        lambda t: t["channels"]["sms"].update(quiet_hours={"start": value, "end": "08:00"})
    )
    message = config_error(path, {})
    assert "channels.sms.quiet_hours.start" in message
    assert "HH:MM" in message and "24-hour" in message and repr(value) in message
    assert "^" not in message and "\\d" not in message  # no regular expression


def test_quiet_hours_unquoted_in_yaml_say_to_quote(tmp_path: Path) -> None:
    """YAML 1.1 reads an unquoted 21:00 as the number 1260."""
    text = REPO_CONFIG.read_text(encoding="utf-8").replace(
        'quiet_hours: {start: "21:00", end: "08:00"}', "quiet_hours: {start: 21:00, end: 08:00}"
    )
    assert "start: 21:00" in text
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    message = config_error(path)
    assert "channels.sms.quiet_hours.start" in message
    assert 'in quotes ("21:00")' in message


def test_quiet_hours_from_env_keep_working() -> None:
    config = load_config(REPO_CONFIG, {"PUBLISHER__CHANNELS__SMS__QUIET_HOURS__START": "22:30"})
    quiet = config.channels.sms.quiet_hours
    assert quiet is not None and (quiet.start, quiet.end) == ("22:30", "08:00")
