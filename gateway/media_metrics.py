"""The media endpoint's metrics (gateway/media.py): requests by channel and outcome, and the
bytes streamed. Label values from closed sets: `channel` is a registered adapter's name ("" when
the request named no configured conversation), `outcome` one of `OUTCOMES`. Every series
exists from the start, so the dashboard shows 0, not "no data"."""

from __future__ import annotations

from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter

from adapters import CHANNELS

Outcome = Literal[
    "ok",
    "unauthorized",
    "forbidden",
    "unknown_conversation",
    "invalid",
    "not_found",
    "too_large",
    "provider_error",
    "timeout",
    "interrupted",
]
OUTCOMES: Final[tuple[str, ...]] = Outcome.__args__  # type: ignore[attr-defined]
UNROUTED: Final = ("unauthorized", "unknown_conversation")
"""The outcomes of a request answered before its conversation's channel is known."""


class MediaMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "gateway_media_requests",
            "Media endpoint requests by channel and outcome: ok (streamed whole), refused "
            "(unauthorized, forbidden, unknown_conversation, invalid, not_found, too_large) or "
            "failed (provider_error, timeout, interrupted: cut off while streaming)",
            ["channel", "outcome"],
            registry=r,
        )
        self.bytes = Counter(
            "gateway_media_bytes",
            "Media bytes streamed to backends",
            ["channel"],
            registry=r,
        )
        for name in CHANNELS:
            for outcome in OUTCOMES:
                self.requests.labels(name, outcome)
            self.bytes.labels(name)
        for outcome in UNROUTED:
            self.requests.labels("", outcome)

    def answered(self, channel: str, outcome: Outcome) -> None:
        self.requests.labels(channel, outcome).inc()

    def streamed(self, channel: str, size: int) -> None:
        self.bytes.labels(channel).inc(size)
