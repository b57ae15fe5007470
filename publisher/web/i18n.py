"""The UI's message catalogues (Babel, gettext), shared by the staff and the public pages.

Source strings are English; `locale/<language>/LC_MESSAGES/messages.mo` (default zh_CN)
translates them. `make messages` extracts, updates and compiles; the .po and .mo are
checked in, so running needs no Babel.
"""

from __future__ import annotations

import gettext as gettext_module
from functools import lru_cache
from pathlib import Path

#: the top-level locale/ of the checkout
LOCALE_DIR = Path(__file__).resolve().parents[2] / "locale"
DOMAIN = "messages"


@lru_cache(maxsize=8)
def translations(language: str) -> gettext_module.NullTranslations:
    """The catalogue for `language`; the source (English) strings if there is none."""
    return gettext_module.translation(
        DOMAIN, localedir=LOCALE_DIR, languages=[language], fallback=True
    )


def html_lang(language: str) -> str:
    """zh_CN -> zh-CN, for <html lang>."""
    return language.replace("_", "-")
