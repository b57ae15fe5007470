"""One HTTP request to an SMS gateway, with the outcome rules both gateway types share."""

from __future__ import annotations

from typing import Any

import aiohttp

from channels.base import PermanentDeliveryError, TransientDeliveryError


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    where: str,
    seconds: float,
    **request: Any,
) -> tuple[int, bytes]:
    """Send one request; returns (status, body).

    Connection refused: nothing went out, try again. No answer once the request was on
    its way: it may have gone out and been billed, so it is not repeated automatically
    (a permanent `no_answer` staff can retry). A fault after the answer began: retry.
    """  # fmt: skip
    answered = False
    try:
        async with session.request(
            method, url, timeout=aiohttp.ClientTimeout(total=seconds), **request
        ) as resp:
            answered = True
            return resp.status, await resp.read()
    except aiohttp.ClientConnectorError as exc:
        raise TransientDeliveryError(f"{where}: cannot connect: {exc.os_error}") from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        if not answered:
            raise PermanentDeliveryError(
                f"{where}: no answer after the request was sent ({type(exc).__name__}); "
                "it may have gone out, so it is not sent again automatically",
                reason="no_answer",
            ) from None
        raise TransientDeliveryError(f"{where}: {type(exc).__name__}") from None
