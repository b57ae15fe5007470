"""An item's text as a channel sees it: the Subject of one event, or of a preview.

One place builds it, so the delivery worker, the API preview and the staff UI's
previews render exactly what will be sent (summary derived the same way, the same
links, attachments and public URL).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from channels.base import Subject
from publisher.config import Config
from publisher.models import Attachment, Content
from publisher.text import derive_summary, render_body


def attachment_links(
    config: Config, item_id: str, attachments: Iterable[Attachment], revision: int
) -> tuple[dict[str, Any], ...]:
    """The attachments a revision carries, with their public URLs (percent-encoded: names
    hold spaces and Chinese characters)."""
    base = config.site.public_base
    return tuple(
        {
            "filename": a.filename,
            "content_type": a.content_type,
            "sha256": a.sha256,
            "size": a.size,
            "url": f"{base}/items/{item_id}/attachments/{a.id}/{quote(a.filename)}",
        }
        for a in attachments
        if a.revision <= revision
    )


def content_subject(
    config: Config,
    content: Content,
    *,
    key: str,
    kind: str,
    item_id: str,
    revision: int,
    index_no: str | None,
    published_at: datetime | None,
    event_at: datetime | None,
    correction_note: str | None = None,
    attachments: tuple[dict[str, Any], ...] = (),
    related: tuple[dict[str, Any], ...] = (),
) -> Subject:
    category = config.category(content.category)
    return Subject(
        key=key,
        kind=kind,
        item_id=item_id,
        revision=revision,
        title=content.title,
        summary=content.summary
        or derive_summary(content.body, config.items.summary_chars, content.body_format),
        body=content.body,
        body_html=render_body(content.body, content.body_format),
        body_format=content.body_format.value,
        category=content.category,
        category_name=category.name if category else content.category,
        agency=content.agency,
        index_no=index_no,
        doc_no=content.doc_no,
        written_at=content.written_at,
        published_at=published_at,
        urgent=content.urgent,
        public_url=f"{config.site.public_base}/items/{item_id}",
        correction_note=correction_note,
        attachments=attachments,
        site_name=config.site.name,
        event_at=event_at,
        expires_at=content.expires_at,
        related=related,
    )
