"""Fields encrypted at rest with the data key: the portal endpoints' webhook secrets and the
request register's applicant names.

Each purpose has a key of its own (HKDF-SHA256 of the data key, info
``gongkai/at-rest/<purpose>``); a value is AES-256-GCM with a random 96-bit nonce and is
stored as ``enc1:<urlsafe base64 of nonce + ciphertext>``. The prefix tells a sealed value
from one written before encryption, so reading code takes both (migration 0015 seals the
existing rows).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from publisher.errors import ConfigError
from publisher.sealed import raw_data_key

PREFIX = "enc1:"
ENDPOINT_SECRET = "endpoint-secret"
APPLICANT = "applicant"
#: the key under which an endpoint's settings keep the sealed `secret`
SEALED_SECRET = "secret_sealed"


class FieldBox:
    def __init__(self, data_key: bytes, purpose: str) -> None:
        info = f"gongkai/at-rest/{purpose}".encode()
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
            raw_data_key(data_key)
        )
        self._aead = AESGCM(key)
        self._aad = info
        self.purpose = purpose

    def seal(self, value: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), self._aad)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, stored: str) -> str:
        """The clear value; a value without the prefix (written before 0015) as it is."""
        if not is_sealed(stored):
            return stored
        try:
            raw = base64.urlsafe_b64decode(stored[len(PREFIX) :])
            return self._aead.decrypt(raw[:12], raw[12:], self._aad).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise ConfigError(
                f"security.data_key: cannot decrypt a stored {self.purpose} — is this the key "
                "the store was written with?"
            ) from None


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def seal_settings(box: FieldBox, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Endpoint settings as stored: an inline `secret` replaced by `secret_sealed`."""
    out = dict(settings)
    secret = out.pop("secret", None)
    if isinstance(secret, str):
        out[SEALED_SECRET] = box.seal(secret)
    elif secret is not None:
        out["secret"] = secret  # not a string: left for the channel to refuse with its reason
    return out


def open_settings(box: FieldBox | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Endpoint settings as the channel reads them: `secret_sealed` back to `secret`."""
    out = dict(settings)
    sealed = out.pop(SEALED_SECRET, None)
    if sealed is not None:
        if box is None:
            raise ConfigError("security.data_key: needed to read an endpoint's webhook secret")
        out["secret"] = box.open(sealed)
    return out
