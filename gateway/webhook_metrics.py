"""The webhook path's metrics: answers, signature failures, events, duplicates, dead letters,
latencies. The router reports plain counts (`router.outcome.Tally`); the label values are
made here, from closed sets: an event's `type` label is its message type when that is one of
`MESSAGE_TYPES`, else "".

With one process the counts are kept in plain numbers between scrapes (`_Unsent`): a dict
update per webhook instead of five prometheus_client increments, each of which takes a lock
(2-3 µs of a webhook's ~50, benchmarks/README.md). With several workers every increment
must reach the worker's file at once, since a scrape is answered by whichever worker, from
the files (gateway/scrape.py).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

from adapters.schema import MESSAGE_TYPES
from gateway.account_metrics import AccountGauges
from router.outcome import Tally

_Labelled = TypeVar("_Labelled", Counter, Histogram)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

EventKey = tuple[str, str | None]
"""(kind, the event's `type` or None), as `Tally.published` counts events."""

_EVENT_KEYS_MAX = 1024
"""Event keys remembered per channel: bounded by the kinds and MESSAGE_TYPES already; the
cap is belt and braces against an adapter that sets `type` from provider text."""


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
    scrape (one process only)."""

    __slots__ = ("answers", "events", "timings")

    def __init__(self) -> None:
        self.answers: dict[tuple[str, int], int] = {}
        self.events: dict[tuple[str, EventKey], int] = {}
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


def _event_labels(key: EventKey) -> tuple[str, str]:
    kind, kind_type = key
    return kind, kind_type if kind_type in MESSAGE_TYPES else ""


class WebhookMetrics:
    """The webhook path's metrics; `defer`: keep its counts unsent until `flush`."""

    def __init__(self, r: CollectorRegistry, accounts: AccountGauges, defer: bool) -> None:
        self._accounts = accounts
        self._unsent: _Unsent | None = _Unsent() if defer else None
        """The webhook path's counts since the last scrape (one process only)."""
        self._children: dict[tuple[int, tuple[str, ...]], Counter | Histogram] = {}
        # The webhook path's labelled children, looked up once (prometheus_client's `labels()`
        # validates and locks every time): by channel, then by the rest of the labels.
        self._answers: dict[tuple[str, int], Counter] = {}
        self._timers: dict[str, tuple[Histogram, Histogram]] = {}
        self._event_counters: dict[str, dict[EventKey, Counter]] = {}
        self._register(r)

    def _register(self, r: CollectorRegistry) -> None:
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
            self._accounts.account_event(channel, event)
        for reason in tally.deadletters:
            self._labelled(self.deadletters, channel, reason).inc()

    def flush(self) -> None:
        """Move the unsent counts into prometheus_client's values (done before every scrape,
        so a scrape sees every webhook answered before it)."""
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

    def _event_counter(self, channel: str, key: EventKey) -> Counter:
        counters = self._event_counters.get(channel)
        if counters is None:
            counters = self._event_counters[channel] = {}
        counter = counters.get(key)
        if counter is None:
            counter = self._labelled(self.events, channel, *_event_labels(key))
            if len(counters) < _EVENT_KEYS_MAX:
                counters[key] = counter
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
