"""The text normaliser: what XML cannot hold is refused at the boundary (or removed from
imports, with a warning); titles and names also refuse invisible characters."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from publisher.boards import BoardCreate, BoardPatch, parse_board
from publisher.calendar import DayKind, SpecialDay, check_year
from publisher.config import Config
from publisher.content import ItemCreate, ItemPatch
from publisher.errors import ValidationFailed
from publisher.importers import parse_file
from publisher.register import RequestIn
from publisher.store.sql import SqlStore
from publisher.textclean import (
    ERROR_TYPE,
    ForbiddenCharacters,
    clean,
    forbidden_chars,
    is_xml_safe,
    refuse,
)
from tests.conftest import item_fields

#: what XML 1.0 cannot hold, refused in every text
XML_BAD = ["\x0b", "\x1b", "\x00", "\x0c", "\ufffe", "\uffff", "\ud800"]
#: what a reader cannot see, refused in titles and names only
INVISIBLE = ["\u202e", "\u2066", "\u200b", "\u200d", "\u2060", "\ufeff"]


@pytest.mark.parametrize("ch", XML_BAD)
def test_xml_forbidden_characters_are_found_everywhere(ch: str) -> None:
    assert forbidden_chars(f"a{ch}b") == [ch]
    assert forbidden_chars(f"a{ch}b", line=True) == [ch]
    assert not is_xml_safe(f"a{ch}b")


@pytest.mark.parametrize("ch", INVISIBLE)
def test_invisible_characters_only_in_lines(ch: str) -> None:
    assert forbidden_chars(f"a{ch}b") == []
    assert forbidden_chars(f"a{ch}b", line=True) == [ch]
    assert is_xml_safe(f"a{ch}b")


def test_ordinary_text_passes() -> None:
    text = "关于冬季农田水利建设的通知\t(第1号)\r\n——附件：表一 “样例” é ✓ 𠀀"
    assert forbidden_chars(text, line=True) == []
    assert refuse("title", text, line=True) == text
    assert clean(text) == (text, [])


def test_refuse_names_the_field_and_the_code_points() -> None:
    with pytest.raises(ForbiddenCharacters) as info:
        refuse("reason", "不符合\x0b要求\x1b\x0b")
    assert info.value.status == 422
    assert info.value.detail.startswith("reason: ")
    assert "U+000B, U+001B" in info.value.detail
    assert info.value.extra == {"field": "reason", "characters": "U+000B, U+001B"}


def test_clean_removes_and_reports() -> None:
    assert clean("a\x0bb\u200bc") == ("ab\u200bc", ["\x0b"])
    assert clean("a\x0bb\u200bc", line=True) == ("abc", ["\x0b", "\u200b"])


def _refused(model: Any, data: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    err = info.value.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["type"]


@pytest.mark.parametrize("ch", ["\x0b", "\x1b", "\ufffe"])
@pytest.mark.parametrize(
    "field", ["title", "summary", "body", "doc_no", "agency", "disclosure_reason"]
)
def test_item_fields_refuse_xml_forbidden_characters(field: str, ch: str) -> None:
    for text in (f"正文{ch}内容", f"正文内容{ch}"):  # at the end too: not stripped away
        assert _refused(ItemCreate, item_fields(**{field: text})) == (field, ERROR_TYPE)
        assert _refused(ItemPatch, {field: text}) == (field, ERROR_TYPE)


def test_correction_notes_and_relations_are_checked_too() -> None:
    assert _refused(ItemPatch, {"correction_note": "更正\x0b"}) == ("correction_note", ERROR_TYPE)
    related = [{"item_id": "x\x1b", "kind": "see-also"}]
    assert _refused(ItemPatch, {"related": related}) == ("related", ERROR_TYPE)


@pytest.mark.parametrize("ch", INVISIBLE)
def test_titles_refuse_invisible_characters_bodies_keep_them(ch: str) -> None:
    assert _refused(ItemCreate, item_fields(title=f"通知{ch}")) == ("title", ERROR_TYPE)
    body = f"阿拉伯文 {ch}نص{ch} 混排"
    assert ItemCreate.model_validate(item_fields(body=body)).body == body


def test_boards_refuse_with_the_field_named() -> None:
    with pytest.raises(ForbiddenCharacters) as info:
        parse_board(BoardCreate, {"name": "村务公开栏\u202e"})
    assert info.value.field == "name"
    with pytest.raises(ForbiddenCharacters) as info:
        parse_board(BoardPatch, {"location": "村委会\x0b门口"})
    assert info.value.detail.startswith("location: ")


def test_register_and_calendar_refuse() -> None:
    base = {"received_on": "2026-11-20", "applicant_type": "natural_person", "subject": "请求公开"}
    assert _refused(RequestIn, {**base, "applicant": "张三\u200b"}) == ("applicant", ERROR_TYPE)
    assert _refused(RequestIn, {**base, "note": "备注\x1b"}) == ("note", ERROR_TYPE)
    assert _refused(RequestIn, {**base, "subject": "请求\x0b公开"}) == ("subject", ERROR_TYPE)
    with pytest.raises(ForbiddenCharacters) as info:
        check_year(2026, [SpecialDay(date(2026, 10, 1), DayKind.HOLIDAY, "国庆\x0b节")])
    assert info.value.detail.startswith("2026-10-01: name: ")


async def test_store_refuses_user_names_and_reasons(sqlite_store: SqlStore) -> None:
    from publisher.models import Action, Role
    from tests.conftest import EDITOR, REVIEWER

    with pytest.raises(ForbiddenCharacters):
        await sqlite_store.add_user("al\u200bice", Role.EDITOR)
    await sqlite_store.add_user(EDITOR.name, EDITOR.role)
    await sqlite_store.add_user(REVIEWER.name, REVIEWER.role)
    from publisher.content import content_from

    item = await sqlite_store.create_item(
        content_from(ItemCreate.model_validate(item_fields()), sqlite_store.config), actor=EDITOR
    )
    await sqlite_store.transition(item.id, Action.SUBMIT, actor=EDITOR)
    with pytest.raises(ForbiddenCharacters) as info:
        await sqlite_store.transition(item.id, Action.REJECT, actor=REVIEWER, reason="不行\x0b")
    assert info.value.field == "reason"
    assert (await sqlite_store.get_item(item.id)).status.value == "in_review"


# -- imports: removed, with a warning ----------------------------------------------------


def test_json_import_is_cleaned_with_a_warning(tmp_path: Path, config: Config) -> None:
    record = {
        "title": "旧\x0b通知\u200b",
        "body": "正文\x1b内容\ufffe。",
        "category": "nync",
        "written_at": "2014-03-01",
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps([record]), encoding="utf-8")
    [rec] = parse_file(path, config)
    assert rec.content.title == "旧通知"
    assert rec.content.body == "正文内容。"
    assert rec.warnings == (
        f"{path} record 1: title: removed U+000B, U+200B",
        f"{path} record 1: body: removed U+001B, U+FFFE",
    )


def test_csv_and_page_imports_are_cleaned(tmp_path: Path, config: Config) -> None:
    csv_path = tmp_path / "old.csv"
    csv_path.write_text(
        "title,body,category,written_at,doc_no\n旧通知,正文\x0c。,nync,2014-03-01,上政\x0b发\n",
        encoding="utf-8",
    )
    [rec] = parse_file(csv_path, config)
    assert rec.content.body == "正文。" and rec.content.doc_no == "上政发"
    assert len(rec.warnings) == 2 and "doc_no: removed U+000B" in rec.warnings[1]

    page = tmp_path / "old.txt"
    page.write_text(
        "主题分类: | 农业农村 | 成文日期: | 2014-03-01 |\n\n标题\x1b一\n\n第一段\x0b。\n",
        encoding="utf-8",
    )
    [rec] = parse_file(page, config)
    assert rec.content.title == "标题一" and rec.content.body == "第一段。"
    assert [w.split(": ", 1)[1] for w in rec.warnings] == [
        "title: removed U+001B",
        "body: removed U+000B",
    ]


def test_a_clean_import_has_no_warnings(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "ok.json"
    path.write_text(
        json.dumps(
            {"title": "通知", "body": "正文。", "category": "nync", "written_at": "2014-03-01"}
        ),
        encoding="utf-8",
    )
    [rec] = parse_file(path, config)
    assert rec.warnings == ()


def test_an_import_still_fails_on_real_errors(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"title": "通知\x0b", "category": "nync"}), encoding="utf-8")
    with pytest.raises(ValidationFailed):
        parse_file(path, config)
