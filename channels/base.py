"""The channel adapter contract.

An adapter renders a subject for one target (pure: used for previews too) and
makes ONE delivery attempt. It never retries, sleeps, paces or records anything:
the core (publisher.delivery) does batching, concurrency, pacing, retries and
bookkeeping, deciding by the exception type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from publisher.config import Config
    from publisher.store.sql import SqlStore


@dataclass(frozen=True, slots=True)
class Limits:
    """An adapter's defaults; `channels.<name>` in config.yaml may override each."""

    #: attempts in flight at once, per worker process
    concurrency: int = 10
    #: attempts started per second, per worker process (None: unpaced)
    per_second: float | None = None
    #: the provider reports delivery later (SMS DLRs, board confirmations)
    receipts: bool = False
    #: an attempt cut short by a crash may be made again without harm (the far
    #: end recognises repeats); if not, such rows become `unknown` for staff
    repeatable: bool = False
    #: the channel can take back what it sent (withdrawn / expired events)
    retracts: bool = False
    #: targets are residents who subscribe (as opposed to configured endpoints)
    subscribers: bool = False


class ReceiptState(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class Receipt:
    state: ReceiptState
    provider_id: str | None = None
    #: billed units (SMS segments), when the channel counts them
    units: int | None = None


class NotConfigured(Exception):
    """Raised by an adapter's start() when the channel has nothing to send through yet
    (no gateway configured): the worker leaves its deliveries queued and says so."""


class DeliveryError(Exception):
    """One attempt did not get through."""


class TransientDeliveryError(DeliveryError):
    """Try again later (timeouts, 5xx, 429, connection faults)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Never try again; `reason` is a short slug staff can filter on (bounced, rejected …)."""

    def __init__(self, message: str, *, reason: str = "rejected") -> None:
        super().__init__(message)
        self.reason = reason


class DeferDelivery(Exception):
    """Not now, and nothing went wrong: hold this row until `until` (aware datetime).

    Raised before anything was sent (a daily spend cap reached, every gateway resting).
    The core makes the row `deferred` with `reason` (a short slug staff see, e.g.
    spend_cap) and due again at `until`, and the attempt does not count against
    max_attempts.
    """

    def __init__(self, message: str, *, reason: str, until: datetime) -> None:
        super().__init__(message)
        self.reason = reason
        self.until = until


@dataclass(frozen=True, slots=True)
class Subject:
    """What is being delivered: an item revision's event (later also digests, packs …)."""

    key: str  #: ledger subject, e.g. "event:42"
    kind: str  #: published | corrected | withdrawn | expired | …
    item_id: str | None
    revision: int | None
    title: str
    summary: str
    body: str
    body_html: str
    category: str
    category_name: str
    agency: str
    index_no: str | None
    doc_no: str | None
    written_at: datetime | None
    published_at: datetime | None
    urgent: bool
    public_url: str
    correction_note: str | None = None
    attachments: tuple[dict[str, Any], ...] = ()
    site_name: str = ""
    #: when the event happened: the same for every attempt and every channel
    event_at: datetime | None = None
    expires_at: datetime | None = None
    #: published proactive items this one points to: {"id", "kind", "title", "url"}
    related: tuple[dict[str, Any], ...] = ()
    #: what a digest lists: {"id", "title", "summary", "category_name", "index_no",
    #: "published_at", "url"}, in publication order (empty for item events)
    items: tuple[dict[str, Any], ...] = ()
    #: how `body` is written ("text" or "markdown", publisher.models.BodyFormat); body_html
    #: and summary were rendered from it by the one renderer (publisher.text)
    body_format: str = "text"


@dataclass(frozen=True, slots=True)
class Target:
    """Who or where one delivery goes. `address` is personal data: never log it."""

    key: str  #: ledger target, e.g. "r:17" (recipient) or "e:3" (endpoint)
    channel: str
    address: str
    name: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    #: a subscriber's link nonce: what its unsubscribe / manage links are signed over
    link_nonce: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class Rendered:
    """The channel's rendering for one target; `body` is what goes out."""

    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    #: billed units the core records before sending (SMS segments)
    units: int | None = None
    preview: str | None = None


def secret_from(
    where: str, key: str, inline: str | None, env_name: str | None, environ: Mapping[str, str]
) -> str:
    """A secret given inline (`key`) or by the name of an environment variable (`<key>_env`);
    the error names the setting (`where`) and the variable, never the value."""
    if inline is not None:
        return inline
    from publisher.errors import ConfigError  # the core's error, as config errors are

    value = environ.get(env_name or "")
    if not value:
        raise ConfigError(f"{where}: {key}_env: the environment variable {env_name} is not set")
    return value


class ChannelSettings(BaseModel):
    """Per-channel settings under `channels.<name>.settings`; adapters subclass it."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_Settings = TypeVar("_Settings", bound=ChannelSettings)


def validated_settings(
    model: type[_Settings], where: str, settings: Any, *, tags: tuple[str, ...] = ()
) -> _Settings:
    """`settings` validated as `model`; otherwise ConfigError naming the first wrong key
    under `where` (the settings' place in the config, e.g. `channels.email.settings`).
    `tags`: the tags of a tagged union, which pydantic puts in the location and the
    config file does not have (dropped)."""
    try:
        return model.model_validate(settings)
    except ValidationError as exc:
        from publisher.errors import ConfigError  # the core's error, as config errors are

        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if p not in tags)
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        key = f"{where}.{loc}" if loc else where
        raise ConfigError(f"{key}: {msg.removeprefix('Value error, ')}") from None


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What the core lends an adapter besides its settings.

    Most adapters need only the site; a channel that publishes the catalogue as a
    whole (the feeds) reads the store through it. Adapters never write the store,
    except through the core's shared counters (publisher.spend: SMS segments per
    gateway per day).
    """

    config: Config
    store: SqlStore


class ChannelAdapter(ABC):
    name: ClassVar[str]
    limits: ClassVar[Limits] = Limits()
    Settings: ClassVar[type[ChannelSettings]] = ChannelSettings

    def __init__(
        self, settings: ChannelSettings, site: Any, context: AdapterContext | None = None
    ) -> None:
        self.settings = settings
        self.site = site
        self.context = context

    @classmethod
    def unconfigured(cls, settings: ChannelSettings) -> str | None:
        """Why the channel cannot send anything with these settings (no gateway, no server),
        or None when it can. Pure: the core asks it to report a channel's state (publisher.
        readiness) without starting the adapter; start() raises NotConfigured for the same."""
        return None

    @classmethod
    def dry_run(cls, settings: ChannelSettings) -> bool:
        """Whether these settings write what would be sent to files instead of sending it."""
        return False

    async def start(self, stack: AsyncExitStack) -> None:  # noqa: B027 - optional hook
        """Open sessions or pools; push their cleanup onto `stack`."""

    @abstractmethod
    def render(self, subject: Subject, target: Target) -> Rendered:
        """Pure rendering for one target. Raises PermanentDeliveryError if it cannot be rendered."""

    @abstractmethod
    async def deliver(self, rendered: Rendered, target: Target, *, delivery_id: str) -> Receipt:
        """One attempt. Returns a Receipt, or raises Transient/PermanentDeliveryError.

        `delivery_id` is stable across retries of the same ledger row, for
        idempotency keys (webhook-id, Message-ID).
        """
