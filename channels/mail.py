"""Email over SMTP (aiosmtplib): item events, daily digests and transactional mail.

The module is `mail`, never `email`: a `channels/email.py` would shadow the standard
library's `email` package wherever `channels/` lands on sys.path.

- **Render once, personalise cheaply.** A subject (an item event, a digest, a
  confirmation mail) is rendered from the Jinja2 templates in templates/mail/ once,
  with markers where the per-resident links go, and kept (a small LRU). For each
  resident only the To header, the Message-ID, List-Unsubscribe and the two links
  change: the message is assembled from bytes with string replacement and base64, no
  `email.message` objects on the hot path.
- **Stable Message-ID**: derived from the ledger subject and target, so a resend (a
  staff retry) carries the id the first attempt had and mail clients see one message.
- **RFC 8058**: `List-Unsubscribe` (an https link that also takes a one-click POST, and
  optionally a mailto) with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and
  `List-Id`. Transactional mail (a confirmation link) has neither.
- **A pool of persistent SMTP connections** (`connections`), each opened on first use
  and again after a drop (STARTTLS, implicit TLS or plain; AUTH when a username is
  given). One message per SMTP transaction, one recipient each: a refusal touches
  only that recipient.
- **Outcomes**: 2xx sent (final: email has no receipts); 4xx and connection faults
  transient (the core retries with backoff); 5xx for a recipient or the message
  permanent with reason `bounced` (the core counts hard bounces and suppresses the
  address after `bounce_limit`); 5xx for our sender address permanent `rejected`.
- **DKIM** (dkimpy) when `dkim_key_file` / `dkim_key_env` is set.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime
from functools import lru_cache
from html import unescape
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiosmtplib
import jinja2
from markupsafe import escape
from pydantic import ConfigDict, Field, model_validator

from channels.base import (
    ChannelAdapter,
    ChannelSettings,
    Limits,
    NotConfigured,
    PermanentDeliveryError,
    Receipt,
    ReceiptState,
    Rendered,
    Subject,
    Target,
    TransientDeliveryError,
    validated_settings,
)
from channels.outbox import check_loopback, outbox_path, write_message
from publisher.config import Config
from publisher.digests import DIGEST_KIND
from publisher.errors import ConfigError

log = logging.getLogger("publisher.mail")

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
#: Subject.kind of a transactional message (a confirmation link)
MESSAGE_KIND = "message"
ITEM_KINDS = frozenset({"published", "corrected"})
#: where the per-resident links go in the once-rendered parts (ASCII, never escaped)
UNSUBSCRIBE_MARK = "@@GK-UNSUBSCRIBE-URL@@"
MANAGE_MARK = "@@GK-MANAGE-URL@@"
#: a connection idle longer than this is checked with NOOP before use (servers drop idle ones)
IDLE_CHECK_SECONDS = 20.0
#: how much of a refusal is kept for staff
ERROR_CHARS = 300
#: headers a DKIM signature covers (those present)
DKIM_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)


class MailSettings(ChannelSettings):
    """`channels.email.settings`: the SMTP server, the sender, links, subscriptions, digests."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    #: the SMTP server; none: the channel waits (rows stay queued), unless outbox_dir is set
    host: str | None = Field(default=None, min_length=1)
    #: dry run: each message is written to a file in this folder (e.g. data/outbox/email)
    #: instead of being sent; refused at start unless site.base_url is a loopback address
    outbox_dir: str | None = Field(default=None, min_length=1)
    #: default by `security`: 465 (tls), 587 (starttls), 25 (none)
    port: int | None = Field(default=None, ge=1, le=65535)
    #: starttls (submission), tls (implicit, "SMTPS") or none (a relay on localhost)
    security: Literal["starttls", "tls", "none"] = "starttls"
    validate_certs: bool = True
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    #: persistent connections per worker process
    connections: int = Field(default=4, ge=1, le=50)
    #: the EHLO name; default the sender's domain
    local_hostname: str | None = None
    #: the From address; required once `host` is set
    from_address: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    #: the From name; default site.name
    from_name: str | None = None
    #: the envelope sender (Return-Path) if bounces go elsewhere; default from_address
    bounce_address: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    reply_to: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    #: List-Id; default gongkai.<the sender's domain>
    list_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$")
    #: a mailbox that unsubscribes whoever writes to it, offered in List-Unsubscribe too
    unsubscribe_mailto: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    #: the service as residents reach it (links); default site.base_url
    link_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    #: hard bounces (5xx) after which an address is suppressed
    bounce_limit: int = Field(default=3, ge=1, le=100)
    #: DKIM: domain (d=), selector (s=) and the private key (PEM) in a file or an env variable
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_key_file: str | None = None
    dkim_key_env: str | None = None
    #: subscriptions: lifetime of a confirmation link, and the words a resident agrees to
    confirm_ttl_hours: int = Field(default=48, ge=1, le=24 * 14)
    consent_text: str = Field(
        default="我同意接收{site}通过电子邮件发送的政府信息公开信息，每封邮件均可一键退订。",
        min_length=1,
    )
    #: subscription requests allowed per address per hour and per day, and per client IP per hour
    requests_per_address_hour: int = Field(default=3, ge=1)
    requests_per_address_day: int = Field(default=10, ge=1)
    requests_per_ip_hour: int = Field(default=20, ge=1)
    #: when daily digests go out (site time); each lists the items since the previous one
    digest_time: str = Field(default="18:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    @model_validator(mode="after")
    def _consistent(self) -> MailSettings:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give at most one of password or password_env")
        if self.host is not None and self.from_address is None:
            raise ValueError("from_address: required when host is set")
        dkim = (self.dkim_domain, self.dkim_selector)
        has_key = self.dkim_key_file is not None or self.dkim_key_env is not None
        if (any(dkim) or has_key) and not (all(dkim) and has_key):
            raise ValueError(
                "DKIM needs dkim_domain, dkim_selector and dkim_key_file or dkim_key_env"
            )
        return self

    @property
    def sender_domain(self) -> str:
        return (self.from_address or "localhost").rpartition("@")[2]

    @property
    def effective_port(self) -> int:
        return self.port or {"tls": 465, "starttls": 587, "none": 25}[self.security]


def mail_settings(config: Config) -> MailSettings:
    """The validated `channels.email.settings`; ConfigError naming the key otherwise."""
    return validated_settings(
        MailSettings, "channels.email.settings", config.channels.email.settings
    )


# -- templates ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    if not (TEMPLATES_DIR / "mail").is_dir():
        raise RuntimeError(f"the mail templates are missing: no folder {TEMPLATES_DIR}/mail")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_pair(name: str, **context: Any) -> tuple[str, str]:
    """templates/mail/<name>.txt and .html rendered with `context`."""
    env = environment()
    text = env.get_template(f"mail/{name}.txt").render(**context)
    html = env.get_template(f"mail/{name}.html").render(**context)
    return text, html


def local_date(value: datetime | None, tz: Any) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d") if value is not None else ""


# -- message assembly -----------------------------------------------------------------------


#: RFC 5322 §2.1.1: a line SHOULD be at most 78 characters, CRLF not counted
MAX_LINE = 78
#: characters a display name cannot hold unquoted (RFC 5322 specials)
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


def encode_header(value: str, header_name: str = "Subject") -> str:
    """RFC 2047 (UTF-8, base64) where needed, folded with CRLF: lines of at most 76
    characters (the encoded-word limit), the first counting `header_name: `, and every
    encoded-word whole characters (a Chinese character is never split between two).
    Header's own default (78) lets an encoded-word reach 76 characters, past RFC 2047's 75."""
    return Header(value, "utf-8", maxlinelen=76, header_name=header_name).encode(linesep="\r\n")


def phrase_header(name: str, phrase: str, angle: str) -> str:
    """The header line(s) `name: phrase <angle>` (From, List-Id), folded at 78 characters:
    a non-ASCII phrase as encoded-words (`encode_header`), an ASCII one quoted where
    RFC 5322 wants it, and `<angle>` on a line of its own when it does not fit after it.
    Built once per sender or subject, never per resident."""
    if phrase.isascii():
        text = phrase
        if _SPECIALS.search(phrase):
            text = '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines = [f"{name}: {text}"]
    else:
        lines = f"{name}: {encode_header(phrase, name)}".split("\r\n")
    if not phrase:
        lines = [f"{name}:"]
    if len(lines[-1]) + 1 + len(angle) + 2 <= MAX_LINE:
        lines[-1] += f" <{angle}>"
    else:
        lines.append(f" <{angle}>")
    return "\r\n".join(lines)


def list_unsubscribe(links: list[str]) -> str:
    """`List-Unsubscribe: <https…>, <mailto…>`; past 78 characters each further link on a
    line of its own. The first stays on the header's line: a URL cannot be folded (RFC 2369
    links are whole), and a value that begins with a fold reads as " <https…>" to some
    parsers (the standard library's among them). Per resident: a length check, a join."""
    line = "List-Unsubscribe: " + ", ".join(links)
    if len(line) <= MAX_LINE:
        return line
    return "List-Unsubscribe: " + ",\r\n ".join(links)


_IMG = re.compile(r"""<img\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)
_SRC = re.compile(r"""\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_SRCSET = re.compile(r"\bsrcset\s*=", re.IGNORECASE)


def without_remote_images(html: str, own_bases: Iterable[str]) -> str:
    """The mail's HTML without any `<img>` a mail client would fetch from elsewhere: one
    whose src is neither a data: URI nor under the site's own base URL goes, with any
    srcset. A remote image in a body (`![x](https://…/pixel.png)`) would tell its sender
    who opened the mail, when and from where: a read-tracking pixel."""
    prefixes = tuple(b.rstrip("/") + "/" for b in own_bases if b)

    def keep(tag: re.Match[str]) -> str:
        text = tag.group(0)
        found = _SRC.search(text)
        if found is None or _SRCSET.search(text):
            return ""
        src = unescape(next(g for g in found.groups() if g is not None))
        src = "".join(ch for ch in src if ch > " ").strip()  # what clients ignore, gone
        if src.lower().startswith("data:") or (prefixes and src.startswith(prefixes)):
            return text
        return ""

    return _IMG.sub(keep, html)


def _b64_body(text: str) -> bytes:
    return base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")


@dataclass(frozen=True, slots=True)
class Prepared:
    """One subject rendered once: the shared headers, and the two parts with link markers."""

    head: bytes  #: From … Content-Type, CRLF-terminated lines, without the personal headers
    text: str
    html: str
    boundary: str
    #: a list mail (items, digests): List-Unsubscribe and the links; not transactional mail
    listed: bool


def message_id(subject_key: str, target_key: str, domain: str) -> str:
    """The same for every attempt at one ledger row: a resend is recognisably the same mail."""
    digest = hashlib.sha256(f"{subject_key}\x00{target_key}".encode()).hexdigest()[:32]
    return f"<{digest}.{subject_key.partition(':')[0]}@{domain}>"


def assemble(
    prepared: Prepared,
    *,
    to: str,
    msg_id: str,
    unsubscribe_url: str | None,
    manage_url: str | None,
    unsubscribe_mailto: str | None,
) -> bytes:
    """The whole message for one resident: personal headers + the shared parts."""
    lines = [f"To: {to}", f"Message-ID: {msg_id}"]
    text, html = prepared.text, prepared.html
    if prepared.listed and unsubscribe_url is not None and manage_url is not None:
        links = [f"<{unsubscribe_url}>"]
        if unsubscribe_mailto:
            links.append(f"<mailto:{unsubscribe_mailto}?subject=unsubscribe>")
        lines.append(list_unsubscribe(links))
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        text = text.replace(UNSUBSCRIBE_MARK, unsubscribe_url).replace(MANAGE_MARK, manage_url)
        html = html.replace(UNSUBSCRIBE_MARK, unsubscribe_url).replace(MANAGE_MARK, manage_url)
    b = prepared.boundary.encode()
    return b"".join(
        (
            "\r\n".join(lines).encode(),
            b"\r\n",
            prepared.head,
            b"\r\n--" + b + b"\r\n",
            b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
            _b64_body(text),
            b"\r\n--" + b + b"\r\n",
            b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
            _b64_body(html),
            b"\r\n--" + b + b"--\r\n",
        )
    )


# -- the SMTP pool --------------------------------------------------------------------------


class SmtpPool:
    """`size` persistent connections, each opened on first use and again after a fault."""

    def __init__(self, settings: MailSettings, password: str | None) -> None:
        self.settings = settings
        self.password = password
        self._idle: asyncio.Queue[tuple[aiosmtplib.SMTP | None, float]] = asyncio.Queue()
        self._all: list[aiosmtplib.SMTP] = []
        for _ in range(settings.connections):
            self._idle.put_nowait((None, 0.0))

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.effective_port,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            validate_certs=s.validate_certs,
            timeout=s.timeout,
            local_hostname=s.local_hostname or s.sender_domain,
            username=s.username,
            password=self.password if s.username else None,
        )
        await smtp.connect()
        self._all.append(smtp)
        return smtp

    def _drop(self, smtp: aiosmtplib.SMTP | None) -> None:
        if smtp is None:
            return
        if smtp in self._all:
            self._all.remove(smtp)
        smtp.close()

    async def send(self, sender: str, recipient: str, data: bytes) -> str:
        """One transaction; returns the server's answer to DATA. Raises Transient /
        PermanentDeliveryError."""
        smtp, used = await self._idle.get()
        try:
            if smtp is not None and not smtp.is_connected:
                self._drop(smtp)
                smtp = None
            if smtp is not None and time.monotonic() - used > IDLE_CHECK_SECONDS:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError):
                    self._drop(smtp)
                    smtp = None
            if smtp is None:
                try:
                    smtp = await self._connect()
                except aiosmtplib.SMTPAuthenticationError as exc:
                    raise TransientDeliveryError(
                        f"smtp: authentication refused ({exc.code}); check the credentials"
                    ) from None
                except (aiosmtplib.SMTPException, OSError) as exc:
                    raise TransientDeliveryError(f"smtp: cannot connect: {_said(exc)}") from None
            try:
                _, answer = await smtp.sendmail(sender, [recipient], data)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients[0]
                raise _refusal(refused.code, refused.message, "recipient") from None
            except aiosmtplib.SMTPSenderRefused as exc:
                if exc.code >= 500:
                    raise PermanentDeliveryError(
                        f"smtp: sender refused: {exc.code} {exc.message[:ERROR_CHARS]}",
                        reason="rejected",
                    ) from None
                raise _refusal(exc.code, exc.message, "sender") from None
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421:  # the server is closing this connection
                    self._drop(smtp)
                    smtp = None
                raise _refusal(exc.code, exc.message, "message") from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                self._drop(smtp)
                smtp = None
                raise TransientDeliveryError(f"smtp: connection fault: {_said(exc)}") from None
            return answer
        finally:
            self._idle.put_nowait((smtp, time.monotonic()))

    async def close(self) -> None:
        for smtp in list(self._all):
            try:
                if smtp.is_connected:
                    await asyncio.wait_for(smtp.quit(), timeout=2)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()
        self._all.clear()


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:ERROR_CHARS]}"


def _refusal(code: int, message: str, what: str) -> Exception:
    said = f"smtp: {what} refused: {code} {message[:ERROR_CHARS]}"
    if code >= 500:
        return PermanentDeliveryError(said, reason="bounced")
    return TransientDeliveryError(said)


# -- DKIM -----------------------------------------------------------------------------------


class DkimSigner:
    def __init__(self, domain: str, selector: str, key: bytes) -> None:
        import dkim  # dkimpy: only needed when a key is configured

        self._dkim = dkim
        self.domain = domain.encode()
        self.selector = selector.encode()
        self.key = key

    def sign(self, message: bytes) -> bytes:
        present = {
            line.split(b":", 1)[0].strip().lower()
            for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if line and line[:1] not in (b" ", b"\t")
        }
        header: bytes = self._dkim.sign(
            message,
            self.selector,
            self.domain,
            self.key,
            include_headers=[h for h in DKIM_HEADERS if h in present],
            linesep=b"\r\n",
        )
        return header + message


def load_dkim_key(settings: MailSettings, environ: Mapping[str, str], config: Config) -> bytes:
    if settings.dkim_key_env is not None:
        value = environ.get(settings.dkim_key_env)
        if not value:
            raise ConfigError(
                f"channels.email.settings.dkim_key_env: the environment variable "
                f"{settings.dkim_key_env} is not set"
            )
        return value.encode()
    assert settings.dkim_key_file is not None
    path = config.resolve_path(settings.dkim_key_file)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"channels.email.settings.dkim_key_file: cannot read {path}: {exc.strerror}"
        ) from None


# -- the adapter ----------------------------------------------------------------------------


class MailChannel(ChannelAdapter):
    """Items, digests and confirmation mail, through one SMTP server."""

    name: ClassVar[str] = "email"
    # an attempt cut short by a crash may have been accepted: such rows become `unknown`
    # for staff (a resend then carries the same Message-ID)
    limits: ClassVar[Limits] = Limits(concurrency=16, repeatable=False, subscribers=True)
    Settings: ClassVar[type[ChannelSettings]] = MailSettings

    #: where password_env / dkim_key_env are looked up (tests may lend another mapping)
    environ: Mapping[str, str] = os.environ
    #: subjects rendered once and kept (an item goes to thousands of residents in a row)
    CACHE_SIZE: ClassVar[int] = 32

    def __init__(self, settings: ChannelSettings, site: Any, context: Any = None) -> None:
        super().__init__(settings, site, context)
        assert isinstance(settings, MailSettings)
        self.mail: MailSettings = settings
        self._prepared: OrderedDict[str, Prepared] = OrderedDict()
        self._links: Any = None
        self.pool: SmtpPool | None = None
        #: the dry-run folder (outbox_dir), once started
        self.outbox: Path | None = None
        self.dkim: DkimSigner | None = None
        self.tz = site.tz
        self.domain = settings.sender_domain
        from_name = settings.from_name or site.name
        #: the From line(s), folded (RFC 5322, RFC 2047): the same for every message
        self.from_header = phrase_header(
            "From", from_name, settings.from_address or "nobody@localhost"
        )
        self.list_id = settings.list_id or f"gongkai.{self.domain}"

    #: the bounce limit the core applies to this channel's hard bounces
    @property
    def bounce_limit(self) -> int:
        return self.mail.bounce_limit

    def links(self) -> Any:
        if self._links is None:
            from publisher.mail_links import MailLinks

            if self.context is None:
                raise ConfigError("channels.email: the adapter needs the service's config")
            self._links = MailLinks(self.context.config, self.mail.link_base_url)
        return self._links

    @classmethod
    def unconfigured(cls, settings: ChannelSettings) -> str | None:
        if isinstance(settings, MailSettings) and not (settings.host or settings.outbox_dir):
            return "no SMTP server configured (channels.email.settings.host)"
        return None

    @classmethod
    def dry_run(cls, settings: ChannelSettings) -> bool:
        return isinstance(settings, MailSettings) and settings.outbox_dir is not None

    async def start(self, stack: AsyncExitStack) -> None:
        why = self.unconfigured(self.mail)
        if why is not None:
            raise NotConfigured(why)
        if self.context is None:
            raise ConfigError("channels.email: the adapter needs the service's config")
        self.links()  # the data key must be there before anything is sent
        if self.mail.outbox_dir is not None:
            check_loopback(self.context.config, "channels.email.settings.outbox_dir")
            self.outbox = outbox_path(self.context.config, self.mail.outbox_dir, "email")
            return
        password = self.mail.password
        if self.mail.password_env is not None:
            password = self.environ.get(self.mail.password_env)
            if not password:
                raise ConfigError(
                    f"channels.email.settings.password_env: the environment variable "
                    f"{self.mail.password_env} is not set"
                )
        if self.mail.dkim_domain and self.mail.dkim_selector:
            key = load_dkim_key(self.mail, self.environ, self.context.config)
            self.dkim = DkimSigner(self.mail.dkim_domain, self.mail.dkim_selector, key)
        self.pool = SmtpPool(self.mail, password)
        stack.push_async_callback(self.pool.close)

    # -- rendering ---------------------------------------------------------------------------

    def prepare(self, subject: Subject) -> Prepared:
        """The subject rendered once (cached): shared headers and parts with link markers."""
        found = self._prepared.get(subject.key)
        if found is not None:
            self._prepared.move_to_end(subject.key)
            return found
        prepared = self._prepare(subject)
        if subject.kind != MESSAGE_KIND:  # a confirmation mail is sent once: not worth keeping
            self._prepared[subject.key] = prepared
            if len(self._prepared) > self.CACHE_SIZE:
                self._prepared.popitem(last=False)
        return prepared

    def _context(self) -> dict[str, Any]:
        return {
            "site_name": self.site.name,
            "agency": self.site.agency,
            "home_url": (self.mail.link_base_url or self.site.base_url).rstrip("/") + "/",
            "unsubscribe_url": UNSUBSCRIBE_MARK,
            "manage_url": MANAGE_MARK,
        }

    def _prepare(self, subject: Subject) -> Prepared:
        listed = True
        when = subject.event_at or datetime.now(UTC)
        if subject.kind == MESSAGE_KIND:
            title, text, html = self._message_parts(subject)
            listed = False
            when = datetime.now(UTC)
        elif subject.kind == DIGEST_KIND:
            if not subject.items:
                raise PermanentDeliveryError("the digest lists no item", reason="empty_digest")
            title = subject.title
            text, html = render_pair(
                "digest", subject=subject, items=subject.items, **self._context()
            )
        elif subject.kind in ITEM_KINDS and subject.item_id is not None:
            title = subject.title if subject.kind == "published" else f"【更正】{subject.title}"
            text, html = render_pair(
                "item",
                subject=subject,
                title=title,
                written_at=local_date(subject.written_at, self.tz),
                published_at=local_date(subject.published_at, self.tz),
                **self._context(),
            )
        else:
            raise PermanentDeliveryError(
                f"email takes published and corrected items, digests and messages, not "
                f"{subject.kind!r}",
                reason="unknown_subject",
            )
        own = (self.site.base_url, self.mail.link_base_url or "")
        html = without_remote_images(html, own)  # no read-tracking pixels (mail only)
        boundary = "=_gk_" + hashlib.sha256(subject.key.encode()).hexdigest()[:24]
        head = [
            self.from_header,
            f"Subject: {encode_header(title)}",
            f"Date: {format_datetime(when.astimezone(self.tz))}",
            "MIME-Version: 1.0",
        ]
        if self.mail.reply_to:
            head.append(f"Reply-To: {self.mail.reply_to}")
        if listed:
            head.append(phrase_header("List-Id", self.site.name, self.list_id))
        else:
            head.append("Auto-Submitted: auto-generated")
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        return Prepared(
            head="".join(h + "\r\n" for h in head).encode(),
            text=text,
            html=html,
            boundary=boundary,
            listed=listed,
        )

    def _message_parts(self, subject: Subject) -> tuple[str, str, str]:
        """A transactional message's subject line, text and HTML: the body is JSON
        {"subject", "text", "html"} when the mail was composed for email, else plain text."""
        if subject.body.startswith("{"):
            try:
                data = json.loads(subject.body)
                return str(data["subject"]), str(data["text"]), str(data["html"])
            except (ValueError, KeyError, TypeError):
                pass
        text = subject.body
        html = f"<p>{escape(text)}</p>"
        return self.site.name, text, html

    def render(self, subject: Subject, target: Target) -> Rendered:
        prepared = self.prepare(subject)
        unsubscribe = manage = None
        if prepared.listed and target.key.startswith("r:"):
            links = self.links()
            rid = int(target.key[2:])
            # no nonce (a preview): links that work for nobody
            nonce = target.link_nonce
            unsubscribe, manage = links.unsubscribe_url(rid, nonce), links.manage_url(rid, nonce)
        msg_id = message_id(subject.key, target.key, self.domain)
        body = assemble(
            prepared,
            to=target.address,
            msg_id=msg_id,
            unsubscribe_url=unsubscribe,
            manage_url=manage,
            unsubscribe_mailto=self.mail.unsubscribe_mailto,
        )
        if self.dkim is not None:
            body = self.dkim.sign(body)
        return Rendered(
            body=body,
            content_type="message/rfc822",
            headers={"Message-ID": msg_id},
            preview=prepared.text,
        )

    async def deliver(self, rendered: Rendered, target: Target, *, delivery_id: str) -> Receipt:
        if self.outbox is not None:  # a dry run: the message as it would go out, in a file
            try:
                write_message(self.outbox, delivery_id, "eml", rendered.body)
            except OSError as exc:
                raise TransientDeliveryError(f"email outbox: {exc}") from None
            return Receipt(ReceiptState.SENT, provider_id=rendered.headers.get("Message-ID"))
        if self.pool is None:
            raise TransientDeliveryError("smtp: the channel has not started")
        sender = self.mail.bounce_address or self.mail.from_address or ""
        await self.pool.send(sender, target.address, rendered.body)
        return Receipt(ReceiptState.SENT, provider_id=rendered.headers.get("Message-ID"))
