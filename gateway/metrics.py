"""Prometheus metrics, one registry per daemon (tests run several in one process).

Counters and the latency histogram are fed by the recorder's batches; the
gauges (spool depth, webhook backlog, channel health) are refreshed from
the store and the channel runners when /metrics is scraped, so a scrape
always shows the database as it is, whichever node did the work.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from spool.base import CampaignCounts, State
from spool.sqlite.heap import heap_bytes

# The classic text format: every Prometheus release reads it, and our names
# need none of 1.0.0's escaping.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Modem sends take seconds; cloud APIs tens of milliseconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BREAKER = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self, *, sqlite_heap: bool = False) -> None:
        """`sqlite_heap`: the spool is SQLite, whose page caches live outside
        Python's heap; export what the library holds (bounded by cache_size)."""
        self._outcome_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._outcomes = Counter(
            "smsgw_messages", "Send outcomes recorded by this node, per channel and state "
            "(sent, retry, failed, blocked, requeued)", ["channel", "state"], registry=r)
        self._latency = Histogram(
            "smsgw_send_latency_seconds", "From the start mark to the channel's answer",
            ["channel"], buckets=LATENCY_BUCKETS, registry=r)
        self._spool = Gauge("smsgw_spool_messages", "Messages in the spool per campaign and state",
                            ["tenant", "campaign", "state"], registry=r)
        self._cost = Gauge("smsgw_campaign_cost", "Cost charged so far per campaign",
                           ["tenant", "campaign"], registry=r)
        self._backlog = Gauge("smsgw_webhook_backlog", "Webhook events waiting to be delivered",
                              registry=r)
        self._up = Gauge("smsgw_channel_up", "1 when the channel can send", ["channel"],
                         registry=r)
        self._signal = Gauge("smsgw_channel_signal_dbm", "Signal strength reported by a modem",
                             ["channel"], registry=r)
        self._in_flight = Gauge("smsgw_channel_in_flight", "Messages queued or sending",
                                ["channel"], registry=r)
        self._breaker = Gauge("smsgw_channel_breaker", "Circuit breaker: 0 closed, "
                              "1 half-open (one probe at a time), 2 open (resting)",
                              ["channel"], registry=r)
        # process_resident_memory_bytes, CPU seconds, open fds (Linux /proc).
        ProcessCollector(registry=r)
        if sqlite_heap and heap_bytes() is not None:
            Gauge("smsgw_sqlite_heap_bytes", "Memory the SQLite library holds: page caches, "
                  "statements, schema", registry=r).set_function(lambda: heap_bytes() or 0)

    def outcome(self, channel: str, state: str, n: int = 1) -> None:
        key = (channel, state)
        child = self._outcome_children.get(key)
        if child is None:  # labels() takes a lock and a dict walk: once per series
            child = self._outcome_children[key] = self._outcomes.labels(
                channel=channel, state=state)
        child.inc(n)

    def latency(self, channel: str, seconds: float) -> None:
        child = self._latency_children.get(channel)
        if child is None:
            child = self._latency_children[channel] = self._latency.labels(channel=channel)
        child.observe(seconds)

    def spool(self, counts: Iterable[CampaignCounts], names: dict[int, tuple[str, str]],
              webhook_backlog: int) -> None:
        """`names`: campaign id -> (tenant name, campaign name)."""
        self._spool.clear()
        self._cost.clear()
        for c in counts:
            tenant, campaign = names.get(c.campaign, ("?", str(c.campaign)))
            for state, n in c.by_state.items():
                self._spool.labels(tenant, campaign, State(state).name).set(n)
            self._cost.labels(tenant, campaign).set(c.cost)
        self._backlog.set(webhook_backlog)

    def channels(self, runners: Iterable[Any], now: float) -> None:
        self._signal.clear()
        for runner in runners:
            self._up.labels(runner.name).set(1 if runner.up() else 0)
            self._in_flight.labels(runner.name).set(runner.load)
            self._breaker.labels(runner.name).set(_BREAKER[runner.breaker.state(now)])
            signal = runner.channel.health().signal_dbm
            if signal is not None:
                self._signal.labels(runner.name).set(signal)

    def render(self) -> bytes:
        return generate_latest(self.registry)
