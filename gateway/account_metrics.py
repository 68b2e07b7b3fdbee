"""Per-number gauges: connected, halted, history sync progress. Both paths move them: the
inbound one from account events, the outbound one from send results and Redis state.

`account` label values are configured numbers and bots (config.yaml), never contacts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from adapters.schema import AccountEvent
from gateway.scrape import CONNECTED_MODE, HALTED_MODE, PROGRESS_MODE, SUBSCRIBED_MODE


class AccountGauges:
    """The gauges of each configured number or bot."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.account_connected = Gauge(
            "gateway_account_connected",
            "1 while a number is connected, 0 after an account event that disconnected it",
            ["channel", "account"],
            registry=r,
            multiprocess_mode=CONNECTED_MODE,
        )
        self.history_progress = Gauge(
            "gateway_history_sync_progress",
            "Coexistence history sync progress per number, 0-100 (100: done)",
            ["account"],
            registry=r,
            multiprocess_mode=PROGRESS_MODE,
        )
        self.webhook_subscribed = Gauge(
            "gateway_webhook_subscribed",
            "1 while the provider delivers the account's webhooks to this gateway, 0 once it "
            "does not (server.subscription_check_seconds; Meta unsubscribes after failed "
            "deliveries)",
            ["channel", "account"],
            registry=r,
            multiprocess_mode=SUBSCRIBED_MODE,
        )
        self.account_halted = Gauge(
            "gateway_account_halted",
            "1 while a number or bot is stopped by a credential or account error",
            ["channel", "account"],
            registry=r,
            multiprocess_mode=HALTED_MODE,
        )

    def subscribed(self, channel: str, account_id: str, subscribed: bool) -> None:
        self.webhook_subscribed.labels(channel, account_id).set(1 if subscribed else 0)

    def connected(self, channel: str, account_id: str, connected: bool) -> None:
        self.account_connected.labels(channel, account_id).set(1 if connected else 0)

    def halted(self, channel: str, account_id: str, code: str | None) -> None:
        """`code`: the provider code that halted it; None: not halted (any more)."""
        self.account_halted.labels(channel, account_id).set(0 if code is None else 1)

    def account_event(self, channel: str, event: AccountEvent) -> None:
        """What a published account event says about its number."""
        if event.connected is not None:
            self.connected(channel, event.account_id, event.connected)
        progress = event.detail.get("progress")
        if event.event == "HISTORY_PROGRESS" and isinstance(progress, int | float):
            self.history_progress.labels(event.account_id).set(progress)
