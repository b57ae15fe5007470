"""The UI's message catalogues keep up with the code: every string the staff pages use is
in locale/messages.pot, translated in zh_CN, and compiled into the checked-in .mo."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from publisher.web.ui.render import LOCALE_DIR, environment, translations
from tests.conftest import REPO

PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
LANGUAGES = ["zh_CN"]


def _extracted() -> set[str]:
    with (REPO / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    out = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(REPO), method_map, options_map
    ):
        out.add(message if isinstance(message, str) else message[0])
    return out


def _ids(path: Path) -> set[str]:
    with path.open("rb") as f:
        catalog = read_po(f)
    return {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}


def test_the_template_holds_every_string_the_code_uses() -> None:
    extracted = _extracted()
    assert len(extracted) > 100  # the extraction found the templates and the code
    in_pot = _ids(LOCALE_DIR / "messages.pot")
    assert extracted - in_pot == set(), "run `make messages`: strings missing from the .pot"
    assert in_pot - extracted == set(), "run `make messages`: the .pot has stale strings"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_string_is_translated_and_compiled(language: str) -> None:
    folder = LOCALE_DIR / language / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as f:
        catalog = read_po(f, locale=language)
    assert _ids(folder / "messages.po") == _ids(LOCALE_DIR / "messages.pot")
    with (folder / "messages.mo").open("rb") as f:
        compiled = gettext.GNUTranslations(f)
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, message.id
        singular = message.id if isinstance(message.id, str) else message.id[0]
        wanted = message.string if isinstance(message.string, str) else message.string[0]
        assert wanted, f"untranslated: {singular!r}"
        assert set(PLACEHOLDER.findall(wanted)) == set(PLACEHOLDER.findall(singular)), singular
        if isinstance(message.id, str):
            got = compiled.gettext(singular)
        else:
            got = compiled.ngettext(singular, message.id[1], 1)
        assert got == wanted, f"the .mo lags behind the .po (`make messages`): {singular!r}"


def test_pages_render_in_chinese_by_default() -> None:
    env = environment("zh_CN")
    html = env.get_template("staff/error.html").render(
        site_name="上余镇",
        lang="zh-CN",
        prefix="",
        staff="/staff",
        user=None,
        csrf_token="",
        path="/staff/x",
        heading="h",
        message="m",
    )
    assert "返回工作台" in html and "Back to the staff pages" not in html
    assert translations("xx_XX").gettext("Log in") == "Log in"  # no catalogue: the source text
