"""Personal-data warnings for the reviewer (the law forbids publishing 个人隐私).

Finds unmasked resident ID numbers (valid check digit), mainland mobile numbers
and bank card numbers (Luhn). Masked forms such as 138****1234 do not match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class PiiKind(StrEnum):
    RESIDENT_ID = "resident_id"
    MOBILE = "mobile"
    BANK_CARD = "bank_card"


@dataclass(frozen=True, slots=True)
class PiiFinding:
    kind: PiiKind
    field: str
    #: the match shown masked, so the warning itself leaks nothing
    masked: str
    start: int


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# digits not glued to other digits (or to letters for the ID's X)
_ID_RE = re.compile(r"(?<![0-9A-Za-z])([1-9]\d{16}[0-9Xx])(?![0-9A-Za-z])")
_MOBILE_RE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d[- ]?\d{4}[- ]?\d{4})(?!\d)")
_CARD_RE = re.compile(r"(?<!\d)(\d(?:[ -]?\d){12,18})(?!\d)")


def resident_id_valid(number: str) -> bool:
    """GB 11643 check digit of an 18-digit resident ID number."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def mask(value: str, keep_head: int = 3, keep_tail: int = 4) -> str:
    if len(value) <= keep_head + keep_tail:
        return "*" * len(value)
    return value[:keep_head] + "*" * (len(value) - keep_head - keep_tail) + value[-keep_tail:]


def scan_text(text: str, field: str) -> list[PiiFinding]:
    findings: list[PiiFinding] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    for m in _ID_RE.finditer(text):
        if resident_id_valid(m.group(1)):
            findings.append(
                PiiFinding(PiiKind.RESIDENT_ID, field, mask(m.group(1), 6, 4), m.start(1))
            )
            taken.append(m.span(1))
    for m in _MOBILE_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group(1))
        if free(*m.span(1)):
            findings.append(PiiFinding(PiiKind.MOBILE, field, mask(digits), m.start(1)))
            taken.append(m.span(1))
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group(1))
        # issuer prefixes 3–6 (UnionPay 62, Visa 4, Mastercard 5, Amex/JCB 3): keeps
        # Luhn-valid codes such as a 统一社会信用代码 in a 索引号 from being flagged
        if (
            13 <= len(digits) <= 19
            and digits[0] in "3456"
            and free(*m.span(1))
            and luhn_valid(digits)
        ):
            findings.append(PiiFinding(PiiKind.BANK_CARD, field, mask(digits, 4, 4), m.start(1)))
            taken.append(m.span(1))
    findings.sort(key=lambda f: f.start)
    return findings


def scan_fields(fields: dict[str, str | None]) -> list[PiiFinding]:
    """Scan each named field (title, summary, body, attachment names)."""
    out: list[PiiFinding] = []
    for name, text in fields.items():
        if text:
            out.extend(scan_text(text, name))
    return out
