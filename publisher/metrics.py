"""Prometheus metrics: in-process counters and histograms, plus ledger gauges read at scrape."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from publisher.store import schema as t
from publisher.store.sql import SqlStore

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENESS_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry()
        self.attempts = Counter(
            "publisher_delivery_attempts",
            "Delivery attempts by channel and outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "publisher_send_latency_seconds",
            "Time of one delivery attempt",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.lateness = Histogram(
            "publisher_publication_lateness_seconds",
            "How late scheduled publications started after publish_at",
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        self.claimed = Counter(
            "publisher_deliveries_claimed",
            "Rows claimed by this process",
            ["channel"],
            registry=self.registry,
        )
        self.deliveries = Gauge(
            "publisher_deliveries",
            "Ledger rows by channel and state",
            ["channel", "state"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "publisher_queue_depth",
            "Rows due or waiting (queued, retrying, deferred) by channel",
            ["channel"],
            registry=self.registry,
        )
        self.turn_failures = Counter(
            "publisher_worker_turn_failures",
            "Delivery turns (one database transaction) that failed, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.outcomes_waiting = Gauge(
            "publisher_worker_outcomes_waiting",
            "Finished attempts whose outcome is kept in memory until a turn writes it",
            registry=self.registry,
        )
        self.last_turn = Gauge(
            "publisher_worker_last_turn_ok_timestamp_seconds",
            "When this process's last delivery turn succeeded (Unix time)",
            registry=self.registry,
        )

        self.feed_entries_left_out = Gauge(
            "publisher_feed_entries_left_out",
            "Entries the latest pass of a feed left out (they cannot be written as XML)",
            ["feed"],
            registry=self.registry,
        )

        self.sms_codes_hour = Gauge(
            "publisher_sms_codes_this_hour",
            "Verification codes asked for this hour across all numbers (all processes)",
            registry=self.registry,
        )
        self.sms_code_ceiling = Gauge(
            "publisher_sms_code_ceiling",
            "channels.sms.settings.max_codes_per_hour",
            registry=self.registry,
        )
        self.sms_code_ceiling_reached = Gauge(
            "publisher_sms_code_ceiling_reached",
            "1 while the hourly ceiling of verification codes is reached (no code is sent)",
            registry=self.registry,
        )
        self.sms_codes_refused = Counter(
            "publisher_sms_codes_refused_ceiling",
            "Verification codes this process refused because the hourly ceiling was reached",
            registry=self.registry,
        )

    def code_ceiling_refused(self) -> None:
        self.sms_codes_refused.inc()

    def turn_failed(self, channel: str) -> None:
        self.turn_failures.labels(channel).inc()

    def feed_left_out(self, feed: str, n: int) -> None:
        self.feed_entries_left_out.labels(feed).set(n)

    def observe_attempt(self, channel: str, outcome: str, seconds: float) -> None:
        # label lookups cost more than the observation; keep the children
        key = (channel, outcome)
        pair = self._children.get(key)
        if pair is None:
            pair = self._children[key] = (
                self.attempts.labels(channel, outcome),
                self.latency.labels(channel),
            )
        pair[0].inc()
        pair[1].observe(seconds)

    def queue_claimed(self, channel: str, n: int) -> None:
        self.claimed.labels(channel).inc(n)

    async def render(self, store: SqlStore) -> bytes:
        d = t.deliveries
        async with store.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(d.c.channel, d.c.state, sa.func.count()).group_by(
                        d.c.channel, d.c.state
                    )
                )
            ).all()
        self.deliveries.clear()
        self.queue_depth.clear()
        depth: dict[str, int] = {}
        for channel, state, n in rows:
            self.deliveries.labels(channel, state).set(n)
            if state in ("queued", "retrying", "deferred"):
                depth[channel] = depth.get(channel, 0) + int(n)
        for channel, n in depth.items():
            self.queue_depth.labels(channel).set(n)
        from publisher.subscriptions import code_ceiling  # it reports here

        ceiling = await code_ceiling(store)
        self.sms_codes_hour.set(ceiling.sent if ceiling else 0)
        self.sms_code_ceiling.set(ceiling.ceiling if ceiling else 0)
        self.sms_code_ceiling_reached.set(1 if ceiling and ceiling.reached else 0)
        return generate_latest(self.registry)


#: one per process: the delivery workers and scheduler report here
METRICS = Metrics()
