"""The email adapter on its own: settings errors, DKIM, the connection pool's reconnect, the
SMTP answers' meaning, and rendering once per subject."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.base import (
    AdapterContext,
    NotConfigured,
    PermanentDeliveryError,
    Subject,
    Target,
    TransientDeliveryError,
)
from channels.mail import MailChannel, mail_settings
from publisher.config import Config
from publisher.errors import ConfigError
from tests.mail.conftest import SENDER, SmtpSink, free_port, mail_config


def subject(key: str = "event:1", **fields: Any) -> Subject:
    values: dict[str, Any] = dict(
        key=key, kind="published", item_id="i-1", revision=1, title="通知", summary="摘要",
        body="正文", body_html="<p>正文</p>", category="nync", category_name="农业农村",
        agency="上余镇人民政府", index_no="X/2026-00001", doc_no=None,
        written_at=datetime(2026, 3, 1, tzinfo=UTC), published_at=datetime(2026, 3, 1, tzinfo=UTC),
        urgent=False, public_url="https://gk.example/items/i-1", site_name="上余镇",
    )  # fmt: skip
    values.update(fields)
    return Subject(**values)


def channel(config: Config, **env: str) -> MailChannel:
    cls = MailChannel
    adapter = cls(mail_settings(config), config.site, AdapterContext(config, None))  # type: ignore[arg-type]
    adapter.environ = env
    return adapter


def test_settings_errors_name_the_key(config: Config) -> None:
    tree = config.model_dump()
    tree["channels"]["email"]["settings"] = {"host": "smtp.example.org"}
    with pytest.raises(ConfigError, match=r"channels\.email\.settings: from_address: required"):
        mail_settings(Config.model_validate(tree))
    tree["channels"]["email"]["settings"] = {"hots": "x"}
    with pytest.raises(ConfigError, match=r"channels\.email\.settings\.hots: unknown key"):
        mail_settings(Config.model_validate(tree))
    tree["channels"]["email"]["settings"] = {"dkim_domain": "example.org"}
    with pytest.raises(ConfigError, match="DKIM needs"):
        mail_settings(Config.model_validate(tree))


async def test_without_a_server_the_channel_waits(config: Config) -> None:
    adapter = channel(config)
    async with AsyncExitStack() as stack:
        with pytest.raises(NotConfigured, match="no SMTP server"):
            await adapter.start(stack)


def test_an_item_is_rendered_once_and_personalised_per_resident(config: Config) -> None:
    adapter = channel(mail_config(config, 25))
    calls = 0
    real = adapter._prepare

    def counting(s: Subject) -> Any:
        nonlocal calls
        calls += 1
        return real(s)

    adapter._prepare = counting  # type: ignore[method-assign]
    s = subject()
    one = adapter.render(s, Target("r:1", "email", "a@example.org"))
    two = adapter.render(s, Target("r:2", "email", "b@example.org"))
    assert calls == 1
    m1 = message_from_bytes(one.body, policy=policy.default)
    m2 = message_from_bytes(two.body, policy=policy.default)
    assert m1["Message-ID"] != m2["Message-ID"] and m1["To"] != m2["To"]
    assert (
        "/unsubscribe/1." in m1["List-Unsubscribe"] and "/unsubscribe/2." in m2["List-Unsubscribe"]
    )
    assert m1["Subject"] == m2["Subject"] == "通知"
    # the same row renders the same Message-ID again (a resend)
    assert adapter.render(s, Target("r:1", "email", "a@example.org")).body == one.body


def test_dkim_signature_verifies(config: Config) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    cfg = mail_config(
        config, 25, dkim_domain="shangyu.example.gov.cn", dkim_selector="gk", dkim_key_env="K"
    )
    adapter = channel(cfg, K=pem.decode())
    from channels.mail import DkimSigner

    adapter.dkim = DkimSigner("shangyu.example.gov.cn", "gk", pem)
    body = adapter.render(subject(), Target("r:1", "email", "a@example.org")).body
    assert body.startswith(b"DKIM-Signature:")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"gk._domainkey.shangyu.example.gov.cn."
        return record

    assert dkim.verify(body, dnsfunc=dns)
    tampered = body.replace(b"To: a@example.org", b"To: b@example.org")
    assert not dkim.verify(tampered, dnsfunc=dns)


async def test_the_pool_reconnects_after_the_server_drops_and_maps_answers(
    config: Config,
) -> None:
    sink = SmtpSink()
    sink.refuse["gone@example.org"] = (550, None)
    sink.refuse["later@example.org"] = (452, None)
    port = free_port()
    adapter = channel(mail_config(config, port, connections=1))
    s = subject()

    def send(to: str, n: str) -> Any:
        target = Target("r:1", "email", to)
        return adapter.deliver(adapter.render(s, target), target, delivery_id=n)

    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    async with AsyncExitStack() as stack:
        await adapter.start(stack)
        await send("a@example.org", "1")
        with pytest.raises(PermanentDeliveryError) as hard:
            await send("gone@example.org", "2")
        assert hard.value.reason == "bounced" and "550" in str(hard.value)
        with pytest.raises(TransientDeliveryError, match="452"):
            await send("later@example.org", "3")
        # the connection survives refusals: still one session
        controller.stop()
        with pytest.raises(TransientDeliveryError):  # nobody listening
            for _ in range(2):
                await send("a@example.org", "4")
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            await send("a@example.org", "5")
        finally:
            controller.stop()
    assert [m.rcpt_tos for m in sink.received] == [["a@example.org"], ["a@example.org"]]
    assert all(m.mail_from == SENDER for m in sink.received)


def test_remote_images_are_removed_from_the_mail_html(config: Config) -> None:
    """Issue 16 (B): a remote image in a Markdown body is a read-tracking pixel in mail."""
    from publisher.text import render_body

    base = config.site.base_url.rstrip("/")
    body = (
        "见下图。\n\n![x](https://tracker.example/pixel.png?u=1)\n\n"
        f"![本站](<{base}/static/logo.png>)\n\n"
        "![同名](https://tracker.example.evil/x.png)"
    )
    html_body = render_body(body, "markdown")
    assert "tracker.example/pixel.png" in html_body  # the page keeps it; only mail drops it
    adapter = channel(config)
    rendered = adapter.render(
        subject(body=body, body_html=html_body), Target("r:1", "email", "a@example.org")
    )
    message = message_from_bytes(rendered.body, policy=policy.default)
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "tracker.example" not in html
    assert f"{base}/static/logo.png" in html
    assert "见下图" in html


def test_only_data_uris_and_the_sites_own_images_stay() -> None:
    from channels.mail import without_remote_images

    own = ["https://gk.example"]
    keep = [
        '<img src="data:image/png;base64,AAAA" alt="x">',
        '<img alt="a" src="https://gk.example/a.png">',
        "<IMG SRC='https://gk.example/b.png'>",
    ]
    drop = [
        '<img src="https://gk.example.evil/a.png">',
        '<img src="//tracker.example/p.gif">',
        '<img src="/relative.png">',
        '<img src=" https://tracker.example/p.gif">',
        '<img src="h&#116;tps://tracker.example/p.gif">',
        '<img alt="no src">',
        '<img src="https://gk.example/a.png" srcset="https://tracker.example/p.gif 2x">',
        '<img alt=">" src="https://tracker.example/p.gif">',
    ]
    for tag in keep:
        assert without_remote_images(f"<p>{tag}</p>", own) == f"<p>{tag}</p>", tag
    for tag in drop:
        assert without_remote_images(f"<p>{tag}</p>", own) == "<p></p>", tag
