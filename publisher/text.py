"""Body text: plain text (as written) or Markdown in, sanitized HTML out; summaries derived from it."""

from __future__ import annotations

import html
import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

from publisher.models import BodyFormat

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


def render_body(body: str, body_format: BodyFormat | str = BodyFormat.TEXT) -> str:
    """Sanitized HTML for a body as its revision says it is written: the one renderer
    every channel uses (page, feeds, portal, email, board, previews), so they agree."""
    if BodyFormat(body_format) is BodyFormat.MARKDOWN:
        html = _markdown().render(body)
    else:
        html = render_text(body)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRS,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


#: a line that separates paragraphs: nothing but (ASCII) spaces and tabs
_BLANK_LINE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")
#: addresses made into links: http(s) up to the first space, CJK punctuation or quote
_URL = re.compile(r"https?://[^\s<>\"'，。；：！？、（）《》“”‘’【】]+")
_URL_TRAIL = ".,;:!?)]}"
#: runs of two or more ASCII spaces, kept (HTML would fold them into one)
_SPACES = re.compile(r" {2,}")


def render_text(body: str) -> str:
    """Plain text as HTML, exactly as written: paragraphs at blank lines, every line break
    kept, URLs linked, everything escaped; no list, heading, emphasis or numbering is
    interpreted. Full-width indentation (　　) is not HTML whitespace and survives as is;
    runs of ASCII spaces are kept with no-break spaces."""
    text = body.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    if not text.strip():
        return ""
    paragraphs = [p.strip("\n") for p in _BLANK_LINE.split(text)]
    return "\n".join(
        "<p>" + "<br>\n".join(_text_line(line) for line in p.split("\n")) + "</p>"
        for p in paragraphs
        if p.strip()
    )


def _text_line(line: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _URL.finditer(line):
        url = m.group(0).rstrip(_URL_TRAIL)
        if len(url) <= len("https://"):
            continue
        out.append(_escape_spaces(line[pos : m.start()]))
        href = html.escape(url, quote=True)
        out.append(f'<a href="{href}">{html.escape(url, quote=False)}</a>')
        pos = m.start() + len(url)
    out.append(_escape_spaces(line[pos:]))
    return "".join(out)


def _escape_spaces(part: str) -> str:
    escaped = html.escape(part, quote=False)
    return _SPACES.sub(lambda m: "\u00a0" * len(m.group(0)), escaped)


_MD_NOISE = re.compile(r"[#*_`>\[\]]+|\(https?://[^)]*\)")
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[。！？!?])|(?<=\.)(?=\s)")  # keep the space after ". "


def plain_text(body: str, body_format: BodyFormat | str = BodyFormat.TEXT) -> str:
    """The body as one line of text (for summaries and titles). Markdown loses its marks;
    plain text keeps every character as written (brackets in 〔2024〕 or [2024] included)."""
    if BodyFormat(body_format) is BodyFormat.MARKDOWN:
        body = _MD_NOISE.sub("", body)
    return _SPACE.sub(" ", body).strip()


def derive_summary(
    body: str, max_chars: int, body_format: BodyFormat | str = BodyFormat.TEXT
) -> str:
    """The first sentences of the body that fit in max_chars (cut at a character if one is longer)."""
    text = plain_text(body, body_format)
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
