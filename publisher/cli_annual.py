"""`publisher calendar`, `publisher items due`, `publisher requests` and `publisher report`:
the statutory clocks and the annual report, on the conventions of publisher.cli (one
line and exit code 2 for anything the user can fix)."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from publisher.calendar import (
    DayKind,
    SpecialDay,
    load_calendar,
    parse_calendar_file,
    parse_day,
    parse_span,
    set_year,
    year_days,
)
from publisher.cli import CliError, console, with_store
from publisher.clocks import items_due
from publisher.errors import NotFound, ValidationFailed
from publisher.register import (
    APPLICANT_LABELS,
    ApplicantType,
    CloseIn,
    ExtendIn,
    Outcome,
    PauseIn,
    PauseKind,
    Register,
    RequestIn,
    ResumeIn,
    deadline,
    request_json,
)
from publisher.reports.annual import build_report
from publisher.reports.entries import get_entries, put_entries, set_path
from publisher.reports.render import ReportFormat, render
from publisher.store.sql import SqlStore

#: who the CLI acts as in the store's records: the operator at the console
CLI_ACTOR = "cli"


def _today(store: SqlStore) -> date:
    return datetime.now(store.config.site.tz).date()


def _day(value: str, option: str) -> date:
    try:
        return parse_day(value, option)
    except ValidationFailed as exc:
        raise CliError(exc.detail) from None


def _year(value: str, what: str) -> int:
    """Years are checked here rather than by click, whose usage errors take four lines."""
    if not value.isdigit() or not 1900 <= int(value) <= 2200:
        raise CliError(f"{what}: {value!r} is not a year between 1900 and 2200")
    return int(value)


# -- calendar ----------------------------------------------------------------------------


@click.group("calendar")
def calendar_group() -> None:
    """The working-day calendar: official holidays and make-up working days (调休)."""


@calendar_group.command("set")
@click.argument("year", callback=lambda _ctx, _param, value: _year(value, "YEAR"))
@click.option("--holiday", "holidays", multiple=True, help="DATE or DATE..DATE off (放假).")
@click.option("--workday", "workdays", multiple=True, help="A weekend DATE worked (调休上班).")
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Lines 'DATE[..DATE] holiday|workday [name]'.",
)
@with_store
async def calendar_set(
    store: SqlStore,
    year: int,
    holidays: tuple[str, ...],
    workdays: tuple[str, ...],
    file: Path | None,
) -> None:
    """Enter YEAR's official schedule; replaces what was entered for YEAR."""
    days: list[SpecialDay] = []
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationFailed(f"--file {file}: cannot read it ({exc})") from None
        days.extend(parse_calendar_file(text, str(file)))
    for span in holidays:
        days.extend(SpecialDay(d, DayKind.HOLIDAY) for d in parse_span(span, "--holiday"))
    for span in workdays:
        days.extend(SpecialDay(d, DayKind.WORKDAY) for d in parse_span(span, "--workday"))
    if not days and file is None:
        raise ValidationFailed("give --holiday, --workday or --file (an empty --file clears)")
    await set_year(store, year, days, actor=CLI_ACTOR)
    n_h = sum(1 for d in days if d.kind is DayKind.HOLIDAY)
    click.echo(f"{year}: {n_h} holidays and {len(days) - n_h} make-up working days entered")


@calendar_group.command("show")
@click.argument("year", callback=lambda _ctx, _param, value: _year(value, "YEAR"))
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@with_store
async def calendar_show(store: SqlStore, year: int, as_json: bool) -> None:
    """Show YEAR's holidays and make-up working days."""
    from publisher.web.reports import calendar_json

    entered, days = await year_days(store, year)
    if as_json:
        click.echo(json.dumps(calendar_json(year, entered, days), ensure_ascii=False, indent=2))
        return
    if not entered:
        click.echo(f"{year}: not entered; deadlines count weekends only")
        return
    weekdays = "一二三四五六日"
    table = Table("date", "星期", "kind", "name", title=f"{year}")
    for d in days:
        table.add_row(
            d.day.isoformat(),
            weekdays[d.day.weekday()],
            "放假" if d.kind is DayKind.HOLIDAY else "调休上班",
            d.name or "",
        )
    console.print(table)


# -- items due ---------------------------------------------------------------------------


@click.command("due")
@click.option(
    "--within",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    help="Working days left at most.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@with_store
async def items_due_cmd(store: SqlStore, within: int, as_json: bool) -> None:
    """Proactive items near or past their 20-working-day deadline (条例 Art26)."""
    from publisher.web.reports import clock_json

    calendar = await load_calendar(store)
    today = _today(store)
    clocks = await items_due(store, calendar, today, within)
    missing = calendar.missing_years(today)
    if as_json:
        data = [clock_json(c, store.config) for c in clocks]
        click.echo(json.dumps({"today": today.isoformat(), "items": data}, ensure_ascii=False))
        return
    if missing:
        click.echo(f"note: no holiday schedule entered for {missing[0]}; weekends only", err=True)
    if not clocks:
        click.echo(f"no item within {within} working days of its deadline")
        return
    table = Table("id", "status", "from", "deadline", "left", "title", title=f"{len(clocks)} items")
    for c in clocks:
        left = str(c.working_days_left) if c.working_days_left >= 0 else "overdue"
        table.add_row(
            c.item_id[:8],
            c.status.value,
            f"{c.starts_on} ({c.reason})",
            c.deadline.isoformat(),
            left,
            c.title[:40],
        )
    console.print(table)


# -- requests ----------------------------------------------------------------------------


@click.group("requests")
def requests_group() -> None:
    """The register of disclosure requests (依申请公开)."""


def _show(req_json: dict[str, Any]) -> None:
    due = req_json["deadline"] or ("paused" if req_json["paused"] else "—")
    click.echo(
        f"request {req_json['id']}: {req_json['state']}, received {req_json['received_on']}, "
        f"deadline {due}"
        + (f", {req_json['outcome']} on {req_json['closed_on']}" if req_json["outcome"] else "")
    )


@requests_group.command("add")
@click.option("--received", required=True, help="Date received (YYYY-MM-DD).")
@click.option(
    "--applicant-type",
    required=True,
    type=click.Choice([a.value for a in ApplicantType]),
    help="; ".join(f"{a.value}={label}" for a, label in APPLICANT_LABELS.items()),
)
@click.option("--subject", required=True, help="The information asked for.")
@click.option("--applicant", help="The applicant's name (personal data; optional).")
@click.option("--note")
@with_store
async def requests_add(
    store: SqlStore,
    received: str,
    applicant_type: str,
    subject: str,
    applicant: str | None,
    note: str | None,
) -> None:
    """Register a request."""
    body = _model(
        RequestIn,
        received_on=_day(received, "--received"),
        applicant_type=applicant_type,
        subject=subject,
        applicant=applicant,
        note=note,
    )
    req = await Register(store).add(body, actor=CLI_ACTOR)
    _show(request_json(req, await load_calendar(store), _today(store)))


def _model(model: Any, **values: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise CliError(f"{field}: {str(err['msg']).removeprefix('Value error, ')}") from None


@requests_group.command("list")
@click.option(
    "--year", type=click.IntRange(1900, 2200), help="Received in YEAR or open at its start."
)
@click.option("--open", "open_only", is_flag=True, help="Only open requests.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@with_store
async def requests_list(store: SqlStore, year: int | None, open_only: bool, as_json: bool) -> None:
    """List requests with their deadlines."""
    found = await Register(store).find(year=year, open_only=open_only)
    calendar = await load_calendar(store)
    today = _today(store)
    rows = [request_json(r, calendar, today) for r in found]
    if as_json:
        click.echo(json.dumps({"requests": rows, "total": len(rows)}, ensure_ascii=False, indent=2))
        return
    table = Table("id", "received", "applicant", "state", "deadline", "outcome", "subject")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["received_on"]),
            str(r["applicant_type_name"]),
            str(r["state"]),
            str(r["deadline"] or ("paused" if r["paused"] else "")),
            str(r["outcome"] or ""),
            str(r["subject"])[:30],
        )
    console.print(table)


@requests_group.command("pause")
@click.argument("request_id", type=int)
@click.option("--kind", required=True, type=click.Choice([k.value for k in PauseKind]))
@click.option("--on", "on", required=True, help="Date the pause starts.")
@with_store
async def requests_pause(store: SqlStore, request_id: int, kind: str, on: str) -> None:
    """Stop a request's clock: 补正 (correction) or third-party consultation."""
    body = _model(PauseIn, kind=kind, started_on=_day(on, "--on"))
    req = await Register(store).pause(request_id, body)
    _show(request_json(req, await load_calendar(store), _today(store)))


@requests_group.command("resume")
@click.argument("request_id", type=int)
@click.option("--on", "on", required=True, help="Date the correction came, or consultation ended.")
@with_store
async def requests_resume(store: SqlStore, request_id: int, on: str) -> None:
    """End a request's open pause."""
    req = await Register(store).resume(request_id, ResumeIn(ended_on=_day(on, "--on")))
    _show(request_json(req, await load_calendar(store), _today(store)))


@requests_group.command("extend")
@click.argument("request_id", type=int)
@click.option("--on", "on", required=True, help="Date the extension was decided.")
@with_store
async def requests_extend(store: SqlStore, request_id: int, on: str) -> None:
    """The one 20-working-day extension (条例 Art33)."""
    calendar = await load_calendar(store)
    req = await Register(store).extend(request_id, ExtendIn(extended_on=_day(on, "--on")), calendar)
    _show(request_json(req, calendar, _today(store)))


@requests_group.command("close")
@click.argument("request_id", type=int)
@click.option(
    "--outcome",
    required=True,
    type=click.Choice([o.value for o in Outcome]),
    help="A table 三 leaf.",
)
@click.option("--on", "on", required=True, help="Date answered.")
@with_store
async def requests_close(store: SqlStore, request_id: int, outcome: str, on: str) -> None:
    """Close a request with its outcome."""
    body = _model(CloseIn, outcome=outcome, closed_on=_day(on, "--on"))
    calendar = await load_calendar(store)
    register = Register(store)
    due = deadline(await register.get(request_id), calendar)
    req = await register.close(request_id, body)
    _show(request_json(req, calendar, _today(store)))
    if due is not None and req.closed_on is not None and req.closed_on > due:
        click.echo(f"note: answered after the deadline {due}", err=True)


# -- report ------------------------------------------------------------------------------


@click.group("report")
def report_group() -> None:
    """The annual disclosure report (政府信息公开工作年度报告)."""


@report_group.command("annual")
@click.argument("year", callback=lambda _ctx, _param, value: _year(value, "YEAR"))
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in ReportFormat]),
    help="html (default), pdf, csv or json.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default stdout)."
)
@click.option(
    "--as-item",
    is_flag=True,
    help="Create a draft item of the report (PDF attached) for review and publication.",
)
@click.option("--author", help="With --as-item: the staff user (editor) the draft is written by.")
@with_store
async def report_annual(
    store: SqlStore,
    year: int,
    fmt: str | None,
    out: Path | None,
    as_item: bool,
    author: str | None,
) -> None:
    """Render YEAR's report in the 2021 template; refuses one that does not add up."""
    if as_item:
        await _report_as_item(store, year, fmt, out, author)
        return
    if author is not None:
        raise ValidationFailed("--author: only with --as-item")
    data = render(await build_report(store, year), ReportFormat(fmt or "html"))
    if out is None:
        if fmt == "pdf" and sys.stdout.isatty():
            raise ValidationFailed("--format pdf: give --out FILE (a PDF on the terminal is noise)")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise ValidationFailed(f"--out {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out} ({len(data)} bytes)", err=True)


async def _report_as_item(
    store: SqlStore, year: int, fmt: str | None, out: Path | None, author: str | None
) -> None:
    from publisher.reports.publish import publish_as_item
    from publisher.store.sql import Actor
    from publisher.workflow import EDIT_ROLES

    if fmt is not None or out is not None:
        raise ValidationFailed("--as-item: takes no --format or --out (the item has the PDF)")
    if author is None:
        raise ValidationFailed("--as-item: give --author USER, the editor the draft belongs to")
    try:
        user = await store.get_user(author)
    except NotFound:
        raise ValidationFailed(f"--author {author}: no such user") from None
    if user.disabled or user.role not in EDIT_ROLES:
        why = "is disabled" if user.disabled else f"is a {user.role.value}"
        raise ValidationFailed(f"--author {author}: {why}; the draft needs an editor or admin")
    item = await publish_as_item(store, year, actor=Actor(user.name, user.role))
    click.echo(f"draft item {item.id}: {item.revision.content.title}")
    click.echo(f"next: submit it for review (POST /api/v1/items/{item.id}/submit, or /staff)")


@report_group.command("entries")
@click.argument("year", callback=lambda _ctx, _param, value: _year(value, "YEAR"))
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON to store as the year's entries (replaces them).",
)
@click.option("--set", "assignments", multiple=True, help="PATH=VALUE, e.g. table2.licensing=3.")
@with_store
async def report_entries(
    store: SqlStore, year: int, file: Path | None, assignments: tuple[str, ...]
) -> None:
    """Show or change the cells staff enter for YEAR's report (JSON)."""
    from publisher.reports.entries import AnnualEntries

    entries = await get_entries(store, year)
    if file is not None:
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationFailed(f"--file {file}: {exc}") from None
        if not isinstance(raw, dict):
            raise ValidationFailed(f"--file {file}: must hold a JSON object")
        entries = _model(AnnualEntries, **raw)
    for assignment in assignments:
        entries = set_path(entries, assignment)
    if file is not None or assignments:
        await put_entries(store, year, entries, actor=CLI_ACTOR)
    click.echo(json.dumps(entries.model_dump(mode="json"), ensure_ascii=False, indent=2))


def register(cli: click.Group, items: click.Group) -> None:
    cli.add_command(calendar_group)
    cli.add_command(requests_group)
    cli.add_command(report_group)
    items.add_command(items_due_cmd)
