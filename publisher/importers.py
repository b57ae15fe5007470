"""Importers for archival items: JSON, CSV and the plain-text page format of the sample.

Each parser turns a file into ImportRecords without touching the store, so a bad
file is reported whole before anything is written. Archival text often carries stray
control characters (from old word processors and page scrapes): the characters a text
may not hold (publisher.textclean) are removed, and each record says so in `warnings`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from publisher.config import Config
from publisher.content import ItemCreate, content_from, to_aware
from publisher.errors import ValidationFailed
from publisher.models import BodyFormat, Content
from publisher.text import first_sentence
from publisher.textclean import clean, describe

#: header labels of the plain-text page format -> our field names
HEADER_LABELS = {
    "索引号": "index_no",
    "主题分类": "category",
    "发文机关": "agency",
    "成文日期": "written_at",
    "文号": "doc_no",
    "发文字号": "doc_no",
    "名称": "title",
    "标题": "title",
    "发布日期": "published_at",
    "公开日期": "published_at",
}
_PAIR_RE = re.compile(r"([^|:：]+?)\s*[:：]\s*\|\s*([^|]*?)\s*\|")


@dataclass(frozen=True, slots=True)
class ImportRecord:
    source: str  #: file name and position, for messages
    content: Content
    index_no: str | None
    published_at: datetime
    #: what was changed on the way in (characters removed), one line each
    warnings: tuple[str, ...] = ()


def _cleaned(fields: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """The fields without the characters they may not hold, and a warning per field changed."""
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in fields.items():
        if isinstance(value, str):
            # titles also lose the invisible characters the API refuses there
            value, removed = clean(value, line=key in ItemCreate.line_fields)
            if removed:
                warnings.append(f"{source}: {key}: removed {describe(removed)}")
        out[key] = value
    return out, warnings


def _category_slug(value: str, config: Config) -> str:
    value = value.strip()
    for cat in config.taxonomy:
        if value in (cat.slug, cat.name) or value.endswith("\\" + cat.name):
            return cat.slug
    names = "、".join(c.name for c in config.taxonomy)
    raise ValidationFailed(f"主题分类 {value!r} is not in the taxonomy ({names})")


def _parse_when(value: str) -> datetime | date:
    value = value.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日"):
        try:
            parsed = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return parsed if ("%H" in fmt) else parsed.date()
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"date {value!r} is not a date this importer reads") from None


def _record(
    fields: dict[str, Any],
    source: str,
    config: Config,
    title: str | None,
    body_format: BodyFormat = BodyFormat.TEXT,
) -> ImportRecord:
    if title:
        fields = {**fields, "title": title}
    fields, warnings = _cleaned(fields, source)
    fields = {k: v for k, v in fields.items() if v not in (None, "")}
    # a record may say how its body is written; otherwise the import's --format (text)
    fields.setdefault("format", body_format.value)
    index_no = fields.pop("index_no", None)
    published = fields.pop("published_at", None)
    try:  # every message names the file (and record) it is about
        if "category" in fields:
            fields["category"] = _category_slug(str(fields["category"]), config)
        for key in ("written_at", "publish_at", "expires_at", "published_at"):
            value = published if key == "published_at" else fields.get(key)
            if isinstance(value, str):
                try:
                    parsed = _parse_when(value)
                except ValidationFailed as exc:
                    raise ValidationFailed(f"{key}: {exc.detail}") from None
                if key == "published_at":
                    published = parsed
                else:
                    fields[key] = parsed
    except ValidationFailed as exc:
        raise ValidationFailed(f"{source}: {exc.detail}") from None
    if "title" not in fields and "body" in fields:
        fields["title"] = first_sentence(str(fields["body"]))
    if isinstance(fields.get("channels"), str):
        fields["channels"] = [c.strip() for c in fields["channels"].split(",") if c.strip()]
    try:
        content = content_from(ItemCreate.model_validate(fields), config)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise ValidationFailed(f"{source}: {loc}: {msg}") from None
    except ValidationFailed as exc:
        raise ValidationFailed(f"{source}: {exc.detail}") from None
    published_at = to_aware(published, config.site.tz) if published else content.written_at
    return ImportRecord(
        source,
        content,
        str(index_no).strip() if index_no else None,
        published_at,
        tuple(warnings),
    )


def parse_page(
    text: str,
    source: str,
    config: Config,
    title: str | None = None,
    body_format: BodyFormat = BodyFormat.TEXT,
) -> ImportRecord:
    """The plain-text page format: `label: | value |` header lines, then the body."""
    lines = text.replace("\r\n", "\n").split("\n")
    fields: dict[str, Any] = {}
    body_start = 0
    for i, line in enumerate(lines):
        pairs = _PAIR_RE.findall(line)
        if not pairs:
            if line.strip() and not fields:
                raise ValidationFailed(f"{source}: no catalogue header (索引号: | … |) at the top")
            if line.strip():
                body_start = i
                break
            continue
        for label, value in pairs:
            key = HEADER_LABELS.get(label.strip())
            if key is None:
                raise ValidationFailed(
                    f"{source}: line {i + 1}: unknown header label {label.strip()!r}"
                )
            fields[key] = value
        body_start = i + 1
    body_lines = lines[body_start:]
    # a first body line without sentence punctuation, shorter than a sentence, is the title
    if "title" not in fields and body_lines:
        head = body_lines[0].strip()
        if head and len(head) <= 60 and not re.search(r"[。，,；;]", head):
            fields["title"] = head
            body_lines = body_lines[1:]
    # each line of the page is a paragraph; indentation at its start (　　) is kept
    fields["body"] = "\n\n".join(ln.rstrip() for ln in body_lines if ln.strip())
    missing = [
        lbl
        for lbl, key in (("主题分类", "category"), ("成文日期", "written_at"))
        if key not in fields
    ]
    if missing:
        raise ValidationFailed(f"{source}: header lacks {', '.join(missing)}")
    return _record(fields, source, config, title, body_format)


def parse_json(
    text: str,
    source: str,
    config: Config,
    title: str | None = None,
    body_format: BodyFormat = BodyFormat.TEXT,
) -> list[ImportRecord]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            f"{source}: malformed JSON at line {exc.lineno}: {exc.msg}"
        ) from None
    records = data if isinstance(data, list) else [data]
    out = []
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise ValidationFailed(f"{source}: record {n} is not a JSON object")
        out.append(_record(dict(rec), f"{source} record {n}", config, title, body_format))
    return out


def parse_csv(
    text: str,
    source: str,
    config: Config,
    title: str | None = None,
    body_format: BodyFormat = BodyFormat.TEXT,
) -> list[ImportRecord]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ValidationFailed(f"{source}: empty CSV (a header row is required)")
    out = []
    for row in reader:
        fields = {HEADER_LABELS.get(k.strip(), k.strip()): v for k, v in row.items() if k}
        if "urgent" in fields:
            fields["urgent"] = str(fields["urgent"]).strip().lower() in ("1", "true", "yes", "是")
        out.append(_record(fields, f"{source} line {reader.line_num}", config, title, body_format))
    return out


def parse_file(
    path: Path,
    config: Config,
    title: str | None = None,
    body_format: BodyFormat = BodyFormat.TEXT,
) -> list[ImportRecord]:
    """Records from one file, by extension (.json, .csv; anything else is the page format)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValidationFailed(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ValidationFailed(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ValidationFailed(f"{path}: cannot read: {exc.strerror}") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return parse_json(text, str(path), config, title, body_format)
    if suffix == ".csv":
        return parse_csv(text, str(path), config, title, body_format)
    return [parse_page(text, str(path), config, title, body_format)]
