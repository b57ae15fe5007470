"""Staff passwords: hashing and checking off the event loop, and the password policy.

argon2 takes tens of milliseconds of CPU per password on purpose. Run on the event loop,
a few dozen log-ins at once stall every other request (the health check took seconds),
so hashing and verifying run in a small thread pool of `security.login.hash_threads`
threads; past `hash_queue` waiting calls a log-in is refused at once (Busy) rather than
queued without end. A name that has no usable password (unknown, disabled, API tokens
only) is checked against a dummy hash all the same, so a wrong password costs the same
time whether or not the name exists.

The policy (`problems`): at least `min_password_length` characters, not a well-known
password (common_passwords_zh.txt: Chinese favourites such as woaini1314, 5201314,
qq123456), and a zxcvbn score of at least `min_password_score`, with the Chinese list,
the user's name and the site's words as extra dictionary words.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from publisher.config import LoginSecurityConfig
from publisher.errors import Busy, ValidationFailed

T = TypeVar("T")

_hasher = PasswordHasher()
#: zxcvbn's time grows with the length; a longer password is judged by its first part
_ZXCVBN_MAX = 100
#: the longest password accepted at all (the log-in form reads no more than this)
MAX_LENGTH = 1024
COMMON_FILE = Path(__file__).with_name("common_passwords_zh.txt")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The well-known passwords and pieces of passwords refused and fed to zxcvbn."""
    lines = COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(s.strip().lower() for s in lines if s.strip() and not s.startswith("#"))


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(24))


def hash_password(password: str) -> str:
    """argon2 hash of a password (blocking: call through PasswordHashing)."""
    return _hasher.hash(password)


def verify_hash(password_hash: str | None, password: str) -> bool:
    """Whether the password matches; None verifies against a dummy hash and is False
    (blocking: call through PasswordHashing)."""
    try:
        ok = _hasher.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return bool(ok) and password_hash is not None


@dataclass(frozen=True, slots=True)
class PasswordProblem:
    """Why a password is refused: a stable code (the UI words it) and English text."""

    code: str  # "too_short", "too_long", "common", "weak"
    detail: str


def problems(
    password: str, config: LoginSecurityConfig, *, user_inputs: Iterable[str] = ()
) -> list[PasswordProblem]:
    """What is wrong with a password under the policy; empty when it is good enough."""
    found: list[PasswordProblem] = []
    if len(password) < config.min_password_length:
        found.append(
            PasswordProblem(
                "too_short", f"password: at least {config.min_password_length} characters"
            )
        )
    if len(password) > MAX_LENGTH:
        return [PasswordProblem("too_long", f"password: at most {MAX_LENGTH} characters")]
    common = common_passwords()
    squeezed = "".join(password.split()).lower()
    if password.lower() in common or squeezed in common:
        found.append(PasswordProblem("common", "password: a well-known password"))
        return found
    words = [*common, *(w.lower() for w in user_inputs if w)]
    score = int(zxcvbn(password[:_ZXCVBN_MAX], user_inputs=words)["score"])
    if score < config.min_password_score:
        found.append(
            PasswordProblem(
                "weak",
                f"password: too easy to guess (strength {score} of 4, "
                f"{config.min_password_score} needed); use a longer phrase of unrelated words",
            )
        )
    return found


def require_strong(
    password: str, config: LoginSecurityConfig, *, user_inputs: Iterable[str] = ()
) -> None:
    """Raise ValidationFailed (English, for the CLI and the API) for a refused password."""
    found = problems(password, config, user_inputs=user_inputs)
    if found:
        raise ValidationFailed(found[0].detail, codes=[p.code for p in found])


class PasswordHashing:
    """argon2 hashing and verification in a bounded thread pool, never on the event loop."""

    def __init__(self, config: LoginSecurityConfig) -> None:
        self.config = config
        self._threads = config.hash_threads
        self._pool: ThreadPoolExecutor | None = None
        self._in_use = 0

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="argon2")
        return self._pool

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on a hashing thread; Busy when too many calls already wait."""
        if self._in_use >= self._threads + self.config.hash_queue:
            raise Busy("too many log-ins at once: try again in a moment")
        self._in_use += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor(), fn, *args)
        finally:
            self._in_use -= 1

    async def hash(self, password: str) -> str:
        return await self.run(hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether the password matches the hash; None (no usable password) checks a dummy
        hash so the answer takes as long, and is False."""
        return await self.run(verify_hash, password_hash, password)

    async def problems(
        self, password: str, *, user_inputs: Iterable[str] = ()
    ) -> list[PasswordProblem]:
        """The policy's complaints, computed on a hashing thread (zxcvbn takes a few ms)."""
        return await self.run(
            functools.partial(problems, user_inputs=tuple(user_inputs)), password, self.config
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
