"""Signed links in residents' mail: confirm a subscription, manage it, leave it.

- Unsubscribe and manage links name a subscriber by id and carry an HMAC of the id and
  the subscription's link nonce (a random value on the subscriber's row; one key per
  purpose, derived from the data key), so one cannot be turned into the other and no
  id can be guessed into a working link. They do not expire: a mail read a year later
  must still let the resident leave. Erasing the subscriber deletes the nonce and so
  kills them, and ids are never given twice. Links signed before the nonce existed
  (over the id alone) are still taken for a subscriber the 0010 migration marked as
  safe for them (`legacy_links`).
- Confirmation links carry the whole request (address, categories, frequency, when it
  expires) sealed with AES-GCM: nothing is stored until the resident confirms, the
  address is not readable in the URL (proxies log URLs), and any change to the token
  makes it fail to open. Being stateless, they are checked against the store too
  (publisher.mail_subscriptions): used once only, and never after the address last
  left or was erased (RevokedToken).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import time
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from publisher.config import Config
from publisher.derived import derived_key
from publisher.tokens import same_token

_RID_TOKEN = re.compile(r"^([1-9][0-9]{0,17})\.([A-Za-z0-9_-]{22})$")
#: longest confirmation token accepted (an address of 254 characters fits well inside)
MAX_CONFIRM_TOKEN = 800


class LinkPurpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    MANAGE = "manage"


class BadToken(ValueError):
    """The token was not made by us (tampered, truncated, for another purpose)."""


class ExpiredToken(ValueError):
    """A genuine confirmation token whose time is up."""


class RevokedToken(ValueError):
    """A genuine confirmation token that was used already, or was issued before the
    address last unsubscribed or was erased."""


@dataclass(frozen=True, slots=True)
class ConfirmRequest:
    """What a confirmation link asks to subscribe."""

    address: str
    categories: tuple[str, ...]
    frequency: str
    expires_at: float  #: Unix seconds
    issued_at: float


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class MailLinks:
    """Makes and checks the tokens and builds the URLs (under site.base_url)."""

    def __init__(self, config: Config, base_url: str | None = None) -> None:
        self.base = (base_url or config.site.base_url).rstrip("/")
        self._keys = {p: derived_key(config, f"email/{p.value}") for p in LinkPurpose}
        self._aead = AESGCM(derived_key(config, "email/confirm"))

    # -- per-subscriber links --------------------------------------------------------------

    def _mac(self, purpose: LinkPurpose, recipient_id: int, nonce: str | None) -> str:
        # nonce None: the links made before 0010, over the id alone
        signed = str(recipient_id) if nonce is None else f"{recipient_id}:{nonce}"
        mac = hmac.new(self._keys[purpose], signed.encode(), hashlib.sha256).digest()
        return _b64(mac[:16])

    def token(self, purpose: LinkPurpose, recipient_id: int, nonce: str) -> str:
        """The token for a subscriber's link, bound to its row's link nonce."""
        return f"{recipient_id}.{self._mac(purpose, recipient_id, nonce)}"

    @staticmethod
    def recipient_id(token: str) -> int:
        """The subscriber a token names, not yet checked (BadToken if malformed)."""
        found = _RID_TOKEN.match(token)
        if found is None:
            raise BadToken("malformed")
        return int(found.group(1))

    def matches(self, purpose: LinkPurpose, token: str, nonce: str, *, legacy: bool) -> bool:
        """Whether we made `token` for `purpose` and the subscriber with link nonce `nonce`
        (or, if `legacy`, over its id alone, as before 0010)."""
        found = _RID_TOKEN.match(token)
        if found is None or not nonce:
            return False
        rid, mac = int(found.group(1)), found.group(2)
        if same_token(self._mac(purpose, rid, nonce), mac):
            return True
        return legacy and same_token(self._mac(purpose, rid, None), mac)

    def unsubscribe_url(self, recipient_id: int, nonce: str) -> str:
        token = self.token(LinkPurpose.UNSUBSCRIBE, recipient_id, nonce)
        return f"{self.base}/unsubscribe/{token}"

    def manage_url(self, recipient_id: int, nonce: str) -> str:
        return f"{self.base}/subscribe/manage/{self.token(LinkPurpose.MANAGE, recipient_id, nonce)}"

    # -- confirmation links ------------------------------------------------------------------

    def confirm_token(
        self,
        address: str,
        categories: list[str] | tuple[str, ...],
        frequency: str,
        ttl_seconds: int,
        *,
        now: float | None = None,
    ) -> str:
        now = time.time() if now is None else now
        payload = json.dumps(
            {
                "a": address,
                "c": list(categories),
                "f": frequency,
                "e": int(now + ttl_seconds),
                # to the millisecond, rounded down: a link asked for just after leaving works
                "i": math.floor(now * 1000) / 1000,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        nonce = os.urandom(12)
        return _b64(nonce + self._aead.encrypt(nonce, payload, b"confirm"))

    def confirm_request(self, token: str, *, now: float | None = None) -> ConfirmRequest:
        """Open a confirmation token: BadToken if it is not ours, ExpiredToken if too old."""
        if not (20 < len(token) <= MAX_CONFIRM_TOKEN) or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
            raise BadToken("malformed")
        try:
            raw = _unb64(token)
            data = json.loads(self._aead.decrypt(raw[:12], raw[12:], b"confirm"))
            request = ConfirmRequest(
                address=str(data["a"]),
                categories=tuple(str(c) for c in data["c"]),
                frequency=str(data["f"]),
                expires_at=float(data["e"]),
                issued_at=float(data["i"]),
            )
        except (InvalidTag, ValueError, binascii.Error, KeyError, TypeError):
            raise BadToken("does not open") from None
        if (time.time() if now is None else now) >= request.expires_at:
            raise ExpiredToken("expired")
        return request

    def confirm_url(self, token: str) -> str:
        return f"{self.base}/subscribe/confirm/{token}"
