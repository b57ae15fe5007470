"""SMS through a gateway: Kannel's HTTP sendsms interface (bearerbox + smsbox).

One attempt is one `GET cgi-bin/sendsms` with the text in UTF-8 (`coding=2`, UCS-2 on
the air, unless the text is plain GSM-7) and a `dlr-url` back to our `/sms/dlr`. That
URL names the ledger row and carries a token (HMAC of the row id, key derived from
the data key or `dlr_secret`), so a forged report is refused; the row stays `sent`
until the report comes (Limits(receipts=True)).

The text itself (segments, truncation, signature, opt-out line) is composed by the
pure functions in channels.sms_text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import aiohttp
import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from channels.base import (
    ChannelAdapter,
    ChannelSettings,
    DeferDelivery,
    Limits,
    NotConfigured,
    PermanentDeliveryError,
    Receipt,
    ReceiptState,
    Rendered,
    Subject,
    Target,
    TransientDeliveryError,
    secret_from,
    validated_settings,
)
from channels.gateway_http import exchange
from channels.outbox import check_loopback, outbox_path, write_message
from channels.sms_aliyun import AliyunGateway, AliyunGatewaySettings, template_text
from channels.sms_text import (
    KANNEL_DLR_MASK,
    Composition,
    Encoding,
    compose,
    plain_message,
    segments,
    signature,
)
from publisher.addresses import region_of
from publisher.config import Config
from publisher.derived import derived_key
from publisher.errors import ConfigError
from publisher.spend import DailySpend, SpendAllowance, next_day_start
from publisher.store.sql import utcnow
from publisher.tokens import same_token

log = logging.getLogger("publisher.sms")

#: the Subject.kind of a transactional message (verification code): no opt-out line
MESSAGE_KIND = "message"
#: item events an SMS is sent for (the others are never planned for sms)
ITEM_KINDS = frozenset({"published", "corrected"})
#: how much of a gateway's refusal is kept for staff
ERROR_CHARS = 300


class GatewaySettings(BaseModel):
    """One gateway under `channels.sms.settings.gateways` (tried in list order)."""

    # errors never echo a value: a password may be among them
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(default="kannel", min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")
    type: Literal["kannel"] = "kannel"
    #: smsbox's sendsms URL
    url: str = Field(default="http://127.0.0.1:13013/cgi-bin/sendsms", pattern=r"^https?://")
    username: str = Field(min_length=1)
    #: the password inline, or the name of an environment variable holding it
    password: str | None = None
    password_env: str | None = None
    #: the sender number (Kannel refuses a message without one)
    sender: str = Field(min_length=1, max_length=20)
    #: an smsc-id to route through (Kannel's `smsc` parameter); none: Kannel's routing
    smsc: str | None = None
    #: the gateway (or the carrier) puts the approved 【signature】 in front itself
    adds_signature: bool = False
    #: the opt-out line at the end of subscription messages (never on transactional ones)
    opt_out: str = "回复TD退订"
    #: how `to` is written (always derived from the E.164 number):
    #: `national`: numbers of `home_region` as their national significant number
    #: (13800138000), every other number in the international form with the `00`
    #: prefix (00449098790000) — never a foreign number's national digits, which the
    #: SMSC would dial as a number of its own country; `international`: every number
    #: with `00` (008613800138000); `e164`: every number with `+` (+8613800138000;
    #: for SMSCs configured with a `unified-prefix` that takes it)
    number_format: Literal["national", "international", "e164"] = "national"
    #: the region whose numbers `national` writes nationally (the SMSC's own country)
    home_region: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    #: segments this gateway may send per local day of the site (none: no cap)
    daily_segment_cap: int | None = Field(default=None, ge=1)
    timeout: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _one_password(self) -> GatewaySettings:
        if (self.password is None) == (self.password_env is None):
            raise ValueError("give exactly one of password or password_env")
        return self

    def resolve_password(self, environ: Mapping[str, str]) -> str:
        where = f"channels.sms.settings.gateways ({self.name})"
        return secret_from(where, "password", self.password, self.password_env, environ)


class OutboxGatewaySettings(BaseModel):
    """A dry-run gateway (`type: outbox`): each message is written to a file under `dir`
    (default data/outbox/sms) instead of being sent. Refused at start unless
    site.base_url is a loopback address (channels.outbox)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="outbox", min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")
    type: Literal["outbox"]
    #: the folder (relative paths: to config.yaml's folder)
    dir: str | None = Field(default=None, min_length=1)
    adds_signature: bool = False
    opt_out: str = "回复TD退订"
    daily_segment_cap: int | None = Field(default=None, ge=1)


def _gateway_type(value: Any) -> str:
    kind = value.get("type", "kannel") if isinstance(value, dict) else getattr(value, "type", None)
    return str(kind or "kannel")


#: one gateway entry: Kannel (the default type), Alibaba Cloud SMS or a dry-run outbox
AnyGateway = Annotated[
    Annotated[GatewaySettings, Tag("kannel")]
    | Annotated[AliyunGatewaySettings, Tag("aliyun")]
    | Annotated[OutboxGatewaySettings, Tag("outbox")],
    Discriminator(_gateway_type),
]
#: the settings of any one gateway
AnyGatewaySettings = GatewaySettings | AliyunGatewaySettings | OutboxGatewaySettings


class SmsSettings(ChannelSettings):
    """`channels.sms.settings`."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    #: gateways in order of preference; none: the channel waits (rows stay queued)
    gateways: list[AnyGateway] = Field(default_factory=list)
    #: the 【signature】 text; default site.name
    signature: str | None = Field(default=None, min_length=1, max_length=30)
    #: most billed parts one item's message may take (title and summary are cut to fit)
    max_segments: int = Field(default=3, ge=1, le=10)
    #: where Kannel sends delivery reports (this service, as Kannel reaches it); default site.base_url
    callback_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    #: key for the report tokens; default: derived from security.data_key
    dlr_secret: str | None = Field(default=None, min_length=16)
    #: the shared secret in the get-url Kannel's sms-service calls (/sms/inbound);
    #: none: inbound keywords are refused
    inbound_secret: str | None = Field(default=None, min_length=16)
    #: the words a resident agrees to when subscribing (recorded with the consent)
    consent_text: str = Field(
        default="我同意接收{site}发送的政府信息公开短信，可随时回复TD退订。", min_length=1
    )
    #: web subscription codes: lifetime, tries
    code_ttl_seconds: int = Field(default=600, ge=60, le=86400)
    code_attempts: int = Field(default=5, ge=1, le=20)
    #: code requests allowed per number per hour and per day, and per client IP per hour
    codes_per_number_hour: int = Field(default=3, ge=1)
    codes_per_number_day: int = Field(default=10, ge=1)
    codes_per_ip_hour: int = Field(default=20, ge=1)
    #: verification attempts allowed per client IP per hour (across numbers)
    verifies_per_ip_hour: int = Field(default=60, ge=1)
    #: the regions (ISO 3166 codes) whose numbers may subscribe and be sent to; a
    #: number of any other region is refused at subscription and never reaches a gateway
    allowed_regions: list[str] = Field(default_factory=lambda: ["CN"], min_length=1)
    #: verification codes sent per hour across all numbers (a ceiling against SMS
    #: pumping): when it is reached no code is sent until the hour is over, and
    #: /metrics and the staff home page say so
    max_codes_per_hour: int = Field(default=200, ge=1)
    #: transient failures in a row after which a gateway rests and the next one is used
    failover_after: int = Field(default=3, ge=1, le=100)
    #: how long a failing gateway rests before it is tried again (seconds)
    failover_cooldown_seconds: float = Field(default=300.0, gt=0, le=86400)

    @field_validator("gateways")
    @classmethod
    def _unique_names(cls, value: list[AnyGatewaySettings]) -> list[AnyGatewaySettings]:
        names = [g.name for g in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"gateway name {name!r} appears twice")
        return value

    @field_validator("allowed_regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        known = phonenumbers.SUPPORTED_REGIONS
        for region in value:
            if region not in known:
                raise ValueError(f"{region!r} is not a region code phonenumbers knows (CN, HK …)")
        return value

    @property
    def regions(self) -> frozenset[str]:
        return frozenset(self.allowed_regions)

    @model_validator(mode="after")
    def _cap_fits_a_message(self) -> SmsSettings:
        for n, g in enumerate(self.gateways):
            if g.daily_segment_cap is not None and g.daily_segment_cap < self.max_segments:
                raise ValueError(
                    f"gateways.{n}.daily_segment_cap: {g.daily_segment_cap} is less than "
                    f"max_segments ({self.max_segments}): no item could ever be sent"
                )
        return self


def sms_settings(config: Config) -> SmsSettings:
    """The validated `channels.sms.settings`; ConfigError naming the key otherwise."""
    # the gateway type is a tag in pydantic's location (gateways.0.aliyun.url): dropped
    return validated_settings(
        SmsSettings, "channels.sms.settings", config.channels.sms.settings,
        tags=("kannel", "aliyun", "outbox"),
    )  # fmt: skip


def signature_text(config: Config, settings: SmsSettings) -> str:
    return settings.signature or config.site.name


# -- delivery-report tokens ---------------------------------------------------------------


def dlr_key(config: Config, settings: SmsSettings) -> bytes:
    if settings.dlr_secret:
        return hashlib.sha256(settings.dlr_secret.encode()).digest()
    return derived_key(config, "sms/dlr")


def dlr_token(key: bytes, delivery_id: str) -> str:
    """The token a report for `delivery_id` must carry (128 bits, URL-safe)."""
    mac = hmac.new(key, f"dlr:{delivery_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")


def check_dlr_token(key: bytes, delivery_id: str, token: str) -> bool:
    return same_token(dlr_token(key, delivery_id), token)


def callback_base(config: Config, settings: SmsSettings) -> str:
    return (settings.callback_base_url or config.site.base_url).rstrip("/")


# -- numbers ---------------------------------------------------------------------------------


def allowed_regions(config: Config) -> frozenset[str]:
    """The regions whose numbers may subscribe (`channels.sms.settings.allowed_regions`).
    With another adapter (`channels.sms.adapter`), whose settings are its own, the same
    key is read if it is there; otherwise, and for settings that do not validate, the
    default: CN alone (the strict answer)."""
    try:
        return sms_settings(config).regions
    except ConfigError:
        raw = config.channels.sms.settings
        given = raw.get("allowed_regions") if isinstance(raw, dict) else None
        if isinstance(given, list) and given and all(isinstance(r, str) for r in given):
            return frozenset(given)
        return frozenset({"CN"})


def gateway_number(e164: str, fmt: str, home_region: str = "CN") -> str:
    """The number as Kannel's `to` gets it, derived from E.164 (see GatewaySettings.
    number_format): `e164` +CCNNN; `international` 00CCNNN; `national` the national
    significant number for a number of `home_region`, 00CCNNN for any other."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        raise PermanentDeliveryError("not a phone number", reason="bad_address") from None
    if not e164.startswith("+") or not phonenumbers.is_valid_number(number):
        raise PermanentDeliveryError("not a phone number", reason="bad_address")
    national = phonenumbers.national_significant_number(number)
    if fmt == "e164":
        return f"+{number.country_code}{national}"
    if fmt == "national" and phonenumbers.region_code_for_number(number) == home_region:
        return national
    return f"00{number.country_code}{national}"


def check_destination(e164: str, regions: frozenset[str]) -> None:
    """Refuse (for good, reason `region_not_allowed`) a number outside `regions`."""
    region = region_of(e164)
    if region is None or region not in regions:
        raise PermanentDeliveryError(
            f"numbers of {region or 'no region'} are not sent to "
            f"(channels.sms.settings.allowed_regions: {', '.join(sorted(regions))})",
            reason="region_not_allowed",
        )


# -- gateways --------------------------------------------------------------------------------


class KannelGateway:
    """Kannel's smsbox: GET sendsms; 202 accepted; 4xx refused for good; 5xx and connection
    faults before the request was sent are retried. No answer after the request was sent is
    NOT retried (Kannel may have taken it: a second attempt could send it twice)."""

    type = "kannel"

    def __init__(
        self,
        settings: GatewaySettings,
        password: str,
        session: aiohttp.ClientSession,
        dlr_base: str,
        key: bytes,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.password = password
        self.session = session
        self.dlr_base = dlr_base
        self.key = key

    def params(self, text: str, to: str, delivery_id: str) -> dict[str, str]:
        s = self.settings
        token = dlr_token(self.key, delivery_id)
        params = {
            "username": s.username,
            "password": self.password,
            "from": s.sender,
            "to": gateway_number(to, s.number_format, s.home_region),
            "text": text,
            "charset": "UTF-8",
            "coding": "0" if segments(text).encoding is Encoding.GSM7 else "2",
            "dlr-mask": str(KANNEL_DLR_MASK),
            # Kannel fills in %d (the report's status) and %T (its time)
            "dlr-url": f"{self.dlr_base}/sms/dlr?id={delivery_id}&t={token}&status=%d&ts=%T",
        }
        if s.smsc:
            params["smsc"] = s.smsc
        return params

    async def send(self, text: str, to: str, delivery_id: str) -> str:
        """Returns the provider id; raises Transient/PermanentDeliveryError."""
        where = f"sms gateway {self.name!r}"
        status, raw = await exchange(
            self.session, "GET", self.settings.url, where=where, seconds=self.settings.timeout,
            params=self.params(text, to, delivery_id),
        )  # fmt: skip
        body = raw.decode("utf-8", "replace").strip()[:ERROR_CHARS]
        if 200 <= status < 300:
            return f"{self.name}:{delivery_id}"
        said = f"{where}: HTTP {status}: {body}"
        if status >= 500 or status in (408, 429):
            raise TransientDeliveryError(said)
        if status in (401, 403):
            raise PermanentDeliveryError(said, reason="misconfigured")
        raise PermanentDeliveryError(said, reason="rejected")


class OutboxGateway:
    """A dry run: the message is written to a file (one per message) and counts as sent."""

    type = "outbox"

    def __init__(self, settings: OutboxGatewaySettings, directory: Path) -> None:
        self.settings = settings
        self.name = settings.name
        self.directory = directory

    async def send(self, text: str, to: str, delivery_id: str) -> str:
        body = (
            f"To: {to}\nGateway: {self.name} (dry run: not sent)\nDelivery: {delivery_id}\n"
            f"Segments: {segments(text).parts}\n\n{text}\n"
        )
        try:
            path = write_message(self.directory, delivery_id, "txt", body.encode())
        except OSError as exc:
            raise TransientDeliveryError(f"sms outbox {self.name!r}: {exc}") from None
        return f"{self.name}:{path.name}"


# -- failover ------------------------------------------------------------------------------


@dataclass
class Health:
    """A gateway's recent luck, in this worker process: transient failures in a row, and
    until when it rests (time.monotonic()). After `failover_after` failures in a row it
    rests for the cool-down; then it is tried again first, and one more failure sends it
    back to rest, one success makes it healthy."""

    failures: int = 0
    resting_until: float = 0.0

    def resting(self, now: float) -> bool:
        return now < self.resting_until


Gateway = KannelGateway | AliyunGateway | OutboxGateway

#: a verification code in a transactional message's text (for a template's ${code})
CODE_IN_TEXT = re.compile(r"(?<!\d)\d{4,8}(?!\d)")


@dataclass(frozen=True, slots=True)
class SmsRendered(Rendered):
    """The rendering for the first gateway, and the subject, to compose for another one
    when the first is resting or has used up its day."""

    subject: Subject | None = None


# -- the adapter ---------------------------------------------------------------------------


class SmsChannel(ChannelAdapter):
    """Item events and transactional messages as SMS, through the configured gateways
    in order of preference, failing over to the next when one keeps failing, and within
    each gateway's daily spend cap."""

    name: ClassVar[str] = "sms"
    # a crash-cut attempt may have reached the phone: such rows become `unknown`
    limits: ClassVar[Limits] = Limits(
        concurrency=20, receipts=True, repeatable=False, subscribers=True
    )
    Settings: ClassVar[type[ChannelSettings]] = SmsSettings

    #: where password_env / access_key_secret_env are looked up (tests may lend another)
    environ: Mapping[str, str] = os.environ

    def __init__(self, settings: ChannelSettings, site: Any, context: Any = None) -> None:
        super().__init__(settings, site, context)
        assert isinstance(settings, SmsSettings)
        self.sms: SmsSettings = settings
        self.signature = signature(settings.signature or site.name)
        self._links: Any = None
        self.gateways: list[Gateway] = []
        self.health: dict[str, Health] = {}
        self._spend: DailySpend | None = None
        self._allowance: SpendAllowance | None = None
        #: gateway name -> the local day on which its cap was found reached (no store
        #: round trip for every further message that day)
        self._full: dict[str, str] = {}

    def _shortlinks(self) -> Any:
        if self._links is None and self.context is not None:
            from publisher.shortlinks import ShortLinks

            self._links = ShortLinks(self.context.config)
        return self._links

    @property
    def primary(self) -> AnyGatewaySettings | None:
        return self.sms.gateways[0] if self.sms.gateways else None

    @classmethod
    def unconfigured(cls, settings: ChannelSettings) -> str | None:
        if isinstance(settings, SmsSettings) and not settings.gateways:
            return "no SMS gateway configured (channels.sms.settings.gateways)"
        return None

    @classmethod
    def dry_run(cls, settings: ChannelSettings) -> bool:
        return isinstance(settings, SmsSettings) and any(
            isinstance(g, OutboxGatewaySettings) for g in settings.gateways
        )

    async def start(self, stack: AsyncExitStack) -> None:
        why = self.unconfigured(self.sms)
        if why is not None:
            raise NotConfigured(why)
        if self.context is None:
            raise ConfigError("channels.sms: the adapter needs the service's config")
        config = self.context.config
        for g in self.sms.gateways:
            if isinstance(g, OutboxGatewaySettings):
                check_loopback(config, f"channels.sms.settings.gateways ({g.name})")
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        key = dlr_key(config, self.sms)
        base = callback_base(config, self.sms)
        gateways: list[Gateway] = []
        for g in self.sms.gateways:
            if isinstance(g, OutboxGatewaySettings):
                gateways.append(OutboxGateway(g, outbox_path(config, g.dir, "sms")))
            elif isinstance(g, AliyunGatewaySettings):
                gateways.append(AliyunGateway(g, g.resolve_secret(self.environ), session))
            else:
                gateways.append(
                    KannelGateway(g, g.resolve_password(self.environ), session, base, key)
                )
        self.gateways = gateways
        self.health = {g.name: Health() for g in gateways}
        self._spend = DailySpend(self.context.store)
        self._allowance = SpendAllowance(self._spend)
        # a stopping worker gives back the segments it reserved ahead and did not use
        stack.push_async_callback(self._allowance.close)

    # -- composing ---------------------------------------------------------------------------

    def variables(self, subject: Subject) -> dict[str, str]:
        """A template gateway's variables: title, summary, link, short for an item; code
        for a transactional message (the verification code in its text)."""
        if subject.kind == MESSAGE_KIND:
            found = CODE_IN_TEXT.search(subject.body)
            if found is None:
                raise PermanentDeliveryError(
                    "a template gateway sends codes only, and this message has none",
                    reason="no_template",
                )
            return {"code": found.group()}
        self._check_item(subject)
        assert subject.item_id is not None
        links = self._shortlinks()
        link = links.url(subject.item_id) if links is not None else subject.public_url
        title = subject.title if subject.kind == "published" else f"【更正】{subject.title}"
        return {
            "title": title.replace("【", "[").replace("】", "]"),  # 【】 only for the signature
            "summary": subject.summary,
            "link": link,
            "short": link.rsplit("/", 1)[-1],
        }

    @staticmethod
    def _check_item(subject: Subject) -> None:
        if subject.kind not in ITEM_KINDS or subject.item_id is None:
            raise PermanentDeliveryError(
                f"sms takes published and corrected items, not {subject.kind!r}",
                reason="unknown_subject",
            )

    def compose_for(self, subject: Subject, gateway: AnyGatewaySettings | None) -> Composition:
        """The text `gateway` gets for `subject` (pure; the preview shows it too). For a
        template gateway: the approved template filled in, after the signature the
        platform adds (what the phone shows and what is billed)."""
        if isinstance(gateway, AliyunGatewaySettings):
            text = template_text(gateway, subject.kind, self.variables(subject))
            return Composition(text, segments(text), False)
        sig = "" if gateway is not None and gateway.adds_signature else self.signature
        if subject.kind == MESSAGE_KIND:
            return plain_message(subject.body, sig)
        self._check_item(subject)
        assert subject.item_id is not None
        links = self._shortlinks()
        link = links.url(subject.item_id) if links is not None else subject.public_url
        title = subject.title if subject.kind == "published" else f"【更正】{subject.title}"
        return compose(
            title=title,
            summary=subject.summary,
            link=link,
            signature_text=sig,
            opt_out=gateway.opt_out if gateway is not None else "回复TD退订",
            max_parts=self.sms.max_segments,
        )

    def render(self, subject: Subject, target: Target) -> Rendered:
        text = self.compose_for(subject, self.primary)
        return SmsRendered(
            body=text.text.encode(),
            units=text.segments.parts,
            preview=text.text,
            subject=subject,
        )

    # -- sending -------------------------------------------------------------------------------

    def _choose(self, transactional: bool) -> list[Gateway]:
        """Gateways to try, in order: those not resting. A transactional message (a resident
        waits for the code) falls back to all of them when every one rests."""
        now = time.monotonic()
        awake = [g for g in self.gateways if not self.health[g.name].resting(now)]
        if awake or not transactional:
            return awake
        return sorted(self.gateways, key=lambda g: self.health[g.name].resting_until)

    def _failed(self, gateway: Gateway) -> None:
        h = self.health[gateway.name]
        h.failures += 1
        if h.failures >= self.sms.failover_after:
            if not h.resting(time.monotonic()):
                log.warning(
                    "sms gateway %r failed %d times in a row; it rests for %.0f s%s",
                    gateway.name,
                    h.failures,
                    self.sms.failover_cooldown_seconds,
                    "" if len(self.gateways) > 1 else " (no other gateway to use meanwhile)",
                )
            h.resting_until = time.monotonic() + self.sms.failover_cooldown_seconds

    def _succeeded(self, gateway: Gateway) -> None:
        h = self.health[gateway.name]
        if h.failures >= self.sms.failover_after:
            log.warning("sms gateway %r answers again; it is used again", gateway.name)
        h.failures, h.resting_until = 0, 0.0

    async def _reserve(self, gateway: Gateway, units: int, transactional: bool) -> str | None:
        """Count `units` against the gateway's cap for today. Returns the day they were
        counted on (to give them back), "" when the gateway has no cap, None when the
        cap is reached. Transactional messages are counted but never refused."""
        cap = gateway.settings.daily_segment_cap
        if cap is None:
            return ""
        assert self._spend is not None and self._allowance is not None
        day = self._spend.day()
        counter = f"sms:{gateway.name}"
        if transactional:  # counted as it goes, never refused
            await self._spend.reserve(counter, units, cap=None)
            return day
        if self._full.get(gateway.name) == day:
            return None
        taken = await self._allowance.take(counter, units, cap=cap)
        if taken is None:
            self._full[gateway.name] = day
        return taken

    async def _release(
        self, gateway: Gateway, units: int, day: str, *, transactional: bool
    ) -> None:
        if day and self._spend is not None and self._allowance is not None:
            counter = f"sms:{gateway.name}"
            if transactional:
                await self._spend.release(counter, units, day)
            else:
                await self._allowance.give_back(counter, units, day)
            self._full.pop(gateway.name, None)

    async def deliver(self, rendered: Rendered, target: Target, *, delivery_id: str) -> Receipt:
        assert isinstance(rendered, SmsRendered) and rendered.subject is not None
        subject = rendered.subject
        transactional = subject.kind == MESSAGE_KIND
        # a number that slipped in (an old subscriber, a changed setting) never reaches a gateway
        check_destination(target.address, self.sms.regions)
        candidates = self._choose(transactional)
        if not candidates:
            wake = min(self.health[g.name].resting_until for g in self.gateways)
            raise DeferDelivery(
                "every sms gateway is resting after repeated failures",
                reason="gateways_resting",
                until=utcnow() + timedelta(seconds=max(1.0, wake - time.monotonic())),
            )
        for gateway in candidates:
            if gateway.settings == self.primary:
                text, units = rendered.body.decode(), rendered.units or 0
            else:
                composed = self.compose_for(subject, gateway.settings)
                text, units = composed.text, composed.segments.parts
            day = await self._reserve(gateway, units, transactional)
            if day is None:
                continue  # this gateway's day is used up: the next one, if any
            try:
                if isinstance(gateway, AliyunGateway):
                    variables = self.variables(subject)
                    provider_id = await gateway.send(
                        subject.kind, variables, target.address, delivery_id
                    )
                else:
                    provider_id = await gateway.send(text, target.address, delivery_id)
            except TransientDeliveryError:
                await self._release(gateway, units, day, transactional=transactional)
                self._failed(gateway)
                raise
            except PermanentDeliveryError as exc:
                if exc.reason == "no_answer":  # it may have gone out (and been billed)
                    self._failed(gateway)
                else:  # the gateway answered: it is up, this message is refused
                    await self._release(gateway, units, day, transactional=transactional)
                    self._succeeded(gateway)
                raise
            self._succeeded(gateway)
            return Receipt(ReceiptState.SENT, provider_id=provider_id, units=units)
        assert self._spend is not None
        until = next_day_start(utcnow(), self._spend.tz)
        raise DeferDelivery(
            "the daily spend cap of every sms gateway is reached",
            reason="spend_cap",
            until=until,
        )
