"""SMS text, pure: segment counting as carriers bill it, composing an item's message,
the delivery-report code table, and the keywords residents send.

Nothing here does I/O; the adapter (channels.sms), the web routes and the preview
all build on these functions, and the unit tests pin them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

# -- segments ------------------------------------------------------------------------------

#: GSM 03.38 basic character set: one septet each
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: GSM 03.38 extension table: an escape plus the character, two septets each
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

#: (units in a single message, units per part of a concatenated one)
GSM7_LIMITS = (160, 153)
UCS2_LIMITS = (70, 67)


class Encoding(StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class Segments:
    """How a text goes over the air: its encoding, its length in that encoding's units
    (septets or UTF-16 code units) and the number of billed parts."""

    encoding: Encoding
    units: int
    parts: int


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _unit_costs(text: str) -> tuple[Encoding, list[int]]:
    if is_gsm7(text):
        return Encoding.GSM7, [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    # UTF-16 code units: a character outside the BMP is a surrogate pair (2 units)
    return Encoding.UCS2, [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _pack(costs: Iterable[int], per_part: int) -> int:
    """Parts needed when no character (a surrogate pair, an escaped GSM character) may
    straddle two parts."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return parts


def segments(text: str) -> Segments:
    """Billed parts of `text`: GSM-7 160 alone or 153 per part (extension characters
    count two), anything else UCS-2 70 alone or 67 per part in UTF-16 code units."""
    encoding, costs = _unit_costs(text)
    single, per_part = GSM7_LIMITS if encoding is Encoding.GSM7 else UCS2_LIMITS
    units = sum(costs)
    if units <= single:
        return Segments(encoding, units, 1 if units else 0)
    return Segments(encoding, units, _pack(costs, per_part))


# -- composing a message ---------------------------------------------------------------------

ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Composition:
    text: str
    segments: Segments
    #: the title and summary had to be cut to fit
    truncated: bool


def signature(name: str) -> str:
    """【name】, the sender signature carriers expect first."""
    return f"【{name}】" if name else ""


def compose(
    *,
    title: str,
    summary: str,
    link: str | None,
    signature_text: str,
    opt_out: str | None,
    max_parts: int,
) -> Composition:
    """The SMS for an item: signature, then title and summary (cut at a character boundary
    so the whole fits in `max_parts`), then the link, then the opt-out line.

    The link and the opt-out line are never cut; if even the title cannot start within
    the limit the message is the signature, the link and the opt-out line (never more
    than `max_parts` unless those alone are longer).
    """
    title = " ".join(title.split())
    summary = " ".join(summary.split())
    head = signature_text
    tail = "".join(f" {x}" for x in (link, opt_out) if x)
    content = title + (f"：{summary}" if summary and summary != title else "")

    def fits(candidate: str) -> bool:
        return segments(head + candidate + tail).parts <= max_parts

    if fits(content):
        return Composition(head + content + tail, segments(head + content + tail), False)
    chars = list(content)  # code points: a surrogate pair is one element, never split
    lo, hi = 0, len(chars)
    while lo < hi:  # the longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if fits("".join(chars[:mid]).rstrip() + ELLIPSIS):
            lo = mid
        else:
            hi = mid - 1
    body = ("".join(chars[:lo]).rstrip() + ELLIPSIS) if lo else ""
    text = head + body + (tail if body else tail.lstrip())
    return Composition(text, segments(text), True)


def plain_message(text: str, signature_text: str) -> Composition:
    """A transactional message (codes, notices to one resident): signature and text only."""
    full = signature_text + text
    return Composition(full, segments(full), False)


# -- delivery reports --------------------------------------------------------------------------


class DlrVerdict(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    #: an intermediate report (buffered at the SMSC, accepted by it): the row stays `sent`
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class DlrMeaning:
    verdict: DlrVerdict
    #: a short slug for staff (the ledger row's reason when it fails)
    reason: str
    label: str


#: Kannel's dlr-mask bits, as the %d of a dlr-url reports them
KANNEL_DLR: dict[int, DlrMeaning] = {
    1: DlrMeaning(DlrVerdict.DELIVERED, "delivered", "delivered to the phone"),
    2: DlrMeaning(DlrVerdict.FAILED, "undelivered", "not delivered to the phone"),
    4: DlrMeaning(DlrVerdict.PENDING, "buffered", "buffered at the SMSC"),
    8: DlrMeaning(DlrVerdict.PENDING, "smsc_ack", "accepted by the SMSC"),
    16: DlrMeaning(DlrVerdict.FAILED, "smsc_reject", "rejected by the SMSC"),
}
#: what we ask Kannel to report: delivered, failed, rejected by the SMSC (not the
#: intermediate states, which would double the callbacks and change nothing)
KANNEL_DLR_MASK = 1 | 2 | 16


def dlr_meaning(status: int) -> DlrMeaning:
    """What a Kannel delivery-report status means. Raises ValueError for a code Kannel
    never sends (the report is refused rather than guessed at)."""
    try:
        return KANNEL_DLR[status]
    except KeyError:
        raise ValueError(f"unknown delivery report status {status}") from None


# -- keywords from residents -------------------------------------------------------------------


class Command(StrEnum):
    SUBSCRIBE = "subscribe"  #: DY, DY <category keyword> …
    UNSUBSCRIBE = "unsubscribe"  #: TD, T, R, 退订, STOP
    QUERY = "query"  #: CX
    HELP = "help"  #: anything else


SUBSCRIBE_WORDS = frozenset({"DY", "订阅"})
UNSUBSCRIBE_WORDS = frozenset({"TD", "T", "R", "退订", "STOP", "UNSUBSCRIBE"})
QUERY_WORDS = frozenset({"CX", "查询"})


@dataclass(frozen=True, slots=True)
class Keyword:
    command: Command
    #: category keywords named after DY (upper-case); empty: every category
    categories: tuple[str, ...] = ()
    #: words after DY that name no category (the reply says so)
    unknown: tuple[str, ...] = ()


def parse_keyword(text: str, known: Sequence[str]) -> Keyword:
    """A resident's message as a command. Case-insensitive, full-width letters and spaces
    folded (ＴＤ is TD), surrounding spaces ignored. `known` are the category keywords."""
    folded = unicodedata.normalize("NFKC", text).strip().upper()
    words = folded.replace(",", " ").replace("，", " ").split()
    if not words:
        return Keyword(Command.HELP)
    first, rest = words[0], words[1:]
    # "DYNY" (no space) is as likely as "DY NY"
    if not rest and first not in SUBSCRIBE_WORDS and first.startswith("DY") and len(first) > 2:
        first, rest = "DY", [first[2:]]
    if first in UNSUBSCRIBE_WORDS and not rest:
        return Keyword(Command.UNSUBSCRIBE)
    if first in QUERY_WORDS and not rest:
        return Keyword(Command.QUERY)
    if first in SUBSCRIBE_WORDS:
        upper = {k.upper() for k in known}
        cats = tuple(dict.fromkeys(w for w in rest if w in upper))
        unknown = tuple(w for w in rest if w not in upper)
        if unknown:
            return Keyword(Command.HELP, cats, unknown)
        return Keyword(Command.SUBSCRIBE, cats)
    return Keyword(Command.HELP)
