"""Dry-run outboxes: the SMS gateway type `outbox` and the email setting `outbox_dir` write
each message to a file, are reported as a dry run, and are refused unless the service is
on a loopback address."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.base import AdapterContext, Subject, Target
from channels.mail import MailChannel, mail_settings
from channels.sms import SmsChannel, sms_settings
from publisher.config import Config
from publisher.errors import ConfigError
from publisher.readiness import ChannelState, configured
from publisher.store.sql import SqlStore
from tests.conftest import dry_run_channels


def _subject(**fields: Any) -> Subject:
    values: dict[str, Any] = dict(
        key="event:1", kind="published", item_id="i-1", revision=1, title="冬季农田水利建设通知",
        summary="摘要", body="正文", body_html="<p>正文</p>", category="nync",
        category_name="农业农村", agency="上余镇人民政府", index_no="X/2026-00001",
        doc_no=None, written_at=datetime(2026, 3, 1, tzinfo=UTC),
        published_at=datetime(2026, 3, 1, tzinfo=UTC), urgent=False,
        public_url="http://127.0.0.1:8080/items/i-1", site_name="上余镇",
    )  # fmt: skip
    values.update(fields)
    return Subject(**values)


def _on(config: Config, base_url: str) -> Config:
    tree = config.model_dump()
    tree["site"]["base_url"] = base_url
    return Config.model_validate(tree)


async def test_sms_and_email_go_to_files_and_are_a_dry_run(
    config: Config, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    cfg = dry_run_channels(config, tmp_path / "outbox")
    for name in ("sms", "email"):
        found = configured(cfg, name)
        assert found.state is ChannelState.ACTIVE and found.dry_run, found
    context = AdapterContext(cfg, sqlite_store)
    sms = SmsChannel(sms_settings(cfg), cfg.site, context)
    mail = MailChannel(mail_settings(cfg), cfg.site, context)
    async with AsyncExitStack() as stack:
        await sms.start(stack)
        await mail.start(stack)
        to_phone = Target("r:1", "sms", "+8613700137000")
        receipt = await sms.deliver(sms.render(_subject(), to_phone), to_phone, delivery_id="7")
        assert receipt.provider_id and receipt.provider_id.startswith("outbox:")
        to_mail = Target("r:2", "email", "zhang@example.org")
        await mail.deliver(mail.render(_subject(), to_mail), to_mail, delivery_id="8")
    (sms_file,) = (tmp_path / "outbox" / "sms").iterdir()
    text = sms_file.read_text()
    assert "+8613700137000" in text and "冬季农田水利建设通知" in text and "dry run" in text
    (mail_file,) = (tmp_path / "outbox" / "email").iterdir()
    assert mail_file.suffix == ".eml"
    assert b"To: zhang@example.org" in mail_file.read_bytes()


@pytest.mark.parametrize("channel", ["sms", "email"])
async def test_an_outbox_is_refused_off_loopback(
    config: Config, sqlite_store: SqlStore, tmp_path: Path, channel: str
) -> None:
    cfg = _on(dry_run_channels(config, tmp_path / "outbox"), "https://gk.example.gov.cn")
    context = AdapterContext(cfg, sqlite_store)
    adapter: SmsChannel | MailChannel = (
        SmsChannel(sms_settings(cfg), cfg.site, context)
        if channel == "sms"
        else MailChannel(mail_settings(cfg), cfg.site, context)
    )
    async with AsyncExitStack() as stack:
        with pytest.raises(ConfigError, match="not a loopback address") as err:
            await adapter.start(stack)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "outbox").exists()
