"""Personal-data warnings: resident IDs, mobile numbers, bank cards; masked forms pass."""

from __future__ import annotations

import pytest

from publisher.pii import PiiKind, luhn_valid, resident_id_valid, scan_fields, scan_text


def id_check_digit(first17: str) -> str:
    """GB 11643-1999, written independently: weight of position i (1-based from the
    right, the check digit being position 1) is 2^(i-1) mod 11."""
    assert len(first17) == 17 and first17.isdigit()
    total = sum(int(d) * pow(2, 17 - n, 11) for n, d in enumerate(first17))
    check = (12 - total % 11) % 11
    return "X" if check == 10 else str(check)


def resident_id(first17: str) -> str:
    return first17 + id_check_digit(first17)


def luhn_complete(partial: str) -> str:
    """Append the digit that makes `partial` pass the Luhn check."""
    for d in "0123456789":
        candidate = partial + d
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            v = int(ch) * (2 if i % 2 else 1)
            total += v // 10 + v % 10
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def wrong_last(number: str) -> str:
    last = number[-1]
    return number[:-1] + ("1" if last != "1" else "2")


ID_X = "11010519491231002X"  # the standard's own example
ID_DIGIT = resident_id("33088119850317001")  # check digit 5
CARD = luhn_complete("622202123456789012")  # 19 digits


def kinds(text: str) -> list[PiiKind]:
    return [f.kind for f in scan_text(text, "body")]


# -- the helpers agree with the standard ----------------------------------------------------


def test_independent_check_digit_matches_the_published_example() -> None:
    assert id_check_digit("11010519491231002") == "X"
    assert ID_DIGIT == "330881198503170015"
    assert resident_id_valid(ID_X)
    assert resident_id_valid(ID_X.lower())
    assert resident_id_valid(ID_DIGIT)
    assert not resident_id_valid(wrong_last(ID_DIGIT))
    assert not resident_id_valid("1101051949123100")  # too short


def test_luhn_helper() -> None:
    assert luhn_valid(CARD)
    assert luhn_valid("4111111111111111")
    assert not luhn_valid(wrong_last(CARD))


# -- resident ID numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("number", [ID_X, ID_DIGIT, resident_id("33088119850317004")])
def test_valid_resident_id_is_found_and_masked(number: str) -> None:
    text = f"申请人身份证号码：{number}，住址不详。"
    [finding] = scan_text(text, "body")
    assert finding.kind is PiiKind.RESIDENT_ID
    assert finding.field == "body"
    assert finding.start == text.index(number)
    assert number not in finding.masked
    assert finding.masked.startswith(number[:6]) and finding.masked.endswith(number[-4:])
    assert "*" * 8 in finding.masked


def test_lower_case_x_is_found() -> None:
    assert kinds(f"证件 {ID_X.lower()}") == [PiiKind.RESIDENT_ID]


def test_invalid_check_digit_is_not_a_resident_id() -> None:
    assert PiiKind.RESIDENT_ID not in kinds(f"号码 {wrong_last(ID_DIGIT)} 。")
    assert PiiKind.RESIDENT_ID not in kinds(f"号码 {ID_X[:-1]}1 。")
    assert PiiKind.RESIDENT_ID not in kinds(f"号码 {ID_DIGIT[:-1]}X")


def test_resident_id_inside_a_longer_number_is_not_found() -> None:
    assert PiiKind.RESIDENT_ID not in kinds("9" + ID_DIGIT)
    assert PiiKind.RESIDENT_ID not in kinds(ID_DIGIT + "7")


def test_resident_id_is_not_also_reported_as_bank_card_or_mobile() -> None:
    # find an ID that also passes Luhn: it would be a card if the scanner double-counted
    for n in range(1000, 2000):
        number = resident_id(f"3308811985031{n}")
        if luhn_valid(number) and number[-1] != "X":
            break
    else:
        raise AssertionError("no Luhn-valid ID in range")
    assert kinds(f"身份证 {number}") == [PiiKind.RESIDENT_ID]
    # an ID whose digits contain a mobile-number pattern is one finding too
    with_mobile = resident_id("11013819900101123")
    assert kinds(with_mobile) == [PiiKind.RESIDENT_ID]


# -- mobile numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "联系电话13812345678",
        "电话：+86 138 1234 5678。",
        "电话 138-1234-5678",
        "+8613812345678",
        "(电话:138 1234 5678)",
    ],
)
def test_mobile_numbers_are_found(text: str) -> None:
    [finding] = scan_text(text, "summary")
    assert finding.kind is PiiKind.MOBILE
    assert finding.field == "summary"
    assert finding.masked == "138****5678"


@pytest.mark.parametrize(
    "text",
    [
        "联系人 138****5678",
        "联系人 138 **** 5678",
        "2013812345678900",  # digits inside a longer number
        "编号 913812345678",
        "13812345678901",
        "12812345678",  # no mobile prefix starts 12
        "电话 0570-4012345",  # a landline
    ],
)
def test_masked_or_embedded_digits_are_not_mobile_numbers(text: str) -> None:
    assert PiiKind.MOBILE not in kinds(text)


def test_several_mobile_numbers_are_each_reported() -> None:
    found = scan_text("甲 13912345678，乙 15098765432。", "body")
    assert [f.kind for f in found] == [PiiKind.MOBILE, PiiKind.MOBILE]
    assert [f.masked for f in found] == ["139****5678", "150****5432"]
    assert found[0].start < found[1].start


# -- bank cards -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number", [CARD, luhn_complete("622848001234567"), luhn_complete("62148301234567890")]
)
def test_luhn_valid_bank_card_is_found(number: str) -> None:
    [finding] = scan_text(f"补助发放至银行卡 {number}。", "body")
    assert finding.kind is PiiKind.BANK_CARD
    assert number not in finding.masked
    assert finding.masked.startswith(number[:4]) and finding.masked.endswith(number[-4:])


def test_bank_card_written_in_groups_is_found() -> None:
    grouped = " ".join(CARD[i : i + 4] for i in range(0, len(CARD), 4))
    assert kinds(f"卡号 {grouped}") == [PiiKind.BANK_CARD]


def test_luhn_invalid_number_is_not_a_card() -> None:
    assert kinds(f"卡号 {wrong_last(CARD)}") == []


def test_short_numbers_are_not_cards() -> None:
    assert kinds("2013年主动公开和更新政府信息469条，资金 1234567890 元。") == []


# -- fields and ordinary text ---------------------------------------------------------------------


def test_scan_fields_reports_the_field_name() -> None:
    found = scan_fields(
        {
            "title": "关于张三（13812345678）的公示",
            "summary": None,
            "body": f"身份证号 {ID_X}",
            "attachment:名单.xlsx": "",
        }
    )
    assert [(f.field, f.kind) for f in found] == [
        ("title", PiiKind.MOBILE),
        ("body", PiiKind.RESIDENT_ID),
    ]


def test_attachment_names_are_scanned() -> None:
    [finding] = scan_fields({"attachment 1": f"低保名单-{CARD}.pdf"})
    assert finding.field == "attachment 1"
    assert finding.kind is PiiKind.BANK_CARD


def test_ordinary_disclosure_text_has_no_warnings() -> None:
    text = (
        "2013年主动公开和更新政府信息469条。成文日期 2014-01-27 10:56:08，"
        "咨询电话 0570-4012345，邮编 324100。"
    )
    assert scan_fields({"title": "上余镇2013年政府信息公开工作年度报告", "body": text}) == []


def test_the_warning_itself_leaks_nothing() -> None:
    text = f"{ID_X} 13812345678 {CARD}"
    found = scan_text(text, "body")
    assert {f.kind for f in found} == set(PiiKind)
    for f in found:
        assert "****" in f.masked
        assert f.masked not in (ID_X, "13812345678", CARD)


def test_index_number_with_luhn_valid_agency_code_is_not_a_bank_card() -> None:
    # 113308810026305088 passes Luhn; quoting another item's 索引号 must not warn
    assert luhn_valid("113308810026305088")
    assert scan_text("见索引号 113308810026305088/2014-128123 的公告", "body") == []
