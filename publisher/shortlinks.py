"""Short links for SMS: /s/{code} -> the public item page.

A code is the first 8 base62 characters of an HMAC of the item id (key derived from
the data key): short (8 characters in a message billed by the character), stable per
item, and not guessable — 62^8 ≈ 2.2e14 codes, so enumerating them finds nothing,
and an unpublished item's code leads nowhere anyway. Nothing is stored: a code is
resolved by computing the codes of the published proactive items (memoised per id).
"""

from __future__ import annotations

import hashlib
import hmac

import sqlalchemy as sa

from publisher.config import Config
from publisher.derived import derived_key
from publisher.models import Disclosure, ItemStatus
from publisher.store import schema as t
from publisher.store.sql import SqlStore

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CODE_LENGTH = 8


def base62(data: bytes, length: int) -> str:
    n = int.from_bytes(data, "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(out)


class ShortLinks:
    def __init__(self, config: Config) -> None:
        self.base = config.site.public_base
        self._key = derived_key(config, "shortlink")
        self._codes: dict[str, str] = {}  #: item id -> code
        self._items: dict[str, str] = {}  #: code -> item id

    def code(self, item_id: str) -> str:
        code = self._codes.get(item_id)
        if code is None:
            digest = hmac.new(self._key, item_id.encode(), hashlib.sha256).digest()
            code = base62(digest, CODE_LENGTH)
            self._codes[item_id] = code
            self._items[code] = item_id
        return code

    def url(self, item_id: str) -> str:
        return f"{self.base}/s/{self.code(item_id)}"

    async def resolve(self, store: SqlStore, code: str) -> str | None:
        """The id of the published proactive item with this code, or None."""
        if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
            return None
        async with store.read() as conn:
            item_id = self._items.get(code)
            if item_id is None:
                ids = await conn.scalars(
                    sa.select(t.items.c.id).where(
                        t.items.c.status == ItemStatus.PUBLISHED.value,
                        t.items.c.disclosure == Disclosure.PROACTIVE.value,
                    )
                )
                for other in ids:
                    if self.code(other) == code:
                        item_id = other
                        break
                if item_id is None:
                    return None
            live = await conn.scalar(
                sa.select(t.items.c.id).where(
                    t.items.c.id == item_id,
                    t.items.c.status == ItemStatus.PUBLISHED.value,
                    t.items.c.disclosure == Disclosure.PROACTIVE.value,
                )
            )
        return str(live) if live is not None else None
