"""Prometheus metrics: one registry per application, label values from closed sets only.

Labels never carry phone numbers, chat ids or assistant-provided strings: `channel`, `kind`,
`type`, `reason` and `code` come from fixed vocabularies (CONTRACT §2.1), so cardinality stays
bounded whatever the traffic.

Several worker processes (`server.workers` > 1): prometheus_client's multiprocess mode. The
supervisor sets PROMETHEUS_MULTIPROC_DIR before a worker imports prometheus_client, so every
value lives in a per-process file there; `/metrics` in any worker merges all the files
(`MultiProcessCollector`), so counters and histograms are sums over the workers, dead ones
included, whichever worker Prometheus reaches. Gauges cannot simply be summed; each one's
`multiprocess_mode` says how the workers' values combine, and why (the comment above
`_DRAINING_MODE`).
"""

from __future__ import annotations

from bisect import bisect_left
from pathlib import Path
from typing import Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from adapters.schema import AccountEvent
from router.inbound import Tally

_Labelled = TypeVar("_Labelled", Counter, Histogram)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


# How a gauge's per-worker values combine in multiprocess mode (ignored with one process):
# - gateway_draining, "livemax": 1 while any live worker drains. "live": a worker that drained
#   and exited on its own (someone sent it SIGTERM) is restarted, and its 1 must not outlive it.
# - outbox gauges, "mostrecent": every worker reads the same gw:outbox every
#   claim_idle_seconds / 4 and reports it; the newest reading is the truth. "max" would hold
#   a stale peak until the worker that saw it reads again. The Redis memory gauges likewise
#   (every worker reads the same Redis's INFO memory).
# - gateway_account_connected, "mostrecent": the worker that published the latest account
#   event (or the latest to start, which reads the state from Redis) knows the current state;
#   "max" would show 1 forever after a disconnect seen by one worker while others started
#   with 1. Not "live": the value stays right when the worker that saw the event is gone.
# - gateway_history_sync_progress, "mostrecent": the latest HISTORY_PROGRESS, whoever took it.
# - gateway_account_halted, "max": set to 1 by the worker whose send met the credential error;
#   the halt lasts (in Redis, for every worker) until the gateway restarts, also when that
#   worker dies and is restarted, so its value must outlive it: not "live". The supervisor
#   starts each run with an empty directory, which is the restart that clears it.
_DRAINING_MODE: Final = "livemax"
_OUTBOX_MODE: Final = "mostrecent"
_CONNECTED_MODE: Final = "mostrecent"
_PROGRESS_MODE: Final = "mostrecent"
_HALTED_MODE: Final = "max"


class _Timings:
    """One channel's two latency histograms, unsent: a count per bucket (`LATENCY_BUCKETS`,
    then +Inf) and the sum, as prometheus_client keeps them."""

    __slots__ = ("publish", "publish_sum", "request", "request_sum")

    def __init__(self) -> None:
        self.publish = [0] * (len(LATENCY_BUCKETS) + 1)
        self.request = [0] * (len(LATENCY_BUCKETS) + 1)
        self.publish_sum = 0.0
        self.request_sum = 0.0


class _Unsent:
    """The webhook path's counts (answers, events, latencies) in plain numbers until the next
    scrape: a dict update per webhook instead of five prometheus_client increments, each of
    which takes a lock (2-3 µs of a webhook's ~50, benchmarks/README.md). One process only:
    with several workers every increment must reach the worker's file at once, since a scrape
    is answered by whichever worker, from the files."""

    __slots__ = ("answers", "events", "timings")

    def __init__(self) -> None:
        self.answers: dict[tuple[str, int], int] = {}
        self.events: dict[tuple[str, tuple[str, str]], int] = {}
        self.timings: dict[str, _Timings] = {}


def _observed(histogram: Histogram, counts: list[int], total: float) -> None:
    """Add many observations to a labelled histogram at once. prometheus_client has no public
    call for it, so this writes what `observe` writes: one value per bucket (not cumulative,
    in bound order, +Inf last) and the sum. tests/test_metrics.py checks the exposition
    against `observe`, so a change inside prometheus_client fails a test, not a dashboard."""
    buckets = histogram._buckets
    for value, count in zip(buckets, counts, strict=True):
        if count:
            value.inc(count)
    histogram._sum.inc(total)


class Metrics:
    """The gateway's metrics. `multiprocess_dir`: the PROMETHEUS_MULTIPROC_DIR of a worker
    process; `exposition()` then answers for all workers together."""

    def __init__(self, multiprocess_dir: Path | None = None, *, defer: bool | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        if defer is None:
            defer = multiprocess_dir is None
        if defer and multiprocess_dir is not None:
            raise ValueError("a worker's counts must reach its file at once: no deferring")
        self._unsent: _Unsent | None = _Unsent() if defer else None
        """The webhook path's counts since the last scrape (one process only; see `_Unsent`)."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Counter | Histogram] = {}
        # The webhook path's labelled children, looked up once (prometheus_client's `labels()`
        # validates and locks every time): by channel, then by the rest of the labels.
        self._answers: dict[tuple[str, int], Counter] = {}
        self._timers: dict[str, tuple[Histogram, Histogram]] = {}
        self._event_counters: dict[str, dict[tuple[str, str], Counter]] = {}
        r = self.registry
        self.requests = Counter(
            "gateway_http_requests",
            "Webhook requests answered, by channel and HTTP status",
            ["channel", "code"],
            registry=r,
        )
        self.signature_failures = Counter(
            "gateway_signature_failures",
            "Webhooks refused for a missing or wrong signature",
            ["channel"],
            registry=r,
        )
        self.events = Counter(
            "gateway_events",
            "Events published to assistant streams",
            ["channel", "kind", "type"],
            registry=r,
        )
        self.duplicates = Counter(
            "gateway_duplicates",
            "Redelivered events that were not published again",
            ["channel", "kind"],
            registry=r,
        )
        self.deadletters = Counter(
            "gateway_deadletters",
            "Entries written to gw:deadletter",
            ["channel", "reason"],
            registry=r,
        )
        self.publish_seconds = Histogram(
            "gateway_publish_seconds",
            "Time to make one webhook's events durable in Redis",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "gateway_webhook_seconds",
            "Webhook handling time after the body is read: parse, publish",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "gateway_redis_errors",
            "Redis operations that failed",
            ["operation"],
            registry=r,
        )
        self.draining = Gauge(
            "gateway_draining",
            "1 after SIGTERM, while draining",
            registry=r,
            multiprocess_mode=_DRAINING_MODE,
        )
        self._outbound(r)

    def _outbound(self, r: CollectorRegistry) -> None:
        self.sends = Counter(
            "gateway_sends",
            "Commands finished, by channel, type, outcome and reason",
            ["channel", "type", "outcome", "reason"],
            registry=r,
        )
        self.provider_errors = Counter(
            "gateway_provider_errors",
            "Error answers from the Graph / Bot API, by code",
            ["channel", "code"],
            registry=r,
        )
        self.limiter_wait = Histogram(
            "gateway_limiter_wait_seconds",
            "How long commands waited for a rate-limit slot",
            ["channel"],
            buckets=(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.outbox_length = Gauge(
            "gateway_outbox_length",
            "Entries in gw:outbox",
            registry=r,
            multiprocess_mode=_OUTBOX_MODE,
        )
        self.outbox_pending = Gauge(
            "gateway_outbox_pending",
            "gw:outbox entries read but not yet acknowledged",
            registry=r,
            multiprocess_mode=_OUTBOX_MODE,
        )
        self.outbox_oldest = Gauge(
            "gateway_outbox_oldest_pending_seconds",
            "Age of the oldest unacknowledged command",
            registry=r,
            multiprocess_mode=_OUTBOX_MODE,
        )
        self.account_connected = Gauge(
            "gateway_account_connected",
            "1 while a number is connected, 0 after an account event that disconnected it",
            ["channel", "account"],
            registry=r,
            multiprocess_mode=_CONNECTED_MODE,
        )
        self.history_progress = Gauge(
            "gateway_history_sync_progress",
            "Coexistence history sync progress per number, 0-100 (100: done)",
            ["account"],
            registry=r,
            multiprocess_mode=_PROGRESS_MODE,
        )
        self.late_dispatches = Counter(
            "gateway_late_dispatches",
            "Sends that gave their slot back because the event loop resumed them too late",
            ["channel"],
            registry=r,
        )
        self.account_halted = Gauge(
            "gateway_account_halted",
            "1 while a number or bot is stopped by a credential or account error",
            ["channel", "account"],
            registry=r,
            multiprocess_mode=_HALTED_MODE,
        )
        self.outbox_trimmed = Counter(
            "gateway_outbox_trimmed",
            "gw:outbox entries deleted once every consumer group had acknowledged them",
            registry=r,
        )
        self.redis_memory_used = Gauge(
            "gateway_redis_memory_used_bytes",
            "Redis used_memory (INFO memory; on a cluster, of the fullest master)",
            registry=r,
            multiprocess_mode=_OUTBOX_MODE,
        )
        self.redis_memory_max = Gauge(
            "gateway_redis_maxmemory_bytes",
            "Redis maxmemory of the same node (0: no limit)",
            registry=r,
            multiprocess_mode=_OUTBOX_MODE,
        )

    # OutboundObserver (router.outbound)
    def delivered(self, channel: str, ctype: str, outcome: str, reason: str | None) -> None:
        self.sends.labels(channel, ctype, outcome, reason or "").inc()

    def provider_error(self, channel: str, code: int | None) -> None:
        self.provider_errors.labels(channel, str(code) if code is not None else "none").inc()

    def waited(self, channel: str, seconds: float) -> None:
        self.limiter_wait.labels(channel).observe(seconds)

    def deadlettered(self, reason: str) -> None:
        self.deadletters.labels("", reason).inc()

    def halted(self, channel: str, account_id: str, code: str) -> None:
        self.account_halted.labels(channel, account_id).set(1)

    def late(self, channel: str) -> None:
        self.late_dispatches.labels(channel).inc()

    def queue(self, length: int, pending: int, oldest_pending_s: float) -> None:
        self.outbox_length.set(length)
        self.outbox_pending.set(pending)
        self.outbox_oldest.set(oldest_pending_s)

    def trimmed(self, count: int) -> None:
        self.outbox_trimmed.inc(count)

    def redis_memory(self, used: int, maximum: int) -> None:
        self.redis_memory_used.set(used)
        self.redis_memory_max.set(maximum)

    def answered(self, channel: str, status: int) -> None:
        unsent = self._unsent
        if unsent is not None:
            key = (channel, status)
            answers = unsent.answers
            answers[key] = answers.get(key, 0) + 1
            return
        self._answer_counter(channel, status).inc()

    def timed(self, channel: str, publish_s: float, request_s: float) -> None:
        unsent = self._unsent
        if unsent is not None:
            timings = unsent.timings.get(channel)
            if timings is None:
                timings = unsent.timings[channel] = _Timings()
            timings.publish[bisect_left(LATENCY_BUCKETS, publish_s)] += 1
            timings.publish_sum += publish_s
            timings.request[bisect_left(LATENCY_BUCKETS, request_s)] += 1
            timings.request_sum += request_s
            return
        publish, request = self._timers_of(channel)
        publish.observe(publish_s)
        request.observe(request_s)

    def flush(self) -> None:
        """Move the webhook path's unsent counts into prometheus_client's values (done before
        every scrape, so a scrape sees every webhook answered before it)."""
        unsent = self._unsent
        if unsent is None:
            return
        self._unsent = _Unsent()
        for (channel, status), count in unsent.answers.items():
            self._answer_counter(channel, status).inc(count)
        for (channel, key), count in unsent.events.items():
            self._event_counter(channel, key).inc(count)
        for channel, timings in unsent.timings.items():
            publish, request = self._timers_of(channel)
            _observed(publish, timings.publish, timings.publish_sum)
            _observed(request, timings.request, timings.request_sum)

    def _answer_counter(self, channel: str, status: int) -> Counter:
        counter = self._answers.get((channel, status))
        if counter is None:
            counter = self._labelled(self.requests, channel, str(status))
            self._answers[(channel, status)] = counter
        return counter

    def _event_counter(self, channel: str, key: tuple[str, str]) -> Counter:
        counters = self._event_counters.get(channel)
        if counters is None:
            counters = self._event_counters[channel] = {}
        counter = counters.get(key)
        if counter is None:
            counter = counters[key] = self._labelled(self.events, channel, *key)
        return counter

    def _timers_of(self, channel: str) -> tuple[Histogram, Histogram]:
        timers = self._timers.get(channel)
        if timers is None:
            timers = self._timers[channel] = (
                self._labelled(self.publish_seconds, channel),
                self._labelled(self.request_seconds, channel),
            )
        return timers

    def _labelled(self, metric: _Labelled, *values: str) -> _Labelled:
        """`metric.labels(*values)`, looked up once: the webhook path calls this several times
        per request, and prometheus_client's `labels()` validates and locks every time."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child  # type: ignore[return-value]  # stored under this metric's own id

    def tallied(self, channel: str, tally: Tally) -> None:
        """One webhook's events and duplicates: one labelled increment per (kind, type), so
        a 10,000-event history webhook costs a handful of label lookups, not 10,000."""
        unsent = self._unsent
        if unsent is not None:
            events = unsent.events
            for key, count in tally.published.items():
                labels = (channel, key)
                events[labels] = events.get(labels, 0) + count
        else:
            for key, count in tally.published.items():
                self._event_counter(channel, key).inc(count)
        for kind, count in tally.duplicates.items():
            self._labelled(self.duplicates, channel, kind).inc(count)
        for event in tally.accounts:
            self._account_event(channel, event)
        for reason in tally.deadletters:
            self._labelled(self.deadletters, channel, reason).inc()

    def _account_event(self, channel: str, event: AccountEvent) -> None:
        if event.connected is not None:
            self.connected(channel, event.account_id, event.connected)
        progress = event.detail.get("progress")
        if event.event == "HISTORY_PROGRESS" and isinstance(progress, int | float):
            self.history_progress.labels(event.account_id).set(progress)

    def connected(self, channel: str, account_id: str, connected: bool) -> None:
        self.account_connected.labels(channel, account_id).set(1 if connected else 0)

    def exposition(self) -> bytes:
        if self.multiprocess_dir is None:
            self.flush()
            return generate_latest(self.registry)
        # Read afresh on every scrape: the files are the only place other workers' values are.
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged)
