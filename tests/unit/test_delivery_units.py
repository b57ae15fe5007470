"""The delivery engine's pure parts: retry backoff, quiet-hours windows, pacing, masking."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from publisher.addresses import AddressBox, mask, normalize
from publisher.config import QuietHours
from publisher.delivery import RetryPolicy, TokenBucket, quiet_window_end
from publisher.errors import ConfigError, ValidationFailed

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
KEY = b"dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0uLi4uLi4uLi4="


def delay(policy: RetryPolicy, attempts: int, retry_after: float | None = None) -> float | None:
    due = policy.next_due(attempts, NOW, retry_after)
    return None if due is None else (due - NOW).total_seconds()


# -- RetryPolicy -------------------------------------------------------------------------------


def test_backoff_doubles_each_attempt_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=1.0, cap_seconds=20.0)
    # the jitter at its top: the full exponential delay
    monkeypatch.setattr(random, "uniform", lambda lo, hi: hi)
    assert [delay(policy, a) for a in range(1, 8)] == [1, 2, 4, 8, 16, 20, 20]
    # the jitter at its bottom: half of it, never less
    monkeypatch.setattr(random, "uniform", lambda lo, hi: lo)
    assert [delay(policy, a) for a in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]


def test_backoff_is_jittered_within_its_bounds() -> None:
    policy = RetryPolicy(max_attempts=8, base_seconds=2.0, cap_seconds=60.0)
    for attempts in range(1, 8):
        full = min(60.0, 2.0 * 2 ** (attempts - 1))
        seen = [delay(policy, attempts) for _ in range(200)]
        assert all(s is not None and full / 2 <= s <= full for s in seen), (attempts, seen)
        # jitter: many retries of a burst do not come back in lock-step
        assert len(set(seen)) > 100


def test_no_retry_once_attempts_are_used_up() -> None:
    policy = RetryPolicy(max_attempts=3, base_seconds=1.0, cap_seconds=10.0)
    assert delay(policy, 1) is not None
    assert delay(policy, 2) is not None
    assert delay(policy, 3) is None
    assert delay(policy, 4) is None
    assert RetryPolicy(1, 1.0, 10.0).next_due(1, NOW, None) is None


def test_retry_after_is_honoured() -> None:
    policy = RetryPolicy(max_attempts=6, base_seconds=1.0, cap_seconds=3600.0)
    for _ in range(50):
        waited = delay(policy, 1, retry_after=120.0)
        assert waited is not None and waited >= 120.0
    # a Retry-After shorter than the backoff does not make it sooner
    for _ in range(50):
        waited = delay(policy, 4, retry_after=0.5)
        assert waited is not None and waited >= 4.0
    # …and a provider cannot park a message beyond the configured cap
    assert delay(policy, 1, retry_after=10 * 86400) == 3600.0


def test_next_due_is_timezone_aware_and_in_the_future() -> None:
    due = RetryPolicy(6, 0.05, 0.2).next_due(1, NOW, None)
    assert due is not None and due.tzinfo is not None and due > NOW


# -- quiet hours -----------------------------------------------------------------------------


NIGHT = QuietHours(start="21:00", end="08:00")


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("now", "end"),
    [
        # evening: the window ends tomorrow morning
        (local(2026, 3, 10, 21, 0), local(2026, 3, 11, 8, 0)),
        (local(2026, 3, 10, 22, 30), local(2026, 3, 11, 8, 0)),
        (local(2026, 3, 10, 23, 59), local(2026, 3, 11, 8, 0)),
        # after midnight: it ends this morning
        (local(2026, 3, 11, 0, 0), local(2026, 3, 11, 8, 0)),
        (local(2026, 3, 11, 7, 59), local(2026, 3, 11, 8, 0)),
        # across a month and a year end
        (local(2026, 12, 31, 22, 0), local(2027, 1, 1, 8, 0)),
    ],
)
def test_quiet_window_across_midnight(now: datetime, end: datetime) -> None:
    got = quiet_window_end(NIGHT, now, SHANGHAI)
    assert got == end
    assert got is not None and got.utcoffset() == timedelta(0)  # returned in UTC


@pytest.mark.parametrize(
    "now",
    [
        local(2026, 3, 11, 8, 0),  # the end is not inside
        local(2026, 3, 11, 12, 0),
        local(2026, 3, 11, 20, 59),
    ],
)
def test_outside_the_nightly_window(now: datetime) -> None:
    assert quiet_window_end(NIGHT, now, SHANGHAI) is None


def test_the_window_is_in_site_time_whatever_the_clock_zone() -> None:
    # 23:30 UTC on the 10th is 07:30 on the 11th in Shanghai: inside, ends at 08:00 there
    now = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    assert quiet_window_end(NIGHT, now, SHANGHAI) == datetime(2026, 3, 11, 0, 0, tzinfo=UTC)
    # 12:30 UTC is 20:30 in Shanghai: outside, although 12:30 is no night anywhere near UTC+8
    assert quiet_window_end(NIGHT, datetime(2026, 3, 10, 12, 30, tzinfo=UTC), SHANGHAI) is None
    # 13:00 UTC is 21:00 in Shanghai: the window has begun
    nine_pm = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
    assert quiet_window_end(NIGHT, nine_pm, SHANGHAI) == datetime(2026, 3, 11, 0, 0, tzinfo=UTC)


def test_same_day_window() -> None:
    lunch = QuietHours(start="12:00", end="14:00")
    assert quiet_window_end(lunch, local(2026, 3, 10, 12, 0), SHANGHAI) == local(2026, 3, 10, 14)
    assert quiet_window_end(lunch, local(2026, 3, 10, 13, 59), SHANGHAI) == local(2026, 3, 10, 14)
    assert quiet_window_end(lunch, local(2026, 3, 10, 11, 59), SHANGHAI) is None
    assert quiet_window_end(lunch, local(2026, 3, 10, 14, 0), SHANGHAI) is None
    assert quiet_window_end(lunch, local(2026, 3, 10, 23, 0), SHANGHAI) is None


def test_no_window() -> None:
    assert quiet_window_end(None, local(2026, 3, 10, 23, 0), SHANGHAI) is None
    empty = QuietHours(start="08:00", end="08:00")
    assert quiet_window_end(empty, local(2026, 3, 10, 8, 0), SHANGHAI) is None


# -- pacing --------------------------------------------------------------------------------


async def test_token_bucket_paces_after_a_one_second_burst() -> None:
    bucket = TokenBucket(50)
    started = time.monotonic()
    for _ in range(50):  # the burst: one second's worth at once
        await bucket.take()
    burst = time.monotonic() - started
    for _ in range(25):  # then 50 a second
        await bucket.take()
    total = time.monotonic() - started
    assert burst < 0.2
    assert 0.4 <= total < 2.5


# -- addresses ---------------------------------------------------------------------------------


def test_masking_shows_only_the_ends() -> None:
    assert mask("+8613800000001") == "138****0001"
    assert mask("13912345678") == "139****5678"
    assert mask("zhang.san@example.org") == "z***@example.org"
    assert mask("12345") == "*****"


def test_numbers_are_normalised_so_one_resident_is_one_subscriber() -> None:
    assert normalize("sms", "138 0000 0001") == "+8613800000001"
    assert normalize("sms", "+86 138-0000-0001") == "+8613800000001"
    assert normalize("email", "Zhang@Example.ORG") == "Zhang@example.org"
    with pytest.raises(ValidationFailed):
        normalize("sms", "12345")


def test_sealed_addresses_are_not_plain_and_need_the_key() -> None:
    box = AddressBox(KEY)
    sealed = box.seal("+8613800000001")
    assert "13800000001" not in sealed
    assert sealed != box.seal("+8613800000001")  # a fresh nonce each time
    assert box.open(sealed) == "+8613800000001"
    # the lookup hash is stable, per channel
    assert box.hash("sms", "+8613800000001") == box.hash("sms", "+8613800000001")
    assert box.hash("sms", "+8613800000001") != box.hash("email", "+8613800000001")
    other = AddressBox(b"b3RoZXIta2V5LTMyLWJ5dGVzLWxvbmctLi4uLi4uLi4=")
    with pytest.raises(ConfigError):
        other.open(sealed)
