"""Body text: Markdown or plain text in, sanitized HTML out; summaries derived from it."""

from __future__ import annotations

import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

_ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "strong",
    "em",
    "b",
    "i",
    "u",
    "s",
    "blockquote",
    "code",
    "pre",
    "ul",
    "ol",
    "li",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "sup",
    "sub",
    "span",
    "div",
    "img",
}
_ALLOWED_ATTRS = {
    "a": {"href", "title"},
    "ol": {"start"},  # "3. …" stays 3, not renumbered from 1
    "img": {"src", "alt", "title"},
    "th": {"colspan", "rowspan", "align"},
    "td": {"colspan", "rowspan", "align"},
}


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # html=False: raw HTML in a body is shown as text, never passed through
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(
        "table"
    )


def render_body(body: str) -> str:
    """Sanitized HTML for a Markdown or plain-text body (plain text is valid Markdown)."""
    html = _markdown().render(body)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRS,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


_MD_NOISE = re.compile(r"[#*_`>\[\]]+|\(https?://[^)]*\)")
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[。！？!?])|(?<=\.)(?=\s)")  # keep the space after ". "


def plain_text(body: str) -> str:
    return _SPACE.sub(" ", _MD_NOISE.sub("", body)).strip()


def derive_summary(body: str, max_chars: int) -> str:
    """The first sentences of the body that fit in max_chars (cut at a character if one is longer)."""
    text = plain_text(body)
    if len(text) <= max_chars:
        return text
    out = ""
    for part in _SENTENCE_END.split(text):
        if not part:
            continue
        if len(out) + len(part) > max_chars:
            break
        out += part
    return out.strip() or text[: max_chars - 1] + "…"


def first_sentence(text: str, max_chars: int = 80) -> str:
    """A title for a text that has none: its first sentence, at most max_chars."""
    flat = plain_text(text)
    m = re.search(r"[。！？!?]", flat)
    sentence = flat[: m.start()] if m else flat
    sentence = sentence.strip(" ,，;；:：")
    return sentence if len(sentence) <= max_chars else sentence[: max_chars - 1] + "…"
