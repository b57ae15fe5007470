"""Sealed streams: AES-256-GCM over a file in chunks, for backups.

Format (all integers big-endian):

    header  = b"GKSEALED" + version (1 byte, 1) + salt (16 random bytes)
    records = [length (4 bytes) + AES-GCM(chunk)] …

The key is HKDF-SHA256 of the data key with the random salt and the purpose label as
info (``gongkai/backup/v1`` for backups), so every file has a key of its own. A chunk's
nonce is its index (11 bytes) followed by one byte that is 1 on the last chunk only;
the header is the associated data of every chunk. Reordering, dropping, truncating or
splicing chunks, or a wrong key, all fail authentication — the last-chunk flag is what
makes a cut at a chunk boundary detectable.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from publisher.errors import ConfigError, ValidationFailed

MAGIC = b"GKSEALED"
VERSION = 1
HEADER_SIZE = len(MAGIC) + 1 + 16
CHUNK = 1 << 20  # plaintext bytes per record
_TAG = 16


def raw_data_key(data_key: bytes) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(data_key.strip())
    except (binascii.Error, ValueError):
        raise ConfigError("security.data_key: not urlsafe base64") from None
    if len(raw) != 32:
        raise ConfigError(f"security.data_key: must decode to 32 bytes, not {len(raw)}")
    return raw


def _key(raw: bytes, salt: bytes, purpose: str) -> AESGCM:
    info = f"gongkai/{purpose}".encode()
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(raw))


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def is_sealed(head: bytes) -> bool:
    return head.startswith(MAGIC)


class SealingWriter:
    """A write-only file object that encrypts what is written to `out` in chunks."""

    def __init__(self, out: IO[bytes], data_key: bytes, purpose: str) -> None:
        salt = os.urandom(16)
        self._header = MAGIC + bytes([VERSION]) + salt
        self._aead = _key(raw_data_key(data_key), salt, purpose)
        self._out = out
        self._buf = bytearray()
        self._index = 0
        self._closed = False
        out.write(self._header)

    def __enter__(self) -> SealingWriter:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:  # a failed backup gets no last chunk: it can never pass as whole
            self.close()

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) > CHUNK:  # keep at least one byte back: the last chunk is flagged
            self._record(bytes(self._buf[:CHUNK]), last=False)
            del self._buf[:CHUNK]
        return len(data)

    def _record(self, chunk: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._index, last), chunk, self._header)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        if not self._closed:
            self._record(bytes(self._buf), last=True)
            self._buf.clear()
            self._closed = True
            self._out.flush()


def unseal(src: IO[bytes], dest: IO[bytes], data_key: bytes, purpose: str, name: str) -> None:
    """Decrypt the sealed stream `src` into `dest`; ValidationFailed (one line) when the key
    is wrong or the file was changed or cut."""
    header = src.read(HEADER_SIZE)
    if len(header) != HEADER_SIZE or not is_sealed(header):
        raise ValidationFailed(f"{name}: not an encrypted publisher backup")
    if header[len(MAGIC)] != VERSION:
        raise ValidationFailed(f"{name}: unknown encryption version {header[len(MAGIC)]}")
    aead = _key(raw_data_key(data_key), header[len(MAGIC) + 1 :], purpose)
    index = 0
    while True:
        size = src.read(4)
        if len(size) != 4:
            raise ValidationFailed(f"{name}: truncated encrypted backup")
        (length,) = struct.unpack(">I", size)
        if not _TAG <= length <= CHUNK + _TAG:
            raise ValidationFailed(f"{name}: damaged encrypted backup")
        sealed = src.read(length)
        if len(sealed) != length:
            raise ValidationFailed(f"{name}: truncated encrypted backup")
        last = False
        try:
            chunk = aead.decrypt(_nonce(index, False), sealed, header)
        except InvalidTag:
            try:
                chunk = aead.decrypt(_nonce(index, True), sealed, header)
                last = True
            except InvalidTag:
                raise ValidationFailed(
                    f"{name}: cannot be decrypted with this data key "
                    "(the wrong security.data_key, or a damaged backup)"
                ) from None
        dest.write(chunk)
        index += 1
        if last:
            if src.read(1):
                raise ValidationFailed(f"{name}: data after the end of the encrypted backup")
            return
