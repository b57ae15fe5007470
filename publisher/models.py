"""What the store holds, as frozen dataclasses and string enums."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class ItemStatus(StrEnum):
    DRAFT = "draft"  #: being written; editable in place
    IN_REVIEW = "in_review"  #: submitted for the confidentiality review (保密审查)
    REJECTED = "rejected"  #: review refused; back to draft on the next edit
    APPROVED = "approved"  #: review passed; immediately moves on to scheduled or published
    SCHEDULED = "scheduled"  #: approved, waiting for publish_at
    PUBLISHED = "published"  #: live; has a 索引号
    EXPIRED = "expired"  #: past expires_at; off the public channels
    WITHDRAWN = "withdrawn"  #: taken back by a reviewer; terminal


#: statuses in which an edit makes a new revision that needs review again
LIVE_STATUSES = frozenset({ItemStatus.APPROVED, ItemStatus.SCHEDULED, ItemStatus.PUBLISHED})
#: statuses in which an edit changes the working revision in place
EDITABLE_IN_PLACE = frozenset({ItemStatus.DRAFT, ItemStatus.REJECTED})


class Action(StrEnum):
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    REOPEN = "reopen"
    SCHEDULE = "schedule"
    PUBLISH = "publish"
    EXPIRE = "expire"
    WITHDRAW = "withdraw"


class RevisionState(StrEnum):
    """Review state of a pending revision of a live item."""

    DRAFT = "draft"
    IN_REVIEW = "in_review"
    REJECTED = "rejected"


class BodyFormat(StrEnum):
    """How an item's body is written: the revision says it, every channel renders by it."""

    #: plain text, rendered exactly as written: paragraphs at blank lines, line breaks
    #: kept, links made of URLs, nothing else interpreted (official numbering such as
    #: "1." or "（一）" stays as typed). The default: most government documents are this.
    TEXT = "text"
    #: CommonMark (with tables), chosen explicitly
    MARKDOWN = "markdown"


class Disclosure(StrEnum):
    PROACTIVE = "proactive"  #: 主动公开: reaches every public channel
    ON_REQUEST = "on_request"  #: 依申请公开: kept and counted, never pushed or shown
    WITHHELD = "withheld"  #: 不予公开: never leaves the store


class Role(StrEnum):
    EDITOR = "editor"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class RelationKind(StrEnum):
    INTERPRETS = "interprets"  #: 解读
    AMENDS = "amends"
    REPEALS = "repeals"
    SEE_ALSO = "see-also"


class Channel(StrEnum):
    PORTAL = "portal"
    RSS = "rss"
    SMS = "sms"
    EMAIL = "email"
    BOARD = "board"


class LegalKind(StrEnum):
    """Items that count in table 二 of the annual report (第二十条第（一）项)."""

    REGULATION = "regulation"  #: 规章
    NORMATIVE = "normative"  #: 行政规范性文件


@dataclass(frozen=True, slots=True)
class Relation:
    item_id: str
    kind: RelationKind


@dataclass(frozen=True, slots=True)
class Attachment:
    id: str
    item_id: str
    revision: int
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Content:
    """The editable part of an item: one revision's text and catalogue metadata."""

    title: str
    summary: str | None
    body: str
    category: str
    agency: str
    doc_no: str | None
    written_at: datetime
    disclosure: Disclosure
    disclosure_reason: str | None
    channels: tuple[Channel, ...]
    publish_at: datetime | None
    expires_at: datetime | None
    urgent: bool
    related: tuple[Relation, ...]
    legal_kind: LegalKind | None = None
    valid_from: date | None = None  #: 施行日期
    valid_until: date | None = None  #: 有效期至 (失效 after it)
    repealed_on: date | None = None  #: 废止日期
    body_format: BodyFormat = BodyFormat.TEXT


@dataclass(frozen=True, slots=True)
class Revision:
    item_id: str
    number: int
    content: Content
    author: str
    created_at: datetime
    correction_note: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    status: ItemStatus
    index_no: str | None
    revision: Revision
    #: a revision waiting for review while the item keeps its published text
    pending: Revision | None
    pending_state: RevisionState | None
    version: int  #: bumped on every change; the ETag
    created_by: str
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    expired_at: datetime | None
    withdrawn_at: datetime | None
    imported: bool
    attachments: tuple[Attachment, ...] = field(default=())

    @property
    def content(self) -> Content:
        return self.revision.content

    @property
    def etag(self) -> str:
        return f'"{self.id}.{self.version}"'


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    item_id: str | None
    actor: str
    at: datetime
    action: str
    from_status: str | None
    to_status: str | None
    revision: int | None
    reason: str | None
    details: dict[str, object]


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    disabled: bool
    has_password: bool
    created_at: datetime
    #: when the password was last set (None: no password, or set before this was kept)
    password_changed_at: datetime | None = None
