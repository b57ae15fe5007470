"""The channel tests run real workers like the engine tests: share their fixtures."""

from __future__ import annotations

from tests.engine.conftest import engine_store, gateway

__all__ = ["engine_store", "gateway"]
