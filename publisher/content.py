"""Item content from the outside world (API payloads, imports) and the rules it must meet."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from publisher.config import Config
from publisher.errors import ValidationFailed
from publisher.models import (
    BodyFormat,
    Channel,
    Content,
    Disclosure,
    LegalKind,
    Relation,
    RelationKind,
)
from publisher.textclean import CleanTextModel


def _not_blank(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be blank")
    return value


NonBlank = Annotated[str, BeforeValidator(_not_blank)]


class RelationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(min_length=1, max_length=36)
    kind: RelationKind


class ItemFields(CleanTextModel):
    """Fields of an item as the API takes them. Times without an offset are site-local.

    No text may hold a character XML cannot (publisher.textclean); the title and the
    agency may not hold invisible ones either."""

    line_fields = frozenset({"title", "agency"})

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: NonBlank = Field(max_length=500, description="名称")
    summary: str | None = Field(
        default=None, max_length=1000, description="内容概述; derived from the body when absent"
    )
    body: NonBlank = Field(description="the text; `format` says how it is written")
    format: BodyFormat = Field(
        default=BodyFormat.TEXT,
        description=(
            "how the body is written: `text` (the default) renders exactly as written — "
            "paragraphs at blank lines, line breaks kept, URLs linked, nothing else "
            "interpreted, so official numbering (一、 （一） 1. ①) stays as typed; "
            "`markdown` renders CommonMark (lists, headings, emphasis, tables)"
        ),
    )
    category: NonBlank = Field(max_length=64, description="主题分类: a taxonomy slug")
    agency: str | None = Field(
        default=None, max_length=255, description="发文机关; default site.agency"
    )
    doc_no: str | None = Field(default=None, max_length=128, description="文号")
    written_at: datetime | date = Field(description="成文日期")
    disclosure: Disclosure = Field(default=Disclosure.PROACTIVE, description="公开属性")
    disclosure_reason: str | None = Field(
        default=None, max_length=2000, description="required unless proactive"
    )
    channels: list[Channel] | None = Field(
        default=None, description="default: items.default_channels"
    )
    publish_at: datetime | None = None
    expires_at: datetime | None = None
    urgent: bool = False
    related: list[RelationIn] = Field(default_factory=list, max_length=100)
    legal_kind: LegalKind | None = Field(
        default=None, description="规章 (regulation) or 行政规范性文件 (normative); table 二"
    )
    valid_from: date | None = Field(default=None, description="施行日期")
    valid_until: date | None = Field(default=None, description="有效期至")
    repealed_on: date | None = Field(default=None, description="废止日期")


class ItemCreate(ItemFields):
    pass


class ItemPatch(CleanTextModel):
    """A partial edit: only the fields given change."""

    line_fields = frozenset({"title", "agency"})

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: NonBlank | None = Field(default=None, max_length=500)
    summary: str | None = Field(default=None, max_length=1000)
    body: NonBlank | None = None
    format: BodyFormat | None = Field(
        default=None, description="`text` or `markdown` (see ItemCreate); part of the revision"
    )
    category: NonBlank | None = Field(default=None, max_length=64)
    agency: str | None = Field(default=None, max_length=255)
    doc_no: str | None = Field(default=None, max_length=128)
    written_at: datetime | date | None = None
    disclosure: Disclosure | None = None
    disclosure_reason: str | None = Field(default=None, max_length=2000)
    channels: list[Channel] | None = None
    publish_at: datetime | None = None
    expires_at: datetime | None = None
    urgent: bool | None = None
    related: list[RelationIn] | None = Field(default=None, max_length=100)
    legal_kind: LegalKind | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    repealed_on: date | None = None
    correction_note: str | None = Field(
        default=None, max_length=2000, description="更正说明, for a published item's revision"
    )


def to_aware(value: datetime | date, tz: ZoneInfo) -> datetime:
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0, 0), tzinfo=tz)
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


def content_from(fields: ItemFields, config: Config) -> Content:
    tz = config.site.tz
    content = Content(
        title=fields.title,
        summary=fields.summary or None,
        body=fields.body,
        category=fields.category,
        agency=fields.agency or config.site.agency,
        doc_no=fields.doc_no or None,
        written_at=to_aware(fields.written_at, tz),
        disclosure=fields.disclosure,
        disclosure_reason=fields.disclosure_reason or None,
        channels=tuple(
            dict.fromkeys(
                fields.channels
                if fields.channels is not None
                else [Channel(c) for c in config.items.default_channels]
            )
        ),
        publish_at=to_aware(fields.publish_at, tz) if fields.publish_at else None,
        expires_at=to_aware(fields.expires_at, tz) if fields.expires_at else None,
        urgent=fields.urgent,
        related=tuple(Relation(r.item_id, r.kind) for r in fields.related),
        legal_kind=fields.legal_kind,
        valid_from=fields.valid_from,
        valid_until=fields.valid_until,
        repealed_on=fields.repealed_on,
        body_format=fields.format,
    )
    check_content(content, config)
    return content


def changes_from(patch: ItemPatch, config: Config) -> dict[str, Any]:
    """The Content fields a patch changes, converted; correction_note passes through."""
    tz = config.site.tz
    out: dict[str, Any] = {}
    for name in patch.model_fields_set:
        value = getattr(patch, name)
        if name in ("title", "body", "category", "disclosure", "urgent", "format") and (
            value is None
        ):
            raise ValidationFailed(f"{name}: cannot be null")
        if name == "format":  # the API's name for Content.body_format
            out["body_format"] = value
            continue
        if name == "written_at":
            if value is None:
                raise ValidationFailed("written_at: cannot be null")
            value = to_aware(value, tz)
        elif name in ("publish_at", "expires_at") and value is not None:
            value = to_aware(value, tz)
        elif name == "channels":
            value = (
                tuple(dict.fromkeys(value))
                if value is not None
                else tuple(Channel(c) for c in config.items.default_channels)
            )
        elif name == "related":
            value = tuple(Relation(r.item_id, r.kind) for r in (value or []))
        elif name == "agency":
            value = value or config.site.agency
        elif name in ("summary", "doc_no", "disclosure_reason"):
            value = value or None
        out[name] = value
    return out


def check_content(content: Content, config: Config) -> None:
    """Rules that span fields or need the config; raises ValidationFailed naming the field."""
    if config.category(content.category) is None:
        slugs = ", ".join(c.slug for c in config.taxonomy)
        raise ValidationFailed(f"category: unknown category {content.category!r}; one of: {slugs}")
    if len(content.body) > config.items.max_body_chars:
        raise ValidationFailed(
            f"body: {len(content.body)} characters, more than the {config.items.max_body_chars} allowed"
        )
    for name in ("written_at", "publish_at", "expires_at"):
        # far-off dates overflow when converted to UTC for the store (a 500, not a 422)
        when = getattr(content, name)
        if when is not None and not 1900 <= when.year <= 2200:
            raise ValidationFailed(f"{name}: year {when.year} is outside 1900–2200")
    if content.disclosure is not Disclosure.PROACTIVE and not content.disclosure_reason:
        raise ValidationFailed(
            f"disclosure_reason: required when disclosure is {content.disclosure.value}"
        )
    if (
        content.publish_at is not None
        and content.expires_at is not None
        and content.expires_at <= content.publish_at
    ):
        raise ValidationFailed("expires_at: must be after publish_at")
    if content.legal_kind is None:
        for name in ("valid_from", "valid_until", "repealed_on"):
            if getattr(content, name) is not None:
                raise ValidationFailed(f"{name}: only for an item with a legal_kind")
    for name in ("valid_from", "valid_until", "repealed_on"):
        day = getattr(content, name)
        if day is not None and not 1900 <= day.year <= 2200:
            raise ValidationFailed(f"{name}: year {day.year} is outside 1900–2200")
    if content.valid_from is not None:
        for name in ("valid_until", "repealed_on"):
            day = getattr(content, name)
            if day is not None and day < content.valid_from:
                raise ValidationFailed(f"{name}: before valid_from")
    kinds = [(r.item_id, r.kind) for r in content.related]
    if len(set(kinds)) != len(kinds):
        raise ValidationFailed("related: the same relation appears twice")
