"""`publisher boards add|list|edit|packs|posted`: notice boards from the command line.

Every value is checked by the same models as the API (publisher.boards), so a bad one is
one line on stderr naming the option and exit code 2. Operators' phone numbers and email
addresses are stored encrypted and shown masked.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.measure import Measurement
from rich.table import Table

from publisher.boards import BoardCreate, BoardPatch, Boards, parse_board
from publisher.cli import console, with_store
from publisher.store.sql import SqlStore


def _fields(**options: Any) -> dict[str, Any]:
    """Options given on the command line, as API fields (categories split on commas)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key == "categories":
            value = [c.strip() for c in value.split(",") if c.strip()]
        out[key] = value
    return out


def _show(board: dict[str, Any]) -> str:
    cats = ",".join(board["categories"]) or "all"
    contact = " ".join(x for x in (board["operator_phone"], board["operator_email"]) if x) or "-"
    state = "" if board["enabled"] else " (disabled)"
    return (
        f"board {board['id']}: {board['name']}{state} — {board['paper']} {board['orientation']}, "
        f"categories {cats}, min {board['min_days']} days, operator {contact}"
    )


_LAYOUT_OPTIONS = [
    click.option("--location", help="Where the board stands."),
    click.option("--paper", help="A4 or A3."),
    click.option("--orientation", help="portrait or landscape."),
    click.option("--categories", help="Category slugs it carries, comma-separated (none: all)."),
    click.option("--min-days", "min_days", help="Days an item must stay posted at least."),
    click.option("--phone", "operator_phone", help="The operator's mobile number ('' clears it)."),
    click.option("--email", "operator_email", help="The operator's email address ('' clears it)."),
]


def _layout_options(fn: Any) -> Any:
    for option in reversed(_LAYOUT_OPTIONS):
        fn = option(fn)
    return fn


@click.group("boards")
def boards_group() -> None:
    """Notice boards (公开栏): add, list, edit; their print packs."""


@boards_group.command("add")
@click.argument("name")
@_layout_options
@click.option("--disabled", is_flag=True, help="Add it switched off.")
@with_store
async def boards_add(store: SqlStore, name: str, disabled: bool, **options: Any) -> None:
    """Add a board called NAME (e.g. the village)."""
    fields = _fields(name=name, **options)
    if disabled:
        fields["enabled"] = False
    board = await Boards(store).add(parse_board(BoardCreate, fields))
    click.echo(_show(board.public_json()))


@boards_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@with_store
async def boards_list(store: SqlStore, as_json: bool) -> None:
    """The boards, operators' contacts masked."""
    found = [b.public_json() for b in await Boards(store).all()]
    if as_json:
        click.echo(json.dumps({"boards": found}, ensure_ascii=False, indent=2))
        return
    table = Table("id", "name", "location", "paper", "categories", "min days", "operator", "on")
    for b in found:
        table.add_row(
            str(b["id"]),
            b["name"],
            b["location"],
            f"{b['paper']} {b['orientation']}",
            ",".join(b["categories"]) or "all",
            str(b["min_days"]),
            " ".join(x for x in (b["operator_phone"], b["operator_email"]) if x) or "-",
            "yes" if b["enabled"] else "no",
        )
    # as wide as the rows need: a name or a contact cut off at 80 columns ("下余村村委…")
    # is no use to the person who has to find that board
    needed = Measurement.get(console, console.options.update(max_width=10_000), table).maximum
    width = console.width
    console.width = max(width, needed)
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


@boards_group.command("edit")
@click.argument("board_id", type=str)
@click.option("--name", help="A new name.")
@_layout_options
@click.option("--enable/--disable", "enabled", default=None, help="Switch it on or off.")
@with_store
async def boards_edit(store: SqlStore, board_id: str, **options: Any) -> None:
    """Change board BOARD_ID; options not given stay as they are."""
    from publisher.errors import ValidationFailed

    if not board_id.isdecimal():
        raise ValidationFailed(f"BOARD_ID: must be a board's number, not {board_id!r}")
    fields = _fields(**options)
    if not fields:
        raise ValidationFailed("nothing to change: give at least one option")
    board = await Boards(store).edit(int(board_id), parse_board(BoardPatch, fields))
    click.echo(_show(board.public_json()))


@boards_group.command("packs")
@click.argument("board_id", type=str)
@with_store
async def boards_packs(store: SqlStore, board_id: str) -> None:
    """A board's print packs, newest first, with state and flags (JSON)."""
    from publisher.errors import ValidationFailed
    from publisher.packs import list_packs

    if not board_id.isdecimal():
        raise ValidationFailed(f"BOARD_ID: must be a board's number, not {board_id!r}")
    board = await Boards(store).get(int(board_id))
    packs = await list_packs(store, board.id)
    click.echo(json.dumps({"board": board.id, "packs": packs}, ensure_ascii=False, indent=2))


@boards_group.command("posted")
@click.argument("board_id", type=str)
@click.argument("pack_id", type=str)
@with_store
async def boards_posted(store: SqlStore, board_id: str, pack_id: str) -> None:
    """Record that board BOARD_ID posted pack PACK_ID (its delivery becomes delivered)."""
    from publisher.errors import ValidationFailed
    from publisher.packs import confirm

    if not (board_id.isdecimal() and pack_id.isdecimal()):
        raise ValidationFailed("BOARD_ID and PACK_ID: must be numbers")
    done = await confirm(store, int(board_id), int(pack_id), by="cli")
    when = done.confirmed_at.astimezone(store.config.site.tz).strftime("%Y-%m-%d %H:%M")
    click.echo(f"pack {done.pack_id} {'was already ' if done.repeat else ''}confirmed at {when}")


def register(cli: click.Group) -> None:
    cli.add_command(boards_group)
