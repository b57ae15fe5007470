"""Subscribing from the web with a code sent to the address (SMS for now), and leaving
the same way.

`request_code` sends a 6-digit code as a transactional message; `verify` checks it and
subscribes with the consent recorded (method web_verified, the words agreed to, the
client's network). A code asked for with `purpose="leave"` works only for
`verify_leave`, which unsubscribes (and suppresses) the number, and the other way round.
Every answer is the same whether or not the address is subscribed already, so none
tells anyone who subscribes. Codes are kept only as an HMAC,
expire, and allow a few tries; requests are rate-limited per address and per client
IP in the store (SMS pumping costs real money).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import sqlalchemy as sa

from publisher.addresses import check_region, mask
from publisher.derived import derived_key
from publisher.errors import ConfigError, PublisherError, ValidationFailed
from publisher.messages import queue_message
from publisher.metrics import METRICS
from publisher.ratelimit import Limit, hit
from publisher.readiness import require_channel
from publisher.recipients import Consent, Recipient, Recipients
from publisher.store import schema as t
from publisher.store.sql import SqlStore, insert_for, utcnow
from publisher.tokens import same_token

log = logging.getLogger("publisher.subscriptions")

HOUR = 3600
DAY = 86400
#: the one refusal a wrong, expired, used-up or never-requested code gets
WRONG_CODE = "code: wrong or expired; request a new code"


class TooManyRequests(PublisherError):
    status = 429
    kind = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail, retry_after=int(retry_after) + 1)
        self.retry_after = int(retry_after) + 1


@dataclass(frozen=True, slots=True)
class CodePolicy:
    ttl_seconds: int = 600
    attempts: int = 5
    per_number_hour: int = 3
    per_number_day: int = 10
    per_ip_hour: int = 20
    verifies_per_ip_hour: int = 60
    #: the code message; {code}, {minutes}, {site}
    text: str = (
        "您的验证码是{code}，{minutes}分钟内有效，用于订阅{site}短信。如非本人操作，请忽略。"
    )
    #: the code message for leaving; {code}, {minutes}, {site}
    leave_text: str = (
        "您的验证码是{code}，{minutes}分钟内有效，用于退订{site}短信。如非本人操作，请忽略。"
    )
    #: what the resident agrees to; {site}
    consent_text: str = "我同意接收{site}发送的政府信息公开短信，可随时回复TD退订。"
    #: the regions whose numbers may ask for a code (channels.sms.settings.allowed_regions)
    regions: frozenset[str] = frozenset({"CN"})
    #: codes sent per hour across all numbers (channels.sms.settings.max_codes_per_hour)
    max_codes_per_hour: int = 200


class CodeCeilingReached(PublisherError):
    """The hourly ceiling of codes across all numbers is reached: no code is sent."""

    status = 503
    kind = "sms-code-ceiling"
    title = "Verification codes paused"

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            "no verification code can be sent now: the hourly ceiling of codes for all "
            "numbers is reached; try again later",
            retry_after=int(retry_after) + 1,
        )
        self.retry_after = int(retry_after) + 1


#: the bucket and key of the global hourly ceiling (one counter for every number)
GLOBAL_BUCKET = "code_global_hour"
GLOBAL_KEY = "all"


def client_network(ip: str | None) -> str:
    """What the per-client limits count on: an IPv4 address itself, an IPv6 address's
    /64 (one subscriber's line gets a whole /64, and rotating within it is free); an
    IPv4-mapped IPv6 address is its IPv4 address."""
    if not ip:
        return "unknown"
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        return str(addr)
    return str(ipaddress.ip_network(f"{addr}/64", strict=False))


async def codes_this_hour(store: SqlStore, *, now: float | None = None) -> int:
    """How many codes were asked for (past the per-client limits) in the current hour."""
    now = time.time() if now is None else now
    start = int(now // HOUR) * HOUR
    c = t.rate_counters
    async with store.read() as conn:
        count = await conn.scalar(
            sa.select(c.c.count).where(
                c.c.bucket == GLOBAL_BUCKET, c.c.key == GLOBAL_KEY, c.c.window_start == start
            )
        )
    return int(count or 0)


@dataclass(frozen=True, slots=True)
class CodeCeiling:
    """This hour's codes against the ceiling (for /metrics and the staff home page)."""

    sent: int
    ceiling: int

    @property
    def reached(self) -> bool:
        return self.sent >= self.ceiling


async def code_ceiling(store: SqlStore) -> CodeCeiling | None:
    """The ceiling's state; None when SMS is off or its settings are not valid."""
    from channels.sms import sms_settings  # channels.sms needs the core first

    if not store.config.channels.sms.enabled:
        return None
    try:
        ceiling = sms_settings(store.config).max_codes_per_hour
    except ConfigError:
        return None
    return CodeCeiling(await codes_this_hour(store), ceiling)


def network_of(ip: str | None) -> str:
    """The client's network, not its address: /24 for IPv4, /48 for IPv6."""
    if not ip:
        return "unknown"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class CodeSubscriptions:
    def __init__(self, store: SqlStore, policy: CodePolicy) -> None:
        self.store = store
        self.policy = policy
        self.recipients = Recipients(store)
        self._key = derived_key(store.config, "subscribe/code")

    def _code_hash(self, address_hash: str, code: str, purpose: str = "subscribe") -> str:
        # a code for leaving is hashed with its purpose: it cannot subscribe, nor the reverse
        msg = (
            f"{address_hash}:{code}"
            if purpose == "subscribe"
            else f"{purpose}:{address_hash}:{code}"
        )
        return hmac.new(self._key, msg.encode(), hashlib.sha256).hexdigest()

    def _ip_key(self, ip: str | None) -> str:
        net = client_network(ip)
        return hmac.new(self._key, f"net:{net}".encode(), hashlib.sha256).hexdigest()

    def _normalize(self, channel: str, address: str) -> tuple[str, str]:
        """The E.164 number and its hash; RegionNotAllowed for a number of a region this
        site does not send to. The E.164 form is the destination as dialled: no gateway is
        given a foreign number's national digits (channels.sms.gateway_number), so two
        numbers that would ring the same phone have the same E.164 form and share limits."""
        if channel != "sms":
            raise ValidationFailed(f"channel: {channel!r} cannot be subscribed to here (only sms)")
        addr, h = self.recipients._norm(channel, address)
        check_region(addr, self.policy.regions)
        return addr, h

    async def request_code(
        self,
        channel: str,
        address: str,
        categories: list[str],
        ip: str | None,
        *,
        purpose: Literal["subscribe", "leave"] = "subscribe",
    ) -> dict[str, Any]:
        """Send a code (unless a limit is reached: TooManyRequests). Returns the answer.
        Codes for leaving count against the same limits. ChannelUnavailable when no
        gateway would send the code: nothing is promised that cannot happen."""
        require_channel(self.store.config, channel)
        addr, h = self._normalize(channel, address)
        cats = sorted(set(categories))
        self.recipients._check_categories(cats)
        p = self.policy
        wait = await hit(
            self.store,
            [
                (Limit("code_ip_hour", p.per_ip_hour, HOUR), self._ip_key(ip)),
                (Limit("code_number_hour", p.per_number_hour, HOUR), h),
                (Limit("code_number_day", p.per_number_day, DAY), h),
            ],
        )
        if wait is not None:
            raise TooManyRequests("too many code requests; try again later", wait)
        # the ceiling across all numbers, counted only for requests within their own limits
        wait = await hit(
            self.store, [(Limit(GLOBAL_BUCKET, p.max_codes_per_hour, HOUR), GLOBAL_KEY)]
        )
        if wait is not None:
            log.warning("sms code ceiling (%d an hour) reached: code refused", p.max_codes_per_hour)
            METRICS.code_ceiling_refused()
            raise CodeCeilingReached(wait)
        code = f"{secrets.randbelow(10**6):06d}"
        now = utcnow()
        values = {
            "categories": cats,
            "code_hash": self._code_hash(h, code, purpose),
            "attempts": 0,
            "expires_at": now + timedelta(seconds=p.ttl_seconds),
            "created_at": now,
        }
        async with self.store.write() as conn:
            insert = insert_for(conn)(t.verifications).values(
                channel=channel, address_hash=h, **values
            )
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["channel", "address_hash"], set_=values
                )
            )
        site = self.store.config.site.name
        template = p.leave_text if purpose == "leave" else p.text
        text = template.format(code=code, minutes=p.ttl_seconds // 60, site=site)
        await queue_message(
            self.store,
            channel,
            addr,
            text,
            purpose="leave_code" if purpose == "leave" else "verify_code",
        )
        return {
            "status": "code_sent",
            "channel": channel,
            "address": mask(addr),
            "expires_in": p.ttl_seconds,
        }

    async def verify(
        self, channel: str, address: str, code: str, ip: str | None
    ) -> tuple[Recipient, dict[str, Any]]:
        """Subscribe if `code` is right; ValidationFailed (one message for every reason)
        otherwise. Returns the subscriber and the answer."""
        addr, row = await self._check_code(channel, address, code, ip, "subscribe")
        p = self.policy
        site = self.store.config.site.name
        recipient = await self.recipients.subscribe(
            channel,
            addr,
            Consent(
                method="web_verified",
                text=p.consent_text.format(site=site),
                source=f"web {network_of(ip)}",
            ),
            categories=list(row.categories),
        )
        return recipient, {
            "status": "subscribed",
            "channel": channel,
            "address": mask(addr),
            "categories": list(recipient.categories),
        }

    async def verify_leave(self, channel: str, address: str, code: str, ip: str | None) -> None:
        """Unsubscribe (and suppress) the address if `code`, asked for with
        purpose="leave", is right; ValidationFailed otherwise, as `verify`."""
        addr, _ = await self._check_code(channel, address, code, ip, "leave")
        await self.recipients.unsubscribe(channel, addr, how=f"web_code {network_of(ip)}")

    async def _check_code(
        self, channel: str, address: str, code: str, ip: str | None, purpose: str
    ) -> tuple[str, Any]:
        """The address and its verification row once `code` is right for `purpose`; the row
        is used up. ValidationFailed (one message for every reason) otherwise."""
        addr, h = self._normalize(channel, address)
        p = self.policy
        wait = await hit(
            self.store, [(Limit("verify_ip_hour", p.verifies_per_ip_hour, HOUR), self._ip_key(ip))]
        )
        if wait is not None:
            raise TooManyRequests("too many attempts; try again later", wait)
        v = t.verifications
        where = sa.and_(v.c.channel == channel, v.c.address_hash == h)
        now = utcnow()
        async with self.store.write() as conn:
            row = (await conn.execute(self.store._lock(sa.select(v).where(where)))).first()
            if row is None or row.expires_at <= now or row.attempts >= p.attempts:
                raise ValidationFailed(WRONG_CODE)
            good = code.isdigit() and same_token(row.code_hash, self._code_hash(h, code, purpose))
            if not good:
                await conn.execute(v.update().where(where).values(attempts=row.attempts + 1))
        if not good:
            raise ValidationFailed(WRONG_CODE)
        async with self.store.write() as conn:
            await conn.execute(sa.delete(v).where(where))
        return addr, row
