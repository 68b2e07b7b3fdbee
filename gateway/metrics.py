"""Prometheus metrics: one registry per application, label values from closed sets only.

Labels never carry phone numbers, chat ids or assistant-provided strings: `channel`, `kind`,
`type`, `reason` and `code` come from fixed vocabularies (CONTRACT §2.1), so cardinality stays
bounded whatever the traffic.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from adapters.schema import MESSAGE_TYPES, AnyEvent

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
        self.draining = Gauge("gateway_draining", "1 after SIGTERM, while draining", registry=r)

    def published(self, channel: str, events: list[AnyEvent]) -> None:
        for event in events:
            kind = event.__struct_config__.tag
            kind_type = getattr(event, "type", None)
            label = kind_type if kind_type in MESSAGE_TYPES else ""
            self.events.labels(channel, kind, label).inc()

    def duplicated(self, channel: str, events: list[AnyEvent]) -> None:
        for event in events:
            self.duplicates.labels(channel, event.__struct_config__.tag).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
