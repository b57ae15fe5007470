"""SQLAlchemy Core tables shared by SQLite and PostgreSQL.

The migrations in ``store/migrations`` create exactly these; a test compares them.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both backends.

    SQLite keeps no zone, so values are stored as naive UTC and tagged on the way out.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        when: datetime = value
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def new_link_nonce() -> str:
    """A subscription's link nonce: 128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255)),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    #: when the password was last set (security.login.max_password_age_days)
    sa.Column("password_changed_at", UTCDateTime),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    #: SHA-256 of the token; the token itself is shown once and never stored
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    #: first characters of the token, so staff can tell tokens apart when revoking
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("index_no", sa.String(128), unique=True),
    #: the live revision: the published text once the item is published
    sa.Column("revision", sa.Integer, nullable=False),
    #: a newer revision under review while the item keeps its live text
    sa.Column("pending_revision", sa.Integer),
    sa.Column("pending_state", sa.String(16)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("published_at", UTCDateTime),
    sa.Column("expired_at", UTCDateTime),
    sa.Column("withdrawn_at", UTCDateTime),
    sa.Column("imported", sa.Boolean, nullable=False, default=False),
    # copies of the live revision's fields that lists filter and sort on
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("disclosure", sa.String(16), nullable=False),
    sa.Column("written_at", UTCDateTime, nullable=False),
    sa.Column("publish_at", UTCDateTime),
    sa.Column("expires_at", UTCDateTime),
    sa.Index("ix_items_status_publish_at", "status", "publish_at"),
    sa.Index("ix_items_status_expires_at", "status", "expires_at"),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("item_id", sa.String(36), sa.ForeignKey("items.id"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("summary", sa.Text),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("agency", sa.String(255), nullable=False),
    sa.Column("doc_no", sa.String(128)),
    sa.Column("written_at", UTCDateTime, nullable=False),
    sa.Column("disclosure", sa.String(16), nullable=False),
    sa.Column("disclosure_reason", sa.Text),
    sa.Column("channels", sa.JSON, nullable=False),
    sa.Column("publish_at", UTCDateTime),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("urgent", sa.Boolean, nullable=False, default=False),
    sa.Column("related", sa.JSON, nullable=False),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("correction_note", sa.Text),
    #: 规章 / 行政规范性文件 (table 二 of the annual report); null for other items
    sa.Column("legal_kind", sa.String(16)),
    sa.Column("valid_from", sa.Date),
    sa.Column("valid_until", sa.Date),
    sa.Column("repealed_on", sa.Date),
    #: how the body is written: "text" (as written, the default) or "markdown"
    sa.Column("format", sa.String(16), nullable=False, server_default="text"),
)

attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("item_id", sa.String(36), sa.ForeignKey("items.id"), nullable=False, index=True),
    #: the revision it was added in; shown publicly once that revision is live
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: append-only: who did what to which item, when, from which status to which
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.String(36), index=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16)),
    sa.Column("revision", sa.Integer),
    sa.Column("reason", sa.Text),
    sa.Column("details", sa.JSON, nullable=False),
)

#: last 索引号 serial handed out per agency code and year
index_serials = sa.Table(
    "index_serials",
    metadata,
    sa.Column("agency_code", sa.String(64), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last_serial", sa.Integer, nullable=False),
)

#: what happened to an item that channels must hear about: published, corrected,
#: withdrawn, expired. Written in the same transaction as the status change, so a
#: crash can never publish an item without its event (the fan-out's outbox).
item_events = sa.Table(
    "item_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.String(36), sa.ForeignKey("items.id"), nullable=False, index=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    #: the channels this event may reach, after the disclosure rule
    sa.Column("channels", sa.JSON, nullable=False),
    sa.Column("urgent", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    #: when the fan-out planned this event's deliveries (null: not yet)
    sa.Column("planned_at", UTCDateTime),
    sa.UniqueConstraint("item_id", "revision", "kind"),
)


# -- recipients and targets (fan-out) ---------------------------------------------

#: residents subscribed to a channel. The address is personal data: kept only
#: encrypted (Fernet, security.data_key) and found through a keyed hash.
recipients = sa.Table(
    "recipients",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("address_hash", sa.String(64), nullable=False),
    sa.Column("address_enc", sa.Text, nullable=False),
    #: category slugs; empty means all
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("frequency", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    #: hard bounces (email 5xx) so far; at the channel's bounce_limit the address is suppressed
    sa.Column("bounces", sa.Integer, nullable=False, server_default="0"),
    #: random, per subscription: every unsubscribe / manage link is signed over it, so
    #: erasing the row kills the links sent to this resident and no one else's
    sa.Column("link_nonce", sa.String(32), nullable=False, default=new_link_nonce),
    #: links signed before 0010 (over the id alone) still work for this subscriber: set
    #: by that migration where the id had never named anyone else
    sa.Column("legacy_links", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("channel", "address_hash"),
    sa.Index("ix_recipients_channel_status", "channel", "status", "id"),
    # an id is never given twice (SQLite would reuse the highest after a delete);
    # PostgreSQL's serial sequence never goes back
    sqlite_autoincrement=True,
)

#: consent ledger: when, how, the text agreed to, from where; and when and how it ended
consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recipient_id", sa.Integer, sa.ForeignKey("recipients.id"), index=True),
    sa.Column("given_at", UTCDateTime, nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    #: masked source (IP prefix, masked number) — enough to show, not to identify
    sa.Column("source", sa.String(255)),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("ended_how", sa.String(64)),
)

#: keyed hashes that must never be messaged again; survives erasure of the resident
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("address_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: confirmation links (email) for an address issued at or before `not_before` (its last
#: unsubscribe, suppression or erasure) are refused; a keyed hash, kept after erasure
confirm_floors = sa.Table(
    "confirm_floors",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("address_hash", sa.String(64), primary_key=True),
    sa.Column("not_before", UTCDateTime, nullable=False),
)

#: confirmation links already used (a hash of the token), kept until they would expire
used_confirmations = sa.Table(
    "used_confirmations",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

#: non-personal targets: portal endpoints, boards, feeds
endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("channel", "name"),
)

# -- the delivery ledger ---------------------------------------------------------------

#: one row per (subject, channel, target); the unique key makes planning idempotent
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    #: "event:<item_events.id>", later "digest:…", "pack:…", "tx:…"
    sa.Column("subject", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    #: "r:<recipients.id>" or "e:<endpoints.id>"
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("item_id", sa.String(36), index=True),
    sa.Column("state", sa.String(16), nullable=False),
    #: urgent rows first (higher first)
    sa.Column("priority", sa.Integer, nullable=False),
    #: never deferred by quiet hours (urgent items, transactional messages)
    sa.Column("bypass_quiet", sa.Boolean, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("provider_id", sa.String(128)),
    sa.Column("units", sa.Integer),
    sa.Column("reason", sa.String(64)),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("delivered_at", UTCDateTime),
    #: the row puts an item out (its publication or correction, or a print pack of one):
    #: a claim skips it once the item is withdrawn or expired (withdrawal is final)
    sa.Column("publishes", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("subject", "channel", "target"),
)
#: what a worker's claim walks: due rows in claim order, without sorting the queue
#: (a partial index, so finished rows do not weigh on it)
sa.Index(
    "ix_deliveries_due",
    deliveries.c.channel,
    deliveries.c.priority.desc(),
    deliveries.c.due_at,
    deliveries.c.id,
    sqlite_where=deliveries.c.state.in_(["queued", "retrying", "deferred"]),
    postgresql_where=deliveries.c.state.in_(["queued", "retrying", "deferred"]),
)
#: rows in flight, for crash recovery
sa.Index(
    "ix_deliveries_sending",
    deliveries.c.claimed_by,
    sqlite_where=deliveries.c.state == "sending",
    postgresql_where=deliveries.c.state == "sending",
)

#: append-only: every state change of every delivery
delivery_events = sa.Table(
    "delivery_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.Integer, nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("from_state", sa.String(16)),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text),
)

#: delivery worker processes and their heartbeats; a stale one's claims are recovered
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
)


# -- statutory clocks and the annual report (issue 9) ----------------------------------

#: official holidays and make-up working days (调休), entered by staff per year
calendar_days = sa.Table(
    "calendar_days",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("year", sa.Integer, nullable=False, index=True),
    #: holiday | workday
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("name", sa.String(64)),
)

#: the years whose schedule has been entered (a year without holidays is still entered)
calendar_years = sa.Table(
    "calendar_years",
    metadata,
    sa.Column("year", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)

#: the register of disclosure requests (依申请公开)
disclosure_requests = sa.Table(
    "disclosure_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_on", sa.Date, nullable=False, index=True),
    sa.Column("applicant_type", sa.String(32), nullable=False),
    #: the applicant's name: personal data, optional; sealed with the data key
    #: (publisher.atrest, "enc1:…"), so longer than the 255 characters a name may have
    sa.Column("applicant", sa.Text),
    sa.Column("subject", sa.Text, nullable=False),
    #: the one 20-working-day extension (Art33), when it was decided
    sa.Column("extended_on", sa.Date),
    #: one leaf of table 三; null while open
    sa.Column("outcome", sa.String(48)),
    sa.Column("closed_on", sa.Date, index=True),
    sa.Column("note", sa.Text),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

#: pauses of a request's clock: 补正 (restarts it) and third-party consultation (stops it)
request_pauses = sa.Table(
    "request_pauses",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "request_id",
        sa.Integer,
        sa.ForeignKey("disclosure_requests.id"),
        nullable=False,
        index=True,
    ),
    #: correction | consultation
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("started_on", sa.Date, nullable=False),
    sa.Column("ended_on", sa.Date),
)

#: what staff enter for a year's annual report (cells the store cannot know, free text)
annual_report_entries = sa.Table(
    "annual_report_entries",
    metadata,
    sa.Column("year", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)

# -- SMS: transactional messages, verification codes, rate windows ------------------------

#: one-off messages to one address (verification codes): the ledger subject "msg:<id>"
#: and target "m:<id>". Address and text are personal data: kept only encrypted.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(16), nullable=False),
    #: what it is for (verify_code …), for staff and metrics
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("address_hash", sa.String(64), nullable=False, index=True),
    sa.Column("address_enc", sa.Text, nullable=False),
    sa.Column("body_enc", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: a pending subscription by web: the code sent (hashed), how often it was tried, until when
verifications = sa.Table(
    "verifications",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("address_hash", sa.String(64), primary_key=True),
    sa.Column("categories", sa.JSON, nullable=False),
    #: HMAC of the code (key derived from the data key): a stolen table gives no code
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: fixed-window counters for rate limits that hold across processes and restarts;
#: keys are keyed hashes (numbers and IP addresses are personal data)
rate_counters = sa.Table(
    "rate_counters",
    metadata,
    sa.Column("bucket", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    #: start of the window, seconds since the epoch
    sa.Column("window_start", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

#: billed units spent per counter (an SMS gateway: "sms:<name>") per local day of the
#: site, shared by every worker; one atomic upsert per message keeps a daily cap exact
spend_counters = sa.Table(
    "spend_counters",
    metadata,
    sa.Column("counter", sa.String(64), primary_key=True),
    #: the site's local date, YYYY-MM-DD
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("units", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# -- staff web sessions (issue 8) ------------------------------------------------------

#: a staff member's login in a browser. The cookie holds a random id; only its SHA-256 is
#: kept, so a copy of the database opens no session. A row is valid while its user is
#: enabled and still has the role it logged in with, and until it has been idle too long.
staff_sessions = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    #: the role at login: a change of role ends the session
    sa.Column("role", sa.String(16), nullable=False),
    #: the per-session CSRF token every form carries
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    #: the log-in steps still to be done, comma-joined in order, before the session opens
    #: any other page (publisher.web.ui.session.staff_gate): "totp" (the password was
    #: right, the second factor is still owed), "enrol" (the role must have TOTP and the
    #: user has none yet), "password_change" (a weak or expired password); null: none,
    #: the session is full
    sa.Column("pending", sa.String(64)),
)

#: a user's TOTP second factor (RFC 6238, issue 16). The secret is kept sealed with the
#: data key (publisher.addresses.AddressBox); `confirmed_at` is null while the user has
#: not yet entered a first code. `last_step` is the time step of the last code accepted:
#: a code is accepted only for a later step, so each is used once (RFC 6238 §5.2).
#: `failures` counts wrong codes in a row; at security.login.max_failed_logins the step is
#: locked until `locked_until`.
staff_totp = sa.Table(
    "staff_totp",
    metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("secret_sealed", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("confirmed_at", UTCDateTime),
    sa.Column("last_step", sa.BigInteger),
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", UTCDateTime),
)

#: one-time recovery codes for TOTP: only a keyed hash (HMAC-SHA256 with a key derived
#: from the data key) of each is kept; a used code keeps its row with `used_at`
totp_recovery_codes = sa.Table(
    "totp_recovery_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
)

#: log-in tries counted *before* each password is checked (publisher.sessions): per
#: scope "pair" (account + client network), "account" and "network"; `locked_until`
#: while that scope refuses tries, `window_start` when the current count began
login_throttle = sa.Table(
    "login_throttle",
    metadata,
    sa.Column("scope", sa.String(8), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("last_try_at", UTCDateTime, nullable=False),
    sa.Column("locked_until", UTCDateTime),
)


# -- email: daily digests (issue 6) ------------------------------------------------------

#: the items each digest subject ("digest:<day>:<hash>") lists, so an item's deliveries
#: include the digest rows that carried it
digest_items = sa.Table(
    "digest_items",
    metadata,
    sa.Column("subject", sa.String(64), primary_key=True),
    sa.Column("item_id", sa.String(36), sa.ForeignKey("items.id"), primary_key=True, index=True),
    #: the publication event the digest lists the item for
    sa.Column("event_id", sa.Integer, nullable=False),
)

#: one row per digest day: the window of publications it covers, and when it was planned
digest_runs = sa.Table(
    "digest_runs",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    #: null until every subscriber's row is queued (a crash mid-plan plans again)
    sa.Column("planned_at", UTCDateTime),
)


# -- notice boards (issue 7) --------------------------------------------------------------

#: village and township notice boards (村务 / 政务公开栏). Each is a target of the board
#: channel through its `endpoints` row (channel "board"; the fan-out plans "e:<id>"), which
#: mirrors the non-personal fields; the operator's phone and email are personal data, kept
#: only encrypted (publisher.addresses.AddressBox), like residents' addresses.
boards = sa.Table(
    "boards",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "endpoint_id", sa.Integer, sa.ForeignKey("endpoints.id"), nullable=False, unique=True
    ),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("location", sa.Text, nullable=False),
    #: A4 | A3
    sa.Column("paper", sa.String(2), nullable=False),
    #: portrait | landscape
    sa.Column("orientation", sa.String(10), nullable=False),
    #: category slugs it carries; empty means all
    sa.Column("categories", sa.JSON, nullable=False),
    #: the least number of days an item must stay posted before it is taken down
    sa.Column("min_days", sa.Integer, nullable=False),
    sa.Column("operator_phone_enc", sa.Text),
    sa.Column("operator_email_enc", sa.Text),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

#: print packs: per board and item event, what to post and what to take down. The ledger
#: subject of the board channel is "pack:<id>" (one row per pack: the board's endpoint)
board_packs = sa.Table(
    "board_packs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("board_id", sa.Integer, sa.ForeignKey("boards.id"), nullable=False, index=True),
    #: the item event (publish, correct, withdraw, expire) the pack answers
    sa.Column("event_id", sa.Integer, sa.ForeignKey("item_events.id"), nullable=False),
    sa.Column("item_id", sa.String(36), sa.ForeignKey("items.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    #: when the operator was told (transactional SMS / email queued); null: not yet
    sa.Column("notified_at", UTCDateTime),
    #: when posting was confirmed, and by whom ("operator" or a staff user name)
    sa.Column("confirmed_at", UTCDateTime),
    sa.Column("confirmed_by", sa.String(64)),
    sa.UniqueConstraint("event_id", "board_id"),
)

#: the lines of a pack's cover sheet: post (a revision of an item) or take down (with why)
board_pack_items = sa.Table(
    "board_pack_items",
    metadata,
    sa.Column("pack_id", sa.Integer, sa.ForeignKey("board_packs.id"), primary_key=True),
    sa.Column("item_id", sa.String(36), sa.ForeignKey("items.id"), primary_key=True, index=True),
    #: post | takedown
    sa.Column("action", sa.String(8), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("index_no", sa.String(128)),
    sa.Column("reason", sa.Text, nullable=False),
)
