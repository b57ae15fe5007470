"""The annual report published as an item (issue 9, item 6): a DRAFT that then goes
through the confidentiality review and publication like any other item.

The item's body is the report as Markdown (what SMS, email and the feeds carry), the
PDF in the 2021 template is its attachment. A report that does not add up is refused
before anything is written (ReportDoesNotAddUp, 409, naming the cell).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime

from publisher import workflow
from publisher.content import ItemCreate, content_from
from publisher.models import BodyFormat, Item
from publisher.reports.annual import build_report, check_report
from publisher.reports.render import render_markdown, render_pdf
from publisher.store.sql import Actor, SqlStore


def attachment_name(year: int) -> str:
    return f"{year}年政府信息公开工作年度报告.pdf"


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def publish_as_item(
    store: SqlStore, year: int, *, actor: Actor, today: date | None = None
) -> Item:
    """Create the DRAFT item of YEAR's report, written today (site time), with the PDF
    attached; the category is `reports.category` (default: the first taxonomy entry)."""
    workflow.check_can_edit(actor.role)  # before the second of rendering
    config = store.config
    report = await build_report(store, year)
    check_report(report)  # before anything is written: nothing half-made on a refusal
    body = render_markdown(report)
    # WeasyPrint takes a second or more: off the event loop, so the server keeps answering
    pdf = await asyncio.to_thread(render_pdf, report)
    written = today or datetime.now(config.site.tz).date()
    fields = ItemCreate(
        title=report.title,
        body=body,
        format=BodyFormat.MARKDOWN,  # its tables are pipe tables
        category=config.report_category,
        written_at=written,
    )
    item = await store.create_item(content_from(fields, config), actor=actor)
    await store.add_attachment(
        item.id, attachment_name(year), "application/pdf", _once(pdf), actor=actor
    )
    return await store.get_item(item.id)
