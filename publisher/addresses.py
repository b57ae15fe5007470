"""Residents' addresses: normalise, mask, encrypt at rest, find by keyed hash.

Two keys are derived from security.data_key with HKDF: one encrypts (AES-256-GCM
with a random 96-bit nonce), one
hashes (HMAC-SHA256). Without the data key the stored addresses are unreadable —
which is why it is kept apart from backups.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from email_validator import EmailNotValidError, validate_email

from publisher.errors import ConfigError, ValidationFailed


def normalize(channel: str, address: str, region: str = "CN") -> str:
    """The canonical form of an address for `channel`; raises ValidationFailed with the reason."""
    address = address.strip()
    if not address:
        raise ValidationFailed("address: empty")
    if channel == "sms":
        try:
            number = phonenumbers.parse(address, region)
        except phonenumbers.NumberParseException as exc:
            raise ValidationFailed(f"address: not a phone number ({exc})") from None
        if not phonenumbers.is_valid_number(number):
            raise ValidationFailed("address: not a valid phone number for its region")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if channel == "email":
        return normalize_email(address)
    return address


def region_of(e164: str) -> str | None:
    """The ISO 3166 region of a normalised number (CN, GB …); None when it has none."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    return region if region and region != "ZZ" else None


class RegionNotAllowed(ValidationFailed):
    """A valid number of a region this site does not send SMS to (SMS pumping: premium
    and foreign numbers cost money and reach nobody in the township)."""

    kind = "region-not-allowed"
    title = "Number not accepted"

    def __init__(self, region: str | None, allowed: frozenset[str]) -> None:
        where = region or "no region"
        super().__init__(
            f"address: numbers of {where} are not accepted here "
            f"(this site sends SMS to {', '.join(sorted(allowed))} numbers only)",
            region=region,
        )
        self.region = region


def check_region(e164: str, allowed: frozenset[str]) -> str:
    """`e164` when its region is one of `allowed`; RegionNotAllowed otherwise."""
    region = region_of(e164)
    if region is None or region not in allowed:
        raise RegionNotAllowed(region, allowed)
    return e164


def normalize_email(address: str) -> str:
    """The address as it is stored and sent: syntax checked (email-validator, no DNS), domain
    lower-case and in ASCII (IDNA); ValidationFailed says why not, without quoting it."""
    try:
        checked = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        # the library quotes offending characters: keep the reason, not the address's parts
        reason = str(exc).split(": '", 1)[0].rstrip(".")
        raise ValidationFailed(f"address: not a valid email address: {reason}") from None
    return checked.ascii_email or checked.normalized


def mask(address: str) -> str:
    """138****1234 for phone numbers, a***@example.org for email; safe for pages and logs."""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return (local[:1] + "***@" + domain) if local else "***@" + domain
    digits = address.lstrip("+")
    if address.startswith("+86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) >= 7:
        return digits[:3] + "****" + digits[-4:]
    return "*" * len(address)


class AddressBox:
    def __init__(self, data_key: bytes) -> None:
        try:
            raw = base64.urlsafe_b64decode(data_key.strip())
        except (binascii.Error, ValueError):
            raise ConfigError("security.data_key: not urlsafe base64") from None
        if len(raw) != 32:
            raise ConfigError(f"security.data_key: must decode to 32 bytes, not {len(raw)}")
        self._raw = raw
        self._aead = AESGCM(_derive(raw, b"gongkai/address/encrypt"))
        self._hash_key = _derive(raw, b"gongkai/address/hash")

    def derived_key(self, purpose: bytes) -> bytes:
        """A 32-byte key for another use of the data key (HKDF, `purpose` as info)."""
        return _derive(self._raw, purpose)

    def hash(self, channel: str, address: str) -> str:
        msg = f"{channel}\x00{address}".encode()
        return hmac.new(self._hash_key, msg, hashlib.sha256).hexdigest()

    def seal(self, address: str) -> str:
        nonce = os.urandom(12)
        return base64.urlsafe_b64encode(
            nonce + self._aead.encrypt(nonce, address.encode(), None)
        ).decode()

    def open(self, sealed: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(sealed)
            return self._aead.decrypt(raw[:12], raw[12:], None).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise ConfigError(
                "security.data_key: cannot decrypt a stored address — is this the key the store "
                "was written with?"
            ) from None


def _derive(raw: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)
