"""Importers: the sample's plain-text page format, JSON and CSV; bad files named in the error."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Config
from publisher.errors import ValidationFailed
from publisher.importers import parse_file
from publisher.models import Channel
from tests.conftest import SAMPLE

SHANGHAI = ZoneInfo("Asia/Shanghai")
SAMPLE_INDEX_NO = "113308810026305088/2014-128123"
SAMPLE_FIRST_SENTENCE = (
    "根据《中华人民共和国政府信息公开条例》规定,先编制并公布本单位2013年政府信息公开工作年度报告,"
    "接受社会公开监督"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def failure(path: Path, config: Config, title: str | None = None) -> str:
    with pytest.raises(ValidationFailed) as info:
        parse_file(path, config, title)
    message = info.value.detail
    assert "\n" not in message
    return message


# -- the sample --------------------------------------------------------------------------------


def test_sample_catalogue_header(config: Config) -> None:
    [rec] = parse_file(SAMPLE, config)
    assert rec.index_no == SAMPLE_INDEX_NO
    assert rec.content.category == "zwgk"  # 政务公开 in config.yaml
    assert rec.content.agency == "上余镇"  # the header's 发文机关, not site.agency
    assert rec.content.written_at == datetime(2014, 1, 27, 10, 56, 8, tzinfo=SHANGHAI)
    assert rec.content.written_at.utcoffset() == timedelta(hours=8)
    assert rec.source == str(SAMPLE)


def test_sample_is_archival_with_its_own_date(config: Config) -> None:
    [rec] = parse_file(SAMPLE, config)
    assert rec.published_at == rec.content.written_at  # no 发布日期: published when written
    assert rec.content.doc_no is None
    assert rec.content.disclosure.value == "proactive"


def test_sample_title_is_derived_from_the_first_sentence(config: Config) -> None:
    [rec] = parse_file(SAMPLE, config)
    assert rec.content.title == SAMPLE_FIRST_SENTENCE
    # the first sentence is not a title line: it stays in the body
    assert rec.content.body.startswith(SAMPLE_FIRST_SENTENCE + "。")


def test_sample_body_holds_the_whole_text(config: Config) -> None:
    [rec] = parse_file(SAMPLE, config)
    body = rec.content.body
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    text_lines = [ln.strip() for ln in lines[2:] if ln.strip()]  # after the two header lines
    assert len(text_lines) == 20
    for line in text_lines:
        assert line in body
    assert body.endswith("有序整理排列编辑信息,提高服务效率。")
    assert "索引号" not in body and "成文日期" not in body
    # each line of the page is its own paragraph
    assert body.count("\n\n") == len(text_lines) - 1


def test_title_override(config: Config) -> None:
    [rec] = parse_file(SAMPLE, config, "上余镇2013年政府信息公开工作年度报告")
    assert rec.content.title == "上余镇2013年政府信息公开工作年度报告"
    assert rec.content.body.startswith(SAMPLE_FIRST_SENTENCE)
    assert rec.index_no == SAMPLE_INDEX_NO


def test_sample_summary_is_left_to_be_derived(config: Config) -> None:
    [rec] = parse_file(SAMPLE, config)
    assert rec.content.summary is None


# -- the page format -----------------------------------------------------------------------------

HEADER = "索引号: | 113308810026305088/2026-00007 | 主题分类: | 农业农村 |\n发文机关: | 上余镇人民政府 | 成文日期: | 2026-11-20 |\n"


def test_page_with_a_title_line(tmp_path: Path, config: Config) -> None:
    path = write(
        tmp_path,
        "notice.txt",
        HEADER + "关于冬季农田水利建设的通知\n各村：现将有关事项通知如下。\n",
    )
    [rec] = parse_file(path, config)
    assert rec.content.title == "关于冬季农田水利建设的通知"
    assert rec.content.body == "各村：现将有关事项通知如下。"
    assert rec.content.category == "nync"
    assert rec.content.written_at == datetime(2026, 11, 20, tzinfo=SHANGHAI)


def test_page_with_title_doc_no_and_publish_date_in_the_header(
    tmp_path: Path, config: Config
) -> None:
    path = write(
        tmp_path,
        "notice.txt",
        HEADER
        + "名称: | 关于冬季农田水利建设的通知 | 文号: | 上政〔2026〕12号 |\n"
        + "发布日期: | 2026年11月22日 |\n\n"
        + "短标题样的第一行\n正文。\n",
    )
    [rec] = parse_file(path, config)
    assert rec.content.title == "关于冬季农田水利建设的通知"
    assert rec.content.doc_no == "上政〔2026〕12号"
    assert rec.published_at == datetime(2026, 11, 22, tzinfo=SHANGHAI)
    assert rec.content.body.startswith(
        "短标题样的第一行"
    )  # a header title keeps line one in the body


def test_page_category_by_slug_and_by_path(tmp_path: Path, config: Config) -> None:
    by_slug = write(tmp_path, "a.txt", HEADER.replace("农业农村", "shjz") + "正文。\n")
    by_path = write(
        tmp_path, "b.txt", HEADER.replace("农业农村", "综合政务\\财政预决算") + "正文。\n"
    )
    assert parse_file(by_slug, config)[0].content.category == "shjz"
    assert parse_file(by_path, config)[0].content.category == "czys"


def test_page_with_crlf_and_bom(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "win.txt"
    path.write_bytes(("\ufeff" + HEADER + "标题\n正文第一句。\n").replace("\n", "\r\n").encode())
    [rec] = parse_file(path, config)
    assert rec.index_no == "113308810026305088/2026-00007"
    assert rec.content.title == "标题"
    assert rec.content.body == "正文第一句。"


def test_page_without_index_no_gets_none(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "n.txt", "主题分类: | 其他 | 成文日期: | 2026-01-02 |\n正文。\n")
    [rec] = parse_file(path, config)
    assert rec.index_no is None
    assert rec.content.agency == config.site.agency  # default 发文机关


def test_unknown_category_names_the_file(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "mars.txt", HEADER.replace("农业农村", "火星事务") + "正文。\n")
    message = failure(path, config)
    assert str(path) in message
    assert "火星事务" in message and "主题分类" in message


def test_bad_date_names_the_file_and_field(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "when.txt", HEADER.replace("2026-11-20", "去年冬天") + "正文。\n")
    message = failure(path, config)
    assert str(path) in message
    assert "written_at" in message and "去年冬天" in message


def test_file_with_no_header(tmp_path: Path, config: Config) -> None:
    path = write(
        tmp_path, "plain.txt", "关于冬季农田水利建设的通知\n各村：现将有关事项通知如下。\n"
    )
    message = failure(path, config)
    assert str(path) in message
    assert "header" in message


def test_header_without_category_or_date(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "half.txt", "索引号: | X/2026-1 | 发文机关: | 上余镇 |\n正文。\n")
    message = failure(path, config)
    assert str(path) in message
    assert "主题分类" in message and "成文日期" in message


def test_unknown_header_label_names_the_line(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "odd.txt", HEADER + "密级: | 秘密 |\n正文。\n")
    message = failure(path, config)
    assert str(path) in message
    assert "line 3" in message and "密级" in message


def test_header_only_has_no_body(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "empty.txt", HEADER)
    message = failure(path, config)
    assert str(path) in message and "body" in message


def test_non_utf8_file(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "gbk.txt"
    path.write_bytes((HEADER + "正文。\n").encode("gbk"))
    message = failure(path, config)
    assert str(path) in message and "UTF-8" in message


def test_missing_file(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "nowhere.txt"
    message = failure(path, config)
    assert str(path) in message and "no such file" in message


# -- JSON ----------------------------------------------------------------------------------------

RECORD = {
    "index_no": "113308810026305088/2025-00003",
    "title": "关于2025年度社会救助资金发放情况的公示",
    "body": "经审核，现将发放情况公示如下。",
    "category": "社会救助",
    "agency": "上余镇民政办",
    "written_at": "2025-12-01",
    "published_at": "2025-12-02 09:30",
    "doc_no": "上民〔2025〕3号",
}


def test_json_single_object(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "one.json", json.dumps(RECORD, ensure_ascii=False))
    [rec] = parse_file(path, config)
    assert rec.index_no == RECORD["index_no"]
    assert rec.content.title == RECORD["title"]
    assert rec.content.category == "shjz"
    assert rec.content.agency == "上余镇民政办"
    assert rec.content.doc_no == "上民〔2025〕3号"
    assert rec.content.written_at == datetime(2025, 12, 1, tzinfo=SHANGHAI)
    assert rec.published_at == datetime(2025, 12, 2, 9, 30, tzinfo=SHANGHAI)
    assert str(path) in rec.source


def test_json_list(tmp_path: Path, config: Config) -> None:
    second = {
        "body": "应急演练定于下周举行。请各村做好准备。",
        "category": "yjgl",
        "written_at": "2025年11月03日",
        "channels": ["portal", "rss"],
        "urgent": True,
    }
    path = write(tmp_path, "many.json", json.dumps([RECORD, second], ensure_ascii=False))
    first, rec = parse_file(path, config)
    assert first.content.category == "shjz"
    assert rec.index_no is None
    assert rec.content.title == "应急演练定于下周举行"  # derived from the first sentence
    assert rec.content.written_at == datetime(2025, 11, 3, tzinfo=SHANGHAI)
    assert rec.content.channels == (Channel.PORTAL, Channel.RSS)
    assert rec.content.urgent is True
    assert rec.source.endswith("record 2")


def test_json_title_override_applies(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "one.json", json.dumps(RECORD, ensure_ascii=False))
    [rec] = parse_file(path, config, "新标题")
    assert rec.content.title == "新标题"


def test_json_timestamp_with_offset_is_kept(tmp_path: Path, config: Config) -> None:
    path = write(
        tmp_path, "tz.json", json.dumps({**RECORD, "written_at": "2025-12-01T02:00:00+00:00"})
    )
    [rec] = parse_file(path, config)
    assert rec.content.written_at.astimezone(SHANGHAI) == datetime(2025, 12, 1, 10, tzinfo=SHANGHAI)


def test_malformed_json(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "bad.json", '[\n  {"title": "x",\n  }\n]')
    message = failure(path, config)
    assert str(path) in message
    assert "malformed JSON" in message and "line 3" in message


def test_json_record_that_is_not_an_object(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "odd.json", json.dumps([RECORD, "just text"], ensure_ascii=False))
    message = failure(path, config)
    assert str(path) in message and "record 2" in message


def test_json_unknown_category_names_file_and_record(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "cat.json", json.dumps([RECORD, {**RECORD, "category": "nope"}]))
    message = failure(path, config)
    assert str(path) in message and "record 2" in message and "'nope'" in message


def test_json_unknown_field(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "f.json", json.dumps({**RECORD, "colour": "red"}, ensure_ascii=False))
    message = failure(path, config)
    assert str(path) in message and "colour" in message and "unknown field" in message


def test_json_missing_body(tmp_path: Path, config: Config) -> None:
    rec = {k: v for k, v in RECORD.items() if k != "body"}
    path = write(tmp_path, "nobody.json", json.dumps(rec, ensure_ascii=False))
    message = failure(path, config)
    assert str(path) in message and "body" in message


def test_json_bad_published_date(tmp_path: Path, config: Config) -> None:
    path = write(tmp_path, "d.json", json.dumps({**RECORD, "published_at": "soon"}))
    message = failure(path, config)
    assert str(path) in message and "published_at" in message


# -- CSV -----------------------------------------------------------------------------------------


def test_csv_with_chinese_header_aliases(tmp_path: Path, config: Config) -> None:
    path = write(
        tmp_path,
        "catalogue.csv",
        "索引号,名称,主题分类,发文机关,成文日期,文号,发布日期,body,urgent,channels\n"
        "113308810026305088/2024-00001,关于秋粮收购的通知,农业农村,上余镇农办,2024/09/01,"
        '上农〔2024〕1号,2024-09-02,各村：秋粮收购即将开始。,是,"portal,board"\n'
        '113308810026305088/2024-00002,,财政预决算,,2024-03-15,,,"上余镇2024年预算公开。\n详见附件。",,\n',
    )
    first, second = parse_file(path, config)
    assert first.index_no == "113308810026305088/2024-00001"
    assert first.content.title == "关于秋粮收购的通知"
    assert first.content.category == "nync"
    assert first.content.agency == "上余镇农办"
    assert first.content.doc_no == "上农〔2024〕1号"
    assert first.content.written_at == datetime(2024, 9, 1, tzinfo=SHANGHAI)
    assert first.published_at == datetime(2024, 9, 2, tzinfo=SHANGHAI)
    assert first.content.urgent is True
    assert first.content.channels == (Channel.PORTAL, Channel.BOARD)
    # empty cells mean "not given": defaults and derived values apply
    assert second.content.title == "上余镇2024年预算公开"
    assert second.content.agency == config.site.agency
    assert second.content.doc_no is None
    assert second.content.urgent is False
    assert second.content.body == "上余镇2024年预算公开。\n详见附件。"
    assert str(path) in second.source


def test_csv_with_english_header(tmp_path: Path, config: Config) -> None:
    path = write(
        tmp_path,
        "en.csv",
        "index_no,title,category,written_at,body\nA/2024-1,标题,qt,2024-01-01,正文。\n",
    )
    [rec] = parse_file(path, config)
    assert (rec.index_no, rec.content.title, rec.content.category) == ("A/2024-1", "标题", "qt")


def test_csv_with_bom(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "\ufeff索引号,名称,主题分类,成文日期,body\nB/1,标题,其他,2024-01-01,正文。\n".encode()
    )
    [rec] = parse_file(path, config)
    assert rec.index_no == "B/1"


def test_empty_csv(tmp_path: Path, config: Config) -> None:
    message = failure(write(tmp_path, "empty.csv", ""), config)
    assert "empty.csv" in message and "header" in message


def test_csv_header_only_gives_no_records(tmp_path: Path, config: Config) -> None:
    assert (
        parse_file(write(tmp_path, "h.csv", "索引号,名称,主题分类,成文日期,body\n"), config) == []
    )


def test_csv_unknown_category_names_the_file_and_line(tmp_path: Path, config: Config) -> None:
    path = write(
        tmp_path,
        "cat.csv",
        "名称,主题分类,成文日期,body\n甲,其他,2024-01-01,正文。\n乙,外星,2024-01-01,正文。\n",
    )
    message = failure(path, config)
    assert str(path) in message
    assert "line 3" in message and "外星" in message


def test_csv_unknown_column(tmp_path: Path, config: Config) -> None:
    path = write(
        tmp_path, "col.csv", "名称,主题分类,成文日期,body,密级\n甲,其他,2024-01-01,正文。,秘密\n"
    )
    message = failure(path, config)
    assert str(path) in message and "密级" in message


def test_non_utf8_csv(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("名称,主题分类,成文日期,body\n甲,其他,2024-01-01,正文。\n".encode("gbk"))
    message = failure(path, config)
    assert str(path) in message and "UTF-8" in message
