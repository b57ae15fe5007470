"""TOTP second factor for the staff login (RFC 6238, issue 16), via pyotp.

Optional per user, or required for the roles in `security.login.require_totp_for`. It
is a second factor for the browser login only: API bearer tokens are separate
credentials and are not affected.

- **Enrolment.** A user gets a random secret (160 bits, base32), shown as an otpauth://
  URI (QR code) and as text; it is kept sealed with the data key (AddressBox) and counts
  only once the user has entered a first code from it. Then ten one-time recovery codes
  are made, shown once, and kept as keyed hashes (HMAC-SHA256, a key derived from the
  data key): a copy of the database alone neither reads the secret nor tests codes.
- **Codes.** 6 digits, 30-second steps, accepted one step either side (clock drift). The
  step of the last accepted code is kept per user and only a later step is accepted, so
  each code works once (RFC 6238 §5.2); the check and the write are one conditional
  UPDATE, so two requests racing with the same code cannot both win. A recovery code
  works once in place of a code. Wrong codes in a row are counted per user; at
  `security.login.max_failed_logins` the second step is locked for
  `security.login.lockout_minutes`.
- **Log-in.** The second factor is a step of the log-in (publisher.sessions), right
  after the password: a user with TOTP gets a session whose first pending step is
  "totp", one whose role requires TOTP and has none gets "enrol" (any forced password
  change comes after it). Such a session opens only the page that settles the step and
  lasts at most PENDING_MINUTES; once settled (`Sessions.advance`) it gets a new id and
  CSRF token and goes on to its next step, if any, or becomes a full session.
- **Reset.** An administrator (or `publisher user totp-reset`) removes a user's TOTP and
  recovery codes; the user's sessions end, and the reset is in the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from publisher.addresses import AddressBox
from publisher.errors import ConfigError, Conflict, NotFound, Unauthorized
from publisher.models import User
from publisher.store import schema as t
from publisher.store.sql import SqlStore, utcnow

STEP_SECONDS = 30
DIGITS = 6
#: steps accepted either side of the current one
WINDOW = 1
RECOVERY_CODES = 10
#: recovery codes: no 0/o, 1/l/i look-alikes; 10 characters ≈ 49 bits
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 10
#: a half-logged-in session (password right, second factor owed) lasts at most this long
PENDING_MINUTES = 10
#: log-in steps (`staff_sessions.pending`)
PENDING_CODE = "totp"
PENDING_ENROL = "enrol"
#: sealed secrets carry this, so no other sealed value can stand in for one
SEALED_PREFIX = "totp\x00"
ISSUER_MAX = 64


class CodeRefused(Unauthorized):
    """A wrong, reused or out-of-window code (the message never says which)."""


class CodeLocked(Unauthorized):
    """Too many wrong codes in a row; `until` says when codes are checked again."""

    def __init__(self, detail: str, until: datetime) -> None:
        super().__init__(detail)
        self.until = until


@dataclass(frozen=True, slots=True)
class TotpStatus:
    enrolled: bool  #: confirmed with a first code
    confirmed_at: datetime | None
    recovery_left: int


def time_step(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.strip().lower() if ch not in " -")[:64]


def otpauth_uri(secret: str, user_name: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read from the QR code."""
    issuer = issuer.replace(":", " ").strip()[:ISSUER_MAX] or "Gongkai"
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=user_name, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The QR code of `uri` as inline SVG (no script, no external image)."""
    import qrcode
    from qrcode.image.svg import SvgPathImage

    image = qrcode.make(uri, image_factory=SvgPathImage, border=2)
    svg: str = image.to_string(encoding="unicode")
    return svg


class Totp:
    """Enrolment, checking and reset of staff TOTP on a SqlStore."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        login = store.config.security.login
        self.max_failures = login.max_failed_logins
        self.lockout = timedelta(minutes=login.lockout_minutes)
        self._box: AddressBox | None = None

    # -- keys ---------------------------------------------------------------------------

    @property
    def box(self) -> AddressBox:
        if self._box is None:
            self._box = AddressBox(self.store.config.data_key())
        return self._box

    def _seal(self, secret: str) -> str:
        return self.box.seal(SEALED_PREFIX + secret)

    def _open(self, sealed: str) -> str:
        opened = self.box.open(sealed)
        if not opened.startswith(SEALED_PREFIX):
            raise ConfigError("staff_totp: a stored secret is not a TOTP secret")
        return opened[len(SEALED_PREFIX) :]

    def _recovery_hash(self, code: str) -> str:
        key = self.box.derived_key(b"gongkai/totp/recovery")
        return hmac.new(key, normalize_code(code).encode(), hashlib.sha256).hexdigest()

    # -- state --------------------------------------------------------------------------

    async def status(self, user_id: int) -> TotpStatus:
        async with self.store.read() as conn:
            row = (
                await conn.execute(sa.select(t.staff_totp).where(t.staff_totp.c.user_id == user_id))
            ).first()
            left = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(t.totp_recovery_codes)
                .where(
                    t.totp_recovery_codes.c.user_id == user_id,
                    t.totp_recovery_codes.c.used_at.is_(None),
                )
            )
        confirmed = row.confirmed_at if row is not None else None
        return TotpStatus(confirmed is not None, confirmed, int(left or 0) if confirmed else 0)

    async def enrolled_user_ids(self) -> set[int]:
        async with self.store.read() as conn:
            rows = await conn.execute(
                sa.select(t.staff_totp.c.user_id).where(t.staff_totp.c.confirmed_at.is_not(None))
            )
            return {int(r) for r in rows.scalars()}

    def required_for(self, user: User) -> bool:
        return user.role.value in self.store.config.security.login.require_totp_for

    # -- after the password -------------------------------------------------------------

    async def steps_after_password(self, user: User) -> tuple[str, ...]:
        """The second-factor step a right password leaves: (PENDING_CODE,),
        (PENDING_ENROL,) or none; it comes before any other pending step."""
        if (await self.status(user.id)).enrolled:
            return (PENDING_CODE,)
        if self.required_for(user):
            return (PENDING_ENROL,)
        return ()

    # -- enrolment ----------------------------------------------------------------------

    async def pending_secret(self, user_id: int, *, now: datetime | None = None) -> str:
        """The secret the user is enrolling with (made on first call, kept until confirmed
        so that reloading the page shows the same QR code). Conflict when enrolled."""
        now = now or utcnow()
        async with self.store.write() as conn:
            row = (
                await conn.execute(sa.select(t.staff_totp).where(t.staff_totp.c.user_id == user_id))
            ).first()
            if row is not None and row.confirmed_at is not None:
                raise Conflict("two-step verification is already set up")
            if row is not None:
                return self._open(row.secret_sealed)
            secret = pyotp.random_base32(32)
            await conn.execute(
                t.staff_totp.insert().values(
                    user_id=user_id,
                    secret_sealed=self._seal(secret),
                    created_at=now,
                    confirmed_at=None,
                    last_step=None,
                    failures=0,
                )
            )
        return secret

    async def confirm(self, user: User, code: str, *, now: datetime | None = None) -> list[str]:
        """Finish enrolment with a first code from the pending secret; returns the new
        recovery codes (shown once). CodeRefused for a wrong code."""
        now = now or utcnow()
        code = normalize_code(code)
        async with self.store.write() as conn:
            row = (
                await conn.execute(sa.select(t.staff_totp).where(t.staff_totp.c.user_id == user.id))
            ).first()
            if row is None or row.confirmed_at is not None:
                raise CodeRefused("no enrolment in progress")
            step = self._matching_step(self._open(row.secret_sealed), code, now, None)
            if step is None:
                raise CodeRefused("wrong code")
            res = await conn.execute(
                t.staff_totp.update()
                .where(t.staff_totp.c.user_id == user.id, t.staff_totp.c.confirmed_at.is_(None))
                .values(confirmed_at=now, last_step=step, failures=0, locked_until=None)
            )
            if res.rowcount != 1:
                raise CodeRefused("enrolment already finished")
            codes = await self._new_recovery_codes(conn, user.id, now)
            await _audit(conn, user.name, "totp_enrol", now, {"user": user.name})
        return codes

    async def _new_recovery_codes(
        self, conn: AsyncConnection, user_id: int, now: datetime
    ) -> list[str]:
        codes = [
            "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
            for _ in range(RECOVERY_CODES)
        ]
        await conn.execute(
            t.totp_recovery_codes.delete().where(t.totp_recovery_codes.c.user_id == user_id)
        )
        await conn.execute(
            t.totp_recovery_codes.insert(),
            [
                {"user_id": user_id, "code_hash": self._recovery_hash(c), "created_at": now}
                for c in codes
            ],
        )
        half = RECOVERY_LENGTH // 2
        return [f"{c[:half]}-{c[half:]}" for c in codes]

    # -- checking -----------------------------------------------------------------------

    @staticmethod
    def _matching_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
        """The step within ±WINDOW whose code is `code` and that is later than
        `last_step`, or None."""
        if len(code) != DIGITS or not code.isdigit():
            return None
        otp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
        current = time_step(now)
        found = None
        for step in range(current - WINDOW, current + WINDOW + 1):
            if hmac.compare_digest(otp.generate_otp(step), code) and (
                last_step is None or step > last_step
            ):
                found = step
        return found

    async def verify(self, user: User, code: str, *, now: datetime | None = None) -> str:
        """Check the second step of a login: "totp" or "recovery" for an accepted code
        (each works once); CodeRefused otherwise, CodeLocked while locked."""
        now = now or utcnow()
        code = normalize_code(code)
        tt = t.staff_totp
        async with self.store.write() as conn:
            row = (await conn.execute(sa.select(tt).where(tt.c.user_id == user.id))).first()
            if row is None or row.confirmed_at is None:
                raise CodeRefused("no two-step verification set up")
            if row.locked_until is not None and row.locked_until > now:
                raise CodeLocked("too many wrong codes", row.locked_until)
            kind = None
            step = self._matching_step(self._open(row.secret_sealed), code, now, row.last_step)
            if step is not None:
                res = await conn.execute(
                    tt.update()
                    .where(
                        tt.c.user_id == user.id,
                        sa.or_(tt.c.last_step.is_(None), tt.c.last_step < step),
                    )
                    .values(last_step=step, failures=0, locked_until=None)
                )
                kind = "totp" if res.rowcount == 1 else None
            elif len(code) == RECOVERY_LENGTH:  # a 6-digit code is never a recovery code
                rc = t.totp_recovery_codes
                res = await conn.execute(
                    rc.update()
                    .where(
                        rc.c.user_id == user.id,
                        rc.c.code_hash == self._recovery_hash(code),
                        rc.c.used_at.is_(None),
                    )
                    .values(used_at=now)
                )
                if res.rowcount == 1:
                    kind = "recovery"
                    await conn.execute(
                        tt.update()
                        .where(tt.c.user_id == user.id)
                        .values(failures=0, locked_until=None)
                    )
                    await _audit(conn, user.name, "totp_recovery", now, {"user": user.name})
            if kind is not None:
                return kind
        await self._count_failure(user.id, now)
        raise CodeRefused("wrong code")

    async def _count_failure(self, user_id: int, now: datetime) -> None:
        tt = t.staff_totp
        async with self.store.write() as conn:
            row = (await conn.execute(sa.select(tt).where(tt.c.user_id == user_id))).first()
            if row is None:
                return
            failures = row.failures + 1
            locked_until = now + self.lockout if failures >= self.max_failures else None
            await conn.execute(
                tt.update()
                .where(tt.c.user_id == user_id)
                .values(failures=0 if locked_until else failures, locked_until=locked_until)
            )

    # -- reset --------------------------------------------------------------------------

    async def reset(self, user_name: str, actor: str, *, now: datetime | None = None) -> bool:
        """Remove the user's TOTP and recovery codes and end their sessions (audited).
        False when the user had none; NotFound for an unknown user."""
        now = now or utcnow()
        async with self.store.write() as conn:
            uid = await conn.scalar(sa.select(t.users.c.id).where(t.users.c.name == user_name))
            if uid is None:
                raise NotFound(f"no user {user_name!r}")
            res = await conn.execute(t.staff_totp.delete().where(t.staff_totp.c.user_id == uid))
            await conn.execute(
                t.totp_recovery_codes.delete().where(t.totp_recovery_codes.c.user_id == uid)
            )
            had = bool(res.rowcount)
            await conn.execute(t.staff_sessions.delete().where(t.staff_sessions.c.user_id == uid))
            await _audit(conn, actor, "totp_reset", now, {"user": user_name, "had_totp": had})
        return had


async def _audit(
    conn: AsyncConnection,
    actor: str,
    action: str,
    now: datetime,
    details: dict[str, object],
) -> None:
    """An audit-log row about an account (no item)."""
    await conn.execute(
        t.audit_log.insert().values(
            item_id=None, actor=actor, at=now, action=action, details=details
        )
    )
