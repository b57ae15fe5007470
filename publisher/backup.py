"""Backups: a consistent copy of the store and the attachments, on either backend.

The archive is a gzipped tar: manifest.json, one JSON-lines file per table (read
in one snapshot transaction), and the attachment files. Attachments are
content-addressed and written before their row commits, so every row in the
snapshot has its file. The data key is deliberately not in the archive.

The tar.gz is never written in the clear: it is streamed through AES-256-GCM in
1 MiB chunks (publisher.sealed) under a key derived from the data key with HKDF
(purpose ``gongkai/backup/v1``, a random salt per backup), into a file created
mode 0600. Without the data key a backup cannot be restored at all. Restoring
decrypts to an anonymous temporary file (0600, unlinked) and then reads the tar;
archives from before encryption (a plain tar.gz) still restore.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from publisher import __version__
from publisher.config import Config
from publisher.errors import Conflict, ValidationFailed
from publisher.recipients import keep_recipient_ids_unused
from publisher.sealed import MAGIC, SealingWriter, is_sealed, unseal
from publisher.store import current_revision
from publisher.store import schema as t
from publisher.store.sql import SqlStore, attachment_path

#: tables whose rows only matter to running processes (heartbeats), not kept
TRANSIENT_TABLES = frozenset({"workers"})
#: every other table of the schema, so a table added later is in the backup without
#: anyone remembering to list it (residents, consent, the ledger …); in an order
#: that respects foreign keys
TABLES = [table for table in t.metadata.sorted_tables if table.name not in TRANSIENT_TABLES]
FORMAT = "gongkai-backup/1"
#: the HKDF purpose of the backup encryption key
PURPOSE = "backup/v1"

Progress = Callable[[str, int], None]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):  # legal dates of revisions (sa.Date)
        return value.isoformat()
    return value


async def backup(store: SqlStore, dest: Path, progress: Progress | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    shas: set[str] = set()
    data_key = store.config.data_key()  # no key, no backup: refused before anything is written
    tmp = dest.with_name(dest.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when a stale .partial was there with other modes
    with (
        os.fdopen(fd, "wb") as raw,
        SealingWriter(raw, data_key, PURPOSE) as sealed,
        tarfile.open(fileobj=sealed, mode="w|gz") as tar,  # type: ignore[call-overload]
    ):
        async with store.engine.connect() as conn:
            if not store.is_sqlite:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                schema_rev = await conn.run_sync(
                    lambda c: (
                        __import__("alembic.runtime.migration", fromlist=["x"])
                        .MigrationContext.configure(c)
                        .get_current_revision()
                    )
                )
                for table in TABLES:
                    buf = io.BytesIO()
                    n = 0
                    result = await conn.stream(sa.select(table))
                    async for row in result:
                        rec = {k: _encode(v) for k, v in row._mapping.items()}
                        buf.write(json.dumps(rec, ensure_ascii=False).encode() + b"\n")
                        if table is t.attachments:
                            shas.add(rec["sha256"])
                        n += 1
                    counts[table.name] = n
                    _add_bytes(tar, f"tables/{table.name}.jsonl", buf.getvalue())
                    if progress:
                        progress(table.name, n)
        root = store.config.attachments_path
        for sha in sorted(shas):
            path = attachment_path(root, sha)
            tar.add(path, arcname=f"attachments/{sha}")
            if progress:
                progress("attachments", 1)
        manifest = {
            "format": FORMAT,
            "version": __version__,
            "schema": schema_rev,
            "created_at": datetime.now(UTC).isoformat(),
            "counts": counts,
        }
        _add_bytes(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
    tmp.replace(dest)
    return counts


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


async def restore(
    store: SqlStore, src: Path, *, force: bool = False, progress: Progress | None = None
) -> dict[str, int]:
    """Load a backup into this store (which must be empty unless force) in one transaction."""
    with tempfile.TemporaryFile() as plain:  # 0600 and already unlinked
        await asyncio.to_thread(_plain_archive, src, plain, store.config)
        plain.seek(0)
        return await _restore_tar(store, src, plain, force=force, progress=progress)


def _plain_archive(src: Path, plain: IO[bytes], config: Config) -> None:
    """Copy the tar.gz inside `src` into `plain`: decrypted with the data key, or as it is
    for a backup made before backups were encrypted."""
    try:
        with open(src, "rb") as fh:
            sealed = is_sealed(fh.read(len(MAGIC)))
            fh.seek(0)
            if sealed:
                unseal(fh, plain, config.data_key(), PURPOSE, str(src))
            else:
                while chunk := fh.read(1 << 20):
                    plain.write(chunk)
    except OSError as exc:
        raise ValidationFailed(f"{src}: not a readable backup archive ({exc})") from None


async def _restore_tar(
    store: SqlStore,
    src: Path,
    plain: IO[bytes],
    *,
    force: bool,
    progress: Progress | None,
) -> dict[str, int]:
    try:
        tar = tarfile.open(fileobj=plain, mode="r:gz")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as exc:
        raise ValidationFailed(f"{src}: not a readable backup archive ({exc})") from None
    with tar:
        try:
            names = set(tar.getnames())  # reads to the end: a damaged archive fails here
        except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
            raise ValidationFailed(f"{src}: damaged or truncated backup archive ({exc})") from None
        try:
            manifest = json.load(_member(tar, "manifest.json"))
        except (KeyError, json.JSONDecodeError):
            raise ValidationFailed(
                f"{src}: no valid manifest.json; not a publisher backup"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            fmt = manifest.get("format") if isinstance(manifest, dict) else None
            raise ValidationFailed(f"{src}: unknown backup format {fmt!r}")
        missing = [n for n in (f"tables/{table.name}.jsonl" for table in TABLES) if n not in names]
        if missing:
            raise ValidationFailed(f"{src}: incomplete backup, {missing[0]} is missing")
        here = await current_revision(store)
        if manifest.get("schema") != here:
            raise ValidationFailed(
                f"{src}: made with schema {manifest.get('schema')}, this store is at {here}; "
                "restore into a store at the same schema, then run `publisher db upgrade`"
            )
        root = store.config.attachments_path
        root.mkdir(parents=True, exist_ok=True)
        # files first: a row must never point at a missing file
        for member in tar.getmembers():
            if member.name.startswith("attachments/") and member.isfile():
                sha = member.name.split("/", 1)[1]
                if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
                    raise ValidationFailed(f"{src}: unexpected member {member.name!r}")
                final = attachment_path(root, sha)
                if not final.exists():
                    final.parent.mkdir(parents=True, exist_ok=True)
                    with tempfile.NamedTemporaryFile(dir=root, delete=False) as out:
                        out.write(_member(tar, member.name).read())
                    Path(out.name).replace(final)
        counts: dict[str, int] = {}
        async with store.write() as conn:
            existing = await conn.scalar(sa.select(sa.func.count()).select_from(t.items))
            users = await conn.scalar(sa.select(sa.func.count()).select_from(t.users))
            if (existing or users) and not force:
                raise Conflict(
                    f"the store already holds {existing} items and {users} users; "
                    "restore into an empty store, or pass --force to replace everything"
                )
            for table in reversed(TABLES):
                await conn.execute(table.delete())
            for table in TABLES:
                rows = [
                    _decode(table, json.loads(line))
                    for line in _member(tar, f"tables/{table.name}.jsonl").read().splitlines()
                    if line.strip()
                ]
                for i in range(0, len(rows), 500):
                    await conn.execute(table.insert(), rows[i : i + 500])
                counts[table.name] = len(rows)
                if progress:
                    progress(table.name, len(rows))
            if not store.is_sqlite:
                for table in TABLES:
                    col = table.c.get("id")
                    if col is not None and isinstance(col.type, sa.Integer):
                        await conn.execute(
                            sa.text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                            )
                        )
            await keep_recipient_ids_unused(conn)
    return counts


def _member(tar: tarfile.TarFile, name: str) -> io.BufferedReader:
    fh = tar.extractfile(name)
    if fh is None:
        raise KeyError(name)
    return fh  # type: ignore[return-value]


def _decode(table: sa.Table, rec: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in rec.items():
        col = table.c.get(key)
        if col is None:
            raise ValidationFailed(f"backup has unknown column {table.name}.{key}")
        if isinstance(col.type, t.UTCDateTime) and isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif isinstance(col.type, sa.Date) and isinstance(value, str):
            value = date.fromisoformat(value)
        out[key] = value
    return out
