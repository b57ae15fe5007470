"""The `publisher` command.

Every failure the user can fix (a bad config key, a bad file, an unknown user)
prints one line on stderr and exits with code 2 — never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import sqlalchemy.exc
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from publisher.config import Config, load_config
from publisher.delivery import DeliveryWorker, check_channels
from publisher.errors import ConfigError, PublisherError, ValidationFailed
from publisher.models import BodyFormat, Disclosure, ItemStatus, Role
from publisher.store import open_store, upgrade
from publisher.store.sql import ItemQuery, SqlStore

if TYPE_CHECKING:
    from publisher.readiness import Readiness

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


class CliError(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"publisher: {self.format_message()}", err=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except PublisherError as exc:
        raise CliError(exc.detail) from None
    except sqlalchemy.exc.OperationalError as exc:
        raise CliError(f"cannot use the store: {str(exc.orig).splitlines()[0]}") from None
    except (OSError, sqlalchemy.exc.InterfaceError) as exc:
        raise CliError(f"cannot reach the store: {exc}") from None


def config_of(ctx: click.Context, *, channels: bool = False) -> Config:
    """The validated config; with `channels`, every enabled channel's settings too (the
    commands that start or prepare the service refuse a bad one before touching anything)."""
    obj = ctx.ensure_object(dict)
    try:
        if "config" not in obj:
            obj["config"] = load_config(obj["config_path"])
        config: Config = obj["config"]
        if channels:
            check_channels(config)
    except ConfigError as exc:
        raise CliError(exc.detail) from None
    return config


def with_store(
    fn: Callable[..., Awaitable[T]],
) -> Callable[..., T]:
    """Run an async command body with an open, migrated store."""

    @wraps(fn)
    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> T:
        config = config_of(ctx)

        async def body() -> T:
            store = await open_store(config)
            try:
                return await fn(store, *args, **kwargs)
            finally:
                await store.close()

        return run(body())

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("PUBLISHER_CONFIG", "config.yaml"),
    show_default="./config.yaml or $PUBLISHER_CONFIG",
    help="Configuration file.",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """Gongkai Publisher (公开): publish once, reach everyone."""
    ctx.ensure_object(dict)["config_path"] = config_path


# -- serve ----------------------------------------------------------------------


@cli.command()
@click.option("--host", help="Address to listen on (default server.host).")
@click.option("--port", type=int, help="Port (default server.port).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Web, API, scheduler and delivery workers in one process."""
    config = config_of(ctx, channels=True)
    _configure_logging()
    run(_serve(config, host or config.server.host, port or config.server.port))


async def _serve(config: Config, host: str, port: int) -> None:
    from aiohttp import web

    from publisher.scheduler import PublicationScheduler
    from publisher.web import make_app

    config.data_key()  # refuse to start without the key residents' data needs
    store = await open_store(config)
    scheduler = PublicationScheduler(store, config.scheduler.sweep_seconds)
    worker = DeliveryWorker(store)
    app = make_app(config, store, scheduler=scheduler, worker=worker)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        await scheduler.start()
        await worker.start()
    except BaseException:  # e.g. a channel refusing its settings: close what was opened
        with contextlib.suppress(Exception):  # (the scheduler may not have started)
            await scheduler.stop()
        await runner.cleanup()
        await store.close()
        raise
    settle_heap()
    click.echo(f"serving on http://{host}:{port} (store: {store.engine.dialect.name})", err=True)
    try:
        await _until_signal()
    finally:
        await scheduler.stop()
        await worker.stop()
        await runner.cleanup()
        await store.close()


def settle_heap() -> None:
    """Once the service has started: keep the garbage collector off what start-up built.

    Imports and set-up leave some 140,000 long-lived objects (SQLAlchemy, pydantic,
    Jinja, aiohttp) that every full collection would walk again, and a worker's
    allocation rate triggers one every few seconds: measured, that was a sixth of a
    worker's CPU in a large fan-out (docs/benchmarks.md). Freezing them after one last
    collection, and collecting the young generation after 10,000 net allocations
    rather than 700, leaves reference counting to free what the engine makes; cycles
    are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # every scheduler tick and every schema check would be logged otherwise, and some
    # seven lines of WeasyPrint's progress ("Step 1 - Fetching …") for every PDF rendered
    for noisy in ("apscheduler", "alembic", "weasyprint.progress"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def _until_signal() -> None:
    """Wait for SIGINT or SIGTERM: both stop the process cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@cli.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """A delivery worker (and the publication scheduler) without the web server.

    Run several, on one or more machines, against one PostgreSQL store: rows are
    claimed with FOR UPDATE SKIP LOCKED, so none is sent twice.
    """
    config = config_of(ctx, channels=True)
    _configure_logging()
    run(_worker(config))


async def _worker(config: Config) -> None:
    from publisher.scheduler import PublicationScheduler

    store = await open_store(config)
    scheduler = PublicationScheduler(store, config.scheduler.sweep_seconds)
    engine = DeliveryWorker(store)
    try:
        await engine.start()
    except BaseException:
        await store.close()
        raise
    await scheduler.start()
    settle_heap()
    click.echo(f"worker {engine.worker_id} running (store: {store.engine.dialect.name})", err=True)
    try:
        await _until_signal()
    finally:
        await scheduler.stop()
        await engine.stop()
        await store.close()


def readiness_line(found: Readiness) -> str:
    """One line for a channel's state: name, state, dry run, why (publisher.readiness)."""
    parts = [f"{found.channel:<7}", f"{found.state.value:<15}"]
    if found.dry_run:
        parts.append("dry-run")
    if found.targets is not None and not found.reason:
        parts.append(f"targets={found.targets}")
    if found.reason:
        parts.append(found.reason)
    return " ".join(parts).rstrip()


@cli.command()
@click.argument("item_id", required=False)
@click.option("--watch", is_flag=True, help="Follow the fan-out with a live progress bar.")
@with_store
async def status(store: SqlStore, item_id: str | None, watch: bool) -> None:
    """Each channel's state (active, not_configured, no_targets), one line each; with ITEM,
    its channels' states and its deliveries (a table per channel), live with --watch."""
    from publisher.ledger import FINAL, Ledger
    from publisher.readiness import item_readiness, readiness

    if item_id is None:
        for found in (await readiness(store)).values():
            click.echo(readiness_line(found))
        return
    item = await _find_item(store, item_id)
    for found in (await item_readiness(store, item)).values():
        click.echo(readiness_line(found))
    ledger = Ledger(store)
    final = {s.value for s in FINAL}

    def table(counts: dict[str, dict[str, int]]) -> Table:
        states = sorted({s for c in counts.values() for s in c})
        tbl = Table(
            "channel", *states, "total", title=f"{item.content.title[:40]} ({item.status.value})"
        )
        for channel, by_state in sorted(counts.items()):
            tbl.add_row(
                channel, *(str(by_state.get(s, 0)) for s in states), str(sum(by_state.values()))
            )
        return tbl

    counts = await ledger.counts(item.id)
    if watch:
        with Progress(console=err_console) as progress:
            tasks = {}
            while True:
                for channel, by_state in counts.items():
                    total = sum(by_state.values())
                    done = sum(n for s, n in by_state.items() if s in final)
                    if channel not in tasks:
                        tasks[channel] = progress.add_task(channel, total=total)
                    progress.update(tasks[channel], total=total, completed=done)
                if counts and all(
                    all(s in final for s in by_state) for by_state in counts.values()
                ):
                    break
                await asyncio.sleep(0.5)
                counts = await ledger.counts(item.id)
    if not counts:
        click.echo("no deliveries for this item")
        return
    console.print(table(counts))


# -- db -------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The store's schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply the migrations (also done on every start)."""
    config = config_of(ctx, channels=True)

    async def body() -> str | None:
        from publisher.store import current_revision

        store = SqlStore(config)
        try:
            await upgrade(store)
            return await current_revision(store)
        finally:
            await store.close()

    rev = run(body())
    click.echo(f"store at schema {rev}")


# -- key ------------------------------------------------------------------------------


@cli.group()
def key() -> None:
    """The data key that encrypts residents' addresses."""


@key.command("generate")
@click.pass_context
def key_generate(ctx: click.Context) -> None:
    """Create security.data_key_file (mode 0600) unless it exists or a key is set."""
    config = config_of(ctx)
    if config.security.data_key:
        click.echo("security.data_key is set; nothing to generate")
        return
    if not config.security.data_key_file:
        raise CliError("security.data_key_file: not set; nowhere to write the key")
    path = config.resolve_path(config.security.data_key_file)
    if path.exists():
        click.echo(f"{path} exists; kept")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
    click.echo(f"wrote a new data key to {path} (mode 0600); keep it apart from backups")


# -- users and tokens -------------------------------------------------------------------


@cli.group()
def user() -> None:
    """Staff users."""


def _read_password() -> str:
    if sys.stdin.isatty():
        pw: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return pw
    return sys.stdin.readline().rstrip("\n")


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read a password from standard input.")
@with_store
async def user_add(store: SqlStore, name: str, role: str, password_stdin: bool) -> None:
    """Add a staff user; without a password the user can use API tokens only."""
    password = _read_password() if password_stdin else None
    if password is not None and not password:
        raise ValidationFailed("password: empty (leave out --password-stdin for none)")
    u = await store.add_user(name, Role(role), password)
    click.echo(f"added {u.name} ({u.role.value}{', password set' if u.has_password else ''})")


@user.command("passwd")
@click.argument("name")
@with_store
async def user_passwd(store: SqlStore, name: str) -> None:
    """Set a user's password (read from standard input or a prompt)."""
    await store.get_user(name)
    await store.set_password(name, _read_password())
    click.echo(f"password of {name} changed")


@user.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice([r.value for r in Role]))
@with_store
async def user_role(store: SqlStore, name: str, role: str) -> None:
    """Give a user another role; their staff sessions end (API tokens keep working)."""
    await store.set_role(name, Role(role))
    click.echo(f"{name} is now {role}; their staff sessions have ended")


@user.command("disable")
@click.argument("name")
@with_store
async def user_disable(store: SqlStore, name: str) -> None:
    """Disable a user and revoke their tokens."""
    await store.disable_user(name)
    click.echo(f"{name} disabled; their tokens are revoked")


@user.command("totp-reset")
@click.argument("name")
@with_store
async def user_totp_reset(store: SqlStore, name: str) -> None:
    """Remove a user's two-step verification (TOTP) and recovery codes; their staff
    sessions end. For when the phone and the recovery codes are lost (audited, as "cli")."""
    from publisher.totp import Totp

    had = await Totp(store).reset(name, "cli")
    click.echo(
        f"two-step verification of {name} {'reset' if had else 'was not set up'}; "
        "their staff sessions have ended"
    )


@user.command("list")
@with_store
async def user_list(store: SqlStore) -> None:
    """List staff users."""
    table = Table("name", "role", "password", "disabled")
    for u in await store.list_users():
        table.add_row(
            u.name, u.role.value, "yes" if u.has_password else "no", "yes" if u.disabled else ""
        )
    console.print(table)


@cli.group()
def token() -> None:
    """Staff API tokens."""


@token.command("create")
@click.argument("name")
@click.option("--expires", type=click.IntRange(min=1), help="Days until the token expires.")
@with_store
async def token_create(store: SqlStore, name: str, expires: int | None) -> None:
    """Print a new API token for user NAME (shown once; only its hash is stored)."""
    click.echo(await store.create_token(name, expires))


@token.command("revoke")
@click.argument("token_or_prefix")
@with_store
async def token_revoke(store: SqlStore, token_or_prefix: str) -> None:
    """Revoke a token, given whole or by its first 10 characters."""
    n = await store.revoke_token(token_or_prefix)
    click.echo(f"revoked {n} token{'s' if n != 1 else ''}")


# -- import -----------------------------------------------------------------------------


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--title", help="Title for the imported item (overrides a derived one).")
@click.option(
    "--format",
    "body_format",
    type=click.Choice([f.value for f in BodyFormat]),
    default=BodyFormat.TEXT.value,
    show_default=True,
    help="How the bodies are written, for records that do not say: text (published exactly "
    "as written) or markdown.",
)
@with_store
async def import_(
    store: SqlStore, files: tuple[Path, ...], title: str | None, body_format: str
) -> None:
    """Import archival items (JSON, CSV or the plain-text page format).

    Imported items enter the catalogue as published with their own dates and are
    never sent by SMS or email. A 索引号 already in the store is reported and skipped.
    """
    from publisher.errors import DuplicateIndexNo
    from publisher.importers import parse_file

    records = []
    for path in files:  # parse everything first: a bad file stops the run before any write
        records.extend(parse_file(path, store.config, title, BodyFormat(body_format)))
    for rec in records:
        for warning in rec.warnings:
            click.echo(f"warning: {warning}", err=True)
    imported = skipped = 0
    with Progress(console=err_console, transient=True, disable=len(records) < 20) as progress:
        task = progress.add_task("importing", total=len(records))
        for rec in records:
            try:
                item = await store.import_item(
                    rec.content,
                    index_no=rec.index_no,
                    published_at=rec.published_at,
                    actor="import",
                )
            except DuplicateIndexNo as exc:
                click.echo(f"skipped {rec.source}: {exc.detail}", err=True)
                skipped += 1
            else:
                imported += 1
                click.echo(f"imported {rec.source} as {item.id} ({item.index_no})")
            progress.advance(task)
    click.echo(f"{imported} imported, {skipped} skipped")


# -- items ------------------------------------------------------------------------------------


@cli.group()
def items() -> None:
    """Look at items."""


@items.command("list")
@click.option("--status", type=click.Choice([s.value for s in ItemStatus]))
@click.option("--category")
@click.option("--year", type=int)
@click.option("--disclosure", type=click.Choice([d.value for d in Disclosure]))
@click.option("-q", "--query", "text", help="Text in title, 索引号, 文号 or body.")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@with_store
async def items_list(
    store: SqlStore,
    status: str | None,
    category: str | None,
    year: int | None,
    disclosure: str | None,
    text: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List items, newest first."""
    from publisher.web.api import item_json

    if category is not None and store.config.category(category) is None:
        raise ValidationFailed(f"--category: unknown category {category!r}")
    query = ItemQuery(
        status=ItemStatus(status) if status else None,
        category=category,
        year=year,
        disclosure=Disclosure(disclosure) if disclosure else None,
        text=text,
        limit=limit,
    )
    found, total = await store.list_items(query)
    if as_json:
        click.echo(
            json.dumps(
                {"items": [item_json(i, store.config) for i in found], "total": total},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table("id", "status", "索引号", "主题分类", "成文日期", "title", title=f"{total} items")
    for i in found:
        c = i.content
        table.add_row(
            i.id[:8],
            i.status.value,
            i.index_no or "",
            c.category,
            c.written_at.astimezone(store.config.site.tz).date().isoformat(),
            c.title[:40],
        )
    console.print(table)


@items.command("show")
@click.argument("item_id")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@with_store
async def items_show(store: SqlStore, item_id: str, as_json: bool) -> None:
    """Show one item (a unique prefix of its id is enough)."""
    from publisher.web.api import item_json

    item = await _find_item(store, item_id)
    data = item_json(item, store.config)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    table = Table(show_header=False)
    for key in (
        "id",
        "status",
        "index_no",
        "title",
        "category_name",
        "agency",
        "doc_no",
        "written_at",
        "published_at",
        "disclosure",
        "channels",
        "revision",
    ):
        table.add_row(key, str(data[key]))
    console.print(table)
    console.print(data["summary"])


async def _find_item(store: SqlStore, item_id: str) -> Any:
    from publisher.errors import ItemNotFound

    try:
        return await store.get_item(item_id)
    except ItemNotFound:
        if len(item_id) < 4:
            raise
        import sqlalchemy as sa

        from publisher.store import schema as t

        async with store.read() as conn:
            ids = (
                await conn.scalars(
                    sa.select(t.items.c.id).where(t.items.c.id.like(item_id + "%")).limit(2)
                )
            ).all()
        if len(ids) != 1:
            raise
        return await store.get_item(ids[0])


# -- backup ------------------------------------------------------------------------------------


@cli.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_store
async def backup_cmd(store: SqlStore, file: Path) -> None:
    """Write a consistent copy of the store and attachments to FILE while it runs: a tar.gz
    encrypted with the data key (AES-256-GCM), mode 0600."""
    from publisher.backup import backup

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("backing up", total=None)
        counts = await backup(store, file, lambda name, n: progress.update(task, description=name))
    click.echo(f"wrote {file}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    click.echo(
        "encrypted with the data key; the data key is not in the backup: keep it safe "
        "separately, without it the backup cannot be restored",
        err=True,
    )


@cli.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace a store that is not empty.")
@with_store
async def restore_cmd(store: SqlStore, file: Path, force: bool) -> None:
    """Restore a backup made by `publisher backup` into this store."""
    from publisher.backup import restore

    if not file.exists():
        raise ValidationFailed(f"{file}: no such file")
    counts = await restore(store, file, force=force)
    click.echo(f"restored {file}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@cli.group()
def subscribers() -> None:
    """Residents' subscriptions: their data on request (PIPL)."""


@subscribers.command("export")
@click.argument("address")
@with_store
async def subscribers_export(store: SqlStore, address: str) -> None:
    """Print, as JSON, everything held about ADDRESS (phone number or email) on any channel."""
    from publisher.recipients import Recipients

    data = await Recipients(store).export(address)
    if not data["subscriptions"]:
        raise ValidationFailed("no subscriber with that address")
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@subscribers.command("erase")
@click.argument("address")
@with_store
async def subscribers_erase(store: SqlStore, address: str) -> None:
    """Delete ADDRESS's data on every channel; only a keyed-hash suppression entry remains."""
    from publisher.addresses import mask
    from publisher.recipients import Recipients

    n = await Recipients(store).erase(address)
    if n == 0:
        raise ValidationFailed("no subscriber with that address")
    click.echo(
        f"erased {n} subscription{'s' if n != 1 else ''} of {mask(address.strip())}; "
        "the address stays on the suppression list"
    )


# calendar, items due, requests and report live in their own module (issue 9)
from publisher import cli_annual  # noqa: E402  (it builds on the helpers above)

cli_annual.register(cli, items)

# notice boards and their print packs (issue 7)
from publisher import cli_boards  # noqa: E402

cli_boards.register(cli)


def main() -> None:
    cli(prog_name="publisher")
