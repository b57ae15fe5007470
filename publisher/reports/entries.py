"""What staff enter for a year's annual report: cells the store cannot know, and free text.

One JSON document per year, validated by `AnnualEntries`; a PUT replaces it whole,
so what is read back is exactly what was written.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import sqlalchemy as sa
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from publisher.errors import ValidationFailed
from publisher.store import schema as t
from publisher.store.sql import SqlStore, insert_for, utcnow


def not_a_boolean(value: object) -> object:
    """JSON true/false is not a count (pydantic would take false as 0)."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true or false")
    return value


Count = Annotated[int, BeforeValidator(not_a_boolean)]


class _Entries(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Table2Entries(_Entries):
    """Table 二, the cells outside 第二十条第（一）项 (which the store counts)."""

    licensing: Count = Field(default=0, ge=0, description="行政许可: 本年处理决定数量")
    penalty: Count = Field(default=0, ge=0, description="行政处罚: 本年处理决定数量")
    coercion: Count = Field(default=0, ge=0, description="行政强制: 本年处理决定数量")
    fees: Decimal = Field(
        default=Decimal(0),
        ge=0,
        max_digits=12,
        decimal_places=4,
        description="行政事业性收费: 本年收费金额（万元）",
    )


class Outcomes(_Entries):
    """One group of table 四; 总计 is entered too, and checked against the four results."""

    upheld: Count = Field(default=0, ge=0, description="结果维持")
    corrected: Count = Field(default=0, ge=0, description="结果纠正")
    other: Count = Field(default=0, ge=0, description="其他结果")
    pending: Count = Field(default=0, ge=0, description="尚未审结")
    total: Count = Field(default=0, ge=0, description="总计")


class Table4Entries(_Entries):
    reconsideration: Outcomes = Field(default_factory=Outcomes, description="行政复议")
    litigation_direct: Outcomes = Field(
        default_factory=Outcomes, description="行政诉讼: 未经复议直接起诉"
    )
    litigation_after_reconsideration: Outcomes = Field(
        default_factory=Outcomes, description="行政诉讼: 复议后起诉"
    )


class AnnualEntries(_Entries):
    overview: str = Field(default="", max_length=20000, description="一、总体情况 (text)")
    table2: Table2Entries = Field(default_factory=Table2Entries)
    table4: Table4Entries = Field(default_factory=Table4Entries)
    problems: str = Field(default="", max_length=20000, description="五、存在的主要问题及改进情况")
    other_matters: str = Field(default="", max_length=20000, description="六、其他需要报告的事项")


def check_year(year: int) -> None:
    if not 1900 <= year <= 2200:
        raise ValidationFailed(f"year: {year} is outside 1900–2200")


async def get_entries(store: SqlStore, year: int) -> AnnualEntries:
    """The year's entries; all zeros and empty text when nothing was entered."""
    check_year(year)
    async with store.read() as conn:
        data = await conn.scalar(
            sa.select(t.annual_report_entries.c.data).where(t.annual_report_entries.c.year == year)
        )
    return AnnualEntries.model_validate(data) if data is not None else AnnualEntries()


async def put_entries(store: SqlStore, year: int, entries: AnnualEntries, *, actor: str) -> None:
    check_year(year)
    data = entries.model_dump(mode="json")
    now = utcnow()
    async with store.write() as conn:
        stmt = insert_for(conn)(t.annual_report_entries).values(
            year=year, data=data, updated_at=now, updated_by=actor
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["year"],
                set_={"data": data, "updated_at": now, "updated_by": actor},
            )
        )


def set_path(entries: AnnualEntries, assignment: str) -> AnnualEntries:
    """Apply one `dotted.path=value` (the CLI's --set) and validate the result."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path.strip():
        raise ValidationFailed(
            f"--set {assignment!r}: expected PATH=VALUE, e.g. table2.licensing=3"
        )
    data = entries.model_dump(mode="json")
    node = data
    keys = path.strip().split(".")
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            raise ValidationFailed(f"--set {path}: no such entry")
        node = child
    if keys[-1] not in node or isinstance(node[keys[-1]], dict):
        raise ValidationFailed(f"--set {path}: no such entry")
    node[keys[-1]] = raw
    try:
        return AnnualEntries.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ValidationFailed(f"--set {path}: {msg}") from None
