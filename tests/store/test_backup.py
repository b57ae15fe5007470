"""Backup and restore: everything comes back, on either backend, and bad files are refused."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from publisher.backup import PURPOSE, TABLES, backup, restore
from publisher.config import Config, load_config
from publisher.content import ItemCreate, content_from
from publisher.errors import Conflict, ValidationFailed
from publisher.models import Action, Role
from publisher.sealed import unseal
from publisher.store import upgrade
from publisher.store.sql import SqlStore, attachment_path
from tests.conftest import (
    BACKENDS,
    EDITOR,
    REPO,
    REVIEWER,
    _pg_store,
    item_fields,
    publish,
)

A = Action
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 300 + "上余镇".encode()


def fresh_config(root: Path) -> Config:
    return load_config(
        REPO / "config.yaml",
        {
            "PUBLISHER__STORAGE__URL": f"sqlite:///{root}/publisher.db",
            "PUBLISHER__STORAGE__ATTACHMENTS_DIR": str(root / "attachments"),
            "PUBLISHER__STORAGE__FEEDS_DIR": str(root / "feeds"),
            "PUBLISHER__SECURITY__DATA_KEY": "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0uLi4uLi4uLi4=",
            "PUBLISHER__SECURITY__DATA_KEY_FILE": "",
        },
    )


@asynccontextmanager
async def fresh_store(kind: str, root: Path) -> AsyncIterator[SqlStore]:
    """An empty, migrated store of `kind` with its own attachments folder."""
    config = fresh_config(root)
    if kind == "sqlite":
        store = SqlStore(config)
        await upgrade(store)
        try:
            yield store
        finally:
            await store.close()
    else:
        gen = _pg_store(config)
        store = await gen.__anext__()
        try:
            yield store
        finally:
            await gen.aclose()


async def chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def populate(store: SqlStore, password: str | None = None) -> dict[str, Any]:
    """A store with something of everything: users, token, items in many states, a file."""
    await store.add_user(EDITOR.name, EDITOR.role, password=password)
    await store.add_user(REVIEWER.name, REVIEWER.role)
    await store.add_user("eve", Role.EDITOR)
    await store.disable_user("eve")
    token = await store.create_token(REVIEWER.name, expires_days=30)

    def content(**kw: Any):
        return content_from(ItemCreate.model_validate(item_fields(**kw)), store.config)

    withfile = await store.create_item(content(title="带附件的通知"), actor=EDITOR)
    att = await store.add_attachment(
        withfile.id, "公告附件.pdf", "application/pdf", chunks(PDF), actor=EDITOR
    )
    live = await publish(store, withfile)
    # a correction waiting for review
    await store.update_item(
        live.id, {"title": "带附件的通知（更正）"}, actor=EDITOR, if_match=live.etag
    )
    await store.create_item(content(title="草稿"), actor=EDITOR)
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await publish(store, await store.create_item(content(publish_at=soon), actor=EDITOR))
    gone = await publish(store, await store.create_item(content(), actor=EDITOR))
    await store.transition(gone.id, A.WITHDRAW, actor=REVIEWER, reason="撤回")
    await store.import_item(
        content(title="2013年报"),
        index_no="002565143/2014-00012",
        published_at=datetime(2014, 3, 20, tzinfo=UTC),
        actor="importer",
    )
    return {"token": token, "attachment": att, "item": live.id}


async def dump(store: SqlStore) -> dict[str, list[dict[str, Any]]]:
    out = {}
    async with store.read() as conn:
        for table in TABLES:
            rows = await conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            out[table.name] = [dict(r._mapping) for r in rows]
    return out


TARGETS = BACKENDS


@pytest.mark.parametrize("target", TARGETS)
async def test_backup_then_restore_gives_back_everything(store, tmp_path, target):
    made = await populate(store, password="correct horse")
    before = await dump(store)
    items_before = [await store.get_item(r["id"]) for r in before["items"]]
    archive = tmp_path / "backup.tar.gz"
    counts = await backup(store, archive)
    assert counts["items"] == 5 and counts["attachments"] == 1 and counts["users"] == 3

    async with fresh_store(target, tmp_path / "restored") as fresh:
        restored = await restore(fresh, archive)
        assert restored == counts
        assert await dump(fresh) == before
        assert [await fresh.get_item(r["id"]) for r in before["items"]] == items_before
        assert await fresh.audit() == await store.audit()
        assert await fresh.events() == await store.events()
        assert await fresh.list_users() == await store.list_users()

        # the file is there, byte for byte, in the new store's own folder
        att = made["attachment"]
        item = await fresh.get_item(made["item"])
        assert [a.sha256 for a in item.attachments] == [att.sha256]
        path = attachment_path(fresh.config.attachments_path, att.sha256)
        assert path.read_bytes() == PDF
        assert fresh.config.attachments_path != store.config.attachments_path

        # staff can sign in as before, and the store carries on where it stopped
        assert (await fresh.authenticate_token(made["token"])).name == REVIEWER.name
        await fresh.transition(made["item"], A.SUBMIT, actor=EDITOR)
        corrected = await fresh.transition(made["item"], A.APPROVE, actor=REVIEWER)
        assert corrected.content.title == "带附件的通知（更正）"
        content = content_from(ItemCreate.model_validate(item_fields()), fresh.config)
        nxt = await publish(fresh, await fresh.create_item(content, actor=EDITOR))
        taken = {r["index_no"] for r in before["items"]}
        assert nxt.index_no not in taken
        assert nxt.index_no is not None and nxt.index_no.endswith("-00003")
        await fresh.add_user("frank", Role.REVIEWER)  # new ids do not collide


async def test_restore_into_a_non_empty_store_needs_force(store, tmp_path):
    await populate(store)
    archive = tmp_path / "backup.tar.gz"
    await backup(store, archive)
    async with fresh_store("sqlite" if store.is_sqlite else "postgresql", tmp_path / "b") as other:
        content = content_from(ItemCreate.model_validate(item_fields(title="别的")), other.config)
        mine = await other.create_item(content, actor=EDITOR)
        with pytest.raises(Conflict) as err:
            await restore(other, archive)
        assert err.value.status == 409
        # nothing was replaced
        assert (await other.get_item(mine.id)).content.title == "别的"
        assert await other.list_users() == []

        await restore(other, archive, force=True)
        assert await dump(other) == await dump(store)

    # a store with users but no items yet is not empty either
    async with fresh_store("sqlite", tmp_path / "c") as users_only:
        await users_only.add_user("admin", Role.ADMIN)
        with pytest.raises(Conflict):
            await restore(users_only, archive)
        assert [u.name for u in await users_only.list_users()] == ["admin"]


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def plain_archive(store: SqlStore, path: Path) -> io.BytesIO:
    out = io.BytesIO()
    with path.open("rb") as fh:
        unseal(fh, out, store.config.data_key(), PURPOSE, str(path))
    out.seek(0)
    return out


async def test_corrupt_files_are_refused(sqlite_store, tmp_path):
    store = sqlite_store
    good = tmp_path / "good.tar.gz"
    await populate(store)
    await backup(store, good)
    data = good.read_bytes()
    manifest = json.loads(
        tarfile.open(fileobj=plain_archive(store, good)).extractfile("manifest.json").read()  # noqa: SIM115
    )

    cases = {
        "not-an-archive": b"this is not a backup\n" * 10,
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "gzip-but-not-tar": gzip.compress(b"hello " * 1000),
        "no-manifest": _tar_gz({"tables/users.jsonl": b""}),
        "wrong-format": _tar_gz({"manifest.json": json.dumps({"format": "zip/9"}).encode()}),
        "manifest-not-json": _tar_gz({"manifest.json": b"{not json"}),
        "manifest-not-object": _tar_gz({"manifest.json": b"[1, 2]"}),
        "missing-table": _tar_gz({"manifest.json": json.dumps(manifest).encode()}),
    }
    async with fresh_store("sqlite", tmp_path / "target") as target:
        for name, blob in cases.items():
            path = tmp_path / f"{name}.tar.gz"
            path.write_bytes(blob)
            with pytest.raises(ValidationFailed) as err:
                await restore(target, path)
            assert err.value.status == 422, name
            assert await dump(target) == {t.name: [] for t in TABLES}, name
        with pytest.raises(ValidationFailed):
            await restore(target, tmp_path / "does-not-exist.tar.gz")
        # and the good one still restores
        await restore(target, good)
        assert len((await dump(target))["items"]) == 5


# -- data at rest (issue 16 B) ----------------------------------------------------------------


async def test_backups_are_encrypted_and_private(sqlite_store, tmp_path):
    store = sqlite_store
    await populate(store, password="correct horse")
    archive = tmp_path / "backup.tar.gz"
    await backup(store, archive)
    assert archive.stat().st_mode & 0o777 == 0o600
    data = archive.read_bytes()
    assert not data.startswith(b"\x1f\x8b")  # not a gzip stream anyone can open
    assert data.startswith(b"GKSEALED")
    plain = plain_archive(store, archive).read()
    for secret in (b"$argon2", b"alice"):
        assert secret not in data
        assert secret in gzip.decompress(plain)  # the content is there, sealed


async def test_restoring_with_a_wrong_key_or_cut_file_is_refused(sqlite_store, tmp_path):
    store = sqlite_store
    await populate(store)
    archive = tmp_path / "backup.tar.gz"
    await backup(store, archive)
    data = archive.read_bytes()
    root = tmp_path / "other"
    other = load_config(
        REPO / "config.yaml",
        {
            "PUBLISHER__STORAGE__URL": f"sqlite:///{root}/publisher.db",
            "PUBLISHER__STORAGE__ATTACHMENTS_DIR": str(root / "attachments"),
            "PUBLISHER__SECURITY__DATA_KEY": "b3RoZXIta2V5LTMyLWJ5dGVzLWxvbmctLi4uLi4uLi4=",
            "PUBLISHER__SECURITY__DATA_KEY_FILE": "",
        },
    )
    target = SqlStore(other)
    await upgrade(target)
    try:
        with pytest.raises(ValidationFailed, match="cannot be decrypted with this data key"):
            await restore(target, archive)
        cut = tmp_path / "cut.tar.gz"
        for blob in (data[:-1], data[: len(data) // 2], data + b"x"):
            cut.write_bytes(blob)
            with pytest.raises(ValidationFailed):
                await restore(store, cut, force=True)
        assert await dump(target) == {t.name: [] for t in TABLES}
    finally:
        await target.close()


async def test_a_plain_archive_from_before_encryption_still_restores(sqlite_store, tmp_path):
    store = sqlite_store
    await populate(store)
    archive = tmp_path / "backup.tar.gz"
    await backup(store, archive)
    legacy = tmp_path / "legacy.tar.gz"
    legacy.write_bytes(plain_archive(store, archive).read())
    async with fresh_store("sqlite", tmp_path / "target") as target:
        await restore(target, legacy)
        assert len((await dump(target))["items"]) == 5
