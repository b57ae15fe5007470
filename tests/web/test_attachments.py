"""Attachments: uploaded through the API, stored with their SHA-256, served to staff and,
for published proactive items, to the public."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote
from urllib.parse import unquote

import pytest
from aiohttp import FormData

from publisher.config import Config
from publisher.store.sql import SqlStore, attachment_path
from tests.conftest import Api
from tests.web import assert_problem, create, open_api, submit_and_approve

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def form(
    content: bytes,
    filename: str | None = "report.pdf",
    *,
    field: str = "file",
    content_type: str | None = "application/pdf",
    quote: bool = True,
) -> FormData:
    # quote=True is what aiohttp clients send (the name percent-encoded); quote=False is what
    # browsers and curl send (the name as UTF-8)
    data = FormData(quote_fields=quote)
    data.add_field("note", "附件说明")
    data.add_field(field, content, filename=filename, content_type=content_type)
    return data


async def upload(api: Api, item_id: str, data: Any, who: str = "alice") -> tuple[int, Any, Any]:
    return await api.call("POST", f"/api/v1/items/{item_id}/attachments", who=who, data=data)


async def uploaded(api: Api, item_id: str, content: bytes = PDF, **kw: Any) -> dict[str, Any]:
    status, body, headers = await upload(api, item_id, form(content, **kw))
    assert status == 201, body
    assert headers["Content-Type"].startswith("application/json")
    return dict(body)


def public_url(item_id: str, att: dict[str, Any]) -> str:
    return f"/items/{item_id}/attachments/{att['id']}/{urlquote(att['filename'])}"


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- upload and download ------------------------------------------------------------------


async def test_upload_stores_the_file_with_its_sha256(api: Api, sqlite_store: SqlStore) -> None:
    item = await create(api)
    att = await uploaded(api, item["id"])
    assert att["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert att["size"] == len(PDF)
    assert att["filename"] == "report.pdf" and att["content_type"] == "application/pdf"
    assert att["url"] == public_url(item["id"], att)
    # stored content-addressed, byte for byte
    stored = attachment_path(sqlite_store.config.attachments_path, att["sha256"])
    assert stored.read_bytes() == PDF
    # the item lists it, and the audit log records it
    status, body, _ = await api.call("GET", f"/api/v1/items/{item['id']}")
    assert status == 200 and [a["id"] for a in body["attachments"]] == [att["id"]]
    _, audit, _ = await api.call("GET", f"/api/v1/items/{item['id']}/audit")
    attach = next(e for e in audit["entries"] if e["action"] == "attach")
    assert attach["actor"] == "alice"
    assert attach["details"] == {
        "filename": "report.pdf",
        "sha256": att["sha256"],
        "size": len(PDF),
    }


async def test_staff_download_gives_identical_bytes(api: Api) -> None:
    item = await create(api)
    att = await uploaded(api, item["id"])
    status, body, headers = await api.call(
        "GET", f"/api/v1/items/{item['id']}/attachments/{att['id']}", who="bob"
    )
    assert status == 200
    assert body == PDF
    assert headers["Content-Type"].startswith("application/pdf")
    assert headers["ETag"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Disposition"].startswith("attachment;")
    # staff downloads need a token
    status, body, headers = await api.call(
        "GET", f"/api/v1/items/{item['id']}/attachments/{att['id']}", who=None
    )
    assert_problem(status, body, headers, 401)


async def test_same_bytes_twice_are_stored_once(api: Api, sqlite_store: SqlStore) -> None:
    item = await create(api)
    first = await uploaded(api, item["id"], filename="a.pdf")
    second = await uploaded(api, item["id"], filename="b.pdf")
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert len(files_under(sqlite_store.config.attachments_path)) == 1


# -- the public route ------------------------------------------------------------------------


async def test_public_download_only_once_published(api: Api) -> None:
    item = await create(api)
    att = await uploaded(api, item["id"])
    url = public_url(item["id"], att)

    status, body, headers = await api.call("GET", url, who=None)
    assert_problem(status, body, headers, 404)  # a draft's files are not public
    await api.call("POST", f"/api/v1/items/{item['id']}/submit")
    status, body, headers = await api.call("GET", url, who=None)
    assert_problem(status, body, headers, 404)  # nor while in review

    live = await submit_and_approve_only(api, item["id"])
    assert live["status"] == "published" and live["disclosure"] == "proactive"
    status, body, headers = await api.call("GET", url, who=None)
    assert status == 200 and body == PDF
    assert headers["Content-Type"].startswith("application/pdf")

    # withdrawn: gone again
    status, _, _ = await api.call(
        "POST", f"/api/v1/items/{item['id']}/withdraw", who="bob", json={"reason": "撤回"}
    )
    assert status == 200
    status, body, headers = await api.call("GET", url, who=None)
    assert_problem(status, body, headers, 404)


async def submit_and_approve_only(api: Api, item_id: str) -> dict[str, Any]:
    status, body, _ = await api.call("POST", f"/api/v1/items/{item_id}/approve", who="bob")
    assert status == 200, body
    return dict(body)


async def test_public_download_is_404_for_non_proactive_items(api: Api) -> None:
    for disclosure in ("on_request", "withheld"):
        item = await create(api, disclosure=disclosure, disclosure_reason="涉及第三方信息")
        att = await uploaded(api, item["id"])
        live = await submit_and_approve(api, item["id"])
        assert live["status"] == "published"
        status, body, headers = await api.call("GET", public_url(item["id"], att), who=None)
        assert_problem(status, body, headers, 404)
        # staff still get it
        status, body, _ = await api.call(
            "GET", f"/api/v1/items/{item['id']}/attachments/{att['id']}", who="bob"
        )
        assert status == 200 and body == PDF


async def test_attachment_added_to_a_published_item_waits_for_review(api: Api) -> None:
    item = await submit_and_approve(api, (await create(api))["id"])
    att = await uploaded(api, item["id"], content=b"new annex", filename="annex.txt")
    status, body, _ = await api.call("GET", f"/api/v1/items/{item['id']}")
    assert body["attachments"] == []  # not part of the live revision yet
    assert [a["id"] for a in body["pending"]["attachments"]] == [att["id"]]
    url = public_url(item["id"], att)
    status, _, _ = await api.call("GET", url, who=None)
    assert status == 404
    await api.call("POST", f"/api/v1/items/{item['id']}/submit")
    await submit_and_approve_only(api, item["id"])
    status, body, _ = await api.call("GET", url, who=None)
    assert status == 200 and body == b"new annex"


async def test_public_url_of_another_items_attachment_is_404(api: Api) -> None:
    one = await submit_and_approve(api, (await create(api))["id"])
    other = await create(api)
    att = await uploaded(api, other["id"])
    status, _, _ = await api.call("GET", public_url(one["id"], att), who=None)
    assert status == 404
    status, _, _ = await api.call(
        "GET", f"/api/v1/items/{one['id']}/attachments/{att['id']}", who="bob"
    )
    assert status == 404


# -- file names --------------------------------------------------------------------------------


async def test_path_components_are_dropped_from_the_filename(
    api: Api, sqlite_store: SqlStore
) -> None:
    item = await create(api)
    for sent, kept in (
        ("../../etc/passwd.txt", "passwd.txt"),
        ("/var/tmp/年报.pdf", "年报.pdf"),
        ("C:\\Users\\张三\\Desktop\\通知.docx", "通知.docx"),
        ("sub/dir/./report.pdf", "report.pdf"),
    ):
        for quote in (True, False):  # as aiohttp clients send it, and as browsers do
            att = await uploaded(api, item["id"], filename=sent, quote=quote)
            assert att["filename"] == kept, (sent, quote, att["filename"])
    # nothing was written outside the attachments folder
    root = sqlite_store.config.attachments_path
    outside = [
        p
        for p in files_under(root.parent)
        if not p.is_relative_to(root) and not p.name.startswith("publisher.db")
    ]
    assert outside == []


async def test_chinese_filename_round_trips(api: Api) -> None:
    name = "上余镇2013年政府信息公开年度报告（附表） 100%.pdf"
    item = await create(api)
    att = await uploaded(api, item["id"], filename=name, quote=True)  # as aiohttp sends it
    browser = await uploaded(api, item["id"], filename=name, quote=False)  # as browsers do
    assert browser["filename"] == name
    assert att["filename"] == name
    live = await submit_and_approve(api, item["id"])
    assert live["attachments"][0]["filename"] == name
    for url, who in (
        (f"/api/v1/items/{item['id']}/attachments/{att['id']}", "bob"),
        (public_url(item["id"], att), None),
    ):
        status, body, headers = await api.call("GET", url, who=who)
        assert status == 200 and body == PDF
        disposition = headers["Content-Disposition"]
        assert "filename*=UTF-8''" in disposition
        encoded = disposition.split("filename*=UTF-8''", 1)[1].split(";", 1)[0].strip()
        assert unquote(encoded) == name
        # the plain filename= fallback is ASCII only, so every client can parse the header
        disposition.encode("ascii")


async def test_unusable_filenames_are_422(api: Api) -> None:
    item = await create(api)
    for bad, quote in (
        ("", True),
        ("..", True),
        ("dir/..", True),
        ("tab\there.pdf", True),
        ("a%00b.pdf", False),  # a NUL, percent-encoded as aiohttp clients do
        ("line%0Abreak.pdf", False),  # a newline, percent-encoded as browsers do
        ("x" * 300 + ".pdf", True),
    ):
        status, body, headers = await upload(api, item["id"], form(PDF, filename=bad, quote=quote))
        assert_problem(status, body, headers, 422, "file")
    status, got, _ = await api.call("GET", f"/api/v1/items/{item['id']}")
    assert got["attachments"] == []


# -- refusals --------------------------------------------------------------------------------


async def test_upload_that_is_not_multipart_is_415(api: Api) -> None:
    item = await create(api)
    for kwargs in (
        {"data": PDF, "headers": {"Content-Type": "application/pdf"}},
        {"json": {"file": "cGRm"}},
        {"data": b"file=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    ):
        status, body, headers = await api.call(
            "POST", f"/api/v1/items/{item['id']}/attachments", **kwargs
        )
        assert_problem(status, body, headers, 415, "multipart/form-data")
    status, got, _ = await api.call("GET", f"/api/v1/items/{item['id']}")
    assert got["attachments"] == []


async def test_multipart_without_a_file_field_is_422(api: Api) -> None:
    item = await create(api)
    status, body, headers = await upload(api, item["id"], form(PDF, field="document"))
    assert_problem(status, body, headers, 422, "file")
    only_text = FormData(default_to_multipart=True)
    only_text.add_field("file", "not a file")  # a plain field, no filename
    status, body, headers = await upload(api, item["id"], only_text)
    assert_problem(status, body, headers, 422, "file")
    status, body, headers = await upload(api, item["id"], form(b""))
    assert_problem(status, body, headers, 422, "empty")
    status, got, _ = await api.call("GET", f"/api/v1/items/{item['id']}")
    assert got["attachments"] == []


async def test_malformed_multipart_is_4xx(api: Api) -> None:
    item = await create(api)
    for body_bytes, ctype in (
        (b"garbage without boundaries", "multipart/form-data; boundary=xyz"),
        (b"--xyz\r\nContent-Disposition: form-data\r\n\r\n", "multipart/form-data; boundary=xyz"),
        (PDF, "multipart/form-data"),
    ):
        status, body, headers = await api.call(
            "POST",
            f"/api/v1/items/{item['id']}/attachments",
            data=body_bytes,
            headers={"Content-Type": ctype},
        )
        assert 400 <= status < 500, (ctype, status, body)
        assert headers["Content-Type"].startswith("application/problem+json")


async def test_upload_by_a_reviewer_is_403(api: Api) -> None:
    item = await create(api)
    status, body, headers = await upload(api, item["id"], form(PDF), who="bob")
    assert_problem(status, body, headers, 403, "reviewer")


async def test_upload_while_in_review_is_409(api: Api) -> None:
    item = await create(api)
    await api.call("POST", f"/api/v1/items/{item['id']}/submit")
    status, body, headers = await upload(api, item["id"], form(PDF))
    assert_problem(status, body, headers, 409, "in_review")


@pytest.fixture
def small_uploads(config_factory: Callable[..., Config]) -> Config:
    return config_factory(STORAGE__MAX_UPLOAD_BYTES="1000")


@pytest.fixture
async def small(small_uploads: Config) -> AsyncIterator[tuple[Api, SqlStore]]:
    async with open_api(small_uploads) as pair:
        yield pair


async def test_upload_over_the_limit_is_413_and_leaves_nothing(
    small: tuple[Api, SqlStore],
) -> None:
    api, store = small
    item = await create(api)
    root = store.config.attachments_path
    fits = await uploaded(api, item["id"], content=b"a" * 1000, filename="fits.txt")
    assert fits["size"] == 1000
    before_files = files_under(root)
    _, before_audit, _ = await api.call("GET", f"/api/v1/items/{item['id']}/audit")

    status, body, headers = await upload(api, item["id"], form(b"b" * 5000, filename="big.pdf"))
    assert_problem(status, body, headers, 413, "1000", "max_upload_bytes")
    status, body, headers = await upload(api, item["id"], form(b"c" * 1001, filename="one.pdf"))
    assert_problem(status, body, headers, 413)

    status, got, _ = await api.call("GET", f"/api/v1/items/{item['id']}")
    assert [a["filename"] for a in got["attachments"]] == ["fits.txt"]  # no row for the others
    _, after_audit, _ = await api.call("GET", f"/api/v1/items/{item['id']}/audit")
    assert after_audit == before_audit
    # no leftover temporary file, nothing but the one stored file
    assert files_under(root) == before_files
    assert not [p for p in root.rglob(".upload-*")]


async def test_unknown_item_upload_is_404(api: Api, sqlite_store: SqlStore) -> None:
    status, body, headers = await upload(api, "no-such-item", form(PDF))
    assert_problem(status, body, headers, 404, "no-such-item")
    assert files_under(sqlite_store.config.attachments_path) == []
