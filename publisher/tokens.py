"""Constant-time comparison of secrets that arrive as text (tokens, CSRF values, bearer headers).

`secrets.compare_digest` / `hmac.compare_digest` raise TypeError on `str` arguments that are
not pure ASCII — so a request carrying `é` where a token belongs became a 500. Every text
token is compared here instead: both sides are encoded to UTF-8 bytes first (lone surrogates,
which aiohttp can hand over from a malformed query string, are kept with surrogatepass so
encoding never raises), then compared in constant time.
"""

from __future__ import annotations

import hmac


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogatepass")


def same_token(given: str | bytes, expected: str | bytes) -> bool:
    """True when `given` equals `expected`, compared in constant time; never raises on input."""
    return hmac.compare_digest(_as_bytes(given), _as_bytes(expected))


def token_present_and_same(given: str | bytes, expected: str | bytes) -> bool:
    """As same_token, but an empty token on either side never matches."""
    return bool(given) and bool(expected) and same_token(given, expected)
