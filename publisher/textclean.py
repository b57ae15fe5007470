"""The one text normaliser for everything the publisher stores.

Every text a person or a file gives us ends up in XML sooner or later (the feeds, the
sitemap, board layouts), and XML 1.0 cannot hold some characters at all: the C0 controls
other than tab, newline and carriage return, U+FFFE and U+FFFF, and lone surrogates. A
stored text with one of them breaks every document it appears in, so they are refused at
the boundary (the pydantic models and the validators the store already calls), or, for
archival imports, removed with a warning.

Titles and names (`line=True`) also refuse the characters a reader cannot see: the
bidirectional embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069) and
the zero-width characters (U+200B–U+200D, U+2060, U+FEFF). In a title they hide or reorder
what a resident reads; in a name they make two names look the same.

`refuse` raises ValidationFailed naming the field; `CleanTextModel` refuses them in every
text field of a pydantic model (a 422 naming the field on the API, a form error in the
staff UI); `clean` removes them and says which it removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from publisher.errors import ValidationFailed

#: what XML 1.0 cannot hold (NUL is one: PostgreSQL text cannot hold it either)
_XML_FORBIDDEN = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
#: invisible characters that reorder or hide text: refused in titles and names
_INVISIBLE = "\u200b-\u200d\u2060\u202a-\u202e\u2066-\u2069\ufeff"

_FORBIDDEN_RE = re.compile(f"[{_XML_FORBIDDEN}]")
_FORBIDDEN_LINE_RE = re.compile(f"[{_XML_FORBIDDEN}{_INVISIBLE}]")

#: the pydantic error type of a refused character (the staff UI translates it)
ERROR_TYPE = "forbidden_character"


def _pattern(line: bool) -> re.Pattern[str]:
    return _FORBIDDEN_LINE_RE if line else _FORBIDDEN_RE


def codepoint(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def forbidden_chars(text: str, *, line: bool = False) -> list[str]:
    """The distinct characters of `text` that may not be stored, in order of appearance."""
    return list(dict.fromkeys(_pattern(line).findall(text)))


def is_xml_safe(text: str) -> bool:
    """Whether XML 1.0 can hold `text`."""
    return _FORBIDDEN_RE.search(text) is None


def describe(chars: Iterable[str]) -> str:
    """`U+000B, U+200B`: the code points, as a message shows them."""
    return ", ".join(codepoint(c) for c in chars)


def message(characters: str) -> str:
    """The API's and the CLI's words for a refused text; `characters` as `describe` gives."""
    kind = (
        "control or invisible characters"
        if "," in characters
        else "a control or invisible character"
    )
    return f"must not contain {kind} ({characters})"


class ForbiddenCharacters(ValidationFailed):
    """A text holds characters it may not (a 422 naming the field; exit 2 in the CLI)."""

    def __init__(self, field: str, characters: str) -> None:
        super().__init__(f"{field}: {message(characters)}", field=field, characters=characters)
        self.field = field
        #: the code points, as `describe` gives them
        self.characters = characters


def refuse(field: str, value: str | None, *, line: bool = False) -> str | None:
    """`value` unchanged, or ForbiddenCharacters ("field: must not contain …") when it
    holds a character it may not."""
    if value is not None:
        bad = forbidden_chars(value, line=line)
        if bad:
            raise ForbiddenCharacters(field, describe(bad))
    return value


def clean(value: str, *, line: bool = False) -> tuple[str, list[str]]:
    """`value` without the characters it may not hold, and those it held (distinct)."""
    bad = forbidden_chars(value, line=line)
    if not bad:
        return value, []
    return _pattern(line).sub("", value), bad


def _strings(value: Any) -> Iterable[str]:
    """Every string in a JSON-like value (a field's raw input), without recursion."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)


class CleanTextModel(BaseModel):
    """A model whose every text field (and every string inside a list or object field)
    refuses the characters XML cannot hold; the fields in `line_fields` (titles, names)
    also refuse invisible characters.

    The check runs on the raw input, before whitespace is stripped: a control character
    at the end of a title is refused like one in its middle, not silently dropped.
    """

    line_fields: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_forbidden_characters(cls, value: Any, info: ValidationInfo) -> Any:
        line = info.field_name in cls.line_fields
        bad: list[str] = []
        for s in _strings(value):
            bad.extend(c for c in forbidden_chars(s, line=line) if c not in bad)
        if bad:
            described = describe(bad)
            raise PydanticCustomError(ERROR_TYPE, message(described), {"characters": described})
        return value
