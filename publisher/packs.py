"""Print packs: what each notice board must post and take down, and whether it did.

- **Planning.** For each item event (publish, correct, withdraw, expire) that reaches the
  board channel, each board concerned gets one pack ("pack:<id>", the ledger subject;
  unique per event and board, so planning twice adds nothing). A publication posts the
  item on the boards that carry its category; a correction posts the new text there and
  takes the old one down where it was posted; a withdrawal or an expiry takes it down
  wherever it was posted (a pack that posted it is `sent` or `delivered`). The lines
  are kept in `board_pack_items`: the cover sheet and the flags read them.
- **Links.** The operator's links name the board and the pack and carry an expiry and an
  HMAC over all three (one key per purpose, derived from the data key): the PDF link
  cannot confirm, and no link is made by changing a number.
- **Confirmation.** The operator's button (or staff's `POST /api/v1/boards/{id}/posted`)
  moves the pack's ledger row from `sent` to `delivered` with the time, and stamps the
  pack, in one transaction; a repeat changes nothing.
- **Flags** in an item's deliveries: `overdue` (sent, not confirmed within
  `channels.board.settings.confirm_within_hours`) and `short_posting` (a withdrawal or
  expiry takes down an item first confirmed posted there fewer than the board's
  `min_days` days before; a correction replaces the text and keeps the item up).
- **Withdrawal and expiry are final.** A pack is shown as things stand, not as planned:
  once its item is withdrawn or expired, every line that would post it is a take-down
  ("请勿张贴；已贴出的请撤下") and the pack has no poster. Its PDF is made again under
  its own name (`pack-<id>-withdrawn.pdf`), so the operator's old link serves the
  rebuilt pack, never the body; the PDF made before is deleted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from channels.base import Subject, Target
from channels.board import (
    PACK_KIND,
    UNTIL_NOTICE,
    BoardSettings,
    board_settings,
    local_day,
    pack_pages,
    packs_path,
    pdf_async,
    write_atomically,
)
from publisher.addresses import AddressBox
from publisher.atrest import ENDPOINT_SECRET, SEALED_SECRET, FieldBox, open_settings
from publisher.boards import CHANNEL, Board, Boards, _json_list
from publisher.config import Config
from publisher.derived import derived_key
from publisher.errors import Conflict, ItemNotFound, NotFound
from publisher.ledger import DeliveryState, Ledger
from publisher.messages import insert_message
from publisher.models import ItemStatus
from publisher.shortlinks import ShortLinks
from publisher.store import schema as t
from publisher.store.sql import EventKind, SqlStore, insert_for, utcnow
from publisher.text import render_body
from publisher.tokens import same_token

log = logging.getLogger("publisher.packs")


class PackAction(StrEnum):
    POST = "post"
    TAKEDOWN = "takedown"


#: why a line is on the cover sheet (the withdrawal's own reason is added to its line)
REASONS: dict[tuple[str, PackAction], str] = {
    (EventKind.PUBLISHED, PackAction.POST): "新发布",
    (EventKind.CORRECTED, PackAction.POST): "更正后的新版本",
    (EventKind.CORRECTED, PackAction.TAKEDOWN): "已更正，撤下旧版本",
    (EventKind.WITHDRAWN, PackAction.TAKEDOWN): "已撤回",
    (EventKind.EXPIRED, PackAction.TAKEDOWN): "已到期",
}
SENT_STATES = (DeliveryState.SENT.value, DeliveryState.DELIVERED.value)
#: packs that may be up on their board: sent, or cut off by a crash mid-attempt (a
#: take-down of a poster never posted costs an operator a look; a missing one, the town)
MAYBE_UP_STATES = (*SENT_STATES, DeliveryState.UNKNOWN.value)
#: statuses that take an item off every board for good (neither has a way back)
GONE = (ItemStatus.WITHDRAWN, ItemStatus.EXPIRED)
#: added to a posting line's reason when its item is gone before the board posted it
NOT_TO_POST = "请勿张贴；已贴出的请撤下"


def subject_key(pack_id: int) -> str:
    return f"pack:{pack_id}"


def pdf_name(pack_id: int, gone: str | None = None) -> str:
    """The file of a pack's PDF; `gone` (an item status) names the rebuilt pack of an item
    withdrawn or expired since, which must never be confused with the one that posted it."""
    return f"pack-{pack_id}.pdf" if gone is None else f"pack-{pack_id}-{gone}.pdf"


def _pack_subject_sql() -> sa.ColumnElement[str]:
    return sa.literal("pack:") + sa.cast(t.board_packs.c.id, sa.String)


# -- planning ---------------------------------------------------------------------------------


class PackPlanner:
    def __init__(self, store: SqlStore, ledger: Ledger) -> None:
        self.store = store
        self.ledger = ledger
        self.boards = Boards(store)

    async def _carrying(self, category: str) -> list[int]:
        """Endpoint ids of the enabled boards that carry `category`."""
        e = t.endpoints
        async with self.store.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(e.c.id, e.c.categories).where(
                        e.c.channel == CHANNEL, e.c.enabled.is_(True)
                    )
                )
            ).all()
        return [
            int(r.id)
            for r in rows
            if not _json_list(r.categories) or category in _json_list(r.categories)
        ]

    async def posted_on(self, item_id: str, *, before_event: int | None = None) -> dict[int, Any]:
        """Per board id, the latest pack that posted (a revision of) the item and got out
        (`sent` or `delivered`): its id, revision, pack time and confirmation time."""
        p, pi, d = t.board_packs, t.board_pack_items, t.deliveries
        query = (
            sa.select(
                p.c.board_id,
                p.c.id,
                pi.c.revision,
                p.c.created_at,
                d.c.delivered_at,
                d.c.sent_at,
            )
            .join(pi, pi.c.pack_id == p.c.id)
            .join(d, sa.and_(d.c.subject == _pack_subject_sql(), d.c.channel == CHANNEL))
            .where(
                pi.c.item_id == item_id,
                pi.c.action == PackAction.POST.value,
                d.c.state.in_(MAYBE_UP_STATES),
            )
            .order_by(p.c.id)
        )
        if before_event is not None:
            query = query.where(p.c.event_id < before_event)
        async with self.store.read() as conn:
            rows = (await conn.execute(query)).all()
        return {int(r.board_id): r for r in rows}  # the latest pack per board wins

    async def first_posted(
        self, item_id: str, board_id: int, *, before_event: int
    ) -> datetime | None:
        """When the item was first confirmed posted on the board (any revision: a correction
        replaces the text, the item stays up), before the given event; None if never."""
        p, pi, d = t.board_packs, t.board_pack_items, t.deliveries
        async with self.store.read() as conn:
            when = await conn.scalar(
                sa.select(sa.func.min(d.c.delivered_at))
                .select_from(p)
                .join(pi, pi.c.pack_id == p.c.id)
                .join(d, sa.and_(d.c.subject == _pack_subject_sql(), d.c.channel == CHANNEL))
                .where(
                    p.c.board_id == board_id,
                    p.c.event_id < before_event,
                    pi.c.item_id == item_id,
                    pi.c.action == PackAction.POST.value,
                    d.c.state == DeliveryState.DELIVERED.value,
                )
            )
        if when is None:
            return None
        # SQLite hands an aggregate back as text, naive UTC like every stored time
        found: datetime = datetime.fromisoformat(when) if isinstance(when, str) else when
        return found if found.tzinfo is not None else found.replace(tzinfo=UTC)

    async def _withdraw_reason(self, item_id: str) -> str | None:
        return await withdraw_reason(self.store, item_id)

    async def plan(self, event: Any, category: str, priority: int) -> int:
        """The packs of one item event; returns how many ledger rows were queued."""
        kind = str(event.kind)
        live = kind in (EventKind.PUBLISHED, EventKind.CORRECTED)
        carrying = await self._carrying(category) if live else []
        posted = await self.posted_on(event.item_id, before_event=int(event.id))
        # boards by endpoint: those that take the item, and those that have it up
        by_endpoint = await self.boards.for_endpoints(carrying)
        posted_boards = {b_id for b_id in posted}
        if posted_boards:
            async with self.store.read() as conn:
                extra = (
                    await conn.scalars(
                        sa.select(t.boards.c.endpoint_id).where(t.boards.c.id.in_(posted_boards))
                    )
                ).all()
            by_endpoint.update(await self.boards.for_endpoints([int(x) for x in extra]))
        index_no = await self._index_no(event.item_id)
        withdraw_reason = (
            await self._withdraw_reason(event.item_id) if kind == EventKind.WITHDRAWN else None
        )
        queued = 0
        for endpoint_id, board in sorted(by_endpoint.items()):
            lines: list[dict[str, Any]] = []
            if live and endpoint_id in carrying:
                lines.append(
                    {
                        "action": PackAction.POST.value,
                        "revision": int(event.revision),
                        "reason": REASONS[(kind, PackAction.POST)],
                    }
                )
            up = posted.get(board.id)
            if up is not None and (not live or int(up.revision) != int(event.revision)):
                reason = REASONS.get((kind, PackAction.TAKEDOWN), "撤下")
                if withdraw_reason:
                    reason = f"{reason}：{withdraw_reason}"
                lines.append(
                    {
                        "action": PackAction.TAKEDOWN.value,
                        "revision": int(up.revision),
                        "reason": reason,
                    }
                )
            if not lines:
                continue
            pack_id = await self._pack(event, board, lines, index_no)
            queued += await self.ledger.insert_rows(
                subject_key(pack_id),
                CHANNEL,
                [board.target],
                item_id=event.item_id,
                priority=priority,
                bypass_quiet=True,  # paper has no night: the operator reads it in the morning
                publishes=live,
            )
        return queued

    async def _index_no(self, item_id: str) -> str | None:
        async with self.store.read() as conn:
            value = await conn.scalar(sa.select(t.items.c.index_no).where(t.items.c.id == item_id))
        return str(value) if value else None

    async def _pack(
        self, event: Any, board: Board, lines: list[dict[str, Any]], index_no: str | None
    ) -> int:
        p, pi = t.board_packs, t.board_pack_items
        async with self.store.write() as conn:
            insert = insert_for(conn)
            await conn.execute(
                insert(p)
                .values(
                    board_id=board.id,
                    event_id=int(event.id),
                    item_id=event.item_id,
                    kind=str(event.kind),
                    created_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["event_id", "board_id"])
            )
            pack_id = int(
                (
                    await conn.execute(
                        sa.select(p.c.id).where(
                            p.c.event_id == int(event.id), p.c.board_id == board.id
                        )
                    )
                ).scalar_one()
            )
            await conn.execute(
                insert(pi)
                .values(
                    [
                        {
                            "pack_id": pack_id,
                            "item_id": event.item_id,
                            "action": line["action"],
                            "revision": line["revision"],
                            "index_no": index_no,
                            "reason": line["reason"],
                        }
                        for line in lines
                    ]
                )
                .on_conflict_do_nothing(index_elements=["pack_id", "item_id", "action"])
            )
        return pack_id


async def withdraw_reason(store: SqlStore, item_id: str) -> str | None:
    """The reviewer's reason for withdrawing the item (the latest), if any."""
    a = t.audit_log
    async with store.read() as conn:
        reason = await conn.scalar(
            sa.select(a.c.reason)
            .where(a.c.item_id == item_id, a.c.to_status == ItemStatus.WITHDRAWN.value)
            .order_by(a.c.id.desc())
            .limit(1)
        )
    return str(reason) if reason else None


# -- what a pack shows --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackLine:
    """One line of a pack as it stands (see `current_lines`)."""

    item_id: str
    action: str
    revision: int
    index_no: str | None
    reason: str | None
    #: the item's status when it is withdrawn or expired (its posting lines are take-downs)
    gone: str | None = None


async def gone_status(store: SqlStore, item_id: str) -> str | None:
    """The item's status if it is withdrawn or expired (off the boards for good), else None."""
    async with store.read() as conn:
        status = await conn.scalar(sa.select(t.items.c.status).where(t.items.c.id == item_id))
    return str(status) if status in {s.value for s in GONE} else None


async def current_lines(
    store: SqlStore, pack_id: int, *, known: dict[str, tuple[str | None, str]] | None = None
) -> list[PackLine]:
    """The pack's lines as things stand: for an item withdrawn or expired since the pack was
    planned, a line that posts it is a take-down instead (with why), so no board is told
    to post it; the take-downs the pack already had stay. Posts first. `known` (item id ->
    (gone status, why)) saves the look-ups when several packs are read at once."""
    lines: list[PackLine] = []
    gone = known if known is not None else {}
    for line in await pack_lines(store, pack_id):
        item_id = str(line.item_id)
        if item_id not in gone:
            status = await gone_status(store, item_id)
            why = ""
            if status == ItemStatus.WITHDRAWN.value:
                why = REASONS[(EventKind.WITHDRAWN, PackAction.TAKEDOWN)]
                given = await withdraw_reason(store, item_id)
                why = f"{why}：{given}" if given else why
            elif status == ItemStatus.EXPIRED.value:
                why = REASONS[(EventKind.EXPIRED, PackAction.TAKEDOWN)]
            gone[item_id] = (status, why)
        status, why = gone[item_id]
        action, reason = str(line.action), line.reason
        if status is not None and action == PackAction.POST.value:
            action, reason = PackAction.TAKEDOWN.value, f"{why}，{NOT_TO_POST}"
        found = PackLine(item_id, action, int(line.revision), line.index_no, reason, status)
        if not any(
            (x.item_id, x.action, x.revision) == (item_id, action, found.revision) for x in lines
        ):
            lines.append(found)
    lines.sort(key=lambda x: (x.action != PackAction.POST.value, x.item_id))
    return lines


async def pack_row(store: SqlStore, pack_id: int) -> Any:
    async with store.read() as conn:
        row = (
            await conn.execute(sa.select(t.board_packs).where(t.board_packs.c.id == pack_id))
        ).first()
    if row is None:
        raise NotFound(f"no pack {pack_id}")
    return row


async def pack_lines(store: SqlStore, pack_id: int) -> list[Any]:
    pi = t.board_pack_items
    async with store.read() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(pi).where(pi.c.pack_id == pack_id).order_by(pi.c.action, pi.c.item_id)
                )
            ).all()
        )


async def load_subject(store: SqlStore, key: str) -> Subject:
    """The pack behind a ledger subject "pack:<id>", with its lines and their texts."""
    from channels.base import PermanentDeliveryError

    try:
        pack_id = int(key.partition(":")[2])
    except ValueError:
        raise PermanentDeliveryError(f"no pack {key}", reason="unknown_subject") from None
    try:
        pack = await pack_row(store, pack_id)
    except NotFound:
        raise PermanentDeliveryError(f"no pack {key}", reason="unknown_subject") from None
    board = await Boards(store).get(int(pack.board_id))
    config: Config = store.config
    tz = config.site.tz
    links = ShortLinks(config)
    # the min_days rule is about the item leaving the board (withdrawn, expired), counted
    # from its first confirmed posting there; a correction keeps it up
    leaves = pack.kind in (EventKind.WITHDRAWN, EventKind.EXPIRED)
    since = (
        await PackPlanner(store, Ledger(store)).first_posted(
            pack.item_id, board.id, before_event=int(pack.event_id)
        )
        if leaves and board.min_days
        else None
    )
    lines: list[dict[str, Any]] = []
    for line in await current_lines(store, pack_id):
        try:
            item = await store.get_item(line.item_id)
            rev = await store.get_revision(line.item_id, int(line.revision))
        except ItemNotFound:
            continue
        c = rev.content
        cat = config.category(c.category)
        take_down = local_day(c.expires_at, tz) or UNTIL_NOTICE
        warning = None
        if (
            line.action == PackAction.POST.value
            and c.expires_at is not None
            and board.min_days
            and c.expires_at - pack.created_at < timedelta(days=board.min_days)
        ):
            warning = f"注意：到期日早于本栏最短张贴期（{board.min_days} 天）"
        if (
            line.action == PackAction.TAKEDOWN.value
            and since is not None
            and pack.created_at - since < timedelta(days=board.min_days)
        ):
            days = (pack.created_at - since).days
            warning = f"注意：仅张贴 {days} 天，未满本栏最短张贴期（{board.min_days} 天）"
        lines.append(
            {
                "action": line.action,
                "item_id": item.id,
                "revision": rev.number,
                "title": c.title,
                "body_html": render_body(c.body, c.body_format)
                if line.action == PackAction.POST.value
                else "",
                "index_no": line.index_no or item.index_no,
                "category_name": cat.name if cat else c.category,
                "agency": c.agency,
                "written_at": local_day(c.written_at, tz),
                "doc_no": c.doc_no,
                "urgent": c.urgent,
                "reason": line.reason,
                "posted_on": local_day(pack.created_at, tz),
                "take_down_on": take_down,
                "short_url": links.url(item.id),
                "correction_note": rev.correction_note,
                "warning": warning,
                "gone": line.gone,
            }
        )
    lines.sort(key=lambda line: line["action"] != PackAction.POST.value)
    site = config.site
    return Subject(
        key=key, kind=PACK_KIND, item_id=str(pack.item_id), revision=None,
        title=f"{board.name}公开栏张贴单（第 {pack_id} 号）", summary=board.location,
        body="", body_html="", category="", category_name="", agency=site.agency,
        index_no=None, doc_no=None, written_at=None, published_at=None,
        urgent=any(line["urgent"] for line in lines), public_url="", site_name=site.name,
        event_at=pack.created_at, items=tuple(lines),
    )  # fmt: skip


async def pack_target(store: SqlStore, board: Board) -> Target:
    async with store.read() as conn:
        ep = (
            await conn.execute(sa.select(t.endpoints).where(t.endpoints.c.id == board.endpoint_id))
        ).one()
    secrets = (
        FieldBox(store.config.data_key(), ENDPOINT_SECRET) if SEALED_SECRET in ep.settings else None
    )
    return Target(f"e:{ep.id}", CHANNEL, ep.address, ep.name, open_settings(secrets, ep.settings))


def subject_gone(subject: Subject) -> str | None:
    """The status ("withdrawn", "expired") a pack subject was made for, if its item was gone."""
    return next((str(line["gone"]) for line in subject.items if line.get("gone")), None)


async def pack_pdf(store: SqlStore, pack_id: int) -> bytes:
    """The pack's PDF: the one made when it was sent, or made again from the store. Once
    its item is withdrawn or expired, only a PDF made after that is served (made again
    if need be: a take-down, no poster), and the one made before is deleted."""
    pack = await pack_row(store, pack_id)
    gone = await gone_status(store, str(pack.item_id))
    folder = packs_path(store.config)
    if gone is not None:
        try:  # the posting PDF must not outlive the item on disk either
            (folder / pdf_name(pack_id)).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete the old PDF of pack %d: %s", pack_id, exc)
    path = folder / pdf_name(pack_id, gone)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    board = await Boards(store).get(int(pack.board_id))
    subject = await load_subject(store, subject_key(pack_id))
    target = await pack_target(store, board)
    site = store.config.site
    pdf = await pdf_async(pack_pages(subject, target, site_agency=site.agency, tz=site.tz))
    made_for = subject_gone(subject)
    if made_for is not None:
        log.info("pack %d made again without its poster: the item is %s", pack_id, made_for)
    try:
        # under the name of what it shows: made while the item was still up, it is not
        # served once the item is gone (a status with no way back: `gone` holds still)
        write_atomically(folder / pdf_name(pack_id, made_for or gone), pdf)
    except OSError as exc:
        log.warning("cannot keep the PDF of pack %d: %s", pack_id, exc)
    return pdf


# -- operator links ---------------------------------------------------------------------------


class LinkPurpose(StrEnum):
    PDF = "pdf"
    CONFIRM = "confirm"


class BadPackToken(ValueError):
    """Not a link we made for this board, pack and purpose."""


class ExpiredPackToken(ValueError):
    """A genuine link whose time is up."""


_TOKEN = re.compile(r"^([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{22})$")


class PackLinks:
    def __init__(self, config: Config, settings: BoardSettings | None = None) -> None:
        settings = settings or board_settings(config)
        self.base = (settings.link_base_url or config.site.base_url).rstrip("/")
        self.ttl = settings.link_ttl_days * 86400
        self._keys = {p: derived_key(config, f"board/{p.value}") for p in LinkPurpose}

    def _mac(self, purpose: LinkPurpose, board_id: int, pack_id: int, expires: int) -> str:
        msg = f"{board_id}.{pack_id}.{expires}".encode()
        mac = hmac.new(self._keys[purpose], msg, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def token(
        self, purpose: LinkPurpose, board_id: int, pack_id: int, *, now: float | None = None
    ) -> str:
        expires = int((time.time() if now is None else now) + self.ttl)
        return f"{expires}.{self._mac(purpose, board_id, pack_id, expires)}"

    def check(
        self,
        purpose: LinkPurpose,
        board_id: int,
        pack_id: int,
        token: str,
        *,
        now: float | None = None,
    ) -> None:
        """BadPackToken unless we made `token` for this purpose, board and pack;
        ExpiredPackToken when it is ours but too old."""
        found = _TOKEN.match(token or "")
        if found is None:
            raise BadPackToken("malformed")
        expires = int(found.group(1))
        if not same_token(self._mac(purpose, board_id, pack_id, expires), found.group(2)):
            raise BadPackToken("signature")
        if (time.time() if now is None else now) >= expires:
            raise ExpiredPackToken("expired")

    def pdf_url(self, board_id: int, pack_id: int) -> str:
        token = self.token(LinkPurpose.PDF, board_id, pack_id)
        return f"{self.base}/boards/{board_id}/packs/{pack_id}?token={token}"

    def confirm_url(self, board_id: int, pack_id: int) -> str:
        token = self.token(LinkPurpose.CONFIRM, board_id, pack_id)
        return f"{self.base}/boards/{board_id}/packs/{pack_id}/confirm?token={token}"


# -- telling the operator -----------------------------------------------------------------------


def operator_texts(
    config: Config, board: Board, pack_id: int, posts: int, takedowns: int, links: PackLinks
) -> tuple[str, str]:
    """(SMS text, email JSON) telling the operator of a pack."""
    import json

    from markupsafe import escape

    pdf, confirm = links.pdf_url(board.id, pack_id), links.confirm_url(board.id, pack_id)
    what = f"张贴{posts}份，撤下{takedowns}份"
    sms = f"{board.name}公开栏有新的张贴单（第{pack_id}号：{what}）。打印：{pdf} 完成后请确认：{confirm}"
    text = (
        f"{board.name}公开栏管理员：\n\n"
        f"{config.site.name}有新的张贴单（第{pack_id}号：{what}）。\n\n"
        f"请打印（PDF）：{pdf}\n\n张贴、撤下完成后请确认：{confirm}\n\n"
        f"链接 {links.ttl // 86400} 天内有效。\n{config.site.agency}\n"
    )
    html = (
        f"<p>{escape(board.name)}公开栏管理员：</p>"
        f"<p>{escape(config.site.name)}有新的张贴单（第{pack_id}号：{what}）。</p>"
        f'<p><a href="{escape(pdf)}">打印张贴单（PDF）</a></p>'
        f'<p><a href="{escape(confirm)}">张贴、撤下完成后请点此确认</a></p>'
        f"<p>链接 {links.ttl // 86400} 天内有效。<br>{escape(config.site.agency)}</p>"
    )
    mail = json.dumps(
        {
            "subject": f"{config.site.name}：{board.name}公开栏张贴单（第{pack_id}号）",
            "text": text,
            "html": html,
        },
        ensure_ascii=False,
    )
    return sms, mail


def notice_purpose(pack_id: int) -> str:
    """The `messages.purpose` of the operator's notices about a pack: it names the pack, so
    whether the operator was actually told can be read back (packs_awaiting_operator)."""
    return f"board_pack:{pack_id}"


async def packs_awaiting_operator(store: SqlStore, item_id: str) -> int:
    """How many of the item's board rows are `sent` (the pack is made) while its operator
    has not been told yet: not stamped, or every notice still waiting in the ledger (no
    gateway, quiet hours, retrying). A pack whose board has no operator contact, or from
    before notices named their pack, counts as told: staff record its posting."""
    d, p, m = t.deliveries, t.board_packs, t.messages
    async with store.read() as conn:
        packs = (
            await conn.execute(
                sa.select(p.c.id, p.c.notified_at)
                .join(d, d.c.subject == _pack_subject_sql())
                .where(
                    d.c.item_id == item_id,
                    d.c.channel == CHANNEL,
                    d.c.state == DeliveryState.SENT.value,
                )
            )
        ).all()
        if not packs:
            return 0
        purposes = {notice_purpose(int(r.id)): int(r.id) for r in packs}
        notices = (
            await conn.execute(
                sa.select(m.c.purpose, d.c.state)
                .join(d, d.c.subject == sa.literal("msg:") + sa.cast(m.c.id, sa.String))
                .where(m.c.purpose.in_(list(purposes)))
            )
        ).all()
    told: dict[int, bool] = {}
    for purpose, state in notices:
        pack = purposes[purpose]
        told[pack] = told.get(pack, False) or state in SENT_STATES
    return sum(1 for r in packs if r.notified_at is None or not told.get(int(r.id), True))


async def notify_operator(store: SqlStore, pack_id: int) -> int:
    """Queue the operator's message(s) for a pack, once: the pack's `notified_at` is
    stamped in the same transaction. Returns how many messages were queued."""
    config: Config = store.config
    pack = await pack_row(store, pack_id)
    if pack.notified_at is not None:
        return 0
    board = await Boards(store).get(int(pack.board_id))
    lines = await current_lines(store, pack_id)
    posts = sum(1 for line in lines if line.action == PackAction.POST.value)
    sms, mail = operator_texts(config, board, pack_id, posts, len(lines) - posts, PackLinks(config))
    box = AddressBox(config.data_key())
    p = t.board_packs
    async with store.write() as conn:
        stamped = await conn.execute(
            p.update()
            .where(p.c.id == pack_id, p.c.notified_at.is_(None))
            .values(notified_at=utcnow())
        )
        if stamped.rowcount != 1:
            return 0
        queued = 0
        if board.operator_phone and config.channels.sms.enabled:
            await insert_message(
                conn, box, "sms", board.operator_phone, sms, purpose=notice_purpose(pack_id)
            )
            queued += 1
        if board.operator_email and config.channels.email.enabled:
            await insert_message(
                conn, box, "email", board.operator_email, mail, purpose=notice_purpose(pack_id)
            )
            queued += 1
    if not queued:
        log.info(
            "pack %d of board %d: no operator contact; staff record its posting", pack_id, board.id
        )
    return queued


# -- confirmation -------------------------------------------------------------------------------


class PackNotReady(Conflict):
    kind = "pack-not-ready"


@dataclass(frozen=True, slots=True)
class Confirmation:
    pack_id: int
    board_id: int
    confirmed_at: datetime
    confirmed_by: str
    #: it had been confirmed before: nothing changed
    repeat: bool


async def confirm(store: SqlStore, board_id: int, pack_id: int, *, by: str) -> Confirmation:
    """Record that a pack was posted: its ledger row `sent` (or `unknown`) → `delivered`
    with the time, and the pack stamped, in one transaction. NotFound if the pack is not
    this board's; PackNotReady while it is not out yet, or was cancelled."""
    p, d = t.board_packs, t.deliveries
    subject = subject_key(pack_id)
    now = utcnow()
    async with store.write() as conn:
        pack = (
            await conn.execute(sa.select(p).where(p.c.id == pack_id, p.c.board_id == board_id))
        ).first()
        if pack is None:
            raise NotFound(f"board {board_id} has no pack {pack_id}")
        if pack.confirmed_at is not None:
            return Confirmation(pack_id, board_id, pack.confirmed_at, pack.confirmed_by or "", True)
        row = (
            await conn.execute(
                store._lock(
                    sa.select(d.c.id, d.c.state).where(
                        d.c.subject == subject, d.c.channel == CHANNEL
                    )
                )
            )
        ).first()
        if row is None:
            raise NotFound(f"pack {pack_id} has no delivery")
        state = DeliveryState(row.state)
        if state not in (DeliveryState.SENT, DeliveryState.UNKNOWN, DeliveryState.DELIVERED):
            raise PackNotReady(
                f"pack {pack_id} is {state.value}: "
                + (
                    "not ready yet"
                    if state.value in ("queued", "sending", "retrying", "deferred")
                    else "it was not sent"
                )
            )
        if state is not DeliveryState.DELIVERED:
            await conn.execute(
                d.update()
                .where(d.c.id == row.id, d.c.state == state.value)
                .values(
                    state=DeliveryState.DELIVERED.value,
                    delivered_at=now,
                    reason=None,
                    updated_at=now,
                )
            )
            await conn.execute(
                t.delivery_events.insert().values(
                    delivery_id=row.id,
                    at=now,
                    from_state=state.value,
                    to_state=DeliveryState.DELIVERED.value,
                    detail=f"posted; confirmed by {by}"[:2000],
                )
            )
        await conn.execute(
            p.update().where(p.c.id == pack_id).values(confirmed_at=now, confirmed_by=by[:64])
        )
    return Confirmation(pack_id, board_id, now, by, False)


# -- flags ----------------------------------------------------------------------------------------


async def flags(
    store: SqlStore, rows: list[Any], *, now: datetime | None = None
) -> dict[int, list[str]]:
    """Per ledger row id (board rows only): `overdue`, `short_posting`."""
    board_rows = [r for r in rows if r.channel == CHANNEL and str(r.subject).startswith("pack:")]
    if not board_rows:
        return {}
    now = now or utcnow()
    within = timedelta(hours=board_settings(store.config).confirm_within_hours)
    ids = []
    for r in board_rows:
        try:
            ids.append(int(str(r.subject).partition(":")[2]))
        except ValueError:
            continue
    p, pi, b = t.board_packs, t.board_pack_items, t.boards
    async with store.read() as conn:
        packs = {
            int(x.id): x
            for x in (
                await conn.execute(
                    sa.select(
                        p.c.id,
                        p.c.item_id,
                        p.c.event_id,
                        p.c.created_at,
                        p.c.kind,
                        b.c.id.label("board_id"),
                        b.c.min_days,
                    )
                    .join(b, b.c.id == p.c.board_id)
                    .where(p.c.id.in_(ids))
                )
            ).all()
        }
        takedowns = set(
            (
                await conn.scalars(
                    sa.select(pi.c.pack_id).where(
                        pi.c.pack_id.in_(ids), pi.c.action == PackAction.TAKEDOWN.value
                    )
                )
            ).all()
        )
    out: dict[int, list[str]] = {}
    planner = PackPlanner(store, Ledger(store))
    for r in board_rows:
        found: list[str] = []
        pack_id = int(str(r.subject).partition(":")[2])
        pack = packs.get(pack_id)
        if (
            r.state == DeliveryState.SENT.value
            and r.sent_at is not None
            and now - r.sent_at > within
        ):
            found.append("overdue")
        if (
            pack is not None
            and pack_id in takedowns
            and pack.min_days
            and pack.kind in (EventKind.WITHDRAWN, EventKind.EXPIRED)
        ):
            since = await planner.first_posted(
                pack.item_id, int(pack.board_id), before_event=int(pack.event_id)
            )
            if since is not None and pack.created_at - since < timedelta(days=int(pack.min_days)):
                found.append("short_posting")
        if found:
            out[int(r.id)] = found
    return out


async def list_packs(store: SqlStore, board_id: int) -> list[dict[str, Any]]:
    """A board's packs, newest first, with their delivery state and flags (for staff)."""
    p, d = t.board_packs, t.deliveries
    async with store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(
                    p,
                    d.c.id.label("delivery_id"),
                    d.c.subject,
                    d.c.channel,
                    d.c.state,
                    d.c.sent_at,
                    d.c.delivered_at,
                )
                .outerjoin(d, sa.and_(d.c.subject == _pack_subject_sql(), d.c.channel == CHANNEL))
                .where(p.c.board_id == board_id)
                .order_by(p.c.id.desc())
                .limit(500)
            )
        ).all()
    flagged = await flags(
        store,
        [
            _Row(r.delivery_id, r.subject, r.channel, r.state, r.sent_at)
            for r in rows
            if r.delivery_id is not None
        ],
    )
    out = []
    known: dict[str, tuple[str | None, str]] = {}
    for r in rows:
        # as the pack's PDF shows it now: an item withdrawn or expired since is a take-down
        lines = await current_lines(store, int(r.id), known=known)
        out.append(
            {
                "id": int(r.id),
                "item_id": r.item_id,
                "event": r.kind,
                "created_at": r.created_at.isoformat(),
                "state": r.state,
                "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                "confirmed_at": r.confirmed_at.isoformat() if r.confirmed_at else None,
                "confirmed_by": r.confirmed_by,
                "notified": r.notified_at is not None,
                "post": [
                    x.index_no or x.item_id for x in lines if x.action == PackAction.POST.value
                ],
                "take_down": [
                    x.index_no or x.item_id for x in lines if x.action == PackAction.TAKEDOWN.value
                ],
                "flags": flagged.get(int(r.delivery_id), []) if r.delivery_id is not None else [],
            }
        )
    return out


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    subject: str
    channel: str
    state: str
    sent_at: datetime | None
