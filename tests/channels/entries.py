"""A feed entry for the feed tests: one plausible item, any field overridden."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from channels.rss import EntryData

WHEN = datetime(2026, 11, 20, tzinfo=UTC)


def sample_entry(item_id: str, when: datetime = WHEN, **overrides: Any) -> EntryData:
    data = EntryData(
        item_id=item_id,
        title="关于冬季农田水利建设的通知",
        summary="摘要",
        body_html="<p>正文</p>",
        category="nync",
        category_name="农业农村",
        agency="上余镇人民政府",
        index_no=None,
        doc_no=None,
        written_on="2026-11-20",
        published=when,
        updated=when,
        revision=1,
        correction_note=None,
        urgent=False,
        public_url=f"https://example.org/items/{item_id}",
        attachments=(),
    )
    return dataclasses.replace(data, **overrides)
