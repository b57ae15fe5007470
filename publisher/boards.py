"""Notice boards (村务 / 政务公开栏): the targets of the board channel.

A board is a row in `boards` plus an `endpoints` row (channel "board") that the fan-out
plans as its target "e:<id>": the endpoint mirrors the non-personal fields (name,
categories, enabled, and in its settings the paper, orientation, location and minimum
posting days the layouts need), so the engine treats a board like any other endpoint.
The operator's phone and email are personal data: only encrypted here (AddressBox), and
masked wherever they are shown or logged. Operators are not staff users: they act
through signed links (publisher.packs).

Boards declared in config.yaml (`channels.board.endpoints`) get their `boards` row the
first time a pack is planned for them, with paper, orientation, location and min_days
read from the endpoint's settings and no operator contact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)

from publisher.addresses import AddressBox, mask, normalize
from publisher.config import Config
from publisher.errors import Conflict, NotFound, ValidationFailed
from publisher.reports.entries import not_a_boolean
from publisher.store import schema as t
from publisher.store.sql import SqlStore, insert_for, utcnow
from publisher.textclean import ERROR_TYPE, CleanTextModel, ForbiddenCharacters

CHANNEL = "board"
Paper = Literal["A4", "A3"]
Orientation = Literal["portrait", "landscape"]
PAPERS: tuple[str, ...] = ("A4", "A3")
ORIENTATIONS: tuple[str, ...] = ("portrait", "landscape")
MAX_MIN_DAYS = 366


class _BoardFields(CleanTextModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    #: no invisible characters in the board's name and place (publisher.textclean)
    line_fields = frozenset({"name", "location"})

    location: str | None = Field(default=None, max_length=255)
    paper: Paper | None = None
    orientation: Orientation | None = None
    categories: list[str] | None = Field(default=None, max_length=100)
    min_days: Annotated[int, BeforeValidator(not_a_boolean)] | None = Field(
        default=None, ge=0, le=MAX_MIN_DAYS
    )
    #: the operator's mobile number; "" clears it
    operator_phone: str | None = Field(default=None, max_length=32)
    #: the operator's email address; "" clears it
    operator_email: str | None = Field(default=None, max_length=254)
    #: strict: the number 0 or the string "no" is not a yes/no (schemathesis found 0 taken)
    enabled: StrictBool | None = None

    @field_validator("location", "operator_phone", "operator_email", "name", check_fields=False)
    @classmethod
    def _no_control(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 32 or c == "\x7f" for c in value):
            raise ValueError("must not contain control characters")
        return value


class BoardCreate(_BoardFields):
    """A new board; paper, orientation, categories and min_days have defaults."""

    name: str = Field(min_length=1, max_length=128)


class BoardPatch(_BoardFields):
    """The fields to change; absent fields stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=128)


@dataclass(frozen=True, slots=True)
class Board:
    id: int
    endpoint_id: int
    name: str
    location: str
    paper: str
    orientation: str
    categories: tuple[str, ...]
    min_days: int
    #: personal data: whole only for sending; use the masked forms anywhere else
    operator_phone: str | None
    operator_email: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @property
    def target(self) -> str:
        """The ledger target of this board."""
        return f"e:{self.endpoint_id}"

    def public_json(self) -> dict[str, Any]:
        """For the API and the CLI: the operator's contact masked."""
        return {
            "id": self.id,
            "name": self.name,
            "location": self.location,
            "paper": self.paper,
            "orientation": self.orientation,
            "categories": list(self.categories),
            "min_days": self.min_days,
            "operator_phone": mask(self.operator_phone) if self.operator_phone else None,
            "operator_email": mask(self.operator_email) if self.operator_email else None,
            "enabled": self.enabled,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def describe_validation(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "body"
    msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
    return f"{loc}: {msg.removeprefix('Value error, ')}"


def _json_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in value or []]


def endpoint_settings(board: Board) -> dict[str, Any]:
    """What the endpoint row mirrors for rendering (no personal data)."""
    return {
        "board_id": board.id,
        "location": board.location,
        "paper": board.paper,
        "orientation": board.orientation,
        "min_days": board.min_days,
    }


class Boards:
    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.config: Config = store.config
        self._box: AddressBox | None = None

    @property
    def box(self) -> AddressBox:
        if self._box is None:
            self._box = AddressBox(self.config.data_key())
        return self._box

    # -- validation -----------------------------------------------------------------------

    def _categories(self, values: list[str]) -> list[str]:
        out: list[str] = []
        for slug in values:
            if self.config.category(slug) is None:
                known = ", ".join(c.slug for c in self.config.taxonomy)
                raise ValidationFailed(f"categories: unknown category {slug!r} (known: {known})")
            if slug not in out:
                out.append(slug)
        return out

    def _contact(self, channel: str, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        field = "operator_phone" if channel == "sms" else "operator_email"
        try:
            return normalize(channel, value)
        except ValidationFailed as exc:
            raise ValidationFailed(f"{field}: {exc.detail.removeprefix('address: ')}") from None

    # -- reading ------------------------------------------------------------------------------

    def _board(self, row: Any) -> Board:
        return Board(
            id=int(row.id),
            endpoint_id=int(row.endpoint_id),
            name=row.name,
            location=row.location,
            paper=row.paper,
            orientation=row.orientation,
            categories=tuple(_json_list(row.categories)),
            min_days=int(row.min_days),
            operator_phone=self.box.open(row.operator_phone_enc)
            if row.operator_phone_enc
            else None,
            operator_email=self.box.open(row.operator_email_enc)
            if row.operator_email_enc
            else None,
            enabled=bool(row.enabled),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def get(self, board_id: int) -> Board:
        async with self.store.read() as conn:
            row = (await conn.execute(sa.select(t.boards).where(t.boards.c.id == board_id))).first()
        if row is None:
            raise NotFound(f"no board {board_id}")
        return self._board(row)

    async def all(self) -> list[Board]:
        async with self.store.read() as conn:
            rows = (await conn.execute(sa.select(t.boards).order_by(t.boards.c.id))).all()
        return [self._board(r) for r in rows]

    async def for_endpoints(self, endpoint_ids: list[int]) -> dict[int, Board]:
        """The boards behind board endpoints, creating the row of a board declared in
        config.yaml on first use (no operator contact: staff record its posting)."""
        if not endpoint_ids:
            return {}
        b, e = t.boards, t.endpoints
        async with self.store.write() as conn:
            missing = (
                await conn.execute(
                    sa.select(e)
                    .outerjoin(b, b.c.endpoint_id == e.c.id)
                    .where(e.c.id.in_(endpoint_ids), e.c.channel == CHANNEL, b.c.id.is_(None))
                )
            ).all()
            now = utcnow()
            for ep in missing:
                settings = ep.settings if isinstance(ep.settings, dict) else {}
                paper = settings.get("paper", "A4")
                orientation = settings.get("orientation", "portrait")
                min_days = settings.get("min_days", 0)
                await conn.execute(
                    insert_for(conn)(b)
                    .values(
                        endpoint_id=ep.id,
                        name=ep.name,
                        location=str(settings.get("location", ep.address)),
                        paper=paper if paper in PAPERS else "A4",
                        orientation=orientation if orientation in ORIENTATIONS else "portrait",
                        categories=_json_list(ep.categories),
                        min_days=min_days if isinstance(min_days, int) and min_days >= 0 else 0,
                        operator_phone_enc=None,
                        operator_email_enc=None,
                        enabled=bool(ep.enabled),
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["endpoint_id"])
                )
            rows = (await conn.execute(sa.select(b).where(b.c.endpoint_id.in_(endpoint_ids)))).all()
        return {int(r.endpoint_id): self._board(r) for r in rows}

    # -- writing ------------------------------------------------------------------------------

    async def add(self, data: BoardCreate) -> Board:
        categories = self._categories(data.categories or [])
        phone = self._contact("sms", data.operator_phone)
        email = self._contact("email", data.operator_email)
        now = utcnow()
        b, e = t.boards, t.endpoints
        async with self.store.write() as conn:
            taken = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(e)
                .where(e.c.channel == CHANNEL, e.c.name == data.name)
            )
            if taken:
                raise Conflict(f"name: a board named {data.name!r} exists already")
            endpoint_id = (
                await conn.execute(
                    e.insert()
                    .values(
                        channel=CHANNEL,
                        name=data.name,
                        address=data.location or data.name,
                        categories=categories,
                        settings={},
                        enabled=data.enabled if data.enabled is not None else True,
                        created_at=now,
                    )
                    .returning(e.c.id)
                )
            ).scalar_one()
            board_id = (
                await conn.execute(
                    b.insert()
                    .values(
                        endpoint_id=endpoint_id,
                        name=data.name,
                        location=data.location or "",
                        paper=data.paper or "A4",
                        orientation=data.orientation or "portrait",
                        categories=categories,
                        min_days=data.min_days if data.min_days is not None else 0,
                        operator_phone_enc=self.box.seal(phone) if phone else None,
                        operator_email_enc=self.box.seal(email) if email else None,
                        enabled=data.enabled if data.enabled is not None else True,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(b.c.id)
                )
            ).scalar_one()
            row = (await conn.execute(sa.select(b).where(b.c.id == board_id))).one()
            board = self._board(row)
            await conn.execute(
                e.update().where(e.c.id == endpoint_id).values(settings=endpoint_settings(board))
            )
        return board

    async def edit(self, board_id: int, data: BoardPatch) -> Board:
        changes = data.model_dump(exclude_unset=True)
        values: dict[str, Any] = {}
        for key in ("name", "location", "paper", "orientation", "min_days", "enabled"):
            if key in changes:
                if changes[key] is None:
                    raise ValidationFailed(f"{key}: must not be null")
                values[key] = changes[key]
        if "categories" in changes:
            values["categories"] = self._categories(changes["categories"] or [])
        if "operator_phone" in changes:
            phone = self._contact("sms", changes["operator_phone"])
            values["operator_phone_enc"] = self.box.seal(phone) if phone else None
        if "operator_email" in changes:
            email = self._contact("email", changes["operator_email"])
            values["operator_email_enc"] = self.box.seal(email) if email else None
        b, e = t.boards, t.endpoints
        async with self.store.write() as conn:
            row = (await conn.execute(sa.select(b).where(b.c.id == board_id))).first()
            if row is None:
                raise NotFound(f"no board {board_id}")
            if "name" in values and values["name"] != row.name:
                taken = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(e)
                    .where(e.c.channel == CHANNEL, e.c.name == values["name"])
                )
                if taken:
                    raise Conflict(f"name: a board named {values['name']!r} exists already")
            if values:
                values["updated_at"] = utcnow()
                await conn.execute(b.update().where(b.c.id == board_id).values(**values))
            row = (await conn.execute(sa.select(b).where(b.c.id == board_id))).one()
            board = self._board(row)
            await conn.execute(
                e.update()
                .where(e.c.id == board.endpoint_id)
                .values(
                    name=board.name,
                    address=board.location or board.name,
                    categories=list(board.categories),
                    enabled=board.enabled,
                    settings=endpoint_settings(board),
                )
            )
        return board


def parse_board(model: type[BoardCreate] | type[BoardPatch], data: Any) -> Any:
    """Validate API or CLI input; ValidationFailed (422 / exit 2) names the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == ERROR_TYPE:  # the staff pages say it in the UI's language
            field = ".".join(str(p) for p in err["loc"])
            raise ForbiddenCharacters(field, str(err.get("ctx", {})["characters"])) from None
        raise ValidationFailed(describe_validation(exc)) from None
