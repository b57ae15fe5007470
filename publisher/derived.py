"""Keys for signing and hashing, derived from security.data_key with HKDF.

One secret to keep (the data key); each purpose gets a key of its own, so a key
that leaks through one use (a signed URL) says nothing about the others.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from publisher.config import Config
from publisher.errors import ConfigError


def derived_key(config: Config, purpose: str) -> bytes:
    """32 bytes for `purpose` (e.g. "sms/dlr"); raises ConfigError when the data key is unset
    or malformed."""
    try:
        raw = base64.urlsafe_b64decode(config.data_key().strip())
    except (binascii.Error, ValueError):
        raise ConfigError("security.data_key: not urlsafe base64") from None
    if len(raw) != 32:
        raise ConfigError(f"security.data_key: must decode to 32 bytes, not {len(raw)}")
    info = f"gongkai/{purpose}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)
