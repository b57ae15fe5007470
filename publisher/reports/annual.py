"""The annual report on government-information disclosure (政府信息公开工作年度报告),
in the 2021 national template (国办公开办函〔2021〕30号).

What the store knows is counted from it: proactive publications of the year (by
category, month and channel, with each channel's delivery success rate from the
ledger), corrections, withdrawals, expiries and late publications (section 一);
regulations and normative documents made, repealed and in force (table 二, 第二十条
第（一）项); every cell of table 三 from the request register. The rest is entered
by staff per year (`entries.py`). Before anything is rendered the arithmetic is
checked, and a report that does not add up is refused, naming the cell.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from publisher.calendar import WorkCalendar, load_calendar
from publisher.clocks import is_late
from publisher.errors import Conflict
from publisher.models import Channel, Disclosure, LegalKind
from publisher.register import (
    APPLICANT_LABELS,
    ApplicantType,
    DisclosureRequest,
    Outcome,
    Register,
    deadline,
)
from publisher.reports.entries import AnnualEntries, get_entries
from publisher.store import schema as t
from publisher.store.sql import EventKind, SqlStore, utcnow

Number = int | Decimal | None

SECTIONS = (
    "一、总体情况",
    "二、主动公开政府信息情况",
    "三、收到和处理政府信息公开申请情况",
    "四、政府信息公开行政复议、行政诉讼情况",
    "五、存在的主要问题及改进情况",
    "六、其他需要报告的事项",
)

CHANNEL_LABELS: dict[Channel, str] = {
    Channel.PORTAL: "政府网站（市政府信息公开平台）",
    Channel.RSS: "RSS/Atom 订阅",
    Channel.SMS: "手机短信",
    Channel.EMAIL: "电子邮件",
    Channel.BOARD: "信息公开栏",
}

#: delivery states that count as reaching the target, and as not reaching it
DELIVERED_STATES = ("sent", "delivered")
FAILED_STATES = ("failed", "unknown")
PENDING_STATES = ("queued", "sending", "retrying", "deferred")

# -- table 二 ---------------------------------------------------------------------------

LEGAL_ROWS: tuple[tuple[LegalKind, str], ...] = (
    (LegalKind.REGULATION, "规章"),
    (LegalKind.NORMATIVE, "行政规范性文件"),
)
LEGAL_COLUMNS = (
    ("made", "本年制发件数"),
    ("repealed", "本年废止件数"),
    ("in_force", "现行有效件数"),
)

# -- table 三 ---------------------------------------------------------------------------

T3_COLUMNS: tuple[tuple[str, str], ...] = (
    *((a.value, label) for a, label in APPLICANT_LABELS.items()),
    ("total", "总计"),
)
_R = "三、本年度办理结果"
_REFUSED, _UNABLE, _DECLINED, _OTHER = (
    "（三）不予公开",
    "（四）无法提供",
    "（五）不予处理",
    "（六）其他处理",
)
#: (row key, label path): the path's levels become the template's grouped, spanning cells
T3_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("new", ("一、本年新收政府信息公开申请数量",)),
    ("carried_in", ("二、上年结转政府信息公开申请数量",)),
    (Outcome.GRANTED, (_R, "（一）予以公开")),
    (Outcome.PARTIAL, (_R, "（二）部分公开（区分处理的，只计这一情形，不计其他情形）")),
    (Outcome.REFUSED_STATE_SECRET, (_R, _REFUSED, "1.属于国家秘密")),
    (Outcome.REFUSED_LAW, (_R, _REFUSED, "2.其他法律行政法规禁止公开")),
    (Outcome.REFUSED_SECURITY, (_R, _REFUSED, "3.危及“三安全一稳定”")),
    (Outcome.REFUSED_THIRD_PARTY, (_R, _REFUSED, "4.保护第三方合法权益")),
    (Outcome.REFUSED_INTERNAL, (_R, _REFUSED, "5.属于三类内部事务信息")),
    (Outcome.REFUSED_PROCESS, (_R, _REFUSED, "6.属于四类过程性信息")),
    (Outcome.REFUSED_ENFORCEMENT, (_R, _REFUSED, "7.属于行政执法案卷")),
    (Outcome.REFUSED_QUERY, (_R, _REFUSED, "8.属于行政查询事项")),
    (Outcome.UNABLE_NOT_HELD, (_R, _UNABLE, "1.本机关不掌握相关政府信息")),
    (Outcome.UNABLE_NEEDS_CREATION, (_R, _UNABLE, "2.没有现成信息需要另行制作")),
    (Outcome.UNABLE_UNCLEAR, (_R, _UNABLE, "3.补正后申请内容仍不明确")),
    (Outcome.DECLINED_PETITION, (_R, _DECLINED, "1.信访举报投诉类申请")),
    (Outcome.DECLINED_REPEATED, (_R, _DECLINED, "2.重复申请")),
    (Outcome.DECLINED_PUBLICATION, (_R, _DECLINED, "3.要求提供公开出版物")),
    (Outcome.DECLINED_EXCESSIVE, (_R, _DECLINED, "4.无正当理由大量反复申请")),
    (Outcome.DECLINED_CONFIRMATION, (_R, _DECLINED, "5.要求行政机关确认或重新出具已获取信息")),
    (
        Outcome.OTHER_NO_CORRECTION,
        (_R, _OTHER, "1.申请人无正当理由逾期不补正、行政机关不再处理其政府信息公开申请"),
    ),
    (
        Outcome.OTHER_FEE_UNPAID,
        (_R, _OTHER, "2.申请人逾期未按收费通知要求缴纳费用、行政机关不再处理其政府信息公开申请"),
    ),
    (Outcome.OTHER, (_R, _OTHER, "3.其他")),
    ("total", (_R, "（七）总计")),
    ("carried_out", ("四、结转下年度继续办理",)),
)
T3_LABEL_DEPTH = 3

# -- table 四 ---------------------------------------------------------------------------

T4_GROUPS = (
    ("reconsideration", "行政复议"),
    ("litigation_direct", "行政诉讼 未经复议直接起诉"),
    ("litigation_after_reconsideration", "行政诉讼 复议后起诉"),
)
T4_COLUMNS = (
    ("upheld", "结果维持"),
    ("corrected", "结果纠正"),
    ("other", "其他结果"),
    ("pending", "尚未审结"),
    ("total", "总计"),
)


class ReportDoesNotAddUp(Conflict):
    kind = "report-arithmetic"
    title = "The report does not add up"


@dataclass(frozen=True, slots=True)
class ChannelStat:
    channel: Channel
    label: str
    #: publications of the year that reached this channel (a row that publishes it there,
    #: or a digest that lists it, sent or delivered): not what the item asked for
    items: int
    #: item deliveries of the year sent or delivered (a digest: one per item it carried;
    #: transactional messages never)
    delivered: int
    failed: int  #: failed or unknown
    pending: int  #: still queued, sending, retrying or deferred
    skipped: int

    @property
    def success_rate(self) -> Decimal | None:
        """Percentage of finished attempts that reached the target (one decimal)."""
        done = self.delivered + self.failed
        if done == 0:
            return None
        return (Decimal(100 * self.delivered) / done).quantize(Decimal("0.1"))


@dataclass(slots=True)
class AnnualReport:
    year: int
    agency: str
    entries: AnnualEntries
    generated_at: datetime
    #: the signature's date: generated_at in the site's timezone
    generated_on: date | None = None
    published: int = 0
    by_category: list[tuple[str, str, int]] = field(default_factory=list)
    by_month: list[int] = field(default_factory=lambda: [0] * 12)
    by_channel: list[ChannelStat] = field(default_factory=list)
    corrected: int = 0
    withdrawn: int = 0
    expired: int = 0
    late: int = 0
    late_corrections: int = 0
    #: requests answered in the year after their deadline (no cell in the template: shown in 一)
    late_answers: int = 0
    #: years of the period whose holiday schedule nobody entered (deadlines count weekends only)
    calendar_missing: list[int] = field(default_factory=list)
    #: legal kind -> made / repealed / in_force
    legal: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k.value: {c: 0 for c, _ in LEGAL_COLUMNS} for k, _ in LEGAL_ROWS}
    )
    #: row key -> column key -> count
    table3: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.agency}{self.year}年政府信息公开工作年度报告"

    @property
    def signed_on(self) -> str:
        day = self.generated_on or self.generated_at.date()
        return f"{day.year}年{day.month}月{day.day}日"


# -- computing -------------------------------------------------------------------------


def _year_bounds(store: SqlStore, year: int) -> tuple[datetime, datetime]:
    tz = store.config.site.tz
    return (
        datetime(year, 1, 1, tzinfo=tz).astimezone(UTC),
        datetime(year + 1, 1, 1, tzinfo=tz).astimezone(UTC),
    )


async def build_report(store: SqlStore, year: int, *, now: datetime | None = None) -> AnnualReport:
    """Count the year from the store and the register, with the year's entries."""
    entries = await get_entries(store, year)
    calendar = await load_calendar(store)
    generated_at = now or utcnow()
    report = AnnualReport(
        year=year,
        agency=store.config.site.agency,
        entries=entries,
        generated_at=generated_at,
        generated_on=generated_at.astimezone(store.config.site.tz).date(),
    )
    await _publications(store, report, calendar)
    await _legal(store, report)
    requests = await Register(store).find(year=year)
    report.table3 = table3_counts(requests, year)
    report.late_answers = count_late_answers(requests, year, calendar)
    report.calendar_missing = calendar.missing_years(date(year, 1, 1))
    return report


async def _publications(store: SqlStore, report: AnnualReport, calendar: WorkCalendar) -> None:
    tz = store.config.site.tz
    start, end = _year_bounds(store, report.year)
    i, ev = t.items, t.item_events
    async with store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(i.c.id, i.c.category, i.c.written_at, i.c.published_at).where(
                    i.c.published_at >= start,
                    i.c.published_at < end,
                    i.c.disclosure == Disclosure.PROACTIVE.value,
                )
            )
        ).all()
        published_ids = {r.id for r in rows}
        events = (
            await conn.execute(
                sa.select(ev.c.kind, ev.c.created_at, t.revisions.c.created_at.label("changed_at"))
                .join(i, i.c.id == ev.c.item_id)
                .join(
                    t.revisions,
                    sa.and_(
                        t.revisions.c.item_id == ev.c.item_id,
                        t.revisions.c.number == ev.c.revision,
                    ),
                )
                .where(
                    ev.c.created_at >= start,
                    ev.c.created_at < end,
                    ev.c.kind.in_([EventKind.CORRECTED, EventKind.WITHDRAWN, EventKind.EXPIRED]),
                    i.c.disclosure == Disclosure.PROACTIVE.value,
                )
            )
        ).all()
        ledger, reached = await _channel_ledger(conn, start, end)
    report.published = len(rows)
    categories = Counter(r.category for r in rows)
    report.by_category = [
        (c.slug, c.name, categories.pop(c.slug, 0)) for c in store.config.taxonomy
    ] + [(slug, slug, n) for slug, n in sorted(categories.items())]  # retired categories
    for r in rows:
        report.by_month[r.published_at.astimezone(tz).month - 1] += 1
        if is_late(r.written_at, r.published_at, tz, calendar):
            report.late += 1
    # what went out, not what was asked for: an item counts on a channel once a row that
    # publishes it there (or a digest listing it) was sent or delivered
    per_channel = Counter(ch for ch, item_id in reached if item_id in published_ids)
    states: dict[str, Counter[str]] = {}
    for channel, state, n in ledger:
        states.setdefault(channel, Counter())[state] += n
    for ch in Channel:
        s = states.get(ch.value, Counter())
        report.by_channel.append(
            ChannelStat(
                channel=ch,
                label=CHANNEL_LABELS[ch],
                items=per_channel.get(ch.value, 0),
                delivered=sum(s[x] for x in DELIVERED_STATES),
                failed=sum(s[x] for x in FAILED_STATES),
                pending=sum(s[x] for x in PENDING_STATES),
                skipped=s["skipped"],
            )
        )
    for e in events:
        if e.kind == EventKind.CORRECTED:
            report.corrected += 1
            if is_late(e.changed_at, e.created_at, tz, calendar):
                report.late_corrections += 1
        elif e.kind == EventKind.WITHDRAWN:
            report.withdrawn += 1
        else:
            report.expired += 1


async def _channel_ledger(
    conn: Any, start: datetime, end: datetime
) -> tuple[list[Any], set[tuple[str, str]]]:
    """The year's item deliveries per (channel, state), and the (channel, item) pairs that
    went out. Transactional messages (codes, confirmation mails, operators' notices) are
    no publication and never count; a digest counts once per item it carried."""
    d, di = t.deliveries, t.digest_items
    bpi = t.board_pack_items
    in_year = sa.and_(d.c.created_at >= start, d.c.created_at < end)
    is_digest = d.c.subject.in_(sa.select(di.c.subject))
    is_message = d.c.subject.like("msg:%")
    plain = (
        await conn.execute(
            sa.select(d.c.channel, d.c.state, sa.func.count())
            .where(in_year, sa.not_(is_message), sa.not_(is_digest))
            .group_by(d.c.channel, d.c.state)
        )
    ).all()
    digests = (
        await conn.execute(
            sa.select(d.c.channel, d.c.state, sa.func.count())
            .join(di, di.c.subject == d.c.subject)
            .where(in_year)
            .group_by(d.c.channel, d.c.state)
        )
    ).all()
    # a board pack that posts the item (not one that only takes it down)
    posting_pack = d.c.subject.in_(
        sa.select(sa.literal("pack:") + sa.cast(bpi.c.pack_id, sa.String)).where(
            bpi.c.action == "post"
        )
    )
    went_out = d.c.state.in_(DELIVERED_STATES)
    reached = {
        (str(r.channel), str(r.item_id))
        for r in (
            await conn.execute(
                sa.select(d.c.channel, d.c.item_id)
                .distinct()
                .where(
                    went_out,
                    d.c.item_id.is_not(None),
                    sa.or_(d.c.publishes.is_(True), posting_pack),
                )
            )
        ).all()
    }
    reached |= {
        (str(r.channel), str(r.item_id))
        for r in (
            await conn.execute(
                sa.select(d.c.channel, di.c.item_id)
                .distinct()
                .join(di, di.c.subject == d.c.subject)
                .where(went_out)
            )
        ).all()
    }
    return [*plain, *digests], reached


async def _legal(store: SqlStore, report: AnnualReport) -> None:
    start, end = _year_bounds(store, report.year)
    first, last = date(report.year, 1, 1), date(report.year, 12, 31)
    i, r = t.items, t.revisions
    async with store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(
                    r.c.legal_kind,
                    r.c.valid_from,
                    r.c.valid_until,
                    r.c.repealed_on,
                    i.c.published_at,
                    i.c.withdrawn_at,
                )
                .join(i, sa.and_(r.c.item_id == i.c.id, r.c.number == i.c.revision))
                .where(r.c.legal_kind.is_not(None), i.c.published_at.is_not(None))
            )
        ).all()
    report.legal = {
        k.value: dict.fromkeys(("made", "repealed", "in_force"), 0) for k, _ in LEGAL_ROWS
    }
    for row in rows:
        cells = report.legal[row.legal_kind]
        if start <= row.published_at < end:
            cells["made"] += 1
        if row.repealed_on is not None and first <= row.repealed_on <= last:
            cells["repealed"] += 1
        in_force = (
            row.published_at < end
            and (row.withdrawn_at is None or row.withdrawn_at >= end)
            and (row.valid_from is None or row.valid_from <= last)
            and (row.valid_until is None or row.valid_until >= last)
            and (row.repealed_on is None or row.repealed_on > last)
        )
        if in_force:
            cells["in_force"] += 1


def count_late_answers(requests: list[DisclosureRequest], year: int, calendar: WorkCalendar) -> int:
    """Requests closed in `year` after their working-day deadline (条例 Art33, with pauses
    and the extension taken into account)."""
    late = 0
    for req in requests:
        if req.closed_on is None or req.closed_on.year != year:
            continue
        due = deadline(req, calendar)
        if due is not None and req.closed_on > due:
            late += 1
    return late


def table3_counts(requests: list[DisclosureRequest], year: int) -> dict[str, dict[str, int]]:
    """Every cell of table 三 from the register: received in the year (一), open at its start
    (二), closed in it by outcome (三), open at its end (四)."""
    first, last = date(year, 1, 1), date(year, 12, 31)
    table = {key: dict.fromkeys((c for c, _ in T3_COLUMNS), 0) for key, _ in T3_ROWS}
    for req in requests:
        col = req.applicant_type.value
        if first <= req.received_on <= last:
            table["new"][col] += 1
        elif req.received_on < first and (req.closed_on is None or req.closed_on >= first):
            table["carried_in"][col] += 1
        if req.closed_on is not None and first <= req.closed_on <= last:
            assert req.outcome is not None
            table[req.outcome.value][col] += 1
        if req.open_at_end_of(year):
            table["carried_out"][col] += 1
    leaves = [key for key, _ in T3_ROWS if key not in ("new", "carried_in", "total", "carried_out")]
    for col in (a.value for a in ApplicantType):
        table["total"][col] = sum(table[k][col] for k in leaves)
    for row in table.values():
        row["total"] = sum(row[a.value] for a in ApplicantType)
    return table


# -- the arithmetic check ----------------------------------------------------------------


def check_report(report: AnnualReport) -> None:
    """Refuse a report that does not add up; the error names the first bad cell."""

    def fail(cell: str, shown: Number, expected: Number, how: str) -> None:
        raise ReportDoesNotAddUp(
            f"{report.year}年度报告 {cell} is {shown}, but {how} = {expected}",
            cell=cell,
            value=str(shown),
            expected=str(expected),
        )

    by_category = sum(n for _, _, n in report.by_category)
    if by_category != report.published:
        fail("一 主动公开 总计", report.published, by_category, "the sum over 主题分类")
    if sum(report.by_month) != report.published:
        fail("一 主动公开 总计", report.published, sum(report.by_month), "the sum over months")

    t3 = report.table3
    labels = dict(T3_ROWS)
    col_labels = dict(T3_COLUMNS)
    leaves = [key for key, _ in T3_ROWS if key not in ("new", "carried_in", "total", "carried_out")]
    # row totals first: a wrong 总计 cell is named itself, not as a broken identity
    for key, _ in T3_ROWS:
        row_sum = sum(t3[key][a.value] for a in ApplicantType)
        if t3[key]["total"] != row_sum:
            fail(
                f"表三 {labels[key][-1]} / {col_labels['total']}",
                t3[key]["total"],
                row_sum,
                "the sum of the six applicant columns",
            )
    for col, col_label in T3_COLUMNS:
        leaf_sum = sum(t3[k][col] for k in leaves)
        if t3["total"][col] != leaf_sum:
            fail(
                f"表三 （七）总计 / {col_label}", t3["total"][col], leaf_sum, "the sum of 办理结果"
            )
        came = t3["new"][col] + t3["carried_in"][col]
        went = t3["total"][col] + t3["carried_out"][col]
        if came != went:
            fail(
                f"表三 四、结转下年度继续办理 / {col_label}",
                t3["carried_out"][col],
                came - t3["total"][col],
                "一 + 二 − （七）",
            )
    table4 = report.entries.table4
    for group, group_label in T4_GROUPS:
        outcomes = getattr(table4, group)
        parts = outcomes.upheld + outcomes.corrected + outcomes.other + outcomes.pending
        if outcomes.total != parts:
            fail(
                f"表四 {group_label} 总计",
                outcomes.total,
                parts,
                "结果维持 + 结果纠正 + 其他结果 + 尚未审结",
            )


# -- one flat list of cells: the JSON and CSV outputs ------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    table: str
    row: str
    row_label: str
    column: str
    column_label: str
    value: Number


def cells(report: AnnualReport) -> list[Cell]:
    out: list[Cell] = [
        Cell("summary", "published", "主动公开政府信息", "count", "条", report.published),
        Cell("summary", "corrected", "更正", "count", "次", report.corrected),
        Cell("summary", "withdrawn", "撤回", "count", "条", report.withdrawn),
        Cell("summary", "expired", "到期下架", "count", "条", report.expired),
        Cell("summary", "late", "逾期公开（超过20个工作日）", "count", "条", report.late),
        Cell(
            "summary",
            "late_corrections",
            "逾期更正（超过20个工作日）",
            "count",
            "次",
            report.late_corrections,
        ),
        Cell(
            "summary",
            "late_answers",
            "逾期答复的政府信息公开申请（超过法定期限）",
            "count",
            "件",
            report.late_answers,
        ),
    ]
    for slug, name, n in report.by_category:
        out.append(Cell("by_category", slug, name, "count", "条", n))
    for month, n in enumerate(report.by_month, 1):
        out.append(Cell("by_month", f"{month:02d}", f"{month}月", "count", "条", n))
    for s in report.by_channel:
        for column, label, value in (
            ("items", "发布条数", s.items),
            ("delivered", "送达", s.delivered),
            ("failed", "失败", s.failed),
            ("pending", "待发送", s.pending),
            ("skipped", "未发送", s.skipped),
            ("success_rate", "送达率（%）", s.success_rate),
        ):
            out.append(Cell("by_channel", s.channel.value, s.label, column, label, value))
    for kind, label in LEGAL_ROWS:
        for column, col_label in LEGAL_COLUMNS:
            out.append(
                Cell(
                    "table2", kind.value, label, column, col_label, report.legal[kind.value][column]
                )
            )
    t2 = report.entries.table2
    for row, label, column, col_label, value in (
        ("licensing", "行政许可", "decisions", "本年处理决定数量", t2.licensing),
        ("penalty", "行政处罚", "decisions", "本年处理决定数量", t2.penalty),
        ("coercion", "行政强制", "decisions", "本年处理决定数量", t2.coercion),
        ("fees", "行政事业性收费", "amount", "本年收费金额（单位：万元）", t2.fees),
    ):
        out.append(Cell("table2", row, label, column, col_label, value))
    for key, path in T3_ROWS:
        for column, col_label in T3_COLUMNS:
            out.append(Cell("table3", key, path[-1], column, col_label, report.table3[key][column]))
    for group, group_label in T4_GROUPS:
        outcomes = getattr(report.entries.table4, group)
        for column, col_label in T4_COLUMNS:
            out.append(
                Cell("table4", group, group_label, column, col_label, getattr(outcomes, column))
            )
    return out


def report_json(report: AnnualReport) -> dict[str, Any]:
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for c in cells(report):
        value = str(c.value) if isinstance(c.value, Decimal) else c.value
        tables.setdefault(c.table, {}).setdefault(c.row, {})[c.column] = value
    return {
        "title": report.title,
        "year": report.year,
        "agency": report.agency,
        "generated_at": report.generated_at.isoformat(),
        "sections": list(SECTIONS),
        "texts": {
            "overview": report.entries.overview,
            "problems": report.entries.problems,
            "other_matters": report.entries.other_matters,
        },
        "calendar_missing": report.calendar_missing,
        "tables": tables,
    }


def label_cells(
    rows: tuple[tuple[str, tuple[str, ...]], ...], depth: int
) -> list[list[tuple[str, int, int]]]:
    """For each row, the label cells it opens: (text, rowspan, colspan).

    A label shared by consecutive rows is written once, spanning them; a row's last
    label spans the remaining label columns — the template's grouped layout.
    """
    out: list[list[tuple[str, int, int]]] = []
    for n, (_, path) in enumerate(rows):
        opened: list[tuple[str, int, int]] = []
        for level, text in enumerate(path):
            prev = rows[n - 1][1] if n else ()
            if prev[: level + 1] == path[: level + 1]:
                continue  # written by an earlier row, spanning this one
            span = 1
            while n + span < len(rows) and rows[n + span][1][: level + 1] == path[: level + 1]:
                span += 1
            last = level == len(path) - 1
            opened.append((text, span, depth - level if last else 1))
        out.append(opened)
    return out
