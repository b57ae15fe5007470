"""The city portal: a signed JSON push of each item event to the configured endpoints.

Signed per Standard Webhooks (https://www.standardwebhooks.com/): the headers
`webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` + base64 of
HMAC-SHA256 over "{id}.{timestamp}.{body}", keyed with the endpoint's secret).
The id is the same for every attempt at one event × endpoint, so the portal can
drop a repeat; the timestamp and signature are made at send time. The payload's
JSON Schema is schemas/portal-event.schema.json.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack, suppress
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import aiohttp
from pydantic import Field
from yarl import URL

from channels.base import (
    ChannelAdapter,
    ChannelSettings,
    Limits,
    PermanentDeliveryError,
    Receipt,
    ReceiptState,
    Rendered,
    Subject,
    Target,
    TransientDeliveryError,
)
from publisher.errors import ConfigError

#: Subject.kind -> the event type the portal sees
EVENT_TYPES: dict[str, str] = {
    "published": "item.published",
    "corrected": "item.corrected",
    "withdrawn": "item.withdrawn",
    "expired": "item.expired",
}

SECRET_PREFIX = "whsec_"
#: Standard Webhooks asks for 24 to 64 random bytes; shorter keys are refused
MIN_SECRET_BYTES = 24
#: statuses worth another attempt besides 5xx: request timeout, too many requests
TRANSIENT_STATUSES = frozenset({408, 429})
#: how much of a refusal's body is kept for staff (last_error)
ERROR_BODY_CHARS = 500
#: and how much of it is read off the wire to get those characters
ERROR_BODY_BYTES = 4 * ERROR_BODY_CHARS


class PortalSettings(ChannelSettings):
    """`channels.portal.settings`; the endpoints and their secrets are under `channels.portal.endpoints`."""

    #: seconds for one whole attempt (connect, send, answer)
    timeout: float = Field(default=15.0, gt=0)
    user_agent: str = Field(default="GongkaiPublisher/0.1 (+portal push)", min_length=1)


# -- secrets ----------------------------------------------------------------------------


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret.

    Raises ValueError saying what is wrong, never quoting the secret.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"the secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the secret is not valid base64 after {SECRET_PREFIX!r}") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the secret decodes to {len(key)} bytes; at least {MIN_SECRET_BYTES} are needed"
        )
    return key


def endpoint_key(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> bytes:
    """The signing key from an endpoint's settings: `secret` (inline) or `secret_env`
    (the name of an environment variable holding it). Raises ValueError naming the
    setting, never quoting the secret."""
    environ = os.environ if environ is None else environ
    unknown = sorted(set(settings) - {"secret", "secret_env"})
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} (use secret or secret_env)")
    inline, env_name = settings.get("secret"), settings.get("secret_env")
    if (inline is None) == (env_name is None):
        raise ValueError("give exactly one of secret or secret_env")
    if inline is not None:
        if not isinstance(inline, str):
            raise ValueError("secret must be a string")
        return decode_secret(inline)
    if not isinstance(env_name, str) or not env_name:
        raise ValueError("secret_env must name an environment variable")
    value = environ.get(env_name)
    if not value:
        raise ValueError(f"secret_env: the environment variable {env_name} is not set")
    try:
        return decode_secret(value.strip())
    except ValueError as exc:
        raise ValueError(f"secret_env {env_name}: {exc}") from None


def check_address(address: str) -> None:
    """Raises ValueError unless `address` is an absolute http(s) URL."""
    url = URL(address)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("the address must be an http:// or https:// URL")


# -- the wire format ---------------------------------------------------------------------------


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode()


def webhook_id(subject: Subject, target: Target) -> str:
    """Stable for every attempt at this event × endpoint, and unique beyond this database.

    Built from the item's UUID, the event and the endpoint rather than the ledger row
    number: row numbers start again in a new or restored database, and a portal that
    remembers ids would then drop new events as repeats.
    """
    item = (subject.item_id or "").replace("-", "")
    endpoint = target.key.replace(":", "")
    return f"msg_{item}_{subject.kind}_{subject.revision}_{endpoint}"


def _iso(value: datetime | None, tz: tzinfo) -> str | None:
    return value.astimezone(tz).isoformat() if value is not None else None


def payload(subject: Subject, tz: tzinfo) -> dict[str, Any]:
    """The event as the portal gets it (schemas/portal-event.schema.json); times in site time."""
    return {
        "type": EVENT_TYPES[subject.kind],
        "timestamp": _iso(subject.event_at, tz),
        "data": {
            "id": subject.item_id,
            "index_no": subject.index_no,
            "revision": subject.revision,
            "title": subject.title,
            "summary": subject.summary,
            "category": {"slug": subject.category, "name": subject.category_name},
            "agency": subject.agency,
            "written_at": _iso(subject.written_at, tz),
            "doc_no": subject.doc_no,
            "published_at": _iso(subject.published_at, tz),
            "expires_at": _iso(subject.expires_at, tz),
            "urgent": subject.urgent,
            "correction_note": subject.correction_note,
            "url": subject.public_url,
            "format": subject.body_format,
            "body_html": subject.body_html,
            "attachments": [
                {
                    "filename": a["filename"],
                    "content_type": a.get("content_type"),
                    "size": a["size"],
                    "sha256": a["sha256"],
                    "url": a["url"],
                }
                for a in subject.attachments
            ],
            "related": [
                {"id": r["id"], "kind": r["kind"], "title": r["title"], "url": r["url"]}
                for r in subject.related
            ],
            "site": subject.site_name,
        },
    }


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) as seconds from `now`."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def judge(status: int, body: str, retry_after: float | None, endpoint: str, msg_id: str) -> Receipt:
    """What the portal's answer means: a Receipt for 2xx, else the error to raise."""
    if 200 <= status < 300:
        return Receipt(ReceiptState.DELIVERED, provider_id=msg_id)
    said = f"portal endpoint {endpoint!r}: HTTP {status}" + (f": {body}" if body else "")
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientDeliveryError(said, retry_after=retry_after)
    if 300 <= status < 400:
        # following it would re-send a signed request to wherever it points
        raise PermanentDeliveryError(
            f"{said} (redirects are not followed: configure the final URL)", reason="misconfigured"
        )
    raise PermanentDeliveryError(said, reason="rejected")


async def _read_snippet(resp: aiohttp.ClientResponse) -> str:
    """The start of the answer's body, decoded whatever its bytes, for staff to read."""
    raw = bytearray()
    with suppress(aiohttp.ClientError, TimeoutError):  # a body cut short still says something
        while len(raw) < ERROR_BODY_BYTES:
            chunk = await resp.content.read(ERROR_BODY_BYTES - len(raw))
            if not chunk:
                break
            raw += chunk
    try:
        text = bytes(raw).decode(resp.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = bytes(raw).decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:ERROR_BODY_CHARS] + ("…" if len(text) > ERROR_BODY_CHARS else "")


class PortalChannel(ChannelAdapter):
    """One signed POST per event and endpoint. 2xx delivered; 408/429/5xx and network
    faults transient (honouring Retry-After); other answers permanent."""

    name: ClassVar[str] = "portal"
    # the portal recognises a repeat by its webhook-id, so a crash-cut attempt may be made again
    limits: ClassVar[Limits] = Limits(concurrency=4, repeatable=True, retracts=True)
    Settings: ClassVar[type[ChannelSettings]] = PortalSettings

    #: where `secret_env` is looked up (tests may lend another mapping)
    environ: Mapping[str, str] = os.environ

    async def start(self, stack: AsyncExitStack) -> None:
        assert isinstance(self.settings, PortalSettings)
        self._check_configured_endpoints()
        self.timeout = self.settings.timeout
        self.session = await stack.enter_async_context(
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                headers={"User-Agent": self.settings.user_agent},
            )
        )

    def _check_configured_endpoints(self) -> None:
        """Refuse to start (ConfigError naming the key) with an endpoint that could never be signed."""
        if self.context is None:
            return
        for i, ep in enumerate(self.context.config.channels.get(self.name).endpoints):
            where = f"channels.{self.name}.endpoints.{i}"
            try:
                check_address(ep.address)
            except ValueError as exc:
                raise ConfigError(f"{where}.address: {exc} (endpoint {ep.name!r})") from None
            try:
                endpoint_key(ep.settings, self.environ)
            except ValueError as exc:
                raise ConfigError(f"{where}.settings: {exc} (endpoint {ep.name!r})") from None

    def render(self, subject: Subject, target: Target) -> Rendered:
        if subject.kind not in EVENT_TYPES or subject.item_id is None:
            raise PermanentDeliveryError(
                f"the portal takes item events, not {subject.kind!r}", reason="unknown_subject"
            )
        body = json.dumps(
            payload(subject, self.site.tz), ensure_ascii=False, separators=(",", ":")
        ).encode()
        return Rendered(
            body=body,
            content_type="application/json",
            headers={"webhook-id": webhook_id(subject, target)},
            preview=f"{EVENT_TYPES[subject.kind]} {subject.title}",
        )

    async def deliver(self, rendered: Rendered, target: Target, *, delivery_id: str) -> Receipt:
        endpoint = target.name or target.key
        try:
            check_address(target.address)
            key = endpoint_key(target.settings, self.environ)
        except ValueError as exc:
            raise PermanentDeliveryError(
                f"portal endpoint {endpoint!r}: {exc}", reason="misconfigured"
            ) from None
        msg_id = rendered.headers["webhook-id"]
        timestamp = int(time.time())
        headers = {
            **rendered.headers,
            "Content-Type": rendered.content_type,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, msg_id, timestamp, rendered.body),
        }
        try:
            async with self.session.post(
                target.address, data=rendered.body, headers=headers, allow_redirects=False
            ) as resp:
                snippet = "" if 200 <= resp.status < 300 else await _read_snippet(resp)
                retry_after = retry_after_seconds(
                    resp.headers.get("Retry-After"), datetime.now(UTC)
                )
                status = resp.status
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise PermanentDeliveryError(
                f"portal endpoint {endpoint!r}: bad address: {exc}", reason="misconfigured"
            ) from None
        except TimeoutError:
            raise TransientDeliveryError(
                f"portal endpoint {endpoint!r}: no answer within {self.timeout} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise TransientDeliveryError(
                f"portal endpoint {endpoint!r}: {type(exc).__name__}: {exc}"
            ) from None
        return judge(status, snippet, retry_after, endpoint, msg_id)
