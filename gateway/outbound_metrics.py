"""The outbound path's metrics: sends and their outcomes, provider errors, rate-limit waits,
late dispatches, and the outbox queue (gw:outbox). What router.outbound reports through its
`OutboundObserver`, labelled here from closed sets (channel, command type, outcome, reason,
provider error code). And the escalation notices (router/notifications.py, its
`NoticeObserver`): written to gw:notifications or lost, delivered or failed per target kind;
every label value exists from the start, so a dashboard shows 0, not "no data"."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapters.notice import REASONS, TARGET_KINDS
from gateway.scrape import OUTBOX_MODE


class OutboundMetrics:
    """The sends and the outbox. `deadletters`: gateway_deadletters, which both paths count
    (the outbound path's letters have no channel label: an outbox entry may name none)."""

    def __init__(self, r: CollectorRegistry, deadletters: Counter) -> None:
        self._deadletters = deadletters
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
        self._queue(r)
        self.late_dispatches = Counter(
            "gateway_late_dispatches",
            "Sends that gave their slot back because the event loop resumed them too late",
            ["channel"],
            registry=r,
        )
        self._notices(r)

    def _notices(self, r: CollectorRegistry) -> None:
        self.notices = Counter(
            "gateway_notifications",
            "Escalation notices by reason: published to gw:notifications, or lost (Redis "
            "failed, or too many echo takeovers waiting)",
            ["reason", "outcome"],
            registry=r,
        )
        self.notice_deliveries = Counter(
            "gateway_notification_deliveries",
            "Notices by target kind: delivered, or failed (given up and dead-lettered)",
            ["target", "outcome"],
            registry=r,
        )
        for reason in REASONS:
            for outcome in ("published", "lost"):
                self.notices.labels(reason, outcome)
        for kind in TARGET_KINDS:
            for outcome in ("delivered", "failed"):
                self.notice_deliveries.labels(kind, outcome)

    def notice_published(self, reason: str, ok: bool) -> None:
        self.notices.labels(reason, "published" if ok else "lost").inc()

    def notice_delivered(self, target: str, ok: bool) -> None:
        self.notice_deliveries.labels(target, "delivered" if ok else "failed").inc()

    def _queue(self, r: CollectorRegistry) -> None:
        self.outbox_length = Gauge(
            "gateway_outbox_length",
            "Entries in gw:outbox",
            registry=r,
            multiprocess_mode=OUTBOX_MODE,
        )
        self.outbox_pending = Gauge(
            "gateway_outbox_pending",
            "gw:outbox entries read but not yet acknowledged",
            registry=r,
            multiprocess_mode=OUTBOX_MODE,
        )
        self.outbox_oldest = Gauge(
            "gateway_outbox_oldest_pending_seconds",
            "Age of the oldest unacknowledged command",
            registry=r,
            multiprocess_mode=OUTBOX_MODE,
        )
        self.outbox_trimmed = Counter(
            "gateway_outbox_trimmed",
            "gw:outbox entries deleted once every consumer group had acknowledged them",
            registry=r,
        )

    def delivered(self, channel: str, ctype: str, outcome: str, reason: str | None) -> None:
        self.sends.labels(channel, ctype, outcome, reason or "").inc()

    def provider_error(self, channel: str, code: int | None) -> None:
        self.provider_errors.labels(channel, str(code) if code is not None else "none").inc()

    def waited(self, channel: str, seconds: float) -> None:
        self.limiter_wait.labels(channel).observe(seconds)

    def deadlettered(self, reason: str) -> None:
        self._deadletters.labels("", reason).inc()

    def late(self, channel: str) -> None:
        self.late_dispatches.labels(channel).inc()

    def queue(self, length: int, pending: int, oldest_pending_s: float) -> None:
        self.outbox_length.set(length)
        self.outbox_pending.set(pending)
        self.outbox_oldest.set(oldest_pending_s)

    def trimmed(self, count: int) -> None:
        self.outbox_trimmed.inc(count)
