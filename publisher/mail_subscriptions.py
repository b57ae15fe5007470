"""Subscribing by email: double opt-in, managing the subscription, leaving it.

- `request` validates the address (email-validator, no DNS), counts the request against
  per-IP and per-address limits kept in the store, and queues a confirmation mail (a
  transactional message: ledger subject "msg:<id>", first in line, never deferred) with
  a sealed, expiring link. Nothing about the resident is stored before they confirm,
  and the answer is the same whether or not the address is subscribed already.
- `confirm` subscribes with the consent recorded: method `email_confirmed`, the words
  shown on the confirmation page, the client's network, and when.
  A confirmation link works once, and only if it was issued after the address last
  unsubscribed, was suppressed or was erased (RevokedToken otherwise): the hash of a
  used token is kept until the token would have expired.
- `update` / `leave` act on the subscriber a signed manage or unsubscribe link names,
  checked against that subscriber's link nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from channels.mail import MailSettings, render_pair
from publisher.addresses import mask, normalize
from publisher.config import Config
from publisher.derived import derived_key
from publisher.errors import NotFound, ValidationFailed
from publisher.mail_links import ConfirmRequest, LinkPurpose, MailLinks, RevokedToken
from publisher.messages import queue_message
from publisher.ratelimit import Limit, hit
from publisher.readiness import require_channel
from publisher.recipients import Consent, Frequency, Recipient, Recipients, RecipientStatus
from publisher.store import schema as t
from publisher.store.sql import SqlStore, insert_for, utcnow
from publisher.subscriptions import DAY, HOUR, TooManyRequests, network_of

CHANNEL = "email"
FREQUENCY_NAMES = {Frequency.IMMEDIATE: "每条信息发布时", Frequency.DAILY: "每日摘要"}


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def category_names(config: Config, slugs: list[str] | tuple[str, ...]) -> str:
    if not slugs:
        return "全部栏目"
    return "、".join(c.name for c in config.taxonomy if c.slug in slugs)


class EmailSubscriptions:
    def __init__(self, store: SqlStore, settings: MailSettings) -> None:
        self.store = store
        self.config: Config = store.config
        self.settings = settings
        self.recipients = Recipients(store)
        self.links = MailLinks(self.config, settings.link_base_url)
        self._key = derived_key(self.config, "subscribe/email")

    @property
    def ttl_seconds(self) -> int:
        return self.settings.confirm_ttl_hours * HOUR

    def consent_text(self) -> str:
        return self.settings.consent_text.format(site=self.config.site.name)

    def _ip_key(self, ip: str | None) -> str:
        return hmac.new(self._key, f"ip:{ip or ''}".encode(), hashlib.sha256).hexdigest()

    def _categories(self, categories: list[str]) -> list[str]:
        cats = sorted(set(categories))
        self.recipients._check_categories(cats)
        return cats

    # -- double opt-in -------------------------------------------------------------------------

    async def request(
        self, address: str, categories: list[str], frequency: str | None, ip: str | None
    ) -> dict[str, Any]:
        """Queue a confirmation mail (TooManyRequests past a limit); returns the answer.
        ChannelUnavailable when no SMTP server (nor a dry-run outbox) would send it."""
        require_channel(self.store.config, CHANNEL)
        addr = normalize(CHANNEL, address)
        cats = self._categories(categories)
        try:
            freq = Frequency(frequency or Frequency.IMMEDIATE.value)
        except ValueError:
            raise ValidationFailed("frequency: must be immediate or daily") from None
        h = self.recipients.box.hash(CHANNEL, addr)
        s = self.settings
        wait = await hit(
            self.store,
            [
                (Limit("email_ip_hour", s.requests_per_ip_hour, HOUR), self._ip_key(ip)),
                (Limit("email_address_hour", s.requests_per_address_hour, HOUR), h),
                (Limit("email_address_day", s.requests_per_address_day, DAY), h),
            ],
        )
        if wait is not None:
            raise TooManyRequests("too many subscription requests; try again later", wait)
        token = self.links.confirm_token(addr, cats, freq.value, self.ttl_seconds)
        site = self.config.site
        text, html = render_pair(
            "confirm",
            site_name=site.name,
            agency=site.agency,
            categories=category_names(self.config, cats),
            frequency=FREQUENCY_NAMES[freq],
            hours=s.confirm_ttl_hours,
            confirm_url=self.links.confirm_url(token),
        )
        body = json.dumps(
            {"subject": f"请确认订阅{site.name}的邮件", "text": text, "html": html},
            ensure_ascii=False,
        )
        await queue_message(self.store, CHANNEL, addr, body, purpose="confirm_email")
        return {
            "status": "confirmation_sent",
            "channel": CHANNEL,
            "address": mask(addr),
            "expires_in": self.ttl_seconds,
        }

    async def check(self, token: str) -> ConfirmRequest:
        """The request behind a confirmation link that can still be used (BadToken /
        ExpiredToken / RevokedToken otherwise)."""
        req = self.links.confirm_request(token)
        h = self.recipients.box.hash(CHANNEL, normalize(CHANNEL, req.address))
        async with self.store.read() as conn:
            await self._usable(conn, token, req, h)
        return req

    async def _usable(self, conn: Any, token: str, req: ConfirmRequest, h: str) -> None:
        """RevokedToken if `token` was used, or issued before the address last left."""
        used = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(t.used_confirmations)
            .where(t.used_confirmations.c.token_hash == _token_hash(token))
        )
        if used:
            raise RevokedToken("used already")
        floor = await conn.scalar(
            sa.select(t.confirm_floors.c.not_before).where(
                t.confirm_floors.c.channel == CHANNEL, t.confirm_floors.c.address_hash == h
            )
        )
        if floor is not None and req.issued_at <= floor.timestamp():
            raise RevokedToken("issued before the address last left")

    async def confirm(self, token: str, ip: str | None) -> Recipient:
        """Subscribe as the link asks, recording the consent shown on the page; the link is
        used up in the same transaction (BadToken / ExpiredToken / RevokedToken otherwise)."""
        req = self.links.confirm_request(token)
        # a category removed from the taxonomy since the mail was sent is dropped
        cats = [c for c in req.categories if self.config.category(c) is not None]
        used = t.used_confirmations

        async def use_up(conn: Any, h: str) -> None:
            now = utcnow()
            await conn.execute(used.delete().where(used.c.expires_at <= now))
            await self._usable(conn, token, req, h)
            inserted = await conn.execute(
                insert_for(conn)(used)
                .values(
                    token_hash=_token_hash(token),
                    expires_at=datetime.fromtimestamp(req.expires_at, UTC),
                )
                .on_conflict_do_nothing(index_elements=["token_hash"])
            )
            if inserted.rowcount == 0:  # a concurrent click won
                raise RevokedToken("used already")

        return await self.recipients.subscribe(
            CHANNEL,
            req.address,
            Consent(
                method="email_confirmed",
                text=self.consent_text(),
                source=f"web {network_of(ip)}",
            ),
            categories=cats,
            frequency=Frequency(req.frequency),
            guard=use_up,
        )

    # -- managing and leaving ---------------------------------------------------------------------

    async def by_token(self, purpose: LinkPurpose, token: str) -> Recipient:
        """The subscriber a manage / unsubscribe link was made for (BadToken if malformed;
        NotFound if it is not signed for `purpose` and that subscriber's link nonce, which
        is the case once the subscriber is erased)."""
        rid = self.links.recipient_id(token)
        r = t.recipients
        async with self.store.read() as conn:
            row = (
                await conn.execute(sa.select(r).where(r.c.id == rid, r.c.channel == CHANNEL))
            ).first()
        if row is None or not self.links.matches(
            purpose, token, row.link_nonce, legacy=bool(row.legacy_links)
        ):
            raise NotFound("no such subscription")
        return self.recipients._recipient(row)

    async def update(
        self, recipient: Recipient, categories: list[str], frequency: str
    ) -> Recipient:
        if recipient.status is not RecipientStatus.ACTIVE:
            raise ValidationFailed("this address is not subscribed")
        cats = self._categories(categories)
        try:
            freq = Frequency(frequency)
        except ValueError:
            raise ValidationFailed("frequency: must be immediate or daily") from None
        async with self.store.write() as conn:
            await conn.execute(
                t.recipients.update()
                .where(t.recipients.c.id == recipient.id)
                .values(categories=cats, frequency=freq.value, updated_at=utcnow())
            )
        return await self.recipients.get(CHANNEL, recipient.address)

    async def leave(self, recipient: Recipient, how: str) -> None:
        await self.recipients.unsubscribe(CHANNEL, recipient.address, how=how)
