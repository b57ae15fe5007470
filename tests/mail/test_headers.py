"""Header lines of the email channel (issue 18): folded at 78 characters (RFC 5322 §2.1.1),
Chinese display names as RFC 2047 encoded-words each of whole characters, read back by the
standard library's parser and still signed and verified by dkimpy."""

from __future__ import annotations

import base64
import re
from email import message_from_bytes, policy
from email.header import decode_header
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.base import Target
from channels.mail import DkimSigner, phrase_header
from publisher.config import Config
from tests.mail.conftest import SENDER, mail_config
from tests.mail.test_units import channel, subject

DOMAIN = SENDER.rpartition("@")[2]
MAILTO = f"leave@{DOMAIN}"
ENCODED_WORD = re.compile(r"=\?utf-8\?b\?([A-Za-z0-9+/=]+)\?=")
LONG_NAME = "浙江省绍兴市上虞区上余镇人民政府政府信息公开工作领导小组办公室主动公开信息订阅服务"


def head_lines(message: bytes) -> list[str]:
    return message.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")


def fields(message: bytes) -> dict[str, list[str]]:
    """Each header field's physical lines, by lower-case name."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in head_lines(message):
        if line[:1] in (" ", "\t"):
            current.append(line)
        else:
            current = [line]
            out[line.split(":", 1)[0].lower()] = current
    return out


def rendered(config: Config, key: str = "r:1", **settings: Any) -> bytes:
    adapter = channel(mail_config(config, 25, unsubscribe_mailto=MAILTO, **settings))
    target = Target(key, "email", "resident@example.org", link_nonce="n" * 22)
    return adapter.render(subject(), target).body


def assert_words_whole(lines: list[str]) -> None:
    """Every encoded-word decodes on its own to whole UTF-8 characters, fits RFC 2047's 75."""
    words = [w for line in lines for w in ENCODED_WORD.findall(line)]
    assert words
    for line in lines:
        for word in re.findall(r"=\?[^ ]*\?=", line):
            assert len(word) <= 75, word
    for w in words:
        base64.b64decode(w).decode("utf-8")  # strict: a split character fails here


@pytest.mark.parametrize("from_name", [None, LONG_NAME])
def test_from_and_list_id_are_folded_and_read_back(config: Config, from_name: str | None) -> None:
    settings = {"from_name": from_name} if from_name else {}
    message = rendered(config, **settings)
    name = from_name or config.site.name
    by_name = fields(message)
    for field in ("from", "list-id", "subject", "to", "message-id", "date", "content-type"):
        for line in by_name[field]:
            assert len(line) <= 78, (field, len(line), line)
    assert_words_whole(by_name["from"])
    assert_words_whole(by_name["list-id"])
    if from_name:
        assert len(by_name["from"]) > 2  # a long name takes several encoded-words

    msg = message_from_bytes(message, policy=policy.default)
    (sender,) = msg["From"].addresses
    # CPython's address parser joins adjacent encoded-words of a display name with a
    # space, where RFC 2047 §6.2 says the folding white space between them is dropped
    display = sender.display_name.replace(" ", "") if from_name else sender.display_name
    assert (display, sender.addr_spec) == (name, SENDER)
    assert str(msg["List-Id"]) == f"{config.site.name} <gongkai.{DOMAIN}>"
    # decode_header (compat32) follows §6.2 exactly: the name, whole
    old = message_from_bytes(message, policy=policy.compat32)
    parts = decode_header(old["From"])
    assert parts[0] == (name.encode(), "utf-8")
    assert parts[-1][0].strip() == f"<{SENDER}>".encode()


def test_list_unsubscribe_holds_one_link_a_line_and_reads_back_whole(config: Config) -> None:
    message = rendered(config, key="r:123456")
    lines = fields(message)["list-unsubscribe"]
    # one link a line: the https link (too long to fold) on the header's, the mailto below
    assert [line.count("<") for line in lines] == [1, 1]
    assert lines[0].startswith("List-Unsubscribe: <https://") and lines[0].endswith(">,")
    assert lines[1] == f" <mailto:{MAILTO}?subject=unsubscribe>"
    msg = message_from_bytes(message, policy=policy.default)
    links = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
    assert links[0].startswith("https://gk.shangyu.example.gov.cn/unsubscribe/123456.")
    assert links[1] == f"mailto:{MAILTO}?subject=unsubscribe"


def test_ascii_display_names_are_quoted_where_rfc5322_wants() -> None:
    assert phrase_header("From", "Shangyu", "a@b.org") == "From: Shangyu <a@b.org>"
    folded = phrase_header("From", "Gongkai, Shangyu Town Information Service Office", "a@b.org")
    assert folded == 'From: "Gongkai, Shangyu Town Information Service Office" <a@b.org>'
    long = phrase_header("From", "Gongkai, Shangyu Town Government Information Service", SENDER)
    assert long.split("\r\n") == [
        'From: "Gongkai, Shangyu Town Government Information Service"',
        f" <{SENDER}>",
    ]
    msg = message_from_bytes(long.encode() + b"\r\n\r\n", policy=policy.default)
    assert msg["From"].addresses[0].display_name == (
        "Gongkai, Shangyu Town Government Information Service"
    )


def test_folded_headers_are_signed_and_verify_with_dkim(config: Config) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    cfg = mail_config(
        config,
        25,
        from_name=LONG_NAME,
        unsubscribe_mailto=MAILTO,
        dkim_domain=DOMAIN,
        dkim_selector="gk",
        dkim_key_env="K",
    )
    adapter = channel(cfg, K=pem.decode())
    adapter.dkim = DkimSigner(DOMAIN, "gk", pem)
    body = adapter.render(subject(), Target("r:123456", "email", "a@example.org", link_nonce="x"))
    signed = body.body
    signature = message_from_bytes(signed, policy=policy.compat32)["DKIM-Signature"]
    signed_headers = re.search(r"h=([^;]+)", re.sub(r"\s", "", signature))
    assert signed_headers is not None
    covered = set(signed_headers.group(1).lower().split(":"))
    assert {"from", "list-id", "list-unsubscribe", "subject"} <= covered

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record

    assert dkim.verify(signed, dnsfunc=dns)
    # the signature covers the folded From: another name fails
    tampered = signed.replace(b"=?utf-8?b?5rWZ", b"=?utf-8?b?5rWa", 1)
    assert tampered != signed and not dkim.verify(tampered, dnsfunc=dns)
    for line in fields(signed)["from"] + fields(signed)["list-id"]:
        assert len(line) <= 78, line
