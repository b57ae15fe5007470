"""Issue 16 (A): the register takes only dates written YYYY-MM-DD in a sane range; the
number 0 was taken as 1970-01-01."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api


async def test_dates_that_are_not_iso_days_are_422(api: Api) -> None:
    base: dict[str, Any] = {"applicant_type": "business", "subject": "征地补偿标准"}
    for bad in (0, 1700000000, "0001-01-01", "1800-01-01", "9999-12-31", "2026-1-5", True):
        status, body, _ = await api.call(
            "POST", "/api/v1/requests", who="root-admin", json={**base, "received_on": bad}
        )
        assert status == 422, (bad, status, body)
        assert "received_on" in body["detail"], body
    status, body, _ = await api.call(
        "POST", "/api/v1/requests", who="root-admin", json={**base, "received_on": "2026-03-02"}
    )
    assert status == 201, body
    assert body["received_on"] == "2026-03-02"
