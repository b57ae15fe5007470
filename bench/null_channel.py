"""A channel that renders like the loopback HTTP channel and sends nothing.

For diagnosis: `BENCH_SMS_ADAPTER=bench.null_channel:NullChannel bench/fanout.py`
measures what the engine costs by itself (store, ledger, rendering, bookkeeping)
when delivering takes no time at all.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from channels.base import ChannelSettings, Limits, Receipt, ReceiptState, Rendered, Target
from tests.fakes import LoopbackHttpChannel


class NullSettings(ChannelSettings):
    url: str = ""


class NullChannel(LoopbackHttpChannel):
    name: ClassVar[str] = "null"
    limits: ClassVar[Limits] = Limits(concurrency=50, repeatable=False, subscribers=True)
    Settings: ClassVar[type[ChannelSettings]] = NullSettings

    async def start(self, stack: object) -> None:  # type: ignore[override]
        return None

    async def deliver(self, rendered: Rendered, target: Target, *, delivery_id: str) -> Receipt:
        await asyncio.sleep(0)  # one turn of the loop, as an answer would take
        return Receipt(ReceiptState.SENT, provider_id=f"null-{delivery_id}")
