"""The pure SMS functions: segments as carriers bill them, composing an item's message, the
delivery-report table, the keywords residents send, report tokens and numbers."""

from __future__ import annotations

from typing import Any

import pytest

from channels.sms import check_dlr_token, dlr_token, gateway_number, sms_settings
from channels.sms_text import (
    ELLIPSIS,
    Command,
    DlrVerdict,
    Encoding,
    compose,
    dlr_meaning,
    parse_keyword,
    plain_message,
    segments,
)
from publisher.addresses import mask, normalize
from publisher.config import Config
from publisher.errors import ConfigError, ValidationFailed

PAIR = "𠮷"  # outside the BMP: two UTF-16 code units


@pytest.mark.parametrize(
    ("text", "encoding", "units", "parts"),
    [
        ("", Encoding.GSM7, 0, 0),
        ("a" * 160, Encoding.GSM7, 160, 1),
        ("a" * 161, Encoding.GSM7, 161, 2),
        ("a" * 306, Encoding.GSM7, 306, 2),
        ("a" * 307, Encoding.GSM7, 307, 3),
        ("€" * 80, Encoding.GSM7, 160, 1),  # extension characters count two
        ("{" * 81, Encoding.GSM7, 162, 3 - 1),  # 76 + 5 escaped pairs
        ("a" * 152 + "[" + "a" * 10, Encoding.GSM7, 164, 2),
        ("中" * 70, Encoding.UCS2, 70, 1),
        ("中" * 71, Encoding.UCS2, 71, 2),
        ("中" * 134, Encoding.UCS2, 134, 2),
        ("中" * 135, Encoding.UCS2, 135, 3),
        ("a" * 69 + "中", Encoding.UCS2, 70, 1),  # one Chinese character: all UCS-2
        (PAIR * 35, Encoding.UCS2, 70, 1),
        (PAIR * 36, Encoding.UCS2, 72, 2),
        # a pair never straddles two parts: 66 + (pair) would be 68 > 67
        ("中" * 66 + PAIR + "中" * 66, Encoding.UCS2, 134, 3),
        ("中" * 65 + PAIR + "中" * 67, Encoding.UCS2, 134, 2),
    ],
)
def test_segments_as_carriers_bill_them(
    text: str, encoding: Encoding, units: int, parts: int
) -> None:
    got = segments(text)
    assert (got.encoding, got.units, got.parts) == (encoding, units, parts)


def test_an_escaped_gsm_character_never_straddles_two_parts() -> None:
    # 152 plain septets, then "€" (2): 154 would straddle the first part's 153
    assert segments("a" * 152 + "€" + "a" * 7).parts == 2
    assert segments("a" * 152 + "€" + "a" * 152).parts == 3


LINK = "http://127.0.0.1:8080/s/Ab3dE6gH"


def test_a_short_item_fits_whole_in_one_part() -> None:
    c = compose(
        title="停水通知",
        summary="明日上午停水",
        link=LINK,
        signature_text="【上余镇】",
        opt_out="回复TD退订",
        max_parts=3,
    )
    assert c.text == f"【上余镇】停水通知：明日上午停水 {LINK} 回复TD退订"
    assert not c.truncated and c.segments.parts == 1


@pytest.mark.parametrize("max_parts", [1, 2, 3])
def test_a_long_item_is_cut_to_fit_and_keeps_its_link_and_opt_out(max_parts: int) -> None:
    title = "关于上余镇2026年冬季农田水利建设" + PAIR * 3 + "的通知"
    summary = ("各村：为做好冬季农田水利建设工作，现将有关事项通知如下。" + PAIR) * 12
    c = compose(
        title=title,
        summary=summary,
        link=LINK,
        signature_text="【上余镇政府信息公开】",
        opt_out="回复TD退订",
        max_parts=max_parts,
    )
    assert c.truncated
    assert c.segments.parts == max_parts  # as much as fits, no more
    assert c.text.startswith("【上余镇政府信息公开】")
    assert c.text.endswith(f"{ELLIPSIS} {LINK} 回复TD退订")
    cut = c.text.removeprefix("【上余镇政府信息公开】").split(ELLIPSIS)[0]
    assert (title + "：" + summary).startswith(cut)  # a prefix: whole characters only
    # one character more would not have fitted
    full = title + "：" + summary
    longer = "【上余镇政府信息公开】" + full[: len(cut) + 1] + f"{ELLIPSIS} {LINK} 回复TD退订"
    assert segments(longer).parts > max_parts


def test_a_transactional_message_has_no_opt_out_line() -> None:
    c = plain_message("您的验证码是123456", "【上余镇】")
    assert c.text == "【上余镇】您的验证码是123456" and "退订" not in c.text


def test_a_gateway_that_signs_itself_gets_no_signature() -> None:
    c = compose(title="通知", summary="", link=LINK, signature_text="", opt_out=None, max_parts=1)
    assert c.text == f"通知 {LINK}"


@pytest.mark.parametrize(
    ("status", "verdict", "reason"),
    [
        (1, DlrVerdict.DELIVERED, "delivered"),
        (2, DlrVerdict.FAILED, "undelivered"),
        (4, DlrVerdict.PENDING, "buffered"),
        (8, DlrVerdict.PENDING, "smsc_ack"),
        (16, DlrVerdict.FAILED, "smsc_reject"),
    ],
)
def test_kannel_report_codes(status: int, verdict: DlrVerdict, reason: str) -> None:
    meaning = dlr_meaning(status)
    assert (meaning.verdict, meaning.reason) == (verdict, reason)


@pytest.mark.parametrize("status", [0, 3, 9, 32, -1])
def test_unknown_report_codes_are_refused_not_guessed(status: int) -> None:
    with pytest.raises(ValueError, match=str(status)):
        dlr_meaning(status)


KNOWN = ["ZWGK", "NY", "ZS"]


@pytest.mark.parametrize(
    ("text", "command", "categories"),
    [
        ("DY", Command.SUBSCRIBE, ()),
        ("  dy ", Command.SUBSCRIBE, ()),
        ("ＤＹ", Command.SUBSCRIBE, ()),  # full-width letters
        ("DY NY", Command.SUBSCRIBE, ("NY",)),
        ("dy ny zs ny", Command.SUBSCRIBE, ("NY", "ZS")),
        ("DYNY", Command.SUBSCRIBE, ("NY",)),
        ("订阅", Command.SUBSCRIBE, ()),
        ("TD", Command.UNSUBSCRIBE, ()),
        (" td", Command.UNSUBSCRIBE, ()),
        ("T", Command.UNSUBSCRIBE, ()),
        ("r", Command.UNSUBSCRIBE, ()),
        ("退订", Command.UNSUBSCRIBE, ()),
        ("STOP", Command.UNSUBSCRIBE, ()),
        ("Stop\n", Command.UNSUBSCRIBE, ()),
        ("CX", Command.QUERY, ()),
        ("cx ", Command.QUERY, ()),
        ("", Command.HELP, ()),
        ("你好", Command.HELP, ()),
        ("TD please", Command.HELP, ()),
    ],
)
def test_keywords(text: str, command: Command, categories: tuple[str, ...]) -> None:
    kw = parse_keyword(text, KNOWN)
    assert (kw.command, kw.categories) == (command, categories)


def test_an_unknown_category_keyword_gets_help_naming_it() -> None:
    kw = parse_keyword("DY NY XX", KNOWN)
    assert kw.command is Command.HELP and kw.unknown == ("XX",)


def test_report_tokens_belong_to_one_delivery() -> None:
    key = b"k" * 32
    token = dlr_token(key, "42")
    assert check_dlr_token(key, "42", token)
    assert not check_dlr_token(key, "43", token)
    assert not check_dlr_token(b"x" * 32, "42", token)
    assert not check_dlr_token(key, "42", token[:-1] + ("A" if token[-1] != "A" else "B"))


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13800138000", "+8613800138000"),
        (" +86 138-0013-8000 ", "+8613800138000"),
        ("008613800138000", "+8613800138000"),
    ],
)
def test_numbers_are_normalised_to_e164(raw: str, e164: str) -> None:
    assert normalize("sms", raw) == e164
    assert mask(e164) == "138****8000"
    assert gateway_number(e164, "national") == "13800138000"
    assert gateway_number(e164, "e164") == e164


@pytest.mark.parametrize(
    ("raw", "why"), [("12345", "not a valid"), ("call me", "not a phone number"), ("", "empty")]
)
def test_invalid_numbers_are_refused_with_a_reason(raw: str, why: str) -> None:
    with pytest.raises(ValidationFailed, match=why):
        normalize("sms", raw)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (
            {"gateways": [{"username": "u", "sender": "1"}]},
            "gateways.0: give exactly one of password",
        ),
        (
            {"gateways": [{"username": "u", "password": "s3cret", "sender": "1", "x": 1}]},
            "gateways.0.x: unknown key",
        ),
        ({"max_segments": 0}, "max_segments: Input should be greater than or equal to 1"),
        ({"inbound_secret": "short"}, "inbound_secret"),
    ],
)
def test_bad_sms_settings_are_one_line_naming_the_key(
    config: Config, settings: dict[str, Any], words: str
) -> None:
    tree = config.model_dump()
    tree["channels"]["sms"]["settings"] = settings
    with pytest.raises(ConfigError) as caught:
        sms_settings(Config.model_validate(tree))
    message = caught.value.detail
    assert message.startswith("channels.sms.settings.") and words in message
    assert "\n" not in message and "s3cret" not in message


def test_every_sms_setting_is_documented_in_the_readme() -> None:
    from channels.sms import GatewaySettings, SmsSettings
    from channels.sms_aliyun import AliyunGatewaySettings
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8").split("### SMS", 1)[1]
    missing = [
        name
        for model in (SmsSettings, GatewaySettings, AliyunGatewaySettings)
        for name in model.model_fields
        if f"`{name}`" not in readme
    ]
    assert not missing, f"settings missing from the README's SMS section: {missing}"
