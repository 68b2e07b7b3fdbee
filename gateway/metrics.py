"""Prometheus metrics: one registry per application, label values from closed sets only.

Labels never carry phone numbers, chat ids or assistant-provided strings: `channel`, `kind`,
`type`, `reason` and `code` come from fixed vocabularies (CONTRACT §2.1), so cardinality stays
bounded whatever the traffic.

`Metrics` is the one object the gateway holds (`State.metrics`) and the router's outbound
path reports to (`OutboundObserver`). Its parts, one module each:

    webhook_metrics   WebhookMetrics   answers, events, latencies (counted unsent between
                                       scrapes in one process)
    outbound_metrics  OutboundMetrics  sends, provider errors, waits, the outbox queue
    account_metrics   AccountGauges    connected / halted / history progress per number
    media_metrics     MediaMetrics     the media endpoint: requests by outcome, bytes
    scrape            exposition, and how each gauge combines across worker processes

and here the process's own: Redis errors and memory, draining, the journal (webhooks of
providers that never redeliver kept on disk while Redis cannot take them, gateway/journal.py:
counted by gateway/receive.py, its bytes reported by the journal itself).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway import scrape
from gateway.account_metrics import AccountGauges
from gateway.media_metrics import MediaMetrics
from gateway.outbound_metrics import OutboundMetrics
from gateway.scrape import DRAINING_MODE, JOURNAL_MODE, REDIS_MEMORY_MODE
from gateway.webhook_metrics import LATENCY_BUCKETS, WebhookMetrics

__all__ = ["LATENCY_BUCKETS", "Metrics"]


class Metrics:
    """The gateway's metrics. `multiprocess_dir`: the PROMETHEUS_MULTIPROC_DIR of a worker
    process; `exposition()` then answers for all workers together. `defer` (default: one
    process) keeps the webhook path's counts unsent until a scrape (gateway/webhook_metrics.py)."""

    def __init__(self, multiprocess_dir: Path | None = None, *, defer: bool | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        if defer is None:
            defer = multiprocess_dir is None
        if defer and multiprocess_dir is not None:
            raise ValueError("a worker's counts must reach its file at once: no deferring")
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.accounts = AccountGauges(r)
        self.webhooks = WebhookMetrics(r, self.accounts, defer)
        self.outbound = OutboundMetrics(r, self.webhooks.deadletters)
        self.media = MediaMetrics(r)
        self._process(r)
        self._bind()

    def _process(self, r: CollectorRegistry) -> None:
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
            multiprocess_mode=DRAINING_MODE,
        )
        self.redis_memory_used = Gauge(
            "gateway_redis_memory_used_bytes",
            "Redis used_memory (INFO memory; on a cluster, of the fullest master)",
            registry=r,
            multiprocess_mode=REDIS_MEMORY_MODE,
        )
        self.redis_memory_max = Gauge(
            "gateway_redis_maxmemory_bytes",
            "Redis maxmemory of the same node (0: no limit)",
            registry=r,
            multiprocess_mode=REDIS_MEMORY_MODE,
        )
        self.journal_webhooks = Counter(
            "gateway_journal_webhooks",
            "Webhooks of providers that never redeliver, through the on-disk journal: kept "
            "(Redis could not take it), refused (the journal could not keep it either: 503), "
            "replayed (published from the journal)",
            ["channel", "outcome"],
            registry=r,
        )
        self.journal_bytes = Gauge(
            "gateway_journal_bytes",
            "Bytes waiting in the journal to be published (with workers, summed over them)",
            registry=r,
            multiprocess_mode=JOURNAL_MODE,
        )

    def _bind(self) -> None:
        """The parts' calls, as this object's own: bound once, so the webhook path (three
        calls per webhook) pays no forwarding call."""
        webhooks, outbound, accounts = self.webhooks, self.outbound, self.accounts
        # The webhook path (gateway/handlers.py).
        self.signature_failures = webhooks.signature_failures
        self.deadletters = webhooks.deadletters
        self.answered = webhooks.answered
        self.timed = webhooks.timed
        self.tallied = webhooks.tallied
        # The outbound path, as the router's OutboundObserver.
        self.delivered = outbound.delivered
        self.provider_error = outbound.provider_error
        self.waited = outbound.waited
        self.deadlettered = outbound.deadlettered
        self.late = outbound.late
        self.queue = outbound.queue
        self.trimmed = outbound.trimmed
        self.halted = accounts.halted
        self.connected = accounts.connected
        self.subscribed = accounts.subscribed
        self.app_idle = accounts.app_idle

    def redis_memory(self, used: int, maximum: int) -> None:
        self.redis_memory_used.set(used)
        self.redis_memory_max.set(maximum)

    def exposition(self) -> bytes:
        """What Prometheus reads: in one process, every webhook answered before it counted."""
        self.webhooks.flush()
        return scrape.exposition(self.registry, self.multiprocess_dir)
