"""Body rendering (sanitized HTML) and the summaries and titles derived from a body."""

from __future__ import annotations

import re

import pytest

from publisher.text import derive_summary, first_sentence, plain_text, render_body

# -- render_body: nothing a body says can run in a reader's browser ---------------------------


def test_script_is_shown_as_text() -> None:
    html = render_body("通知\n\n<script>alert('x')</script>")
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "alert(" in html  # the words stay visible, inert


@pytest.mark.parametrize(
    "raw",
    [
        "<b>加粗</b>",
        '<img src="x" onerror="alert(1)">',
        '<a href="javascript:alert(1)">点此</a>',
        '<iframe src="https://evil.example"></iframe>',
        '<div style="display:none">隐藏</div>',
    ],
)
@pytest.mark.parametrize("body_format", ["text", "markdown"])
def test_raw_html_is_never_passed_through(raw: str, body_format: str) -> None:
    html = render_body(f"正文 {raw} 结尾", body_format)
    assert raw not in html
    assert "&lt;" in html  # shown as text
    # the only real tags: paragraphs, and in plain text an address made into a link
    assert set(re.findall(r"</?([a-z0-9]+)", html)) <= {"p", "a"}
    assert re.findall(r'<a href="([^"]*)"', html) in ([], ["https://evil.example"])


@pytest.mark.parametrize("body_format", ["text", "markdown"])
def test_html_block_is_shown_as_text(body_format: str) -> None:
    html = render_body("<div>\n<script>steal()</script>\n</div>", body_format)
    assert "<script" not in html and "<div" not in html
    assert "&lt;script&gt;" in html


def test_markdown_formatting_is_kept() -> None:
    html = render_body(
        "# 关于冬季农田水利建设的通知\n\n"
        "**各村**：请*按时*完成。\n\n"
        "- 第一项\n- 第二项\n\n"
        "> 引用\n\n"
        "详见[江山市政府](https://www.jiangshan.gov.cn/art/1.html)。",
        "markdown",
    )
    assert "<h1>关于冬季农田水利建设的通知</h1>" in html
    assert "<strong>各村</strong>" in html
    assert "<em>按时</em>" in html
    assert "<ul>" in html and "<li>第一项</li>" in html
    assert "<blockquote>" in html
    assert '<a href="https://www.jiangshan.gov.cn/art/1.html"' in html
    assert 'rel="noopener noreferrer"' in html


def test_tables_are_kept() -> None:
    html = render_body("| 项目 | 数量 |\n|---|---|\n| 主动公开 | 469 |\n", "markdown")
    assert "<table>" in html and "<th>项目</th>" in html and "<td>469</td>" in html


@pytest.mark.parametrize("body_format", ["text", "markdown"])
def test_plain_text_lines_keep_their_breaks(body_format: str) -> None:
    html = render_body("第一行\n第二行\n\n第二段", body_format)
    assert "第一行<br>" in html
    assert html.count("<p>") == 2


def test_markdown_numbered_list_keeps_its_first_number() -> None:
    """In Markdown, "3. 务实信息" must not be shown as item 1."""
    html = render_body("3. 务实信息，健全网站。\n4. 下一项。", "markdown")
    assert '<ol start="3">' in html


@pytest.mark.parametrize(
    "body",
    [
        "[点此](javascript:alert(1))",
        "[点此](JavaScript:alert(1))",
        "[点此](  javascript:alert(1) )",
        "![图](javascript:alert(1))",
        "<javascript:alert(1)>",
        "[点此](vbscript:msgbox(1))",
        "[点此](data:text/html;base64,PHNjcmlwdD4=)",
        "[点此]: javascript:alert(1)\n\n[点此]",
    ],
)
@pytest.mark.parametrize("body_format", ["text", "markdown"])
def test_javascript_and_other_unsafe_links_are_stripped(body: str, body_format: str) -> None:
    html = render_body(body, body_format).lower()
    assert 'href="javascript' not in html
    assert 'src="javascript' not in html
    assert 'href="vbscript' not in html
    assert 'href="data:' not in html


def test_mailto_links_are_allowed() -> None:
    assert '<a href="mailto:zwgk@example.gov.cn"' in render_body(
        "[写信](mailto:zwgk@example.gov.cn)", "markdown"
    )


def test_render_is_plain_text_safe_for_the_sample_style_body() -> None:
    body = "根据《中华人民共和国政府信息公开条例》规定,先编制并公布本单位2013年政府信息公开工作年度报告。"
    assert render_body(body) == f"<p>{body}</p>"
    assert render_body(body, "markdown") == f"<p>{body}</p>\n"


# -- derive_summary ----------------------------------------------------------------------------


def test_short_body_is_its_own_summary() -> None:
    assert derive_summary("各村：现将有关事项通知如下。", 120) == "各村：现将有关事项通知如下。"


def test_summary_cuts_at_a_sentence_boundary() -> None:
    body = "第一句话说明背景。第二句话讲具体安排。第三句话讲要求和时间节点。"
    summary = derive_summary(body, 20)
    assert summary == "第一句话说明背景。第二句话讲具体安排。"
    assert len(summary) <= 20
    assert derive_summary(body, 12) == "第一句话说明背景。"


def test_summary_cuts_english_sentences_and_keeps_their_spaces() -> None:
    summary = derive_summary("First one. Second one. Third one is longer.", 25)
    assert summary == "First one. Second one."


def test_summary_of_one_long_sentence_is_cut_with_an_ellipsis() -> None:
    body = "很" * 300 + "。"
    summary = derive_summary(body, 50)
    assert len(summary) == 50
    assert summary.endswith("…")


def test_summary_drops_markdown_noise() -> None:
    summary = derive_summary(
        "# 标题\n\n**重要**通知，详见[这里](https://example.gov.cn/x)。", 100, "markdown"
    )
    assert "*" not in summary and "#" not in summary and "https://" not in summary
    assert "重要通知" in summary


def test_summary_collapses_whitespace() -> None:
    assert derive_summary("第一段。\n\n\n第二段。", 100) == "第一段。 第二段。"


def test_plain_text() -> None:
    assert plain_text("## 一、 概况\n\n**粗**  *斜*", "markdown") == "一、 概况 粗 斜"
    # a plain-text body keeps every character: brackets of a document number included
    assert plain_text("江政发〔2024〕3号 [2024]\n\n*注*") == "江政发〔2024〕3号 [2024] *注*"


# -- first_sentence ----------------------------------------------------------------------------


def test_first_sentence_is_the_title_for_a_text_without_one() -> None:
    text = "关于做好冬季农田水利建设工作的通知。各村：现将有关事项通知如下。"
    assert first_sentence(text) == "关于做好冬季农田水利建设工作的通知"


def test_first_sentence_of_the_sample_opening() -> None:
    text = (
        "根据《中华人民共和国政府信息公开条例》规定,先编制并公布本单位2013年政府信息公开工作年度报告,"
        "接受社会公开监督。\n\n一、政府信息公开的基本概况"
    )
    assert first_sentence(text) == (
        "根据《中华人民共和国政府信息公开条例》规定,先编制并公布本单位2013年政府信息公开工作年度报告,"
        "接受社会公开监督"
    )


@pytest.mark.parametrize("end", ["！", "？", "!", "?"])
def test_first_sentence_stops_at_any_sentence_end(end: str) -> None:
    assert first_sentence(f"紧急通知{end}请立即撤离。") == "紧急通知"


def test_first_sentence_without_an_end_is_the_whole_text() -> None:
    assert first_sentence("没有句号的一段话") == "没有句号的一段话"


def test_first_sentence_trims_trailing_punctuation() -> None:
    assert first_sentence("根据规定，") == "根据规定"


def test_first_sentence_is_at_most_max_chars() -> None:
    title = first_sentence("很" * 200 + "。", max_chars=80)
    assert len(title) == 80
    assert title.endswith("…")
    assert first_sentence("短句。", max_chars=80) == "短句"
